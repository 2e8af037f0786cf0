// Tests of the ar and tar readers and .deb extraction with synthetic packages.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GuestFetchError } from "./apt.js";
import { readAr, writeAr } from "./ar.js";
import { chooseDecompressor, extractDeb, hasProgram } from "./deb.js";
import { TarReader, writeTar, type TarEntry } from "./tar.js";
import { fakeDeb } from "./test-fixtures.js";

const bytes = (s: string) => new Uint8Array(Buffer.from(s));

describe("readAr", () => {
  it("round-trips members, odd sizes included", () => {
    const members = [
      { name: "debian-binary", data: bytes("2.0\n") },
      { name: "odd", data: bytes("abc") },
      { name: "data.tar.xz", data: new Uint8Array(1000).fill(7) },
    ];
    const back = readAr(writeAr(members));
    expect(back.map((m) => m.name)).toEqual(["debian-binary", "odd", "data.tar.xz"]);
    back.forEach((m, i) => expect([...m.data]).toEqual([...members[i]!.data]));
  });
  it("refuses a non-archive and a truncated member", () => {
    expect(() => readAr(bytes("hello world"))).toThrow(GuestFetchError);
    const ar = writeAr([{ name: "x", data: new Uint8Array(100) }]);
    expect(() => readAr(ar.subarray(0, ar.length - 50))).toThrow(/truncated/);
  });
});

describe("TarReader", () => {
  const long = `lib/modules/6.1.0-9-686/kernel/drivers/${"very-long-directory-name/".repeat(4)}virtio_pci_modern_dev.ko`;
  const tar = writeTar([
    { path: "./boot", type: "dir" },
    { path: "./boot/vmlinuz-6.1.0-9-686", data: new Uint8Array(1500).map((_, i) => i & 0xff) },
    { path: "./bin/sh", type: "symlink", linkTarget: "busybox" },
    { path: `./${long}`, data: bytes("module") },
    { path: "./empty", data: new Uint8Array(0) },
  ]);
  const read = (chunks: Uint8Array[], want: (e: TarEntry) => boolean = () => true) => {
    const seen: TarEntry[] = [];
    const got = new Map<string, Uint8Array>();
    const reader = new TarReader(
      (e) => {
        seen.push(e);
        return want(e);
      },
      (e, b) => got.set(e.path, b),
    );
    for (const c of chunks) reader.push(c);
    reader.end();
    return { seen, got };
  };

  it("lists entries with normalised paths, long names and link targets", () => {
    const { seen, got } = read([tar]);
    expect(seen.map((e) => [e.path, e.type])).toEqual([
      ["boot/vmlinuz-6.1.0-9-686", "file"],
      [long, "file"],
      ["empty", "file"],
    ]);
    expect(got.get("boot/vmlinuz-6.1.0-9-686")!.length).toBe(1500);
    expect(Buffer.from(got.get(long)!).toString()).toBe("module");
  });

  it("gives the same result however the stream is chunked", () => {
    const whole = read([tar]).got;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: tar.length - 1 }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks = [0, ...points].map((p, i) => tar.subarray(p, points[i] ?? tar.length));
        const got = read(chunks).got;
        expect([...got.keys()]).toEqual([...whole.keys()]);
        for (const [k, v] of got) expect(Buffer.from(v).equals(Buffer.from(whole.get(k)!))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it("collects only wanted entries and refuses truncated or corrupt streams", () => {
    expect([...read([tar], (e) => e.path.endsWith(".ko")).got.keys()]).toEqual([long]);
    expect(() => read([tar.subarray(0, 1024 + 700)])).toThrow(/truncated/);
    const corrupt = tar.slice();
    corrupt[3] ^= 0xff;
    expect(() => read([corrupt])).toThrow(/checksum/);
  });
});

describe("extractDeb", () => {
  const dir = mkdtempSync(join(tmpdir(), "hv-deb-"));
  const deb = fakeDeb([
    { path: "./bin", type: "dir" },
    { path: "./bin/busybox", data: bytes("BUSYBOX"), mode: 0o755 },
    { path: "./usr/share/doc/x", data: bytes("doc") },
  ]);
  const path = join(dir, "fake.deb");
  writeFileSync(path, deb);

  it("extracts wanted files from a gzip data member", async () => {
    const out = await extractDeb(path, (e) => e.path === "bin/busybox");
    expect([...out.keys()]).toEqual(["bin/busybox"]);
    expect(Buffer.from(out.get("bin/busybox")!.bytes).toString()).toBe("BUSYBOX");
    expect(out.get("bin/busybox")!.entry.mode).toBe(0o755);
  });

  it.skipIf(!hasProgram("dpkg-deb"))("extracts the same through dpkg-deb", async () => {
    const out = await extractDeb(path, (e) => e.path === "bin/busybox", { decompressor: "dpkg-deb" });
    expect(Buffer.from(out.get("bin/busybox")!.bytes).toString()).toBe("BUSYBOX");
  });

  it.skipIf(!hasProgram("xz"))("extracts from a data.tar.xz member through xz", async () => {
    const tar = writeTar([{ path: "./boot/vmlinuz-1", data: bytes("KERNEL") }]);
    const xz = spawnSync("xz", ["-c"], { input: tar }).stdout;
    const xzDeb = writeAr([
      { name: "debian-binary", data: bytes("2.0\n") },
      { name: "data.tar.xz", data: new Uint8Array(xz) },
    ]);
    const xzPath = join(dir, "xz.deb");
    writeFileSync(xzPath, xzDeb);
    const out = await extractDeb(xzPath, () => true);
    expect(Buffer.from(out.get("boot/vmlinuz-1")!.bytes).toString()).toBe("KERNEL");
  });

  it("refuses a file that is not a .deb", async () => {
    const bad = join(dir, "bad.deb");
    writeFileSync(bad, writeAr([{ name: "readme", data: bytes("hi") }]));
    await expect(extractDeb(bad, () => true)).rejects.toThrow(/not a Debian package/);
  });

  it("chooses a decompressor by suffix and available tools", () => {
    expect(chooseDecompressor("data.tar.gz")).toBe("zlib");
    expect(chooseDecompressor("data.tar.xz", () => true)).toBe("xz");
    expect(chooseDecompressor("data.tar.xz", () => false)).toBe("dpkg-deb");
    expect(chooseDecompressor("data.tar.zst", () => false)).toBe("dpkg-deb");
    expect(chooseDecompressor("data.tar")).toBe("none");
  });
});
