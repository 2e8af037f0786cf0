// Builds the native x87 harness (gcc -m32, cached by a hash of its source) and runs cases on it.
import { HarnessError, type HostSupport, buildHarness as buildCachedHarness, hostSupport as checkHost, runHarness } from "../native-build.js";
export { HarnessError, type HostSupport };
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type FpuCase, type FpuResult, CASE_DATA_SIZE, IMAGE_SIZE } from "./case.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(HERE, "harness.c");
const CFLAGS = ["-m32", "-O1", "-no-pie", "-fno-pie", "-Wall", "-Wextra", "-Werror"];

/** Checks the host (x86 Linux with gcc -m32) and builds the harness once; never throws. */
export function hostSupport(): HostSupport {
  return checkHost(buildHarness);
}

/** Path of the harness binary for the current source, compiling it into the cache when missing. */
export function buildHarness(): string {
  return buildCachedHarness(SOURCE, CFLAGS, "hv-host-fpu");
}

function encode(cases: readonly FpuCase[]): Buffer {
  const parts: Buffer[] = [];
  for (const c of cases) {
    const head = Buffer.alloc(4);
    head.writeUInt32LE(c.code.length, 0);
    const tail = Buffer.alloc(4);
    tail.writeUInt32LE(c.eflags >>> 0, 0);
    parts.push(head, Buffer.from(c.code), Buffer.from(c.image), Buffer.from(c.data), tail);
  }
  return Buffer.concat(parts);
}

const RESULT_SIZE = 8 + IMAGE_SIZE + 8 + CASE_DATA_SIZE;

function decode(buf: Buffer, count: number): FpuResult[] {
  if (buf.length !== count * RESULT_SIZE) throw new HarnessError(`harness returned ${buf.length} bytes for ${count} cases`);
  const out: FpuResult[] = [];
  for (let k = 0; k < count; k++) {
    const at = k * RESULT_SIZE;
    out.push({
      status: buf.readUInt32LE(at),
      offset: buf.readUInt32LE(at + 4),
      image: new Uint8Array(buf.subarray(at + 8, at + 8 + IMAGE_SIZE)),
      eflags: buf.readUInt32LE(at + 8 + IMAGE_SIZE),
      eax: buf.readUInt32LE(at + 12 + IMAGE_SIZE),
      data: new Uint8Array(buf.subarray(at + 16 + IMAGE_SIZE, at + RESULT_SIZE)),
    });
  }
  return out;
}

/** Run cases natively; resolves with one result per case. */
export async function runNative(harness: string, cases: readonly FpuCase[]): Promise<FpuResult[]> {
  return decode(await runHarness(harness, encode(cases)), cases.length);
}
