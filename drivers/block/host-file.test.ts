// HostFile: what it refuses to open or create.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HostFile } from "./host-file.js";
import { scratchDir } from "./test-util.js";

let dirs: string[] = [];
beforeEach(() => {
  dirs = [scratchDir("hv-hostfile-")];
});
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
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
