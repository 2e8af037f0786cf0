// Hostile destinations for `hv img convert` and `create`: devices, symbolic links, FIFOs, directories, other users' files.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { compareImages } from "../../drivers/block/ops/compare.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { openImage } from "../../drivers/block/open.js";
import { holeyContent, scratchDir } from "../../drivers/block/test-util.js";
import { fifoGuard, hv, mkfifo } from "./img-harness.js";

const SIZE = 4 << 20;
const isRoot = process.geteuid?.() === 0;
/** A user that is not us, for files we must not take over (nobody). */
const OTHER_UID = 65534;

let dir: string;
let source: string;
beforeEach(() => {
  dir = scratchDir("hv-hostile-dest-");
  source = path.join(dir, "source.raw");
  fs.writeFileSync(source, holeyContent(SIZE, 11));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const p = (name: string): string => path.join(dir, name);

/**
 * A null device to convert onto. As root, a private node (mknod c 1 3) in the scratch folder: a
 * regression that replaces the device then replaces only that node, not the machine's /dev/null
 * (this happened once, running these tests against the unfixed code). Without root the real
 * /dev/null is safe: /dev is not ours to rename into.
 */
function nullDevice(): string {
  if (!isRoot) return "/dev/null";
  const node = p("null");
  if (spawnSync("mknod", ["-m", "666", node, "c", "1", "3"]).status !== 0) throw new Error("mknod failed");
  return node;
}

const leftovers = (): string[] => fs.readdirSync(dir).filter((f) => f.startsWith(".hv-convert-"));

describe("convert onto a device", () => {
  it("writes a raw image through a null device, which stays a character device", async () => {
    const dev = nullDevice();
    const r = await hv("convert", "-f", "raw", "-O", "raw", source, dev);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(fs.lstatSync(dev).isCharacterDevice()).toBe(true);
    expect(fs.readFileSync(dev).length).toBe(0);
    expect(leftovers()).toEqual([]);
  });

  it("refuses to lay another format onto a device, before touching it", async () => {
    const dev = nullDevice();
    const r = await hv("convert", "-f", "raw", "-O", "qcow2", source, dev);
    expect(r.err).toMatch(/only raw can be written onto a device, not qcow2 \[BAD_ARGUMENT\]/);
    expect(r.code).toBe(1);
    expect(fs.lstatSync(dev).isCharacterDevice()).toBe(true);
  });

  it("create refuses a device: it is not a file to make an image in", async () => {
    const dev = nullDevice();
    const r = await hv("create", "-f", "raw", dev, "1M");
    expect(r.err).toMatch(/null: is a character device, not a regular file \[NOT_REGULAR_FILE\]/);
    expect(fs.lstatSync(dev).isCharacterDevice()).toBe(true);
  });
});

describe("convert and create never replace what is not a regular file", () => {
  it("a symbolic link to someone's file: refused; the link and the file it names stay as they were", async () => {
    const victim = p("victim.txt");
    fs.writeFileSync(victim, "precious\n");
    fs.symlinkSync(victim, p("out.raw"));
    for (const args of [["convert", "-f", "raw", "-O", "raw", source, p("out.raw")], ["create", "-f", "raw", p("out.raw"), "1M"]]) {
      const r = await hv(...args);
      expect(r.err).toMatch(/out\.raw: is a symbolic link, not a regular file \[NOT_REGULAR_FILE\]/);
      expect(r.code).toBe(1);
      expect(fs.readlinkSync(p("out.raw"))).toBe(victim);
      expect(fs.readFileSync(victim, "utf8")).toBe("precious\n");
    }
    // A dangling link: nothing may be created where it points either.
    fs.symlinkSync(p("nowhere.raw"), p("dangling.raw"));
    expect((await hv("convert", "-f", "raw", "-O", "qcow2", source, p("dangling.raw"))).code).toBe(1);
    expect((await hv("create", "-f", "qcow2", p("dangling.raw"), "1M")).code).toBe(1);
    expect(fs.existsSync(p("nowhere.raw"))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it("a FIFO: refused without being opened, still a FIFO", async () => {
    const fifo = p("out.fifo");
    mkfifo(fifo);
    const guard = fifoGuard(fifo);
    try {
      for (const args of [["convert", "-f", "raw", "-O", "raw", source, fifo], ["create", "-f", "qcow2", fifo, "1M"]]) {
        const r = await hv(...args);
        expect(r.err).toMatch(/out\.fifo: is a FIFO \(named pipe\), not a regular file \[NOT_REGULAR_FILE\]/);
        expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
      }
    } finally {
      guard.stop();
    }
    expect(leftovers()).toEqual([]);
  });

  it("a directory: refused, still a directory with its content", async () => {
    fs.mkdirSync(p("out.d"));
    fs.writeFileSync(p("out.d/keep"), "x");
    const r = await hv("convert", "-f", "raw", "-O", "raw", source, p("out.d"));
    expect(r.err).toMatch(/out\.d: is a directory, not a regular file/);
    expect(fs.readFileSync(p("out.d/keep"), "utf8")).toBe("x");
    expect(leftovers()).toEqual([]);
  });

  it("the extra file of a flat VMDK (NAME-flat.vmdk) is checked like the target: a link there stops the convert before anything moves", async () => {
    const victim = p("victim.txt");
    fs.writeFileSync(victim, "precious\n");
    fs.symlinkSync(victim, p("out-flat.vmdk"));
    const r = await hv("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", source, p("out.vmdk"));
    expect(r.err).toMatch(/out-flat\.vmdk: is a symbolic link, not a regular file/);
    expect(fs.existsSync(p("out.vmdk"))).toBe(false);
    expect(fs.readlinkSync(p("out-flat.vmdk"))).toBe(victim);
    expect(fs.readFileSync(victim, "utf8")).toBe("precious\n");
    expect(leftovers()).toEqual([]);
    // and create checks both names before it writes either
    expect((await hv("create", "-f", "vmdk", "-o", "subformat=monolithicFlat", p("out.vmdk"), "1M")).code).toBe(1);
    expect(fs.existsSync(p("out.vmdk"))).toBe(false);
  });
});

describe("an existing regular file keeps its owner and mode", () => {
  it("our own 0640 file: converted into, still 0640", async () => {
    const out = p("mine.qcow2");
    fs.writeFileSync(out, "old");
    fs.chmodSync(out, 0o640);
    const r = await hv("convert", "-f", "raw", "-O", "qcow2", source, out);
    expect(r.code).toBe(0);
    expect(fs.statSync(out).mode & 0o7777).toBe(0o640);
    expect(compareImages(source, out, { a: "raw" }).identical).toBe(true);
    expect(leftovers()).toEqual([]);
  });

  it.skipIf(!isRoot)("another user's 0600 file, converted into by root: still theirs, still 0600, with the new content", async () => {
    const out = p("theirs.raw");
    fs.writeFileSync(out, "old");
    fs.chownSync(out, OTHER_UID, OTHER_UID);
    fs.chmodSync(out, 0o600);
    const r = await hv("convert", "-f", "raw", "-O", "raw", source, out);
    expect(r.code).toBe(0);
    const st = fs.statSync(out);
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ uid: OTHER_UID, gid: OTHER_UID, mode: 0o600 });
    expect(Buffer.compare(fs.readFileSync(out), fs.readFileSync(source))).toBe(0);
  });

  it.skipIf(!isRoot)("create into another user's file empties it in place: owner and mode stay", async () => {
    const out = p("theirs.qcow2");
    fs.writeFileSync(out, "old content");
    fs.chownSync(out, OTHER_UID, OTHER_UID);
    fs.chmodSync(out, 0o600);
    const ino = fs.statSync(out).ino;
    createImage(out, "qcow2", 1 << 20);
    const st = fs.statSync(out);
    expect({ ino: st.ino, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ ino, uid: OTHER_UID, gid: OTHER_UID, mode: 0o600 });
    openImage(out).close();
  });
});
