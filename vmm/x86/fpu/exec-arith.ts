// Handlers of the x87 arithmetic and compare forms (D8, DA, DC, DE and the FCOMI/FUCOMI group):
// ST(0) with ST(i), with 32/64-bit reals and with 16/32-bit integers.

import { add, div, DONE, mul } from "./arith.js";
import { fromInteger, widenF32, widenF64 } from "./convert.js";
import { f32Parts, f64Parts, intParts } from "./limbs-convert.js";
import { DE, IE, ZE } from "./float80.js";
import { CF, PF, ZF, type X87Host } from "./host.js";
import { addParts, compareParts, mulParts } from "./limbs.js";
import { divParts } from "./limbs-div.js";
import { compare } from "./ops.js";
import type { X87 } from "./x87.js";
import { SW_C0, SW_C2, SW_C3 } from "./status.js";

/** An unmasked invalid, denormal or zero-divide exception stops the instruction (no result). */
export function preStops(x: X87): boolean {
  return (x.ctx.exc & ~x.cw & (IE | DE | ZE)) !== 0;
}

/**
 * The operation selected by the reg field of D8/DC/DE on a = ST(0) and b (the other operand):
 * 0 add, 1 mul, 4 a-b, 5 b-a, 6 a/b, 7 b/a. Result in x.t0.
 */
function compute(x: X87, reg: number, aSe: number, aM: bigint, bSe: number, bM: bigint, bDenormal = false): number {
  const ctx = x.ctx, out = x.t0;
  const den = bDenormal ? 2 : 0, swapped = bDenormal ? 1 : 0;
  switch (reg) {
    case 0: return add(ctx, aSe, aM, bSe, bM, false, out, den);
    case 1: return mul(ctx, aSe, aM, bSe, bM, out, den);
    case 4: return add(ctx, aSe, aM, bSe, bM, true, out, den);
    case 5: return add(ctx, bSe, bM, aSe, aM, true, out, swapped);
    case 6: return div(ctx, aSe, aM, bSe, bM, out, den);
    default: return div(ctx, bSe, bM, aSe, aM, out, swapped);
  }
}

/**
 * The number fast path of `compute` (result in x.p0): true when it applied, false (nothing
 * changed) when the BigInt path must run.
 */
function computeParts(x: X87, reg: number, aSe: number, aHi: number, aLo: number, bSe: number, bHi: number, bLo: number): boolean {
  const ctx = x.ctx, out = x.p0;
  switch (reg) {
    case 0: return addParts(ctx, aSe, aHi, aLo, bSe, bHi, bLo, 0, out);
    case 1: return mulParts(ctx, aSe, aHi, aLo, bSe, bHi, bLo, out);
    case 4: return addParts(ctx, aSe, aHi, aLo, bSe, bHi, bLo, 1, out);
    case 5: return addParts(ctx, bSe, bHi, bLo, aSe, aHi, aLo, 1, out);
    case 6: return divParts(ctx, aSe, aHi, aLo, bSe, bHi, bLo, out);
    case 7: return divParts(ctx, bSe, bHi, bLo, aSe, aHi, aLo, out);
    default: return false;
  }
}

const CC_OF = [0, SW_C0, SW_C3, SW_C3 | SW_C2 | SW_C0];
const EFLAGS_OF = [0, CF, ZF, ZF | PF | CF];

/** Arithmetic ST(dest) = ST(0) op ST(i) (dest is 0 or i), optionally popping. */
export function arithRegister(x: X87, c: X87Host, i: number, toSti: boolean, popAfter: boolean): void {
  const d = c.dec;
  const sti = d.rm[i];
  const reg = d.reg[i];
  const dest = toSti ? sti : 0;
  x.setC1(0);
  if (x.isEmpty(0) || x.isEmpty(sti)) {
    if (x.stackUnderflow(dest) && popAfter) x.pop();
    return;
  }
  const a = x.phys(0), b = x.phys(sti);
  if (computeParts(x, reg, x.se[a], x.sigHi(a), x.sigLo(a), x.se[b], x.sigHi(b), x.sigLo(b))) {
    const p = x.p0;
    x.writeParts(dest, p.se, p.hi, p.lo);
    x.setC1(x.ctx.up);
    if (popAfter) x.pop();
    return;
  }
  const r = compute(x, reg, x.se[a], x.m[a], x.se[b], x.m[b]);
  if (r !== DONE || preStops(x)) return;
  x.writeF(dest, x.t0);
  x.setC1(x.ctx.up);
  if (popAfter) x.pop();
}

/** Compare physical registers a and b (number fast path first). */
function compareRegisters(x: X87, a: number, b: number, quiet: boolean): number {
  const r = compareParts(x.se[a], x.sigHi(a), x.sigLo(a), x.se[b], x.sigHi(b), x.sigLo(b));
  return r >= 0 ? r : compare(x.ctx, x.se[a], x.m[a], x.se[b], x.m[b], quiet);
}

/** Compare ST(0) with ST(i) into C3 C2 C0 (FCOM, FCOMP, FUCOM, FUCOMP); pops `pops` times. */
export function compareRegister(x: X87, c: X87Host, i: number, quiet: boolean, pops: number): void {
  compareWith(x, c.dec.rm[i], quiet, pops);
}

export function compareWith(x: X87, sti: number, quiet: boolean, pops: number): void {
  x.setC1(0);
  if (x.isEmpty(0) || x.isEmpty(sti)) {
    x.setCC(SW_C3 | SW_C2 | SW_C0);
    if (x.stackUnderflow(-1)) for (let k = 0; k < pops; k++) x.pop();
    return;
  }
  const r = compareRegisters(x, x.phys(0), x.phys(sti), quiet);
  x.setCC(CC_OF[r]);
  if (preStops(x)) return;
  for (let k = 0; k < pops; k++) x.pop();
}

/** FCOMI/FUCOMI(P): compare ST(0) with ST(i) into ZF PF CF (OF SF AF cleared). */
export function compareEflags(x: X87, c: X87Host, i: number, quiet: boolean, popAfter: boolean): void {
  const sti = c.dec.rm[i];
  // C1 is only written on a stack fault (the host leaves it otherwise).
  if (x.isEmpty(0) || x.isEmpty(sti)) {
    c.setArithFlags(ZF | PF | CF);
    if (x.stackUnderflow(-1) && popAfter) x.pop();
    return;
  }
  const r = compareRegisters(x, x.phys(0), x.phys(sti), quiet);
  c.setArithFlags(EFLAGS_OF[r]);
  if (preStops(x)) return;
  if (popAfter) x.pop();
}

/** Kinds of memory operands of the arithmetic forms. */
export const MEM_F32 = 0, MEM_I32 = 1, MEM_F64 = 2, MEM_I16 = 3;

/**
 * The memory operand of slot i (kind MEM_*) as raw words into x.raw: [low or only word, high word
 * of a 64-bit real]. Read once: the number and BigInt paths both convert from these.
 */
function readRaw(x: X87, c: X87Host, i: number, kind: number): void {
  const seg = c.dec.seg[i];
  const off = c.ea(i);
  const raw = x.raw;
  if (kind === MEM_F64) {
    raw[0] = c.rd32(seg, off);
    raw[1] = c.rd32(seg, (off + 4) | 0);
  } else if (kind === MEM_I16) raw[0] = (c.rd16(seg, off) << 16) >> 16;
  else raw[0] = c.rd32(seg, off);
}

/** The raw operand as exact numbers in x.p1; false when only the BigInt path handles it. */
function operandParts(x: X87, kind: number): boolean {
  const raw = x.raw;
  switch (kind) {
    case MEM_F64: return f64Parts(raw[0], raw[1], x.p1);
    case MEM_F32: return f32Parts(raw[0], x.p1);
    default:
      intParts(raw[0], x.p1);
      return true;
  }
}

/** The raw operand as an 80-bit value into x.t1; true for a denormal real. */
function widenOperand(x: X87, kind: number): boolean {
  const raw = x.raw;
  switch (kind) {
    case MEM_F32: return widenF32(raw[0], x.t1);
    case MEM_F64: return widenF64(raw[0], raw[1], x.t1);
    default: {
      const v = raw[0];
      fromInteger(v < 0 ? 1 : 0, BigInt(Math.abs(v)), x.t1);
      return false;
    }
  }
}

/** ST(0) = ST(0) op mem (reg field selects op; 2 and 3 are FCOM/FCOMP). */
export function arithMemory(x: X87, c: X87Host, i: number, kind: number): void {
  readRaw(x, c, i, kind);
  const reg = c.dec.reg[i];
  if (!x.isEmpty(0) && operandParts(x, kind)) {
    const a = x.phys(0), b = x.p1;
    if (reg === 2 || reg === 3) {
      const r = compareParts(x.se[a], x.sigHi(a), x.sigLo(a), b.se, b.hi, b.lo);
      if (r >= 0) {
        x.setC1(0);
        x.setCC(CC_OF[r]);
        if (reg === 3) x.pop();
        return;
      }
    } else if (computeParts(x, reg, x.se[a], x.sigHi(a), x.sigLo(a), b.se, b.hi, b.lo)) {
      const p = x.p0;
      x.writeParts(0, p.se, p.hi, p.lo);
      x.setC1(x.ctx.up);
      return;
    }
  }
  const den = widenOperand(x, kind);
  x.setC1(0);
  if (x.isEmpty(0)) {
    if (reg === 2 || reg === 3) {
      x.setCC(SW_C3 | SW_C2 | SW_C0);
      if (x.stackUnderflow(-1) && reg === 3) x.pop();
    } else x.stackUnderflow(0);
    return;
  }
  const a = x.phys(0);
  const aSe = x.se[a], aM = x.m[a];
  if (reg === 2 || reg === 3) {
    const r = compare(x.ctx, aSe, aM, x.t1.se, x.t1.m, false, den);
    x.setCC(CC_OF[r]);
    if (!preStops(x) && reg === 3) x.pop();
    return;
  }
  const r = compute(x, reg, aSe, aM, x.t1.se, x.t1.m, den);
  if (r !== DONE || preStops(x)) return;
  x.writeF(0, x.t0);
  x.setC1(x.ctx.up);
}

/** FTST: compare ST(0) with +0.0. */
export function ftst(x: X87): void {
  x.setC1(0);
  if (x.isEmpty(0)) {
    x.setCC(SW_C3 | SW_C2 | SW_C0);
    x.stackUnderflow(-1);
    return;
  }
  const a = x.phys(0);
  const r = compareParts(x.se[a], x.sigHi(a), x.sigLo(a), 0, 0, 0);
  x.setCC(CC_OF[r >= 0 ? r : compare(x.ctx, x.se[a], x.m[a], 0, 0n, false)]);
}
