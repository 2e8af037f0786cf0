// The default guest: Debian's i386 kernel + an initramfs of busybox and the virtio modules,
// fetched and built on first use and cached (`$HV_CACHE_DIR`, default ~/.cache/hv/guest).
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { logger, resolveCacheDir, sha256, withCacheLock, writeFileAtomic } from "./cache.js";
import { cachedGuestParts, extractGuestParts, type GuestParts } from "./extract.js";
import { cachedDebs, fetchGuestDebsLocked, type FetchOptions, type GuestDebs } from "./fetch.js";
import { BOOT_OK_PARAM, buildInitramfs } from "./initramfs.js";

export { GuestFetchError } from "./apt.js";
export { BOOT_OK_PARAM, READY_MARKER } from "./initramfs.js";

/**
 * Kernel command line of the default guest. The VMM starts with a PC platform of 8259 PIC,
 * 8254 PIT, 16550 UART, RTC, and (vmm/boot/acpi.ts) ACPI tables, the ACPI PM timer and the HPET,
 * but no local APIC unless asked for:
 *  - `console=ttyS0`: the kernel console (and so /dev/console for init) is the first UART;
 *  - `earlyprintk=serial,ttyS0,115200`: messages from before the serial driver registers
 *    (setup_arch, memory init) reach the UART too, so an early crash is not silent;
 *  - `pci=conf1`: go straight to configuration mechanism #1 instead of scanning for a PCI BIOS;
 *  - `i8042.noaux`: skip the PS/2 mouse port probe (no mouse is modelled; the probe only costs time);
 *  - `panic=-1`: on a panic reboot at once instead of hanging, so the VMM sees the reset and ends.
 * With ACPI on, Linux finds the RSDP at 0xE0000, takes the PM timer and the HPET, scans PCI below
 * the DSDT's host bridge and routes PCI interrupts through each function's Interrupt Line (PIC
 * mode: there is no MADT without an APIC). `acpi=off noapic nolapic` were needed before the
 * platform had ACPI; BOOT-OK came at 4.65 s of guest time with them and 4.68 s without.
 * Left out on purpose: `quiet` (the boot log is the main debugging aid and the integration test
 * wants the panic text; the benchmark may add it), `lpj=`/`tsc_early_khz=` (they depend on how the
 * x86 core's virtual clock paces the TSC; the VMM can append them once that is fixed).
 */
export const DEFAULT_APPEND = "console=ttyS0 earlyprintk=serial,ttyS0,115200 pci=conf1 i8042.noaux panic=-1";

export interface DefaultGuestOptions extends FetchOptions {
  /** Replaces DEFAULT_APPEND. */
  append?: string;
  /** Added after the base command line. */
  extraAppend?: string;
  /** Boot-ok mode: /init prints `BOOT-OK <uptime>` and powers off (adds `hv.bootok=1`). */
  bootOk?: boolean;
  /** Add `quiet` (kernel messages below warnings are not printed to the console). */
  quiet?: boolean;
  /** Initramfs compression (default gzip). */
  compression?: "gzip" | "none";
}

export interface DefaultGuest {
  /** Path of the bzImage. */
  kernel: string;
  /** Path of the initramfs image. */
  initrd: string;
  append: string;
}

/** Bumped whenever initramfs.ts changes what it produces (part of the cache key). */
const INITRAMFS_BUILDER_VERSION = 2;

/** Fetches, unpacks and builds what is missing; on a warm cache touches only local files. */
export async function ensureDefaultGuest(opts: DefaultGuestOptions = {}): Promise<DefaultGuest> {
  const cacheDir = resolveCacheDir(opts);
  const log = logger(opts);
  const compression = opts.compression ?? "gzip";
  const append = guestAppend(opts);
  if (!opts.refresh) {
    const debs = await cachedDebs(cacheDir);
    const parts = debs && cachedGuestParts(debs, cacheDir);
    const initrd = debs && parts && initramfsPath(debs, parts, cacheDir, compression);
    if (parts && initrd && existsSync(initrd)) return { kernel: parts.vmlinuz, initrd, append };
  }
  return withCacheLock(cacheDir, log, async () => {
    const debs = await fetchGuestDebsLocked(cacheDir, opts, log);
    const parts = await extractGuestParts(debs, cacheDir, log);
    const initrd = ensureInitramfs(debs, parts, cacheDir, compression, log);
    return { kernel: parts.vmlinuz, initrd, append };
  });
}

/** The command line for `opts` (see DEFAULT_APPEND). */
export function guestAppend(opts: Pick<DefaultGuestOptions, "append" | "extraAppend" | "bootOk" | "quiet"> = {}): string {
  const words = [opts.append ?? DEFAULT_APPEND];
  if (opts.quiet) words.push("quiet");
  if (opts.extraAppend) words.push(opts.extraAppend);
  if (opts.bootOk) words.push(BOOT_OK_PARAM);
  return words.join(" ").trim();
}

function initramfsPath(debs: GuestDebs, parts: GuestParts, cacheDir: string, compression: "gzip" | "none"): string {
  const key = sha256(
    JSON.stringify({ v: INITRAMFS_BUILDER_VERSION, kernel: debs.kernel.sha256, busybox: debs.busybox.sha256, compression, modules: parts.modules.map((m) => m.name) }),
  ).slice(0, 16);
  return join(cacheDir, `initramfs-${key}.cpio${compression === "gzip" ? ".gz" : ""}`);
}

/** Builds the initramfs unless present; drops images built from other inputs. Needs the cache lock. */
function ensureInitramfs(debs: GuestDebs, parts: GuestParts, cacheDir: string, compression: "gzip" | "none", log: (line: string) => void): string {
  const path = initramfsPath(debs, parts, cacheDir, compression);
  if (existsSync(path)) return path;
  log(`building initramfs (busybox, ${parts.modules.length} modules)`);
  const image = buildInitramfs({
    busybox: new Uint8Array(readFileSync(parts.busybox)),
    kernelRelease: parts.kernelRelease,
    modules: parts.modules.map((m) => ({ name: m.name, relativePath: m.relativePath, bytes: new Uint8Array(readFileSync(m.file)) })),
    compression,
  });
  writeFileAtomic(path, image);
  const keep = new Set([path, initramfsPath(debs, parts, cacheDir, compression === "gzip" ? "none" : "gzip")]);
  for (const f of readdirSync(cacheDir)) {
    if (/^initramfs-[0-9a-f]{16}\.cpio(\.gz)?$/.test(f) && !keep.has(join(cacheDir, f))) rmSync(join(cacheDir, f), { force: true });
  }
  return path;
}
