// BlockService: sector requests against images, validation before action, one writer per image.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageError } from "./errors.js";
import { openImage } from "./open.js";
import { createImage } from "./ops/create.js";
import { BlockService, BlockStatus, SECTOR_SIZE } from "./service.js";
import { holeyContent, scratchDir } from "./test-util.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const lockedCode = (fn: () => unknown): string => {
  try {
    fn();
    return "none";
  } catch (err) {
    return err instanceof ImageError ? err.code : "other";
  }
};

describe.each(["qcow2", "vpc", "vmdk", "raw"] as const)("BlockService on %s", (format) => {
  it("reads back what it wrote, in place in the caller's buffer, and flushes", () => {
    const file = path.join(dir, `disk.${format}`);
    createImage(file, format, 4 * 1024 * 1024);
    const svc = BlockService.open(file);
    expect(svc.sectors).toBeGreaterThanOrEqual(8192);
    const guestRam = new Uint8Array(1 << 20);
    const data = holeyContent(64 * SECTOR_SIZE, 3, 1);
    guestRam.set(data, 4096);
    const window = guestRam.subarray(4096, 4096 + data.length);
    expect(svc.handle({ op: "write", sector: 1001, count: 64, buffer: window }).status).toBe(BlockStatus.OK);
    expect(svc.handle({ op: "flush", sector: 0, count: 0 }).status).toBe(BlockStatus.OK);
    const into = guestRam.subarray(200_000, 200_000 + data.length);
    expect(svc.handle({ op: "read", sector: 1001, count: 64, buffer: into }).status).toBe(BlockStatus.OK);
    expect(Buffer.compare(into, data)).toBe(0);
    svc.close();
    const img = openImage(file);
    const check = new Uint8Array(data.length);
    img.read(1001 * SECTOR_SIZE, check);
    img.close();
    expect(Buffer.compare(check, data)).toBe(0);
  });
});

describe("BlockService validation and locking", () => {
  it("refuses bad requests without touching the image", () => {
    const file = path.join(dir, "d.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    const svc = BlockService.open(file);
    const before = fs.readFileSync(file);
    const buf = new Uint8Array(4096);
    const bad = [
      { op: "write" as const, sector: 2047, count: 2, buffer: buf },
      { op: "write" as const, sector: -1, count: 1, buffer: buf },
      { op: "write" as const, sector: 0.5, count: 1, buffer: buf },
      { op: "write" as const, sector: 0, count: 9, buffer: buf },
      { op: "read" as const, sector: 0, count: 1 },
    ];
    for (const req of bad) expect(svc.handle(req).status, JSON.stringify({ ...req, buffer: undefined })).toBe(BlockStatus.IO_ERROR);
    expect(svc.handle({ op: "trim" as unknown as "read", sector: 0, count: 1, buffer: buf }).status).toBe(BlockStatus.UNSUPPORTED);
    svc.close();
    expect(Buffer.compare(fs.readFileSync(file), before)).toBe(0);
    expect(svc.handle({ op: "read", sector: 0, count: 1, buffer: buf }).status).toBe(BlockStatus.IO_ERROR);
  });

  it("allows one writer per image file, through any path to it; readers are fine", () => {
    const file = path.join(dir, "d.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    const link = path.join(dir, "link.qcow2");
    fs.symlinkSync(file, link);
    const writer = BlockService.open(file);
    expect(lockedCode(() => BlockService.open(file))).toBe("LOCKED");
    expect(lockedCode(() => BlockService.open(link))).toBe("LOCKED");
    const reader = BlockService.open(link, { readOnly: true });
    expect(reader.readOnly).toBe(true);
    expect(reader.handle({ op: "write", sector: 0, count: 1, buffer: new Uint8Array(512) }).status).toBe(BlockStatus.UNSUPPORTED);
    reader.close();
    writer.close();
    const again = BlockService.open(link);
    again.close();
  });

  it("takes over a lock file left by a process that no longer exists", () => {
    const file = path.join(dir, "d.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    fs.writeFileSync(path.join(dir, ".d.qcow2.hv-lock"), "999999999\n");
    const svc = BlockService.open(file);
    svc.close();
    expect(fs.existsSync(path.join(dir, ".d.qcow2.hv-lock"))).toBe(false);
  });
});
