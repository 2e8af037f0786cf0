// Takes the default guest's parts out of the fetched packages: the bzImage, the virtio modules
// (and what they depend on) in load order, and the static busybox. Cached per package checksum.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuestFetchError } from "./apt.js";
import { readJson, writeFileAtomic } from "./cache.js";
import { decompressFile, extractDeb } from "./deb.js";
import type { GuestDebs } from "./fetch.js";
import { MissingModuleError, loadOrder, moduleName, parseModulesBuiltin, readModinfo, type ModuleInfo } from "./modinfo.js";
import type { TarEntry } from "./tar.js";

/** The modules /init loads; their dependencies are added from the modules' own metadata. */
export const WANTED_MODULES = ["virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_balloon"];

export interface ExtractedModule extends ModuleInfo {
  /** Path inside the kernel's module tree, e.g. "kernel/drivers/virtio/virtio.ko" (uncompressed). */
  relativePath: string;
  /** Absolute path of the uncompressed .ko in the cache. */
  file: string;
}

export interface GuestParts {
  /** e.g. "6.1.0-50-686" */
  kernelRelease: string;
  vmlinuz: string;
  busybox: string;
  /** In load order (dependencies first). */
  modules: ExtractedModule[];
  /** Wanted modules that are built into this kernel (nothing to load). */
  builtin: string[];
}

const FORMAT = 1;

function partsDir(debs: GuestDebs, cacheDir: string): string {
  return join(cacheDir, "extract", `${debs.kernel.sha256.slice(0, 16)}-${debs.busybox.sha256.slice(0, 16)}`);
}

/** The already extracted parts of `debs`, or null. Reads only. */
export function cachedGuestParts(debs: GuestDebs, cacheDir: string): GuestParts | null {
  const cached = readJson<GuestParts & { format: number }>(join(partsDir(debs, cacheDir), "parts.json"));
  if (cached === null || cached.format !== FORMAT) return null;
  if (![cached.vmlinuz, cached.busybox, ...cached.modules.map((m) => m.file)].every(existsSync)) return null;
  const { format: _f, ...parts } = cached;
  return parts;
}

/**
 * Extracts (or finds already extracted) the guest parts of `debs` under `<cacheDir>/extract/`.
 * Call with the cache lock held: it replaces folders and drops those of older packages.
 */
export async function extractGuestParts(debs: GuestDebs, cacheDir: string, log: (line: string) => void): Promise<GuestParts> {
  const cached = cachedGuestParts(debs, cacheDir);
  if (cached !== null) return cached;
  const dir = partsDir(debs, cacheDir);
  log(`unpacking ${debs.kernel.package} and ${debs.busybox.package}`);
  const parts = await unpack(debs, dir);
  writeFileAtomic(join(dir, "parts.json"), `${JSON.stringify({ format: FORMAT, ...parts }, null, 2)}\n`);
  for (const other of readdirSync(join(cacheDir, "extract"))) {
    if (join(cacheDir, "extract", other) !== dir) rmSync(join(cacheDir, "extract", other), { recursive: true, force: true });
  }
  return parts;
}

const MODULE_PATH = /^lib\/modules\/([^/]+)\/(kernel\/.+\.ko(?:\.(?:xz|zst|gz))?)$/;

async function unpack(debs: GuestDebs, dir: string): Promise<GuestParts> {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });

  // Pass 1: the kernel image, modules.builtin and every module whose name could be in the closure.
  const likely = (name: string) => name.startsWith("virtio") || name.endsWith("failover");
  let files = await extractDeb(debs.kernel.path, (e) => isVmlinuz(e) || e.path.endsWith("/modules.builtin") || (MODULE_PATH.test(e.path) && likely(moduleName(e.path))));
  const vmlinuz = [...files.values()].find((f) => isVmlinuz(f.entry));
  if (vmlinuz === undefined) throw new GuestFetchError("BAD_PACKAGE", `${debs.kernel.path}: no boot/vmlinuz-* in the package`);
  const kernelRelease = vmlinuz.entry.path.slice("boot/vmlinuz-".length);
  const builtinFile = [...files.values()].find((f) => f.entry.path === `lib/modules/${kernelRelease}/modules.builtin`);
  const builtin = builtinFile ? parseModulesBuiltin(Buffer.from(builtinFile.bytes).toString("utf8")) : new Set<string>();

  const modules = new Map<string, { info: ModuleInfo; relativePath: string; bytes: Uint8Array }>();
  const addModules = (found: typeof files) => {
    for (const [path, f] of found) {
      const m = MODULE_PATH.exec(path);
      if (m === null || m[1] !== kernelRelease) continue;
      const bytes = decompressFile(path, f.bytes);
      const info = readModinfo(bytes, path);
      modules.set(info.name, { info, relativePath: m[2]!.replace(/\.(xz|zst|gz)$/, ""), bytes });
    }
  };
  addModules(files);
  let order: string[] = [];
  for (let pass = 0; ; pass++) {
    try {
      order = loadOrder(new Map([...modules].map(([k, v]) => [k, v.info])), WANTED_MODULES, builtin);
      break;
    } catch (err) {
      if (!(err instanceof MissingModuleError) || pass >= 3) throw err;
      const missing = err.module;
      files = await extractDeb(debs.kernel.path, (e) => MODULE_PATH.test(e.path) && moduleName(e.path) === missing);
      if (files.size === 0) throw new GuestFetchError("BAD_PACKAGE", `${debs.kernel.path}: ${err.message}`);
      addModules(files);
    }
  }

  const bb = await extractDeb(debs.busybox.path, (e) => e.path === "bin/busybox");
  const busybox = bb.get("bin/busybox");
  if (busybox === undefined) throw new GuestFetchError("BAD_PACKAGE", `${debs.busybox.path}: no bin/busybox in the package`);

  writeFileSync(join(tmp, "vmlinuz"), vmlinuz.bytes);
  writeFileSync(join(tmp, "busybox"), busybox.bytes);
  mkdirSync(join(tmp, "modules"), { recursive: true });
  const extracted: ExtractedModule[] = order.map((name) => {
    const m = modules.get(name)!;
    const file = join(dir, "modules", `${name}.ko`);
    writeFileSync(join(tmp, "modules", `${name}.ko`), m.bytes);
    return { ...m.info, relativePath: m.relativePath, file };
  });
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return {
    kernelRelease,
    vmlinuz: join(dir, "vmlinuz"),
    busybox: join(dir, "busybox"),
    modules: extracted,
    builtin: WANTED_MODULES.filter((m) => builtin.has(m)),
  };
}

function isVmlinuz(e: TarEntry): boolean {
  return /^boot\/vmlinuz-[^/]+$/.test(e.path);
}
