// VHD: sizes like qemu-img, footer/header validation, differencing disks and their locators.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageError } from "../errors.js";
import { openImage } from "../open.js";
import { createImage } from "../ops/create.js";
import { scratchDir } from "../test-util.js";
import { MAX_VHD_BYTES, sizeForCreate, vhdChecksum } from "./footer.js";
import { VhdImage } from "./image.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const codeOf = (fn: () => { close(): void }): string => {
  try {
    fn().close();
    return "none";
  } catch (err) {
    if (err instanceof ImageError) return err.code;
    throw err;
  }
};

/** Overwrite bytes, then fix the checksum of the 512-byte footer or 1024-byte header at `structAt`. */
function patch(file: string, at: number, bytes: number[], structAt: number, structLen: number, checksumAt: number): void {
  const buf = fs.readFileSync(file);
  Buffer.from(bytes).copy(buf, at);
  buf.writeUInt32BE(vhdChecksum(buf.subarray(structAt, structAt + structLen), checksumAt), structAt + checksumAt);
  fs.writeFileSync(file, buf);
}

describe("VHD sizes", () => {
  it.each([
    [4 * 2 ** 20, 4212736],
    [2 ** 30, 1073995776],
    [10 * 2 ** 30, 10737893376],
    [127 * 2 ** 30, 136365219840],
    [200 * 2 ** 30, 214748364800],
    [2040 * 2 ** 30, 2190433320960],
  ])("%i bytes → %i, as qemu-img rounds it", (requested, size) => {
    expect(sizeForCreate(requested).size).toBe(size);
  });

  it("refuses more than 2040 GiB", () => {
    expect(() => sizeForCreate(MAX_VHD_BYTES + 512)).toThrow(/2040 GiB/);
  });
});

describe("VHD validation", () => {
  it.each([
    ["footer checksum", (f: string, size: number) => {
      const b = fs.readFileSync(f);
      b[size - 512 + 100] ^= 1;
      fs.writeFileSync(f, b);
    }, "BAD_CHECKSUM"],
    ["dynamic header checksum", (f: string) => {
      const b = fs.readFileSync(f);
      b[512 + 600] ^= 1;
      fs.writeFileSync(f, b);
    }, "BAD_CHECKSUM"],
    ["disk type 7", (f: string, size: number) => patch(f, size - 512 + 60, [0, 0, 0, 7], size - 512, 512, 64), "UNSUPPORTED_FEATURE"],
    ["block size 3000", (f: string) => patch(f, 512 + 32, [0, 0, 0x0b, 0xb8], 512, 1024, 36), "BAD_CLUSTER_SIZE"],
    ["BAT beyond the file", (f: string) => patch(f, 512 + 16, [0, 0, 0, 0, 0x7f, 0, 0, 0], 512, 1024, 36), "OUT_OF_BOUNDS_TABLE"],
    ["BAT on the header", (f: string) => patch(f, 512 + 16, [0, 0, 0, 0, 0, 0, 2, 0], 512, 1024, 36), "OVERLAPPING_TABLES"],
    ["block outside the file", (f: string) => {
      const b = fs.readFileSync(f);
      b.writeUInt32BE(0x00ffffff, 1536 + 4);
      fs.writeFileSync(f, b);
    }, "OUT_OF_BOUNDS_TABLE"],
    ["two blocks in one place", (f: string) => {
      const b = fs.readFileSync(f);
      b.writeUInt32BE(b.readUInt32BE(1536), 1536 + 4);
      fs.writeFileSync(f, b);
    }, "OVERLAPPING_TABLES"],
    ["size 2^60", (f: string, size: number) => patch(f, size - 512 + 48, [0x10, 0, 0, 0, 0, 0, 0, 0], size - 512, 512, 64), "SIZE_OVERFLOW"],
  ])("%s → %s", (_name, damage, code) => {
    const file = path.join(dir, "d.vhd");
    createImage(file, "vpc", 8 * 2 ** 20);
    const img = openImage(file, { writable: true });
    img.write(0, new Uint8Array(3 * 2 ** 20).fill(7)); // two blocks
    img.close();
    damage(file, fs.statSync(file).size);
    expect(codeOf(() => openImage(file, { format: "vpc" }))).toBe(code);
  });
});

describe("differencing VHD", () => {
  it("marks only written sectors as present; the rest reads through to the parent", () => {
    const parent = path.join(dir, "p.vhd");
    const child = path.join(dir, "c.vhd");
    createImage(parent, "vpc", 4 * 2 ** 20);
    const p = openImage(parent, { writable: true });
    p.write(0, new Uint8Array(2 ** 20).fill(0x11));
    p.close();
    createImage(child, "vpc", undefined, { backing: { file: "p.vhd" } });
    const c = openImage(child, { writable: true });
    c.write(1000, new Uint8Array([0x22]));
    expect(c.status(0, 4096)).toEqual({ kind: "unallocated", length: 512 });
    expect(c.status(512, 4096)).toEqual({ kind: "data", length: 512 });
    expect(c.status(1024, 4096)).toEqual({ kind: "unallocated", length: 4096 });
    c.close();
    const r = openImage(child);
    const buf = new Uint8Array(4096);
    r.read(0, buf);
    expect(buf[1000]).toBe(0x22);
    expect(buf.filter((b) => b === 0x11).length).toBe(4095);
    expect((r as VhdImage).details().subformat).toBe("differencing");
    r.close();
  });

  it("finds its parent through the relative locator after both move together", () => {
    const a = path.join(dir, "a");
    fs.mkdirSync(a);
    createImage(path.join(a, "p.vhd"), "vpc", 2 ** 20);
    createImage(path.join(a, "c.vhd"), "vpc", undefined, { backing: { file: "p.vhd" } });
    const b = path.join(dir, "b");
    fs.renameSync(a, b);
    const img = openImage(path.join(b, "c.vhd"));
    expect(img.backing?.path).toBe(path.join(b, "p.vhd"));
    img.close();
  });
});
