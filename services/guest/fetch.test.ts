// Tests of fetching: package choice, apt output parsing, errors, and the offline cache path
// (a warm cache must not need apt or the network).
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { GuestFetchError, runApt } from "./apt.js";
import { sha256 } from "./cache.js";
import { readCpio } from "./cpio.js";
import { hasProgram } from "./deb.js";
import { fetchGuestDebs, newestKernelPackage, parseControlStanzas } from "./fetch.js";
import { ensureDefaultGuest, guestAppend, DEFAULT_APPEND } from "./index.js";
import { fakeDeb, fakeKernelDeb } from "./test-fixtures.js";

const quiet = () => {};

describe("newestKernelPackage", () => {
  it("picks the highest ABI number of the 686-unsigned flavour", () => {
    const names = ["linux-image-6.1.0-9-686-unsigned", "linux-image-6.1.0-28-686-unsigned", "linux-image-6.1.0-28-686-pae-unsigned", "linux-image-6.1.0-3-686-unsigned", "linux-image-6.1.0-30-686-dbg"];
    expect(newestKernelPackage(names)).toBe("linux-image-6.1.0-28-686-unsigned");
    expect(newestKernelPackage(["linux-image-6.12.0-1-686-unsigned"])).toBeNull();
  });
});

describe("parseControlStanzas", () => {
  it("reads apt-cache show records", () => {
    const s = parseControlStanzas("Package: a\nVersion: 1\nSHA256: ab\nDescription: x\n more\n\nPackage: b\nVersion: 2\n");
    expect(s.map((f) => [f.get("package"), f.get("version")])).toEqual([
      ["a", "1"],
      ["b", "2"],
    ]);
    expect(s[0]!.get("sha256")).toBe("ab");
  });
});

describe("fetch errors", () => {
  it("says so when the host has no Debian mirror configured", async () => {
    const etcApt = mkdtempSync(join(tmpdir(), "hv-etc-"));
    writeFileSync(join(etcApt, "sources.list"), "deb http://archive.ubuntu.com/ubuntu jammy main\n");
    const cacheDir = mkdtempSync(join(tmpdir(), "hv-cache-"));
    await expect(fetchGuestDebs({ cacheDir, etcApt, log: quiet })).rejects.toMatchObject({ code: "NO_MIRROR" });
  });

  it("says apt-get is missing when it cannot be run", async () => {
    const root = mkdtempSync(join(tmpdir(), "hv-apt-"));
    await expect(runApt("apt-get", ["update"], { root, options: [], env: { PATH: join(root, "nothing") } })).rejects.toMatchObject({ code: "APT_MISSING" });
  });

  it.skipIf(!hasProgram("apt-get"))("reports an unreachable mirror (nothing listens on the port)", async () => {
    const etcApt = mkdtempSync(join(tmpdir(), "hv-etc-"));
    writeFileSync(join(etcApt, "sources.list"), "deb http://127.0.0.1:9/debian bookworm main\n");
    const cacheDir = mkdtempSync(join(tmpdir(), "hv-cache-"));
    const err = await fetchGuestDebs({ cacheDir, etcApt, log: quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestFetchError);
    expect((err as GuestFetchError).code).toBe("MIRROR_UNREACHABLE");
    expect((err as Error).message).toMatch(/127\.0\.0\.1/);
  });
});

/** A cache folder as a finished fetch leaves it, with synthetic packages. */
function warmCache(): { cacheDir: string; vmlinuz: Uint8Array } {
  const cacheDir = mkdtempSync(join(tmpdir(), "hv-cache-"));
  mkdirSync(join(cacheDir, "debs"));
  const vmlinuz = new Uint8Array(4096).map((_, i) => (i * 5) & 0xff);
  const kernel = fakeKernelDeb("6.1.0-9-686", vmlinuz);
  const busyboxBinary = new Uint8Array(Buffer.from("\x7fELF....[\0[[\0sh\0\0"));
  const busybox = fakeDeb([{ path: "./bin", type: "dir" }, { path: "./bin/busybox", data: busyboxBinary, mode: 0o755 }]);
  const entry = (pkg: string, version: string, file: string, bytes: Uint8Array) => {
    writeFileSync(join(cacheDir, "debs", file), bytes);
    return { package: pkg, version, architecture: "i386", sha256: sha256(bytes), size: bytes.length, file };
  };
  const manifest = {
    format: 1,
    kernel: entry("linux-image-6.1.0-9-686-unsigned", "6.1.1-1", "linux-image-6.1.0-9-686-unsigned_6.1.1-1_i386.deb", kernel),
    busybox: entry("busybox-static", "1:1.35.0-4", "busybox-static_1%3a1.35.0-4_i386.deb", busybox),
  };
  writeFileSync(join(cacheDir, "manifest.json"), JSON.stringify(manifest));
  return { cacheDir, vmlinuz };
}

describe("ensureDefaultGuest from a warm cache", () => {
  // etcApt points at an empty folder: any attempt to reach a mirror would fail with NO_MIRROR.
  const offline = { etcApt: mkdtempSync(join(tmpdir(), "hv-noapt-")), log: quiet };

  it("builds kernel + initramfs without apt or network, modules in dependency order", async () => {
    const { cacheDir, vmlinuz } = warmCache();
    const guest = await ensureDefaultGuest({ cacheDir, ...offline });
    expect(Buffer.from(readFileSync(guest.kernel)).equals(Buffer.from(vmlinuz))).toBe(true);
    expect(guest.append).toBe(DEFAULT_APPEND);
    const records = readCpio(new Uint8Array(gunzipSync(readFileSync(guest.initrd))));
    const init = Buffer.from(records.find((r) => r.path === "init")!.data).toString();
    const order = [...init.matchAll(/\/lib\/modules\/6\.1\.0-9-686\/kernel\/\S+\/([a-z_-]+)\.ko/g)].map((m) => m[1]);
    expect(order).toEqual([
      "virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk",
      "core-helper", "failover", "net_failover", "virtio_net", "virtio_console", "virtio_balloon",
    ]);
    expect(records.some((r) => r.path.endsWith("dummy.ko"))).toBe(false);
    expect(records.some((r) => r.path === "bin/busybox")).toBe(true);

    // A second call reuses the built initramfs.
    const before = statSync(guest.initrd).mtimeMs;
    const again = await ensureDefaultGuest({ cacheDir, ...offline, bootOk: true });
    expect(again.initrd).toBe(guest.initrd);
    expect(statSync(again.initrd).mtimeMs).toBe(before);
    expect(again.append.endsWith("hv.bootok=1")).toBe(true);
  });

  it("does not trust a .deb whose checksum changed (it would fetch again)", async () => {
    const { cacheDir } = warmCache();
    const manifest = JSON.parse(readFileSync(join(cacheDir, "manifest.json"), "utf8"));
    writeFileSync(join(cacheDir, "debs", manifest.busybox.file), "tampered");
    await expect(fetchGuestDebs({ cacheDir, ...offline })).rejects.toMatchObject({ code: "NO_MIRROR" });
  });
});

describe("guestAppend", () => {
  it("adds quiet, extra words and the boot-ok switch", () => {
    expect(guestAppend({})).toBe(DEFAULT_APPEND);
    expect(guestAppend({ append: "console=ttyS0", quiet: true, extraAppend: "lpj=1000", bootOk: true })).toBe("console=ttyS0 quiet lpj=1000 hv.bootok=1");
  });
});
