// Builds the native harness (gcc -m32, cached by a hash of its source) and runs batches on it.
import { spawn } from "node:child_process";
import { HarnessError, type HostSupport, buildHarness as buildCachedHarness, hostSupport as checkHost } from "../native-build.js";
export { HarnessError, type HostSupport };
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CaseKind, type HostCase, type NativeResult, decodeResults, encodeBatch } from "./case-format.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(HERE, "harness.c");
const CFLAGS = ["-m32", "-O2", "-no-pie", "-fno-pie", "-Wall", "-Wextra", "-Werror"];

/** Checks the host (x86 Linux with gcc -m32) and builds the harness once; never throws. */
export function hostSupport(): HostSupport {
  return checkHost(buildHarness);
}

/** Path of the harness binary for the current source, compiling it into the cache when missing. */
export function buildHarness(): string {
  return buildCachedHarness(SOURCE, CFLAGS, "hv-host-harness");
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
