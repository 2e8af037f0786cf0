// Fetches the default guest's Debian packages (i386 kernel + busybox-static) into the cache with
// `apt-get download` and a private apt configuration. A cache hit reads only local files.
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { GuestFetchError, hostAptSettings, preparePrivateApt, runApt, unreachableLines, type PrivateApt } from "./apt.js";
import { logger, readJson, resolveCacheDir, sha256File, withCacheLock, writeFileAtomic, type CacheOptions } from "./cache.js";
import { debianSources, readHostSources, type AptSource } from "./sources.js";

export interface FetchOptions extends CacheOptions {
  /** Ask the mirror again even when the cache holds a complete set (picks up a newer kernel). */
  refresh?: boolean;
  /** Kernel series: packages `linux-image-<series>-<N>-686-unsigned`; default "6.1.0". */
  kernelSeries?: string;
  /** Where to read the host's apt sources; default /etc/apt (tests point it elsewhere). */
  etcApt?: string;
}

/** One fetched package: what apt said it is, and where it is now. */
export interface FetchedDeb {
  package: string;
  version: string;
  architecture: string;
  sha256: string;
  size: number;
  /** Absolute path of the .deb in the cache. */
  path: string;
}

export interface GuestDebs {
  kernel: FetchedDeb;
  busybox: FetchedDeb;
  /** True when nothing was asked of the network. */
  cacheHit: boolean;
}

interface Manifest {
  format: 1;
  kernel: Omit<FetchedDeb, "path"> & { file: string };
  busybox: Omit<FetchedDeb, "path"> & { file: string };
}

const MANIFEST = "manifest.json";

/** Returns the cached debs when the manifest names them and their checksums match, else null. */
export async function cachedDebs(cacheDir: string): Promise<GuestDebs | null> {
  const manifest = readJson<Manifest>(join(cacheDir, MANIFEST));
  if (manifest === null || manifest.format !== 1) return null;
  const out: FetchedDeb[] = [];
  for (const entry of [manifest.kernel, manifest.busybox]) {
    const path = join(cacheDir, "debs", entry.file);
    if (!existsSync(path) || (await sha256File(path)) !== entry.sha256) return null;
    const { file: _file, ...rest } = entry;
    out.push({ ...rest, path });
  }
  return { kernel: out[0]!, busybox: out[1]!, cacheHit: true };
}

/** Picks the newest `linux-image-<series>-<N>-686-unsigned` among package names. */
export function newestKernelPackage(names: string[], series = "6.1.0"): string | null {
  const pattern = new RegExp(`^linux-image-${series.replace(/\./g, "\\.")}-(\\d+)-686-unsigned$`);
  let best: string | null = null;
  let bestAbi = -1;
  for (const name of names) {
    const m = pattern.exec(name.trim());
    if (m && Number(m[1]) > bestAbi) {
      bestAbi = Number(m[1]);
      best = name.trim();
    }
  }
  return best;
}

/** Parses `apt-cache show` output into records keyed by lower-case field name. */
export function parseControlStanzas(text: string): Array<Map<string, string>> {
  const out: Array<Map<string, string>> = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split("\n")) {
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) fields.set(m[1]!.toLowerCase(), m[2]!);
    }
    if (fields.has("package")) out.push(fields);
  }
  return out;
}

/** Fetches (or finds in the cache) the kernel and busybox-static packages for i386. */
export async function fetchGuestDebs(opts: FetchOptions = {}): Promise<GuestDebs> {
  const cacheDir = resolveCacheDir(opts);
  const log = logger(opts);
  if (!opts.refresh) {
    const hit = await cachedDebs(cacheDir);
    if (hit) return hit;
  }
  return withCacheLock(cacheDir, log, () => fetchGuestDebsLocked(cacheDir, opts, log));
}

/** The body of fetchGuestDebs for a caller that already holds the cache lock. */
export async function fetchGuestDebsLocked(cacheDir: string, opts: FetchOptions, log: (line: string) => void): Promise<GuestDebs> {
  if (!opts.refresh) {
    const hit = await cachedDebs(cacheDir); // another process may have fetched while we waited
    if (hit) return hit;
  }
  return fetchFromMirror(cacheDir, opts, log);
}

async function fetchFromMirror(cacheDir: string, opts: FetchOptions, log: (line: string) => void): Promise<GuestDebs> {
  const sources = debianSources(readHostSources(opts.etcApt));
  if (sources.length === 0) {
    throw new GuestFetchError(
      "NO_MIRROR",
      `no Debian archive (deb ... /debian main) found in ${opts.etcApt ?? "/etc/apt"}/sources.list or sources.list.d; ` +
        `the default guest comes from the host's configured Debian mirror`,
    );
  }
  const apt = preparePrivateApt(join(cacheDir, "apt"), sources, hostAptSettings());
  log(`updating i386 package lists from ${describe(sources)} (private apt config in ${apt.root})`);
  const update = await runApt("apt-get", ["update"], apt, { onLine: (l) => log(`  ${l}`) });
  // apt-get update fails as a whole when any one index fails; the others are still usable
  // (a mirror may be mid-sync for one suite), so only a missing package is fatal below.
  const updateErrors = update.code === 0 ? [] : errorLines(update.stdout + update.stderr);
  if (updateErrors.length > 0) log(`some package lists could not be updated; going on with the others`);

  const series = opts.kernelSeries ?? "6.1.0";
  const names = await runApt("apt-cache", ["pkgnames", `linux-image-${series}-`], apt);
  const kernelPackage = newestKernelPackage(names.stdout.split("\n"), series);
  if (kernelPackage === null) {
    const unreachable = unreachableLines(update.stdout + update.stderr);
    if (unreachable.length > 0) {
      throw new GuestFetchError("MIRROR_UNREACHABLE", `cannot reach the Debian mirror (${describe(sources)}):\n  ${unreachable.join("\n  ")}`);
    }
    const why = updateErrors.length > 0 ? `; apt-get update said:\n  ${updateErrors.join("\n  ")}` : "";
    throw new GuestFetchError("PACKAGE_NOT_FOUND", `no linux-image-${series}-*-686-unsigned package for i386 in ${describe(sources)}${why}`);
  }
  const wanted = [kernelPackage, "busybox-static"];
  const show = await runApt("apt-cache", ["show", "--no-all-versions", ...wanted], apt);
  const stanzas = parseControlStanzas(show.stdout);
  const info = wanted.map((name) => {
    const s = stanzas.find((f) => f.get("package") === name);
    if (s === undefined || !s.has("sha256") || !s.has("version")) {
      throw new GuestFetchError("PACKAGE_NOT_FOUND", `apt-cache has no record of ${name}:i386: ${show.stderr.trim()}`);
    }
    return {
      package: name,
      version: s.get("version")!,
      architecture: s.get("architecture") ?? "i386",
      sha256: s.get("sha256")!.toLowerCase(),
      size: Number(s.get("size") ?? "0"),
    };
  });

  const debDir = join(cacheDir, "debs");
  mkdirSync(debDir, { recursive: true });
  const present = await findDebs(debDir, info);
  const missing = info.filter((_, i) => present[i] === null);
  if (missing.length > 0) {
    log(`downloading ${missing.map((p) => `${p.package} ${p.version} (${(p.size / 1048576).toFixed(1)} MiB)`).join(", ")}`);
    const dl = await runApt("apt-get", ["download", ...missing.map((p) => `${p.package}:${p.architecture}=${p.version}`)], apt, {
      cwd: debDir,
      onLine: (l) => log(`  ${l}`),
    });
    if (dl.code !== 0) {
      const lines = unreachableLines(dl.stdout + dl.stderr);
      if (lines.length > 0) throw new GuestFetchError("MIRROR_UNREACHABLE", `download failed:\n  ${lines.join("\n  ")}`);
      throw new GuestFetchError("APT_FAILED", `apt-get download failed (status ${dl.code}):\n${dl.stderr.trim()}`);
    }
  }
  const found = await findDebs(debDir, info);
  const debs = info.map((p, i) => {
    const path = found[i];
    if (path == null) throw new GuestFetchError("CHECKSUM_MISMATCH", `${p.package} ${p.version}: no downloaded .deb has SHA-256 ${p.sha256}`);
    return { ...p, path };
  });
  removeStaleDebs(debDir, debs);
  // apt's binary caches (70 MB) only speed up the next apt run; a refresh rebuilds them.
  for (const bin of ["pkgcache.bin", "srcpkgcache.bin"]) rmSync(join(apt.root, "cache", bin), { force: true });
  const manifest: Manifest = {
    format: 1,
    kernel: { ...strip(debs[0]!), file: fileName(debs[0]!.path) },
    busybox: { ...strip(debs[1]!), file: fileName(debs[1]!.path) },
  };
  writeFileAtomic(join(cacheDir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  log(`fetched ${debs.map((d) => `${d.package} ${d.version}`).join(", ")}`);
  return { kernel: debs[0]!, busybox: debs[1]!, cacheHit: false };
}

function strip(deb: FetchedDeb): Omit<FetchedDeb, "path"> {
  const { path: _path, ...rest } = deb;
  return rest;
}

function fileName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** For each wanted package, the path of a .deb in `dir` with the expected checksum, or null. */
async function findDebs(dir: string, wanted: Array<{ package: string; sha256: string }>): Promise<Array<string | null>> {
  const files = readdirSync(dir).filter((f) => f.endsWith(".deb"));
  const out: Array<string | null> = [];
  for (const p of wanted) {
    let hit: string | null = null;
    for (const f of files.filter((f) => f.startsWith(`${p.package}_`))) {
      if ((await sha256File(join(dir, f))) === p.sha256) {
        hit = join(dir, f);
        break;
      }
    }
    out.push(hit);
  }
  return out;
}

/** Drops older versions of the same packages (a refresh that found a newer kernel). */
function removeStaleDebs(dir: string, keep: FetchedDeb[]): void {
  const keepFiles = new Set(keep.map((d) => fileName(d.path)));
  const kernelPrefix = /^linux-image-.*-686-unsigned_/;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".deb") || keepFiles.has(f)) continue;
    if (kernelPrefix.test(f) || f.startsWith("busybox-static_")) rmSync(join(dir, f), { force: true });
  }
}

/** The `E:` lines of apt output. */
function errorLines(output: string): string[] {
  return output.split("\n").filter((l) => l.startsWith("E:")).map((l) => l.trim());
}

function describe(sources: AptSource[]): string {
  return sources.map((s) => `${s.uris.join(",")} ${s.suites.join(",")}`).join("; ");
}

export type { PrivateApt };
