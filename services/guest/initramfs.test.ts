// Tests of the initramfs builder with a synthetic busybox, plus the real one when it is cached.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { S_IFCHR, S_IFLNK, S_IFMT, readCpio } from "./cpio.js";
import { BOOT_OK_PARAM, READY_MARKER, buildInitramfs, busyboxApplets, initScript, type InitramfsModule } from "./initramfs.js";

/** Bytes that look like a busybox binary: some code, then the NUL-separated applet name table. */
function fakeBusybox(applets: string[]): Uint8Array {
  return new Uint8Array(Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]), Buffer.from(`${applets.join("\0")}\0\0/etc/x\0`, "latin1")]));
}

const APPLETS = ["[", "[[", "cat", "cttyhack", "init", "insmod", "mount", "poweroff", "sh"];
const modules: InitramfsModule[] = [
  { name: "virtio", relativePath: "kernel/drivers/virtio/virtio.ko", bytes: new Uint8Array([1, 2, 3]) },
  { name: "virtio_blk", relativePath: "kernel/drivers/block/virtio_blk.ko", bytes: new Uint8Array([4, 5]) },
];

describe("busyboxApplets", () => {
  it("reads the applet name table", () => {
    expect(busyboxApplets(fakeBusybox(APPLETS))).toEqual(APPLETS);
  });
  it("falls back to a fixed list without a table", () => {
    const names = busyboxApplets(new Uint8Array(100));
    expect(names).toContain("sh");
    expect(names).toContain("cttyhack");
  });
});

describe("buildInitramfs", () => {
  const input = { busybox: fakeBusybox(APPLETS), kernelRelease: "6.1.0-9-686", modules };

  it("contains busybox, applet links, device nodes, modules and an executable /init", () => {
    const records = readCpio(new Uint8Array(gunzipSync(buildInitramfs(input))));
    const byPath = new Map(records.map((r) => [r.path, r]));
    expect(byPath.get("bin/busybox")!.data).toEqual(input.busybox);
    for (const applet of APPLETS) {
      const link = byPath.get(`bin/${applet}`)!;
      expect(link.mode & S_IFMT).toBe(S_IFLNK);
      expect(Buffer.from(link.data).toString()).toBe("busybox");
    }
    expect(Buffer.from(byPath.get("sbin/init")!.data).toString()).toBe("../bin/busybox");
    const console = byPath.get("dev/console")!;
    expect([console.mode & S_IFMT, console.rdevMajor, console.rdevMinor]).toEqual([S_IFCHR, 5, 1]);
    expect([byPath.get("dev/null")!.rdevMajor, byPath.get("dev/null")!.rdevMinor]).toEqual([1, 3]);
    expect([byPath.get("dev/ttyS0")!.rdevMajor, byPath.get("dev/ttyS0")!.rdevMinor]).toEqual([4, 64]);
    expect([...byPath.get("lib/modules/6.1.0-9-686/kernel/drivers/block/virtio_blk.ko")!.data]).toEqual([4, 5]);
    const init = byPath.get("init")!;
    expect(init.mode & 0o111).toBe(0o111);
    expect(Buffer.from(init.data).toString()).toBe(initScript("6.1.0-9-686", modules));
    expect(Buffer.from(byPath.get("etc/inittab")!.data).toString()).toMatch(/cttyhack \/bin\/sh/);
    // every path's parent directory comes earlier in the archive
    const seen = new Set<string>();
    for (const r of records) {
      if (r.path.includes("/")) expect(seen.has(r.path.slice(0, r.path.lastIndexOf("/")))).toBe(true);
      seen.add(r.path);
    }
  });

  it("is deterministic, and changes when an input changes", () => {
    const a = buildInitramfs(input);
    const b = buildInitramfs({ ...input, modules: modules.map((m) => ({ ...m, bytes: m.bytes.slice() })) });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const c = buildInitramfs({ ...input, kernelRelease: "6.1.0-10-686" });
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  it("can skip compression", () => {
    const raw = buildInitramfs({ ...input, compression: "none" });
    expect(Buffer.from(raw.subarray(0, 6)).toString()).toBe("070701");
    expect(Buffer.from(gunzipSync(buildInitramfs(input))).equals(Buffer.from(raw))).toBe(true);
  });
});

describe("initScript", () => {
  const script = initScript("6.1.0-9-686", modules);
  it("mounts, loads modules in the given order, handles boot-ok, marks ready and hands over to init", () => {
    const at = (s: string) => {
      const i = script.indexOf(s);
      expect(i, s).toBeGreaterThanOrEqual(0);
      return i;
    };
    expect(script.startsWith("#!/bin/sh\n")).toBe(true);
    expect(at("mount -t proc proc /proc")).toBeLessThan(at("mount -t devtmpfs devtmpfs /dev"));
    expect(at("mount -t sysfs sysfs /sys")).toBeLessThan(at("insmod"));
    expect(at("/lib/modules/6.1.0-9-686/kernel/drivers/virtio/virtio.ko")).toBeLessThan(at("/lib/modules/6.1.0-9-686/kernel/drivers/block/virtio_blk.ko"));
    expect(at(BOOT_OK_PARAM)).toBeLessThan(at(`echo "${READY_MARKER}"`));
    expect(at('echo "BOOT-OK $up"')).toBeLessThan(at("poweroff -f"));
    expect(at(`echo "${READY_MARKER}"`)).toBeLessThan(at("exec /sbin/init"));
  });

  const hasSh = spawnSync("sh", ["-c", "true"]).status === 0;
  it.skipIf(!hasSh)("is valid shell syntax (sh -n)", () => {
    const r = spawnSync("sh", ["-n"], { input: script });
    expect(r.status, r.stderr.toString()).toBe(0);
  });
});

/** The busybox of the cached default guest, if fetched. */
function cachedBusybox(): string | null {
  const dir = join(process.env["HV_CACHE_DIR"] || join(homedir(), ".cache", "hv", "guest"), "extract");
  if (!existsSync(dir)) return null;
  for (const sub of readdirSync(dir)) if (existsSync(join(dir, sub, "busybox"))) return join(dir, sub, "busybox");
  return null;
}

describe("with the real busybox-static", () => {
  const path = cachedBusybox();
  it.skipIf(path === null)("finds its applet table with the applets /init and inittab use", () => {
    const applets = busyboxApplets(new Uint8Array(readFileSync(path!)));
    expect(applets.length).toBeGreaterThan(150);
    for (const a of ["sh", "mount", "insmod", "cttyhack", "init", "poweroff", "setsid", "cat", "sync", "reboot"]) expect(applets).toContain(a);
    expect([...applets].sort()).toEqual(applets);
  });
  if (path === null) console.info("initramfs.test: no cached busybox (run services/guest to fetch it); real-binary test skipped");
});
