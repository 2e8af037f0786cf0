// bench:cpu's kernel on our core: its marks come in order, and the workloads' results equal what
// the same computations give in JS (so the benchmark times work that is done right).
import { describe, expect, it } from "vitest";
import { hasNasm } from "../../vm/nasm.js";
import { KernelOutput, WORKLOADS, buildKernel } from "./kernel.js";
import { runOurs } from "./ours.js";

const source = Uint8Array.from({ length: 0x80000 }, (_, k) => Math.imul(k, 2654435761) >>> 24);
const dword = (bytes: Uint8Array, at: number) => (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

function sortedMiddle(): number {
  const a = new Uint32Array(3000);
  let x = 12345;
  for (let i = 0; i < a.length; i++) a[i] = x = (Math.imul(x, 1103515245) + 12345) >>> 0;
  return a.sort()[1500];
}

const hex = (x: number) => (x >>> 0).toString(16).padStart(8, "0");

describe.skipIf(!hasNasm())("bench:cpu's kernel", () => {
  it("runs every workload its number of times and reports what JS computes", () => {
    const reps = [2, 1, 0, 3, 1];
    expect(reps.length).toBe(WORKLOADS.length);
    const output = new KernelOutput();
    runOurs(buildKernel(reps), output, 500_000_000);
    expect(output.ended).toBe(true);
    // A start mark, then one per repetition, with the instruction count rising.
    expect(output.marks.map((m) => m.length)).toEqual(reps.map((r) => (r === 0 ? 0 : r + 1)));
    const counts = output.marks.flat().map((m) => m.retired);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    // Workload 2 is left out.
    expect(output.results).toEqual([
      `R0=${hex(2 * crc32(source.subarray(0, 131072)))}`,
      `R1=${hex(sortedMiddle())}`,
      `R3=${hex(3 * dword(source, 4096))}`,
      `R4=${hex(dword(source, 8192))}`,
    ]);
  });

  it("takes only sane repetition counts", () => {
    expect(() => buildKernel([1, 1])).toThrow(RangeError);
    expect(() => buildKernel(WORKLOADS.map(() => -1))).toThrow(RangeError);
    expect(() => buildKernel(WORKLOADS.map(() => 1.5))).toThrow(RangeError);
  });
});
