// Building and finding the 32-bit native harnesses of the host-CPU oracles (gcc -m32), cached in
// node_modules/.cache by a hash of source and flags, so each is compiled once per change.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export class HarnessError extends Error {
  override readonly name = "HarnessError";
}

/** Why this host cannot run the native side, or the harness binary when it can. */
export type HostSupport = { ok: true; harness: string } | { ok: false; reason: string };

/** Path of the harness binary for `source`, compiling it into the cache (`cacheName`) when missing. */
export function buildHarness(source: string, cflags: readonly string[], cacheName: string): string {
  const hash = createHash("sha256").update(readFileSync(source)).update(cflags.join(" ")).digest("hex").slice(0, 16);
  const dir = join(REPO_ROOT, "node_modules", ".cache", cacheName, hash);
  const binary = join(dir, "harness");
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  const temporary = `${binary}.${process.pid}.tmp`;
  const gcc = spawnSync("gcc", [...cflags, "-o", temporary, source], { encoding: "utf8" });
  if (gcc.error) throw new HarnessError(`gcc not available (${gcc.error.message}); install gcc-multilib`);
  if (gcc.status !== 0) throw new HarnessError(`gcc -m32 failed to build the harness (is gcc-multilib installed?):\n${gcc.stderr.trim()}`);
  renameSync(temporary, binary); // atomic: parallel test workers may build at the same time
  return binary;
}

/** Checks the host (x86 Linux with gcc -m32) and builds the harness once; never throws. */
export function hostSupport(build: () => string): HostSupport {
  if (process.platform !== "linux") return { ok: false, reason: `host is ${process.platform}, not Linux` };
  if (process.arch !== "x64" && process.arch !== "ia32") return { ok: false, reason: `host CPU is ${process.arch}, not x86-64/ia32` };
  try {
    return { ok: true, harness: build() };
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  }
}

/** Run a harness on `input` (its stdin); resolves with all it wrote to stdout, rejects when it fails. */
export function runHarness(harness: string, input: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(harness, [], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => reject(new HarnessError(`cannot start the harness: ${error.message}`)));
    child.on("close", (code, signal) => {
      const stderr = Buffer.concat(err).toString("utf8").trim();
      if (code !== 0) reject(new HarnessError(`harness exited with ${signal ?? code}${stderr ? `: ${stderr}` : ""}`));
      else resolve(Buffer.concat(out));
    });
    child.stdin.on("error", () => undefined); // a crash shows up in "close"
    child.stdin.end(input);
  });
}
