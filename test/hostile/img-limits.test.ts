// Hostile sizes for `hv img create`: a create that fails leaves nothing, a size past a format's limit names the limit.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { viewOf } from "../../drivers/block/bytes.js";
import { openImage } from "../../drivers/block/open.js";
import { scratchDir } from "../../drivers/block/test-util.js";
import { MAX_GRAIN_TABLES, SPARSE_MAGIC } from "../../drivers/block/vmdk/header.js";
import { hv, hvProcess } from "./img-harness.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir("hv-hostile-limits-");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const p = (name: string): string => path.join(dir, name);

describe("a create that fails leaves nothing behind", () => {
  // RLIMIT_FSIZE makes the kernel refuse the sparse length (EFBIG) after the file was made.
  it("raw, fixed VHD and flat VMDK, refused their length by the file system: no 0-byte file, no lone extent", () => {
    for (const [fmt, opts, name] of [
      ["raw", "", "x.raw"],
      ["vpc", "subformat=fixed", "x.vhd"],
      ["vmdk", "subformat=monolithicFlat", "x.vmdk"],
    ] as const) {
      const r = hvProcess(["create", "-f", fmt, ...(opts ? ["-o", opts] : []), p(name), "1G"], "ulimit -f 1024");
      expect(r.err).toMatch(/EFBIG.*\[IO_ERROR\]/);
      expect(r.code).toBe(1);
      expect(fs.readdirSync(dir), `${fmt} ${opts}`).toEqual([]);
    }
  });

  it("an existing file that create failed on is still there (emptied, as qemu-img leaves it; its owner and mode unchanged)", () => {
    fs.writeFileSync(p("keep.raw"), "old");
    fs.chmodSync(p("keep.raw"), 0o640);
    expect(hvProcess(["create", "-f", "raw", p("keep.raw"), "1G"], "ulimit -f 1024").code).toBe(1);
    expect(fs.statSync(p("keep.raw")).mode & 0o7777).toBe(0o640);
  });
});

describe("sizes beyond what a format can hold are refused before any file is made", () => {
  it("2^53-1 bytes, in every format: SIZE_OVERFLOW, at once, no file", async () => {
    for (const fmt of ["raw", "qcow2", "vpc", "vmdk"]) {
      const r = await hv("create", "-f", fmt, p(`big.${fmt}`), String(2 ** 53 - 1));
      expect(r.err).toMatch(/SIZE_OVERFLOW/);
      expect(r.code).toBe(1);
    }
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("a sparse VMDK past 1 PiB (2^25 grain tables, qemu's limit too) names the limit and writes nothing", async () => {
    const r = await hv("create", "-f", "vmdk", p("big.vmdk"), String(2 ** 52));
    expect(r.err).toMatch(/VMDK sparse images are limited to 1 PiB \(1125899906842624 bytes\), not 4503599627370496 \[SIZE_OVERFLOW\]/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("a VMDK whose header asks for a grain directory past the limit is refused before the directory is read", () => {
    // 2^26 sectors with one-sector grains and one entry per table: a 256 MiB directory, in a sparse file that has room for it.
    const header = new Uint8Array(512);
    const v = viewOf(header);
    v.setUint32(0, SPARSE_MAGIC, true);
    v.setUint32(4, 1, true);
    v.setBigUint64(12, 2n ** 26n, true); // capacity (sectors)
    v.setBigUint64(20, 1n, true); // grain size (sectors)
    v.setUint32(44, 1, true); // grain table entries per table
    v.setBigUint64(56, 1n, true); // grain directory offset (sectors)
    const file = p("hostile.vmdk");
    fs.writeFileSync(file, header);
    fs.truncateSync(file, 300 << 20);
    let caught: unknown;
    try {
      openImage(file, { format: "vmdk" }).close();
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: "SIZE_OVERFLOW" });
    expect((caught as Error).message).toContain(`grain directory of ${2 ** 26} entries (the limit is ${MAX_GRAIN_TABLES})`);
  });
});
