// `hv img` through commander: outputs, exit codes (qemu-img conventions) and argument errors.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openImage } from "./open.js";
import { createQcow2 } from "./qcow2/create.js";
import { Qcow2Image } from "./qcow2/image.js";
import { hasQemuImg, holeyContent, qemuImg, scratchDir } from "./test-util.js";
import { hv } from "../../test/hostile/img-harness.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const p = (name: string): string => path.join(dir, name);

describe("hv img", () => {
  it("create + info (text and JSON) show format, sizes and the backing chain", async () => {
    expect((await hv("create", "-f", "qcow2", p("base.qcow2"), "64M")).code).toBe(0);
    expect((await hv("create", "-f", "qcow2", "-b", "base.qcow2", p("top.qcow2"))).code).toBe(0);
    const text = await hv("info", p("top.qcow2"));
    expect(text.out).toContain("file format: qcow2");
    expect(text.out).toContain("virtual size: 64 MiB (67108864 bytes)");
    expect(text.out).toContain("backing file: base.qcow2");
    const json = JSON.parse((await hv("info", "--json", p("top.qcow2"))).out) as { format: string; "virtual-size": number; filename: string }[];
    expect(json.map((i) => path.basename(i.filename))).toEqual(["top.qcow2", "base.qcow2"]);
    expect(json[0]!["virtual-size"]).toBe(64 * 1024 * 1024);
    if (hasQemuImg) {
      const q = JSON.parse(qemuImg("info", "--output=json", p("top.qcow2")).stdout) as { "backing-filename": string; "backing-filename-format": string };
      expect(q["backing-filename"]).toBe("base.qcow2");
      expect(q["backing-filename-format"]).toBe("qcow2");
    }
  });

  it("accepts vhd for vpc and K/M/G/T sizes; rejects bad formats, sizes and options clearly", async () => {
    expect((await hv("create", "-f", "vhd", p("a.vhd"), "1G")).code).toBe(0);
    expect(openImage(p("a.vhd")).format).toBe("vpc");
    const badFormat = await hv("create", "-f", "qed", p("x"), "1M");
    expect(badFormat.code).toBe(1);
    expect(badFormat.err).toContain("unknown format 'qed'");
    const badSize = await hv("create", "-f", "raw", p("x"), "12Q");
    expect(badSize.code).toBe(1);
    expect(badSize.err).toContain("invalid size '12Q'");
    const noSize = await hv("create", "-f", "raw", p("x"));
    expect(noSize.code).toBe(1);
    expect(noSize.err).toContain("size is required");
    const badOpt = await hv("create", "-f", "qcow2", "-o", "compat=9", p("x"), "1M");
    expect(badOpt.err).toContain("compat must be");
    const rawBacking = await hv("create", "-f", "raw", "-b", "a.vhd", p("x"), "1M");
    expect(rawBacking.err).toContain("cannot have a backing file");
    expect(fs.existsSync(p("x"))).toBe(false);
    const missing = await hv("info", p("nope.qcow2"));
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("ENOENT");
  });

  it("convert + compare: identical (0) or different (1) with the first differing offset", async () => {
    const content = holeyContent(2 * 1024 * 1024, 5);
    fs.writeFileSync(p("s.raw"), content);
    expect((await hv("convert", "-f", "raw", "-O", "vmdk", p("s.raw"), p("s.vmdk"))).code).toBe(0);
    expect((await hv("convert", "-O", "vpc", "-o", "subformat=fixed", p("s.vmdk"), p("s.vhd"))).code).toBe(0);
    const same = await hv("compare", p("s.raw"), p("s.vhd"));
    expect(same.code).toBe(0);
    expect(same.out).toContain("Images are identical.");
    const changed = content.slice();
    changed[1234567] ^= 0xff;
    fs.writeFileSync(p("t.raw"), changed);
    const diff = await hv("compare", p("s.vmdk"), p("t.raw"));
    expect(diff.code).toBe(1);
    expect(diff.out).toContain("Content mismatch at offset 1234567!");
    const strict = await hv("compare", "-s", p("s.raw"), p("s.vhd"));
    expect(strict.code).toBe(1); // the VHD is rounded up to a CHS geometry
    expect((await hv("compare", p("s.raw"), p("missing.raw"))).code).toBe(2);
  });

  it("a failed convert leaves no target and no temporary files", async () => {
    createTruncatedQcow2(p("bad.qcow2"));
    const r = await hv("convert", "-O", "raw", p("bad.qcow2"), p("out.raw"));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/TRUNCATED|OUT_OF_BOUNDS_TABLE/);
    expect(fs.readdirSync(dir).sort()).toEqual(["bad.qcow2"]);
  });

  it("check exit codes: 0 clean, 3 leaks, 2 corruptions, 1 cannot check", async () => {
    await hv("create", "-f", "qcow2", p("c.qcow2"), "1M");
    const img = openImage(p("c.qcow2"), { writable: true });
    img.write(0, new Uint8Array(4096).fill(1));
    img.close();
    const clean = await hv("check", p("c.qcow2"));
    expect(clean.code).toBe(0);
    expect(clean.out).toContain("No errors were found on the image.");
    const leak = openImage(p("c.qcow2"), { writable: true }) as Qcow2Image;
    leak.refcounts.allocate(2);
    leak.close();
    const leaky = await hv("check", p("c.qcow2"));
    expect(leaky.code).toBe(3);
    expect(leaky.out).toContain("2 leaked clusters were found on the image.");
    const l2 = (openImage(p("c.qcow2")) as Qcow2Image).map.l2Offset(0);
    const fd = fs.openSync(p("c.qcow2"), "r+");
    fs.writeSync(fd, Buffer.from([0x80, 0, 0, 0, 0, 1, 0, 0]), 0, 8, l2 + 8); // guest cluster 1 -> the refcount table
    fs.closeSync(fd);
    const corrupt = await hv("check", "--json", p("c.qcow2"));
    expect(corrupt.code).toBe(2);
    expect(JSON.parse(corrupt.out).corruptions).toBeGreaterThan(0);
    fs.writeFileSync(p("junk.qcow2"), Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]));
    expect((await hv("check", p("junk.qcow2"))).code).toBe(1);
  });

  it("rebase keeps the content (safe mode) and --help tells what the command does", async () => {
    fs.writeFileSync(p("old.raw"), holeyContent(1024 * 1024, 1, 0.9));
    fs.writeFileSync(p("new.raw"), holeyContent(1024 * 1024, 2, 0.9));
    await hv("create", "-f", "qcow2", "-b", "old.raw", "-F", "raw", p("top.qcow2"));
    const before = await hv("convert", "-O", "raw", p("top.qcow2"), p("before.raw"));
    expect(before.code).toBe(0);
    expect((await hv("rebase", "-b", "new.raw", "-F", "raw", p("top.qcow2"))).code).toBe(0);
    expect((await hv("compare", p("top.qcow2"), p("before.raw"))).code).toBe(0);
    expect((await hv("info", p("top.qcow2"))).out).toContain("backing file: new.raw");
    const help = await hv("rebase", "--help");
    expect(help.out).toContain("safe mode");
    const vhd = await hv("create", "-f", "vpc", p("v.vhd"), "1M");
    expect(vhd.code).toBe(0);
    const unsupported = await hv("rebase", "-b", "new.raw", p("v.vhd"));
    expect(unsupported.code).toBe(1);
    expect(unsupported.err).toContain("only differencing VHDs have a parent");
  });
});

/** A qcow2 image whose data and tables lie partly beyond the (truncated) end of the file. */
function createTruncatedQcow2(file: string): void {
  createQcow2(file, 1024 * 1024);
  const img = openImage(file, { writable: true });
  img.write(0, holeyContent(1024 * 1024, 3, 1));
  img.close();
  fs.truncateSync(file, fs.statSync(file).size - 200_000);
}
