// Tests of the newc cpio writer: read back with our reader and, where installed, the host's cpio.
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CpioError, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, readCpio, writeCpio, type CpioEntry } from "./cpio.js";

const text = (s: string) => new Uint8Array(Buffer.from(s));

const sample: CpioEntry[] = [
  { kind: "dir", path: "bin" },
  { kind: "dir", path: "/dev/" },
  { kind: "char", path: "dev/console", major: 5, minor: 1 },
  { kind: "file", path: "bin/tool", data: text("#!/bin/sh\necho hi\n"), mode: 0o755 },
  { kind: "symlink", path: "bin/sh", target: "tool" },
  { kind: "file", path: "empty", data: new Uint8Array(0) },
];

describe("writeCpio/readCpio", () => {
  it("round-trips directories, files, symlinks and device nodes", () => {
    const records = readCpio(writeCpio(sample, { mtime: 1234 }));
    expect(records.map((r) => r.path)).toEqual(["bin", "dev", "dev/console", "bin/tool", "bin/sh", "empty"]);
    const byPath = new Map(records.map((r) => [r.path, r]));
    expect(byPath.get("bin")!.mode).toBe(S_IFDIR | 0o755);
    expect(byPath.get("dev/console")!.mode & S_IFMT).toBe(S_IFCHR);
    expect([byPath.get("dev/console")!.rdevMajor, byPath.get("dev/console")!.rdevMinor]).toEqual([5, 1]);
    expect(byPath.get("bin/tool")!.mode).toBe(S_IFREG | 0o755);
    expect(Buffer.from(byPath.get("bin/tool")!.data).toString()).toBe("#!/bin/sh\necho hi\n");
    expect(byPath.get("bin/sh")!.mode).toBe(S_IFLNK | 0o777);
    expect(Buffer.from(byPath.get("bin/sh")!.data).toString()).toBe("tool");
    expect(byPath.get("empty")!.data.length).toBe(0);
    for (const r of records) expect([r.uid, r.gid, r.mtime]).toEqual([0, 0, 1234]);
    expect(new Set(records.map((r) => r.ino)).size).toBe(records.length);
  });

  it("is byte-for-byte reproducible and 4-byte aligned, ending with the trailer", () => {
    const a = writeCpio(sample);
    const b = writeCpio(sample.map((e) => ({ ...e })));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a.length % 4).toBe(0);
    expect(Buffer.from(a).toString("latin1")).toContain("TRAILER!!!");
  });

  it("round-trips arbitrary file names and contents", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[a-z0-9_.-]{1,20}$/).filter((s) => s !== "." && s !== ".."), { minLength: 1, maxLength: 8 }),
        fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 8, maxLength: 8 }),
        (names, contents) => {
          const entries: CpioEntry[] = names.map((name, i) => ({ kind: "file", path: name, data: contents[i]! }));
          const back = readCpio(writeCpio(entries));
          expect(back.map((r) => r.path)).toEqual(names);
          back.forEach((r, i) => expect([...r.data]).toEqual([...contents[i]!]));
        },
      ),
    );
  });

  it("refuses duplicates, bad paths and children before their directory", () => {
    expect(() => writeCpio([{ kind: "dir", path: "a" }, { kind: "dir", path: "a/" }])).toThrow(CpioError);
    expect(() => writeCpio([{ kind: "dir", path: "../x" }])).toThrow(CpioError);
    expect(() => writeCpio([{ kind: "file", path: "d/f", data: new Uint8Array(1) }])).toThrow(/before its directory/);
    expect(() => writeCpio([{ kind: "char", path: "c", major: -1, minor: 0 }])).toThrow(CpioError);
  });

  it("reader refuses truncated archives", () => {
    const bytes = writeCpio(sample);
    expect(() => readCpio(bytes.subarray(0, 200))).toThrow(CpioError);
    expect(() => readCpio(new Uint8Array(200))).toThrow(/bad magic/);
  });

  const hostCpio = spawnSync("cpio", ["--version"], { stdio: "ignore" }).status === 0;
  it.skipIf(!hostCpio)("lists the same entries with the host's cpio -t", () => {
    const r = spawnSync("cpio", ["-t", "--quiet"], { input: writeCpio(sample) });
    expect(r.status).toBe(0);
    expect(r.stdout.toString().trim().split("\n")).toEqual(["bin", "dev", "dev/console", "bin/tool", "bin/sh", "empty"]);
  });
  if (!hostCpio) console.info("cpio.test: host has no cpio; the cpio -t cross-check is skipped");
});
