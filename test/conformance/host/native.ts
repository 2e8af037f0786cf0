// Builds the native harness (gcc -m32, cached by a hash of its source) and runs batches on it.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CaseKind, type HostCase, type NativeResult, decodeResults, encodeBatch } from "./case-format.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, "..", "..", "..");
const SOURCE = join(HERE, "harness.c");
const CFLAGS = ["-m32", "-O2", "-no-pie", "-fno-pie", "-Wall", "-Wextra", "-Werror"];

export class HarnessError extends Error {
  override readonly name = "HarnessError";
}

/** Why this host cannot run the native side, or null when it can. */
export type HostSupport = { ok: true; harness: string } | { ok: false; reason: string };

/** Checks the host (x86 Linux with gcc -m32) and builds the harness once; never throws. */
export function hostSupport(): HostSupport {
  if (process.platform !== "linux") return { ok: false, reason: `host is ${process.platform}, not Linux` };
  if (process.arch !== "x64" && process.arch !== "ia32") {
    return { ok: false, reason: `host CPU is ${process.arch}, not x86-64/ia32` };
  }
  try {
    return { ok: true, harness: buildHarness() };
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  }
}

/** Path of the harness binary for the current source, compiling it into the cache when missing. */
export function buildHarness(): string {
  const source = readFileSync(SOURCE);
  const hash = createHash("sha256").update(source).update(CFLAGS.join(" ")).digest("hex").slice(0, 16);
  const dir = join(REPO_ROOT, "node_modules", ".cache", "hv-host-harness", hash);
  const binary = join(dir, "harness");
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  const temporary = `${binary}.${process.pid}.tmp`;
  const gcc = spawnSync("gcc", [...CFLAGS, "-o", temporary, SOURCE], { encoding: "utf8" });
  if (gcc.error) throw new HarnessError(`gcc not available (${gcc.error.message}); install gcc-multilib`);
  if (gcc.status !== 0) {
    throw new HarnessError(`gcc -m32 failed to build the harness (is gcc-multilib installed?):\n${gcc.stderr.trim()}`);
  }
  renameSync(temporary, binary); // atomic: parallel test workers may build at the same time
  return binary;
}

/** Runs one batch natively; resolves with one result per case, in order. */
export function runNative(harness: string, kind: CaseKind, cases: readonly HostCase[]): Promise<NativeResult[]> {
  const input = encodeBatch(kind, cases);
  return new Promise((resolve, reject) => {
    const child = spawn(harness, [], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => reject(new HarnessError(`cannot start the harness: ${error.message}`)));
    child.on("close", (code, signal) => {
      const stderr = Buffer.concat(err).toString("utf8").trim();
      if (code !== 0) {
        reject(new HarnessError(`harness exited with ${signal ?? code}${stderr ? `: ${stderr}` : ""}`));
        return;
      }
      try {
        const results = decodeResults(kind, new Uint8Array(Buffer.concat(out)));
        if (results.length !== cases.length) throw new HarnessError(`harness returned ${results.length} of ${cases.length} results`);
        resolve(results);
      } catch (error) {
        reject(error);
      }
    });
    child.stdin.on("error", () => undefined); // a crash shows up in "close"
    child.stdin.end(input);
  });
}
