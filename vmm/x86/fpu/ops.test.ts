// FPREM/FPREM1 at the bottom of the range (values checked against the host CPU): a tiny or
// denormal remainder is stored like any tiny result, the dividend returned by an infinite divisor
// included; DE (unmasked) comes before UE.
import { describe, expect, it } from "vitest";
import { runX87, TestHost } from "./test-host.js";
import { X87 } from "./x87.js";

const CODE = 0x10000000, DATA = 0x20000000;
const FPREM = [0xd9, 0xf8], FPREM1 = [0xd9, 0xf5];
const UE = 0x10, DE = 0x02, PE = 0x20, ES = 0x80, C0 = 0x100, C1 = 0x200, C2 = 0x400, C3 = 0x4000;
const CC = C0 | C1 | C2 | C3;
const NEG_DENORMAL: [number, bigint] = [0x8000, 0x7fffffffffffffffn];
const NEG_INFINITY: [number, bigint] = [0xffff, 0x8000000000000000n];

/** Runs FLDCW cw; FLD divisor; FLD dividend; then `op`. Returns ST(0) and the status word. */
function remainder(cw: number, dividend: [number, bigint], divisor: [number, bigint], op: number[]) {
  const x = new X87();
  const memory = new Uint8Array(4096);
  const view = new DataView(memory.buffer);
  const host = new TestHost(memory, DATA);
  host.regs[3] = DATA;
  view.setUint16(0, cw, true);
  for (const [at, [se, m]] of [[16, divisor], [32, dividend]] as const) {
    view.setBigUint64(at, m, true);
    view.setUint16(at + 8, se, true);
  }
  // fldcw [ebx]; fld tword [ebx+16]; fld tword [ebx+32]
  const load = [0xd9, 0x6b, 0, 0xdb, 0x6b, 16, 0xdb, 0x6b, 32];
  const outcome = runX87(x, host, new Uint8Array([...load, ...op]), CODE);
  const r = x.phys(0);
  return { vector: outcome.vector, st0: [x.se[r], x.m[r]] as [number, bigint], sw: x.sw };
}

describe("FPREM/FPREM1 with an infinite divisor", () => {
  for (const [name, op] of [["FPREM", FPREM], ["FPREM1", FPREM1]] as const) {
    it(`${name}: a denormal dividend with UE unmasked comes back bias-adjusted (+24576) with UE`, () => {
      const r = remainder(0x0767, NEG_DENORMAL, NEG_INFINITY, op);
      expect(r.vector).toBe(-1);
      expect(r.st0).toEqual([0xe000, 0xfffffffffffffffen]);
      expect(r.sw & (0x3f | ES | CC)).toBe(UE | DE | ES);
    });
  }

  it("UE masked: the denormal comes back unchanged, no UE or PE (the result is exact)", () => {
    const r = remainder(0x037f, [0, 0x2cn], [0x7fff, 0x8000000000000000n], FPREM1);
    expect(r.st0).toEqual([0, 0x2cn]);
    expect(r.sw & (0x3f | ES | CC)).toBe(DE);
  });

  it("DE unmasked takes precedence: the dividend stays, DE alone", () => {
    const r = remainder(0x036d, NEG_DENORMAL, NEG_INFINITY, FPREM);
    expect(r.st0).toEqual(NEG_DENORMAL);
    expect(r.sw & (0x3f | ES)).toBe(DE | ES);
  });

  it("a pseudo-denormal is not tiny: its normal encoding (exponent 1), no UE", () => {
    const r = remainder(0x036d | DE, [0x8000, 0x8000000000000001n], NEG_INFINITY, FPREM);
    expect(r.st0).toEqual([0x8001, 0x8000000000000001n]);
    expect(r.sw & (0x3f | ES)).toBe(DE);
  });

  it("a zero dividend stays zero without flags", () => {
    const r = remainder(0x0367, [0x8000, 0n], NEG_INFINITY, FPREM);
    expect(r.st0).toEqual([0x8000, 0n]);
    expect(r.sw & (0x3f | ES)).toBe(0);
  });
});

describe("FPREM/FPREM1 with a tiny remainder of normal operands", () => {
  const a: [number, bigint] = [0x0001, 0xc000000000000000n]; // 1.5 * 2^-16382
  const b: [number, bigint] = [0x0001, 0x8000000000000000n]; // 2^-16382

  it("FPREM, UE masked: the exact denormal 2^-16383, quotient 1 (C1), no UE", () => {
    const r = remainder(0x037f, a, b, FPREM);
    expect(r.st0).toEqual([0, 0x4000000000000000n]);
    expect(r.sw & (0x3f | CC)).toBe(C1);
  });

  it("FPREM, UE unmasked: bias-adjusted with UE, no PE, quotient bits kept", () => {
    const r = remainder(0x036f, a, b, FPREM);
    expect(r.st0).toEqual([0x6000, 0x8000000000000000n]);
    expect(r.sw & (0x3f | ES | CC)).toBe(UE | ES | C1);
  });

  it("FPREM1 rounds the quotient 1.5 to 2 (C3): remainder -2^-16383", () => {
    expect(remainder(0x037f, a, b, FPREM1).st0).toEqual([0x8000, 0x4000000000000000n]);
    const r = remainder(0x036f, a, b, FPREM1);
    expect(r.st0).toEqual([0xe000, 0x8000000000000000n]);
    expect(r.sw & (0x3f | ES | CC)).toBe(UE | ES | C3);
  });

  it("PE never comes from a remainder, masked or not", () => {
    for (const cw of [0x035f, 0x034f]) expect(remainder(cw, a, b, FPREM).sw & PE).toBe(0);
  });
});
