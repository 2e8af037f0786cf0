// Builds the native harness (gcc -m32, cached by a hash of its source) and runs batches on it.
import { HarnessError, type HostSupport, buildHarness as buildCachedHarness, hostSupport as checkHost, runHarness } from "../native-build.js";
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
export async function runNative(harness: string, kind: CaseKind, cases: readonly HostCase[]): Promise<NativeResult[]> {
  const results = decodeResults(kind, new Uint8Array(await runHarness(harness, encodeBatch(kind, cases))));
  if (results.length !== cases.length) throw new HarnessError(`harness returned ${results.length} of ${cases.length} results`);
  return results;
}
