// Oracle tests: qemu-img checks and compares what we write, and we read what qemu-img writes.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CreateOptions } from "./formats.js";
import type { FormatName } from "./image.js";
import { openImage } from "./open.js";
import { compareImages } from "./ops/compare.js";
import { convertImage } from "./ops/convert.js";
import { createImage } from "./ops/create.js";
import { hasQemuImg, holeyContent, qemuImg, qemuIo, scratchDir } from "./test-util.js";

if (!hasQemuImg) console.warn("qemu-img not found: skipping the qemu-img oracle tests (install qemu-utils)");

const SIZE = 3 * 1024 * 1024 + 64 * 1024 + 512; // not a multiple of any cluster size we use

/** Formats we write, with the options that select them. */
const TARGETS: { name: string; format: FormatName; create?: CreateOptions }[] = [
  { name: "raw", format: "raw" },
  { name: "qcow2 v3", format: "qcow2" },
  { name: "qcow2 v2", format: "qcow2", create: { compat: "0.10" } },
  { name: "qcow2 4K clusters", format: "qcow2", create: { clusterSize: 4096 } },
  { name: "vpc dynamic", format: "vpc" },
  { name: "vpc fixed", format: "vpc", create: { subformat: "fixed" } },
  { name: "vmdk sparse", format: "vmdk" },
  { name: "vmdk flat", format: "vmdk", create: { subformat: "monolithicFlat" } },
];

/** qemu-img check: 0 clean; 63 = the format has no check (raw, vpc). */
function expectQemuCheckClean(file: string, format: FormatName): void {
  const r = qemuImg("check", "-f", format, file);
  expect([0, 63], `${file}: ${r.stdout}${r.stderr}`).toContain(r.status);
}

function readAll(file: string, format?: FormatName): Uint8Array {
  const img = openImage(file, { format });
  try {
    const buf = new Uint8Array(img.virtualSize);
    img.read(0, buf);
    return buf;
  } finally {
    img.close();
  }
}

/** Equal on the common part; anything beyond in `got` must be zero (VHD rounds sizes up to CHS). */
function expectSameContent(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBeGreaterThanOrEqual(want.length);
  expect(Buffer.compare(got.subarray(0, want.length), want)).toBe(0);
  expect(got.subarray(want.length).every((b) => b === 0)).toBe(true);
}

describe.skipIf(!hasQemuImg)("qemu-img oracle", () => {
  let dir: string;
  let rawPath: string;
  let content: Uint8Array;
  beforeAll(() => {
    dir = scratchDir();
    content = holeyContent(SIZE, 12345);
    rawPath = path.join(dir, "source.raw");
    fs.writeFileSync(rawPath, content);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe.each(TARGETS)("we write $name", ({ name, format, create }) => {
    it("passes qemu-img check and compares equal to its source", async () => {
      const out = path.join(dir, `ours-${name.replace(/\W/g, "_")}.img`);
      await convertImage(rawPath, out, { sourceFormat: "raw", targetFormat: format, create });
      expectQemuCheckClean(out, format);
      const cmp = qemuImg("compare", "-f", "raw", "-F", format, rawPath, out);
      expect(cmp.status, cmp.stdout + cmp.stderr).toBe(0);
      // and qemu-img's reading agrees byte for byte with ours
      const back = path.join(dir, `back-${name.replace(/\W/g, "_")}.raw`);
      expect(qemuImg("convert", "-f", format, "-O", "raw", out, back).status).toBe(0);
      expectSameContent(new Uint8Array(fs.readFileSync(back)), content);
      expectSameContent(readAll(out, format), content);
    });

    it("stays valid after random writes through our driver", () => {
      const out = path.join(dir, `w-${name.replace(/\W/g, "_")}.img`);
      createImage(out, format, SIZE, create);
      const img = openImage(out, { format, writable: true });
      const expected = new Uint8Array(img.virtualSize);
      const writes = holeyContent(img.virtualSize, 999, 0.25);
      // write pieces in a scrambled order, with unaligned edges
      const pieces: [number, number][] = [];
      for (let at = 0; at < img.virtualSize; at += 40000 + (at % 7) * 1000) pieces.push([at, Math.min(img.virtualSize, at + 30011)]);
      pieces.reverse();
      for (const [a, b] of pieces) {
        img.write(a, writes.subarray(a, b));
        expected.set(writes.subarray(a, b), a);
      }
      img.writeZeroes(65536, 100000);
      expected.fill(0, 65536, 165536);
      img.close();
      expectQemuCheckClean(out, format);
      const exp = path.join(dir, `w-${name.replace(/\W/g, "_")}.raw`);
      fs.writeFileSync(exp, expected);
      const cmp = qemuImg("compare", "-F", "raw", "-f", format, out, exp);
      expect(cmp.status, cmp.stdout + cmp.stderr).toBe(0);
      expectSameContent(readAll(out, format), expected);
    });
  });

  const QEMU_MADE: { name: string; format: FormatName; args: string[] }[] = [
    { name: "qcow2 v3", format: "qcow2", args: ["-O", "qcow2"] },
    { name: "qcow2 v2", format: "qcow2", args: ["-O", "qcow2", "-o", "compat=0.10"] },
    { name: "qcow2 512-byte clusters", format: "qcow2", args: ["-O", "qcow2", "-o", "cluster_size=512"] },
    { name: "qcow2 2M clusters", format: "qcow2", args: ["-O", "qcow2", "-o", "cluster_size=2M"] },
    { name: "qcow2 refcount_bits=1", format: "qcow2", args: ["-O", "qcow2", "-o", "refcount_bits=1"] },
    { name: "qcow2 refcount_bits=64", format: "qcow2", args: ["-O", "qcow2", "-o", "refcount_bits=64"] },
    { name: "qcow2 compressed", format: "qcow2", args: ["-c", "-O", "qcow2"] },
    { name: "vpc dynamic", format: "vpc", args: ["-O", "vpc"] },
    { name: "vpc fixed", format: "vpc", args: ["-O", "vpc", "-o", "subformat=fixed"] },
    { name: "vmdk sparse", format: "vmdk", args: ["-O", "vmdk"] },
    { name: "vmdk flat", format: "vmdk", args: ["-O", "vmdk", "-o", "subformat=monolithicFlat"] },
    { name: "vmdk streamOptimized", format: "vmdk", args: ["-O", "vmdk", "-o", "subformat=streamOptimized"] },
    { name: "vmdk twoGbMaxExtentSparse", format: "vmdk", args: ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"] },
  ];

  describe.each(QEMU_MADE)("qemu-img writes $name", ({ name, format, args }) => {
    it("we read it bit-exactly, probe its format and find it clean", () => {
      const out = path.join(dir, `qemu-${name.replace(/\W/g, "_")}.img`);
      const r = qemuImg("convert", "-f", "raw", ...args, rawPath, out);
      expect(r.status, r.stderr).toBe(0);
      const img = openImage(out);
      try {
        expect(img.format).toBe(format);
        const info = JSON.parse(qemuImg("info", "--output=json", "-f", format, out).stdout) as { "virtual-size": number };
        expect(img.virtualSize).toBe(info["virtual-size"]);
        const check = img.check();
        expect(check.corruptions + check.leaks, check.messages.join("\n")).toBe(0);
      } finally {
        img.close();
      }
      expectSameContent(readAll(out), content);
    });

    it("converts back through our code unchanged", async () => {
      const src = path.join(dir, `qemu-${name.replace(/\W/g, "_")}.img`);
      const out = path.join(dir, `qemu-${name.replace(/\W/g, "_")}.back.qcow2`);
      await convertImage(src, out, { targetFormat: "qcow2" });
      expectQemuCheckClean(out, "qcow2");
      expect(qemuImg("compare", "-F", "raw", out, rawPath).status).toBe(0);
    });
  });

  it("we extend a qcow2 image qemu-img made with 512-byte clusters (refcount table growth)", () => {
    const out = path.join(dir, "grow.qcow2");
    expect(qemuImg("create", "-f", "qcow2", "-o", "cluster_size=512", out, "8M").status).toBe(0);
    const data = holeyContent(8 * 1024 * 1024, 4242, 0.9);
    const img = openImage(out, { writable: true });
    img.write(0, data);
    img.close();
    const check = qemuImg("check", out);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expectSameContent(readAll(out), data);
  });

  it("reads backing chains qemu-img builds and qemu-io writes into", async () => {
    const base = path.join(dir, "chain-base.qcow2");
    const mid = path.join(dir, "chain-mid.qcow2");
    const top = path.join(dir, "chain-top.qcow2");
    expect(qemuImg("convert", "-f", "raw", "-O", "qcow2", rawPath, base).status).toBe(0);
    expect(qemuImg("create", "-f", "qcow2", "-b", "chain-base.qcow2", "-F", "qcow2", mid).status).toBe(0);
    expect(qemuImg("create", "-f", "qcow2", "-o", "compat=0.10", "-b", "chain-mid.qcow2", "-F", "qcow2", top).status).toBe(0);
    const io = (file: string, cmd: string): void => {
      const r = qemuIo(file, cmd);
      expect(r.status, r.stderr).toBe(0);
    };
    io(mid, "write -P 0xab 100000 200000");
    io(mid, "write -z 1048576 65536");
    io(top, "write -P 0xcd 150000 10");
    const want = content.slice();
    want.fill(0xab, 100000, 300000);
    want.fill(0, 1048576, 1048576 + 65536);
    want.fill(0xcd, 150000, 150010);
    expectSameContent(readAll(top), want);
    const flat = path.join(dir, "chain-flat.vmdk");
    await convertImage(top, flat, { targetFormat: "vmdk" });
    expect(qemuImg("compare", top, flat).status).toBe(0);
  });

  it("our backing chains: qemu-img sees the same overlay content", async () => {
    const base = path.join(dir, "ours-base.qcow2");
    const top = path.join(dir, "ours-top.qcow2");
    await convertImage(rawPath, base, { sourceFormat: "raw", targetFormat: "qcow2" });
    createImage(top, "qcow2", undefined, { backing: { file: "ours-base.qcow2" } });
    const img = openImage(top, { writable: true });
    const patch = holeyContent(SIZE, 77, 0.2);
    const want = readAll(base);
    for (let at = 0; at < SIZE; at += 300000) {
      const end = Math.min(SIZE, at + 70000);
      img.write(at + 3, patch.subarray(at, end - 3));
      want.set(patch.subarray(at, end - 3), at + 3);
    }
    img.close();
    expect(qemuImg("check", top).status).toBe(0);
    const exp = path.join(dir, "ours-top.raw");
    fs.writeFileSync(exp, want);
    expect(qemuImg("compare", "-F", "raw", top, exp).status).toBe(0);
    expect(compareImages(top, exp).identical).toBe(true);
  });

  const PAIRS = TARGETS.flatMap((a) => TARGETS.map((b) => ({ a, b })));
  it(`round trips through all ${PAIRS.length} format pairs preserve the data`, async () => {
    for (const { a, b } of PAIRS) {
      const ia = path.join(dir, "pair-a.img");
      const ib = path.join(dir, "pair-b.img");
      const back = path.join(dir, "pair-back.raw");
      await convertImage(rawPath, ia, { sourceFormat: "raw", targetFormat: a.format, create: a.create });
      await convertImage(ia, ib, { sourceFormat: a.format, targetFormat: b.format, create: b.create });
      await convertImage(ib, back, { sourceFormat: b.format, targetFormat: "raw" });
      const got = new Uint8Array(fs.readFileSync(back));
      expect(Buffer.compare(got.subarray(0, content.length), content), `${a.name} -> ${b.name}`).toBe(0);
      for (const f of fs.readdirSync(dir)) if (f.startsWith("pair-")) fs.rmSync(path.join(dir, f));
    }
  });
});

