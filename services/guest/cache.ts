// The guest cache folder: where it is, a cross-process lock, atomic writes and file checksums.
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, openSync, closeSync, readFileSync, renameSync, rmSync, writeFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

/** Options every guest-cache function accepts. */
export interface CacheOptions {
  /** Cache folder; default `$HV_CACHE_DIR`, else `~/.cache/hv/guest`. */
  cacheDir?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

export function resolveCacheDir(opts: CacheOptions = {}): string {
  if (opts.cacheDir !== undefined && opts.cacheDir !== "") return opts.cacheDir;
  const env = process.env["HV_CACHE_DIR"];
  if (env !== undefined && env !== "") return env;
  return join(homedir(), ".cache", "hv", "guest");
}

export function logger(opts: CacheOptions): (line: string) => void {
  return opts.log ?? ((line: string) => process.stderr.write(`hv guest: ${line}\n`));
}

/** SHA-256 of a file, hex. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .on("error", reject)
      .on("end", () => resolve(hash.digest("hex")));
  });
}

export function sha256(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes a file so that readers see either the old or the complete new content. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}

export function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Runs `body` holding the lock file `<cacheDir>/lock`, so two `hv` processes (or parallel tests)
 * do not fetch into the same folder at once. A lock left by a dead process is taken over.
 */
export async function withCacheLock<T>(cacheDir: string, log: (line: string) => void, body: () => Promise<T>): Promise<T> {
  mkdirSync(cacheDir, { recursive: true });
  const lockPath = join(cacheDir, "lock");
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(lockPath, "wx");
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let holder = 0;
      let ageMs = 0;
      try {
        holder = Number.parseInt(readFileSync(lockPath, "utf8").trim() || "0", 10);
        ageMs = Date.now() - statSync(lockPath).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      // An empty lock file is one being written right now, unless it is old.
      const stale = holder > 0 ? !processAlive(holder) : ageMs > 5000;
      if (stale) {
        rmSync(lockPath, { force: true });
        continue;
      }
      if (!announced) log(`waiting for process ${holder}, which holds ${lockPath}`);
      announced = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await body();
  } finally {
    rmSync(lockPath, { force: true });
  }
}
