// VMDK: descriptors, multi-extent images, sparse-extent validation, redundant tables, stream-optimized refusal.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageError } from "../errors.js";
import { openImage } from "../open.js";
import { createImage } from "../ops/create.js";
import { hasQemuImg, holeyContent, qemuImg, scratchDir } from "../test-util.js";
import { parseDescriptor, serializeDescriptor } from "./descriptor.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const codeOf = (fn: () => unknown): string => {
  try {
    (fn() as { close?: () => void } | undefined)?.close?.();
    return "none";
  } catch (err) {
    if (err instanceof ImageError) return err.code;
    throw err;
  }
};

describe("VMDK descriptor", () => {
  it("parses what it writes, and qemu-style text with comments and CRLF", () => {
    const text = [
      "# Disk DescriptorFile", "version=1", "CID=fffffffe", "parentCID=12345678", 'createType="twoGbMaxExtentFlat"',
      'parentFileNameHint="base.vmdk"', "", "# Extent description", 'RW 4096 FLAT "a-f001.vmdk" 0', "RDONLY 2048 ZERO",
      'RW 100 SPARSE "b.vmdk"', "", 'ddb.adapterType = "lsilogic"',
    ].join("\r\n");
    const d = parseDescriptor(text, "x");
    expect(d).toMatchObject({ createType: "twoGbMaxExtentFlat", cid: 0xfffffffe, parentCid: 0x12345678, parentFileNameHint: "base.vmdk" });
    expect(d.extents.map((e) => [e.access, e.sectors, e.type, e.file])).toEqual([
      ["RW", 4096, "FLAT", "a-f001.vmdk"], ["RDONLY", 2048, "ZERO", ""], ["RW", 100, "SPARSE", "b.vmdk"],
    ]);
    expect(parseDescriptor(serializeDescriptor(d), "x")).toEqual(d);
  });

  it("rejects unknown extent types and garbage lines with typed errors", () => {
    expect(codeOf(() => parseDescriptor('createType="x"\nRW 10 SESPARSE "a"', "x"))).toBe("UNSUPPORTED_FEATURE");
    expect(codeOf(() => parseDescriptor('createType="x"\n@@@', "x"))).toBe("BAD_DESCRIPTOR");
    expect(codeOf(() => parseDescriptor("version=1\nCID=1", "x"))).toBe("BAD_DESCRIPTOR");
  });
});

describe("VMDK images", () => {
  it("reads a hand-written multi-extent descriptor (flat, zero, flat with offset)", () => {
    const a = holeyContent(8192, 1, 1);
    const b = holeyContent(4096 + 1024, 2, 1);
    fs.writeFileSync(path.join(dir, "a.bin"), a);
    fs.writeFileSync(path.join(dir, "b.bin"), b);
    fs.writeFileSync(path.join(dir, "m.vmdk"), [
      "# Disk DescriptorFile", "version=1", 'createType="custom"',
      'RW 16 FLAT "a.bin" 0', "RW 4 ZERO", 'RW 8 FLAT "b.bin" 2',
    ].join("\n"));
    const img = openImage(path.join(dir, "m.vmdk"));
    expect(img.format).toBe("vmdk");
    expect(img.virtualSize).toBe(28 * 512);
    const got = new Uint8Array(img.virtualSize);
    img.read(0, got);
    expect(Buffer.compare(got.subarray(0, 8192), a)).toBe(0);
    expect(got.subarray(8192, 10240).every((x) => x === 0)).toBe(true);
    expect(Buffer.compare(got.subarray(10240), b.subarray(1024, 1024 + 4096))).toBe(0);
    expect(img.status(8192, 4096)).toEqual({ kind: "zero", length: 2048 });
    img.close();
    if (hasQemuImg) {
      // qemu-img skips ZERO extents (and needs a known createType): compare the flat-only variant
      fs.writeFileSync(path.join(dir, "n.vmdk"), [
        "# Disk DescriptorFile", "version=1", "CID=12345678", "parentCID=ffffffff", 'createType="monolithicFlat"',
        'RW 16 FLAT "a.bin" 0', 'RW 8 FLAT "b.bin" 2',
      ].join("\n"));
      const q = path.join(dir, "q.raw");
      expect(qemuImg("convert", "-f", "vmdk", "-O", "raw", path.join(dir, "n.vmdk"), q).status).toBe(0);
      const ours = openImage(path.join(dir, "n.vmdk"));
      const mine = new Uint8Array(ours.virtualSize);
      ours.read(0, mine);
      ours.close();
      expect(Buffer.compare(fs.readFileSync(q), mine)).toBe(0);
    }
  });

  it("refuses a descriptor that names itself or a missing extent", () => {
    fs.writeFileSync(path.join(dir, "s.vmdk"), '# Disk DescriptorFile\ncreateType="x"\nRW 8 FLAT "s.vmdk" 0\n');
    expect(codeOf(() => openImage(path.join(dir, "s.vmdk")))).toBe("BAD_DESCRIPTOR");
    fs.writeFileSync(path.join(dir, "g.vmdk"), '# Disk DescriptorFile\ncreateType="x"\nRW 8 FLAT "gone.bin" 0\n');
    expect(codeOf(() => openImage(path.join(dir, "g.vmdk")))).toBe("IO_ERROR");
  });

  it("validates sparse headers: grain size, grain directory placement", () => {
    const file = path.join(dir, "s.vmdk");
    const damaged = (at: number, bytes: number[]): string => {
      createImage(file, "vmdk", 2 ** 20);
      const buf = fs.readFileSync(file);
      Buffer.from(bytes).copy(buf, at);
      fs.writeFileSync(file, buf);
      return codeOf(() => openImage(file));
    };
    expect(damaged(20, [3, 0, 0, 0])).toBe("BAD_CLUSTER_SIZE");
    expect(damaged(56, [0, 0, 0, 0x40])).toBe("OUT_OF_BOUNDS_TABLE");
    expect(damaged(12, [0, 0, 0, 0, 0, 0, 0, 0x40])).toBe("SIZE_OVERFLOW");
    expect(damaged(4, [9, 0, 0, 0])).toBe("UNSUPPORTED_FEATURE");
  });

  it("keeps redundant grain tables in step, and check notices when they differ", () => {
    const file = path.join(dir, "r.vmdk");
    createImage(file, "vmdk", 4 * 2 ** 20);
    const img = openImage(file, { writable: true });
    img.write(65536 * 3 + 10, new Uint8Array(100).fill(1));
    img.close();
    const clean = openImage(file);
    expect(clean.check()).toMatchObject({ corruptions: 0, allocatedClusters: 1 });
    clean.close();
    // primary GD at sector 21 + 1 + 4 (qemu layout): corrupt one entry of the primary grain table
    const buf = fs.readFileSync(file);
    const gdSector = buf.readUInt32LE(56);
    const gt = buf.readUInt32LE(gdSector * 512) * 512;
    buf.writeUInt32LE(buf.readUInt32LE(gt + 12) + 128, gt + 12);
    fs.writeFileSync(file, buf);
    const bad = openImage(file);
    expect(bad.check().corruptions).toBeGreaterThan(0);
    bad.close();
  });

  it.skipIf(!hasQemuImg)("reads stream-optimized images but refuses to write them", () => {
    const raw = path.join(dir, "r.raw");
    fs.writeFileSync(raw, holeyContent(2 ** 20, 3));
    const so = path.join(dir, "so.vmdk");
    expect(qemuImg("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, so).status).toBe(0);
    const img = openImage(so, { writable: true });
    expect(img.details().create_type).toBe("streamOptimized");
    expect(codeOf(() => img.write(0, new Uint8Array(512)))).toBe("UNSUPPORTED_FEATURE");
    img.close();
  });
});
