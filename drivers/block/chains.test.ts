// Backing chains: qcow2 overlays, VHD differencing disks, VMDK parents, loops, rebase.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageError } from "./errors.js";
import { openImage } from "./open.js";
import { compareImages } from "./ops/compare.js";
import { createImage } from "./ops/create.js";
import { rebaseImage } from "./ops/rebase.js";
import { Qcow2Image } from "./qcow2/image.js";
import { hasQemuImg, holeyContent, qemuImg, scratchDir } from "./test-util.js";

const SIZE = 2 * 1024 * 1024;
let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function readAll(file: string): Uint8Array {
  const img = openImage(file);
  try {
    const buf = new Uint8Array(img.virtualSize);
    img.read(0, buf);
    return buf;
  } finally {
    img.close();
  }
}

function writeAt(file: string, offset: number, data: Uint8Array): void {
  const img = openImage(file, { writable: true });
  try {
    img.write(offset, data);
  } finally {
    img.close();
  }
}

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ImageError) return err.code;
    throw err;
  }
  return "none";
};

describe.each([
  { format: "qcow2" as const, ext: "qcow2" },
  { format: "vpc" as const, ext: "vhd" },
  { format: "vmdk" as const, ext: "vmdk" },
])("$format three-level chain", ({ format, ext }) => {
  it("each layer shows its own writes over its parents', unaligned writes included", () => {
    const base = path.join(dir, `base.${ext}`);
    const mid = path.join(dir, `mid.${ext}`);
    const top = path.join(dir, `top.${ext}`);
    createImage(base, format, SIZE);
    const baseData = holeyContent(SIZE, 1, 0.7);
    writeAt(base, 0, baseData);
    createImage(mid, format, undefined, { backing: { file: `base.${ext}` } });
    const patch1 = holeyContent(300000, 2, 1);
    writeAt(mid, 123457, patch1);
    createImage(top, format, undefined, { backing: { file: `mid.${ext}` } });
    const patch2 = new Uint8Array(1001).fill(0x5a);
    writeAt(top, 1_000_003, patch2);
    const want = baseData.slice();
    want.set(patch1, 123457);
    want.set(patch2, 1_000_003);
    const got = readAll(top);
    expect(Buffer.compare(got.subarray(0, SIZE), want)).toBe(0);
    // the parents are untouched
    expect(Buffer.compare(readAll(base).subarray(0, SIZE), baseData)).toBe(0);
    const img = openImage(top);
    try {
      expect(img.backing?.backing?.path).toBe(base);
      expect(img.status(0, 65536).kind).toBe("unallocated");
    } finally {
      img.close();
    }
    if (hasQemuImg && format !== "vpc") {
      // qemu-img reads our chains too (it has no differencing-VHD support)
      const expected = path.join(dir, "want.raw");
      fs.writeFileSync(expected, want);
      const r = qemuImg("compare", "-F", "raw", top, expected);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      if (format === "qcow2") expect(qemuImg("check", top).status).toBe(0);
    }
  });
});

describe("backing problems", () => {
  it("detects a backing loop (two images naming each other) and a self loop", () => {
    const a = path.join(dir, "a.qcow2");
    const b = path.join(dir, "b.qcow2");
    createImage(a, "qcow2", SIZE);
    createImage(b, "qcow2", undefined, { backing: { file: "a.qcow2", format: "qcow2" } });
    const img = openImage(a, { writable: true }) as Qcow2Image;
    img.setBackingRef({ file: "b.qcow2", format: "qcow2" });
    img.close();
    expect(codeOf(() => openImage(a).close())).toBe("BACKING_LOOP");
    expect(codeOf(() => openImage(b).close())).toBe("BACKING_LOOP");
    const c = path.join(dir, "c.qcow2");
    createImage(c, "qcow2", SIZE);
    const self = openImage(c, { writable: true }) as Qcow2Image;
    self.setBackingRef({ file: "c.qcow2", format: "qcow2" });
    self.close();
    expect(codeOf(() => openImage(c).close())).toBe("BACKING_LOOP");
  });

  it("reports a missing backing file and a differencing VHD whose parent was replaced", () => {
    const base = path.join(dir, "gone.qcow2");
    const top = path.join(dir, "top.qcow2");
    createImage(base, "qcow2", SIZE);
    createImage(top, "qcow2", undefined, { backing: { file: "gone.qcow2" } });
    fs.rmSync(base);
    expect(codeOf(() => openImage(top).close())).toBe("BACKING_NOT_FOUND");
    const p = path.join(dir, "p.vhd");
    const c = path.join(dir, "c.vhd");
    createImage(p, "vpc", SIZE);
    createImage(c, "vpc", undefined, { backing: { file: "p.vhd" } });
    createImage(p, "vpc", SIZE); // a new disk under the old name: new unique id
    expect(codeOf(() => openImage(c).close())).toBe("BACKING_MISMATCH");
  });

  it("refuses a second writer of the same image, in this process", () => {
    const a = path.join(dir, "a.qcow2");
    createImage(a, "qcow2", SIZE);
    const first = openImage(a, { writable: true });
    expect(codeOf(() => openImage(a, { writable: true }))).toBe("LOCKED");
    expect(codeOf(() => openImage(path.join(dir, ".", "a.qcow2"), { writable: true }))).toBe("LOCKED");
    openImage(a).close(); // readers are fine
    first.close();
    openImage(a, { writable: true }).close();
  });
});

describe.each([
  { format: "vpc" as const, ext: "vhd" },
  { format: "vmdk" as const, ext: "vmdk" },
])("rebase $format", ({ format, ext }) => {
  it("moves to another parent of the same format, keeping the visible content", () => {
    const oldBase = path.join(dir, `old.${ext}`);
    const newBase = path.join(dir, `new.${ext}`);
    const top = path.join(dir, `top.${ext}`);
    createImage(oldBase, format, SIZE);
    writeAt(oldBase, 0, holeyContent(SIZE, 3, 0.6));
    createImage(newBase, format, SIZE);
    writeAt(newBase, 0, holeyContent(SIZE, 4, 0.6));
    createImage(top, format, undefined, { backing: { file: `old.${ext}` } });
    writeAt(top, 500_001, new Uint8Array(70_000).fill(9));
    const before = readAll(top);
    rebaseImage(top, { backing: `new.${ext}` });
    const img = openImage(top);
    expect(img.backing?.path).toBe(newBase);
    img.close();
    expect(Buffer.compare(readAll(top), before)).toBe(0);
    fs.rmSync(oldBase);
    expect(Buffer.compare(readAll(top), before)).toBe(0);
    if (hasQemuImg && format === "vmdk") {
      const exp = path.join(dir, "exp.raw");
      fs.writeFileSync(exp, before);
      expect(qemuImg("compare", "-F", "raw", top, exp).status).toBe(0);
    }
  });
});

describe("rebase", () => {
  it("safe mode keeps the visible content when moving to a different backing file", () => {
    const oldBase = path.join(dir, "old.qcow2");
    const newBase = path.join(dir, "new.qcow2");
    const top = path.join(dir, "top.qcow2");
    createImage(oldBase, "qcow2", SIZE);
    writeAt(oldBase, 0, holeyContent(SIZE, 3, 0.6));
    createImage(newBase, "qcow2", SIZE);
    writeAt(newBase, 0, holeyContent(SIZE, 4, 0.6));
    createImage(top, "qcow2", undefined, { backing: { file: "old.qcow2" } });
    writeAt(top, 500_000, new Uint8Array(70_000).fill(9));
    const before = readAll(top);
    rebaseImage(top, { backing: "new.qcow2" });
    const img = openImage(top);
    expect(img.backing?.path).toBe(newBase);
    img.close();
    expect(Buffer.compare(readAll(top), before)).toBe(0);
    if (hasQemuImg) expect(qemuImg("check", top).status).toBe(0);
    // and flattening (no backing at all)
    rebaseImage(top, { backing: "" });
    expect(openImage(top).backingRef).toBeNull();
    expect(Buffer.compare(readAll(top), before)).toBe(0);
  });

  it("unsafe mode only rewrites the name; a loop through the new backing is refused", () => {
    const a = path.join(dir, "a.qcow2");
    const b = path.join(dir, "b.qcow2");
    const top = path.join(dir, "top.qcow2");
    createImage(a, "qcow2", SIZE);
    writeAt(a, 0, new Uint8Array(4096).fill(1));
    createImage(b, "qcow2", SIZE);
    createImage(top, "qcow2", undefined, { backing: { file: "a.qcow2" } });
    rebaseImage(top, { backing: "b.qcow2", unsafe: true });
    expect(readAll(top)[0]).toBe(0);
    const c = path.join(dir, "c.qcow2");
    createImage(c, "qcow2", undefined, { backing: { file: "top.qcow2" } });
    expect(codeOf(() => rebaseImage(top, { backing: "c.qcow2" }))).toBe("BACKING_LOOP");
    expect(openImage(top).backingRef?.file).toBe("b.qcow2");
    expect(compareImages(top, top).identical).toBe(true);
  });
});
