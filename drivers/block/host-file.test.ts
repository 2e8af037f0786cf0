// HostFile: what it refuses to open or create, and readBulk (direct reads over holes) returning what readSome returns.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { alignedBuffer } from "./bytes.js";
import { HostFile } from "./host-file.js";
import { fillRandom, scratchDir } from "./test-util.js";

const MiB = 1 << 20;

let dirs: string[] = [];
beforeEach(() => {
  // tmpfs (scratchDir) and the OS temp folder (often a disk file system, where O_DIRECT differs most).
  dirs = [scratchDir("hv-hostfile-"), fs.mkdtempSync(path.join(os.tmpdir(), "hv-hostfile-"))];
});
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe("readBulk", () => {
  it("reads holes, data after holes, and a tail that is not a whole block exactly as readSome does", () => {
    for (const dir of dirs) {
      const file = path.join(dir, "sparse.raw");
      const size = 40 * MiB + 1234;
      const fd = fs.openSync(file, "w");
      fs.ftruncateSync(fd, size);
      const data = new Uint8Array(3 * MiB + 512);
      fillRandom(data, 9);
      for (const at of [16 * MiB, 24 * MiB - 512, size - 1234 - MiB]) fs.writeSync(fd, data, 0, Math.min(data.length, size - at), at);
      fs.closeSync(fd);
      const hf = HostFile.open(file, false);
      try {
        for (const make of [alignedBuffer, (n: number) => new Uint8Array(new ArrayBuffer(n + 16), 16, n)]) {
          for (const chunk of [MiB, 4 * MiB + 512]) {
            const bulk = make(chunk);
            const want = new Uint8Array(chunk);
            for (let at = 0; at < size + chunk; at += chunk) {
              hf.readBulk(at, bulk);
              hf.readSome(at, want);
              expect(Buffer.compare(bulk, want), `${dir} chunk ${chunk} at ${at}`).toBe(0);
            }
          }
        }
      } finally {
        hf.close();
      }
    }
  });
});

describe("open and create refuse what is not a regular file", () => {
  it("create makes a new file, and discard() removes only a file it made", () => {
    const dir = dirs[0]!;
    const made = HostFile.create(path.join(dir, "new.img"));
    made.discard();
    expect(fs.existsSync(path.join(dir, "new.img"))).toBe(false);
    fs.writeFileSync(path.join(dir, "old.img"), "abc");
    const emptied = HostFile.create(path.join(dir, "old.img"));
    expect(emptied.size).toBe(0);
    emptied.discard();
    expect(fs.existsSync(path.join(dir, "old.img"))).toBe(true);
  });

  it("a symbolic link is followed to open an image, never to create one", () => {
    const dir = dirs[0]!;
    fs.writeFileSync(path.join(dir, "real.img"), new Uint8Array(512));
    fs.symlinkSync("real.img", path.join(dir, "link.img"));
    HostFile.open(path.join(dir, "link.img"), false).close();
    expect(() => HostFile.create(path.join(dir, "link.img"))).toThrow(/is a symbolic link, not a regular file/);
    expect(fs.statSync(path.join(dir, "real.img")).size).toBe(512);
  });
});
