// qcow2: header validation codes, check (leaks, corruptions) against qemu-img, dirty images, compressed data.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageError } from "../errors.js";
import { openImage } from "../open.js";
import { hasQemuImg, holeyContent, qemuImg, qemuIo, scratchDir } from "../test-util.js";
import { createQcow2 } from "./create.js";
import { Qcow2Image } from "./image.js";

let dir: string;
let file: string;
beforeEach(() => {
  dir = scratchDir();
  file = path.join(dir, "t.qcow2");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const codeOf = (fn: () => unknown): string => {
  try {
    const r = fn() as { close?: () => void } | undefined;
    r?.close?.();
    return "none";
  } catch (err) {
    if (err instanceof ImageError) return err.code;
    throw err;
  }
};

/** Patch big-endian fields of the file in place. */
function patch(at: number, bytes: number[]): void {
  const fd = fs.openSync(file, "r+");
  fs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  fs.closeSync(fd);
}
const be32 = (v: number): number[] => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const be64 = (hi: number, lo: number): number[] => [...be32(hi), ...be32(lo)];

function populated(): void {
  createQcow2(file, 1024 * 1024);
  const img = openImage(file, { writable: true });
  img.write(0, holeyContent(1024 * 1024, 8, 0.5));
  img.close();
}

describe("qcow2 header validation", () => {
  it.each([
    ["bad magic", () => patch(0, [0, 0, 0, 0]), "BAD_MAGIC"],
    ["version 4", () => patch(4, be32(4)), "UNSUPPORTED_FEATURE"],
    ["cluster_bits 30", () => patch(20, be32(30)), "BAD_CLUSTER_SIZE"],
    ["size 2^62", () => patch(24, be64(0x40000000, 0)), "SIZE_OVERFLOW"],
    ["size beyond L1", () => patch(24, be64(0, 0x7fffffff)), "BAD_HEADER"],
    ["huge l1_size", () => patch(36, be32(0x7fffffff)), "OUT_OF_BOUNDS_TABLE"],
    ["L1 beyond the file", () => patch(40, be64(0, 0x10000000)), "OUT_OF_BOUNDS_TABLE"],
    ["L1 on the refcount table", () => patch(40, be64(0, 0x10000)), "OVERLAPPING_TABLES"],
    ["refcount table on the header", () => patch(48, be64(0, 0)), "OVERLAPPING_TABLES"],
    ["no refcount table", () => patch(56, be32(0)), "BAD_HEADER"],
    ["encryption", () => patch(32, be32(1)), "UNSUPPORTED_FEATURE"],
    ["unknown incompatible bit", () => patch(76, be32(0x100)), "UNSUPPORTED_FEATURE"],
    ["external data file", () => patch(76, be32(4)), "UNSUPPORTED_FEATURE"],
    ["header extension past the cluster", () => patch(104, [...be32(0x12345678), ...be32(0x7fffffff)]), "BAD_HEADER"],
    ["truncated", () => fs.truncateSync(file, 50), "TRUNCATED"],
  ])("%s → %s", (_name, damage, code) => {
    populated();
    damage();
    const before = fs.readFileSync(file);
    expect(codeOf(() => openImage(file, { format: "qcow2" }))).toBe(code);
    expect(Buffer.compare(fs.readFileSync(file), before)).toBe(0);
  });

  it("an L2 table pointing outside the file fails on read with OUT_OF_BOUNDS_TABLE", () => {
    populated();
    const img = openImage(file) as Qcow2Image;
    const l1 = img.header.l1TableOffset;
    img.close();
    patch(l1, be64(0x80000000, 0x7ff00000));
    const bad = openImage(file);
    expect(codeOf(() => bad.read(0, new Uint8Array(512)))).toBe("OUT_OF_BOUNDS_TABLE");
    bad.close();
  });
});

describe("qcow2 check", () => {
  it("finds nothing wrong with images we write (and neither does qemu-img)", () => {
    populated();
    const img = openImage(file);
    const r = img.check();
    img.close();
    expect(r).toMatchObject({ corruptions: 0, leaks: 0 });
    expect(r.allocatedClusters).toBeGreaterThan(0);
    if (hasQemuImg) expect(qemuImg("check", file).status).toBe(0);
  });

  it("reports a leaked cluster (exit 3 in qemu-img too)", () => {
    populated();
    const img = openImage(file, { writable: true }) as Qcow2Image;
    img.refcounts.allocate(1); // allocated, referenced by nothing
    img.close();
    const r = openImage(file);
    expect(r.check()).toMatchObject({ corruptions: 0, leaks: 1 });
    r.close();
    if (hasQemuImg) expect(qemuImg("check", file).status).toBe(3);
  });

  it("reports a data cluster that overlaps the L1 table (exit 2 in qemu-img too), and refuses to write into it", () => {
    populated();
    const img = openImage(file) as Qcow2Image;
    const l1 = img.header.l1TableOffset;
    const l2 = img.map.l2Offset(0);
    img.close();
    patch(l2, be64(0x80000000, l1)); // guest cluster 0 -> the L1 table
    const r = openImage(file);
    expect(r.check().corruptions).toBeGreaterThan(0);
    r.close();
    if (hasQemuImg) expect(qemuImg("check", file).status).toBe(2);
    const w = openImage(file, { writable: true });
    expect(codeOf(() => w.write(0, new Uint8Array(512).fill(1)))).toBe("OVERLAPPING_TABLES");
    w.close();
  });
});

describe.skipIf(!hasQemuImg)("qcow2 written by qemu", () => {
  it("a dirty image (lazy refcounts, crashed) reads fine and is repaired when opened for writing", () => {
    expect(qemuImg("create", "-f", "qcow2", "-o", "lazy_refcounts=on", file, "4M").status).toBe(0);
    qemuIo(file, "write -P 0x11 0 128k", "abort"); // abort simulates a crash: the dirty bit stays set
    expect(qemuImg("check", file).status).toBe(2);
    const ro = openImage(file) as Qcow2Image;
    expect(ro.details().dirty).toBe(true);
    const buf = new Uint8Array(131072);
    ro.read(0, buf);
    expect(buf.every((b) => b === 0x11)).toBe(true);
    expect(ro.check().corruptions).toBeGreaterThan(0);
    ro.close();
    const rw = openImage(file, { writable: true });
    rw.write(131072, new Uint8Array(65536).fill(0x22));
    rw.close();
    const after = openImage(file) as Qcow2Image;
    expect(after.details().dirty).toBe(false);
    expect(after.check()).toMatchObject({ corruptions: 0, leaks: 0 });
    after.close();
    expect(qemuImg("check", file).status).toBe(0);
  });

  it("writing over compressed clusters rewrites them uncompressed and frees the old space", () => {
    const raw = path.join(dir, "r.raw");
    fs.writeFileSync(raw, holeyContent(1024 * 1024, 4, 0.8));
    expect(qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", raw, file).status).toBe(0);
    const img = openImage(file, { writable: true });
    const want = new Uint8Array(fs.readFileSync(raw));
    img.write(70000, new Uint8Array(1000).fill(0x33));
    want.fill(0x33, 70000, 71000);
    img.close();
    const check = qemuImg("check", file);
    expect([0, 3]).toContain(check.status); // freed compressed sectors may share a cluster: never a corruption
    const back = openImage(file);
    const got = new Uint8Array(back.virtualSize);
    back.read(0, got);
    back.close();
    expect(Buffer.compare(got, want)).toBe(0);
  });
});
