// The x87 unit against the host CPU (case counts at HV_TEST_SCALE): 20,000 random sequences with a fixed seed, and 20,000 of the
// focused stream (FPREM/FPREM1/FSCALE/FXTRACT near underflow); skipped with a notice where the host
// is not x86 Linux with gcc -m32.
import { describe, expect, it } from "vitest";
import { compareResults } from "./compare.js";
import { generateFocusCase } from "./focus.js";
import { emulate } from "./emulate.js";
import { generateCase } from "./generator.js";
import { hostSupport } from "./native.js";
import { runHostFpu } from "./runner.js";
import { scaled } from "../../support/scale.js";

const CASES = scaled(20_000);
const ENGINE_CASES = scaled(5_000);

const support = hostSupport();
if (!support.ok) console.warn(`host-fpu: skipped (${support.reason})`);

describe("x87 differential test against the host", () => {
  it.skipIf(!support.ok)(`agrees on ${CASES} random sequences (seed 20240601)`, async () => {
    const s = await runHostFpu(20240601, CASES);
    expect(s.failures).toEqual([]);
    expect(s.passed).toBe(CASES);
  });

  it.skipIf(!support.ok)(`agrees on ${CASES} focused cases: FPREM/FPREM1/FSCALE/FXTRACT near underflow (seed 20240601)`, async () => {
    const s = await runHostFpu(20240601, CASES, 20, false, generateFocusCase);
    expect(s.failures).toEqual([]);
    expect(s.passed).toBe(CASES);
  });

  it.skipIf(!support.ok)(`agrees through the whole core (createX86Engine) on ${ENGINE_CASES} sequences`, async () => {
    const s = await runHostFpu(77, ENGINE_CASES, 20, true);
    expect(s.failures).toEqual([]);
    expect(s.passed).toBe(ENGINE_CASES);
  });

  it("generates the same case for the same seed and index", () => {
    const a = generateCase(5, 17), b = generateCase(5, 17);
    expect(a.code).toEqual(b.code);
    expect(a.image).toEqual(b.image);
    expect(generateCase(5, 18).image).not.toEqual(a.image);
  });

  it("the focused stream is deterministic and covers its four instructions with denormal operands", () => {
    expect(generateFocusCase(5, 17).image).toEqual(generateFocusCase(5, 17).image);
    expect(generateFocusCase(5, 18).image).not.toEqual(generateFocusCase(5, 17).image);
    const ops = new Set<number>();
    let denormalSt0 = 0;
    for (let k = 0; k < 400; k++) {
      const c = generateFocusCase(1, k);
      ops.add(c.code[1]);
      const v = new DataView(c.image.buffer);
      if ((v.getUint16(36, true) & 0x7fff) === 0 && v.getBigUint64(28, true) !== 0n) denormalSt0++;
    }
    expect([...ops].sort()).toEqual([0xf4, 0xf5, 0xf8, 0xfd]);
    expect(denormalSt0).toBeGreaterThan(40);
  });

  it("the comparison notices a one-bit difference in a register", () => {
    const c = generateCase(1, 3);
    const e = emulate(c);
    const altered = { ...e, image: e.image.slice() };
    altered.image[28] ^= 1;
    expect(compareResults(c, e, e)).toBeNull();
    expect(compareResults({ ...c, approximate: false }, e, altered)).toMatch(/st\(0\)/);
  });
});
