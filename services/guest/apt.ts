// A private apt configuration for i386 inside the guest cache folder, and runs of apt-get/apt-cache
// with it. The host's apt setup is read (mirror, suites, keyrings, proxy) but never written: lists,
// package caches, locks and hooks all live in `<cache>/apt/`.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AptSource } from "./sources.js";

export type GuestFetchErrorCode =
  | "APT_MISSING"
  | "NO_MIRROR"
  | "MIRROR_UNREACHABLE"
  | "APT_FAILED"
  | "PACKAGE_NOT_FOUND"
  | "CHECKSUM_MISMATCH"
  | "BAD_PACKAGE";

/** Why the default guest could not be fetched or built. */
export class GuestFetchError extends Error {
  constructor(
    readonly code: GuestFetchErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "GuestFetchError";
  }
}

/** Files and arguments of the private apt configuration. */
export interface PrivateApt {
  root: string;
  /** `-o` options passed on every command line (also written to `apt.conf`). */
  options: string[];
  /** Environment: `APT_CONFIG` points at the private `apt.conf`, so no host apt.conf.d hook runs. */
  env: NodeJS.ProcessEnv;
}

/**
 * Host settings worth keeping: how to reach the network (proxies) and whether the mirror's
 * Release files are checked for expiry (frozen snapshot mirrors need that off).
 */
const CARRIED_SETTINGS = /^Acquire::(?:(?:https?|ftp)::Proxy\b|Check-Valid-Until\b|Check-Date\b|Retries\b)/i;

/** The host's carried settings as apt.conf lines (`Key "value";`), read with `apt-config dump`. */
export function hostAptSettings(): string[] {
  const dump = spawnSync("apt-config", ["dump"], { encoding: "utf8" });
  if (dump.status !== 0 || typeof dump.stdout !== "string") return [];
  return dump.stdout.split("\n").filter((line) => CARRIED_SETTINGS.test(line) && /^\S+ ".*";$/.test(line));
}

/** Renders sources in the one-line format; embedded keys are written beside it and referenced by path. */
export function renderSourcesList(sources: AptSource[], keyDir: string): string {
  let text = "# Private i386 sources of the hv default guest (derived from the host's Debian entries)\n";
  sources.forEach((source, i) => {
    let signedBy = source.signedBy;
    if (signedBy !== undefined && signedBy.includes("BEGIN PGP")) {
      mkdirSync(keyDir, { recursive: true });
      const path = join(keyDir, `source-${i}.asc`);
      writeFileSync(path, `${signedBy}\n`);
      signedBy = path;
    }
    const opts = ["arch=i386", ...(signedBy !== undefined ? [`signed-by=${signedBy.split(/\s+/).join(",")}`] : [])];
    for (const uri of source.uris) {
      for (const suite of source.suites) {
        text += `deb [${opts.join(" ")}] ${uri} ${suite} ${source.components.join(" ")}\n`;
      }
    }
  });
  return text;
}

/** Creates (or refreshes) the private apt tree under `root` for `sources`. */
export function preparePrivateApt(root: string, sources: AptSource[], carried: string[]): PrivateApt {
  const dirs = {
    etc: join(root, "etc"),
    parts: join(root, "etc", "apt.conf.d"),
    sourceParts: join(root, "etc", "sources.list.d"),
    preferenceParts: join(root, "etc", "preferences.d"),
    state: join(root, "state"),
    cache: join(root, "cache"),
  };
  for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
  mkdirSync(join(dirs.state, "lists", "partial"), { recursive: true });
  mkdirSync(join(dirs.cache, "archives", "partial"), { recursive: true });
  const sourcesList = join(dirs.etc, "sources.list");
  writeFileSync(sourcesList, renderSourcesList(sources, join(dirs.etc, "keys")));
  const status = join(dirs.state, "status");
  writeFileSync(status, "");
  const settings: Array<[string, string]> = [
    ["Dir::Etc::sourcelist", sourcesList],
    ["Dir::Etc::sourceparts", dirs.sourceParts],
    ["Dir::Etc::preferences", join(dirs.etc, "preferences")],
    ["Dir::Etc::preferencesparts", dirs.preferenceParts],
    ["Dir::State", dirs.state],
    ["Dir::State::status", status],
    ["Dir::Cache", dirs.cache],
    ["APT::Architecture", "i386"],
    ["APT::Architectures", "i386"],
    ["Acquire::Languages", "none"],
    // Keep the package lists compressed on disk (about 9 MB instead of 50 MB).
    ["Acquire::GzipIndexes", "true"],
    // apt drops to `_apt` to download; that user cannot enter root's home, where the cache lives.
    ...(process.getuid?.() === 0 ? ([["APT::Sandbox::User", "root"]] as Array<[string, string]>) : []),
  ];
  const conf = join(root, "apt.conf");
  writeFileSync(
    conf,
    [
      "// Private apt configuration of the hv default guest. Host apt.conf.d is not read (no host hooks run).",
      `Dir::Etc::Parts "${dirs.parts}";`,
      `Dir::Etc::main "/dev/null";`,
      ...carried,
      ...settings.map(([k, v]) => `${k} "${v}";`),
      "",
    ].join("\n"),
  );
  const options = settings.flatMap(([k, v]) => ["-o", `${k}=${v}`]);
  return { root, options, env: { ...process.env, APT_CONFIG: conf, LC_ALL: "C" } };
}

export interface AptRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `tool` (apt-get or apt-cache) with the private configuration. `onLine` sees every output
 * line as it arrives (progress). A missing binary is a GuestFetchError("APT_MISSING").
 */
export function runApt(
  tool: "apt-get" | "apt-cache",
  args: string[],
  apt: PrivateApt,
  opts: { cwd?: string; onLine?: (line: string) => void } = {},
): Promise<AptRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, [...apt.options, ...args], { cwd: opts.cwd ?? apt.root, env: apt.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const lines = (sink: (s: string) => void) => {
      let pending = "";
      return (chunk: Buffer) => {
        const text = chunk.toString("utf8");
        sink(text);
        if (opts.onLine === undefined) return;
        pending += text;
        const parts = pending.split("\n");
        pending = parts.pop()!;
        for (const line of parts) if (line.trim() !== "") opts.onLine(line);
      };
    };
    child.stdout.on("data", lines((s) => (stdout += s)));
    child.stderr.on("data", lines((s) => (stderr += s)));
    child.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") {
        reject(
          new GuestFetchError(
            "APT_MISSING",
            `${tool} not found: the default guest is fetched from Debian's archive with apt-get; ` +
              `run on a Debian-based host or pass your own --kernel/--initrd`,
          ),
        );
      } else reject(err);
    });
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Output lines that mean the network or the mirror could not be reached. */
export function unreachableLines(output: string): string[] {
  return output
    .split("\n")
    .filter((l) => /Could not resolve|Temporary failure resolving|Could not connect|Connection (?:failed|timed out|refused)|Unable to connect|No route to host/i.test(l))
    .map((l) => l.trim());
}
