// x87 operations beyond the basic arithmetic: FRNDINT, FXTRACT, FSCALE, FPREM/FPREM1, compares
// and FXAM. All results are exact or rounded once.

import { checkNaN1, checkNaNs, denormalStops, DONE, type F80, invalid, NO_RESULT, roundToStack } from "./arith.js";
import { fromInteger } from "./convert.js";
import { bitLength, classify, Cls, DE, EXT_BIAS, IE, INT_BIT, lsbExponent, PE, roundAt, type RoundContext, ZE } from "./float80.js";

/** Unbiased exponent of the leading one of a finite nonzero value (denormals normalized). */
export function trueExponent(se: number, m: bigint): number {
  return lsbExponent(se & 0x7fff) + bitLength(m) - 1;
}

function copy(out: F80, se: number, m: bigint): void {
  out.se = se;
  out.m = m;
}

export function frndint(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const nan = checkNaN1(ctx, se, m, out);
  if (nan >= 0) return nan;
  const k = classify(se, m);
  if (k === Cls.ZERO || k === Cls.INF) {
    copy(out, se, m);
    return DONE;
  }
  if (denormalStops(ctx, k)) return NO_RESULT;
  if ((se & 0x7fff) - EXT_BIAS >= 63) {
    copy(out, se, m);
    return DONE;
  }
  const sign = se >> 15;
  const r = roundAt(ctx, sign, m, lsbExponent(se & 0x7fff), false, 0, (ctx.cw >> 10) & 3);
  if (ctx.inexact) ctx.exc |= PE;
  ctx.up = ctx.roundUp ? 1 : 0;
  fromInteger(sign, r, out);
  return DONE;
}

/** FXTRACT: `sig` gets the significand (exponent 0, sign kept), `exp` the unbiased exponent. */
export function fxtract(ctx: RoundContext, se: number, m: bigint, sig: F80, exp: F80): number {
  const nan = checkNaN1(ctx, se, m, sig);
  if (nan >= 0) {
    copy(exp, sig.se, sig.m);
    return nan;
  }
  const k = classify(se, m);
  if (k === Cls.ZERO) {
    ctx.exc |= ZE;
    if (!(ctx.cw & ZE)) return NO_RESULT;
    copy(exp, 0xffff, INT_BIT);
    copy(sig, se, m);
    return DONE;
  }
  if (k === Cls.INF) {
    copy(exp, 0x7fff, INT_BIT);
    copy(sig, se, m);
    return DONE;
  }
  if (denormalStops(ctx, k)) return NO_RESULT;
  const e = trueExponent(se, m);
  fromInteger(e < 0 ? 1 : 0, BigInt(Math.abs(e)), exp);
  copy(sig, (se & 0x8000) | EXT_BIAS, m << BigInt(64 - bitLength(m)));
  return DONE;
}

/** FSCALE: a * 2^trunc(b). */
export function fscale(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, out: F80): number {
  const nan = checkNaNs(ctx, aSe, aM, bSe, bM, out);
  if (nan >= 0) return nan;
  const ka = classify(aSe, aM), kb = classify(bSe, bM);
  const bNeg = bSe >> 15;
  if (kb === Cls.INF) {
    if ((ka === Cls.ZERO && !bNeg) || (ka === Cls.INF && bNeg)) return invalid(ctx, out);
    if (denormalStops(ctx, ka)) return NO_RESULT;
    if (ka === Cls.ZERO || ka === Cls.INF) copy(out, aSe, aM);
    else if (bNeg) copy(out, aSe & 0x8000, 0n);
    else copy(out, (aSe & 0x8000) | 0x7fff, INT_BIT);
    return DONE;
  }
  if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
  if (ka === Cls.ZERO || ka === Cls.INF) {
    copy(out, aSe, aM);
    return DONE;
  }
  let n = 0;
  if (kb !== Cls.ZERO) {
    const eb = (bSe & 0x7fff) - EXT_BIAS;
    if (eb >= 17) n = 1 << 17;
    else if (eb >= 0) n = Number(bM >> BigInt(63 - eb));
    if (bNeg) n = -n;
  }
  roundToStack(ctx, aSe >> 15, aM, lsbExponent(aSe & 0x7fff) + n, false, out, 64);
  return DONE;
}

/** Quotient bits and completion of FPREM/FPREM1. */
export interface Remainder {
  /** Low three bits of the quotient (C0 = bit 2, C3 = bit 1, C1 = bit 0); -1: NaN/invalid, CCs kept. */
  q: number;
  /** C2: the reduction is incomplete. */
  partial: boolean;
}

/** FPREM (ieee false: truncating quotient) and FPREM1 (ieee true: round-to-nearest quotient). */
export function fprem(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, ieee: boolean, out: F80, rem: Remainder): number {
  rem.q = -1;
  rem.partial = false;
  const nan = checkNaNs(ctx, aSe, aM, bSe, bM, out);
  if (nan >= 0) return nan;
  const ka = classify(aSe, aM), kb = classify(bSe, bM);
  if (ka === Cls.INF || kb === Cls.ZERO) return invalid(ctx, out);
  if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
  rem.q = 0;
  const la = lsbExponent(aSe & 0x7fff), lb = lsbExponent(bSe & 0x7fff);
  const sa = aSe >> 15;
  if (ka === Cls.ZERO) {
    copy(out, aSe, aM);
    return DONE;
  }
  if (kb === Cls.INF) {
    // The remainder is the dividend, stored like any remainder: a pseudo-denormal in its normal
    // encoding (exponent 1), a denormal with unmasked UE as a bias-adjusted normal and UE.
    finishRemainder(ctx, sa, aM, la, out);
    return DONE;
  }
  const d = trueExponent(aSe, aM) - trueExponent(bSe, bM);
  if (d >= 64) {
    const n = 32 + (d & 31);
    // Divide by b * 2^(d - n): align both on a common last-bit exponent.
    const lbShifted = lb + (d - n);
    const c = Math.min(la, lbShifted);
    const A = aM << BigInt(la - c), B = bM << BigInt(lbShifted - c);
    const q = A / B;
    const r = A - q * B;
    rem.partial = true;
    rem.q = 0;
    finishRemainder(ctx, sa, r, c, out);
    return DONE;
  }
  const c = Math.min(la, lb);
  const A = aM << BigInt(la - c), B = bM << BigInt(lb - c);
  let q = A / B;
  let r = A - q * B;
  let sign = sa;
  if (ieee) {
    const twice = r << 1n;
    if (twice > B || (twice === B && (q & 1n) !== 0n)) {
      q += 1n;
      r = B - r;
      sign ^= 1;
    }
  }
  rem.q = Number(q & 7n);
  if (r === 0n) sign = sa;
  finishRemainder(ctx, sign, r, c, out);
  return DONE;
}

function finishRemainder(ctx: RoundContext, sign: number, r: bigint, e: number, out: F80): void {
  if (r === 0n) copy(out, sign << 15, 0n);
  else roundToStack(ctx, sign, r, e, false, out, 64);
}

/** Compare results: greater, less, equal, unordered. */
export const CMP_GT = 0, CMP_LT = 1, CMP_EQ = 2, CMP_UN = 3;

/** Compare a with b. `quiet` (FUCOM*): QNaNs compare unordered without IE. */
export function compare(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, quiet: boolean, bDenormal = false): number {
  const ka = classify(aSe, aM);
  let kb = classify(bSe, bM);
  if (bDenormal && kb === Cls.NORMAL) kb = Cls.DENORMAL;
  if (ka >= Cls.QNAN || kb >= Cls.QNAN) {
    if (!quiet || (ka !== Cls.QNAN && ka >= Cls.QNAN) || (kb !== Cls.QNAN && kb >= Cls.QNAN)) ctx.exc |= IE;
    return CMP_UN;
  }
  // A denormal operand raises DE; the comparison is still reported (unmasked DE only blocks a pop).
  if (ka === Cls.DENORMAL || kb === Cls.DENORMAL) ctx.exc |= DE;
  const sa = aSe >> 15, sb = bSe >> 15;
  if (ka === Cls.ZERO && kb === Cls.ZERO) return CMP_EQ;
  if (ka === Cls.ZERO) return sb ? CMP_GT : CMP_LT;
  if (kb === Cls.ZERO) return sa ? CMP_LT : CMP_GT;
  if (sa !== sb) return sa ? CMP_LT : CMP_GT;
  const mag = compareMagnitude(aSe, aM, ka, bSe, bM, kb);
  if (mag === 0) return CMP_EQ;
  return (mag > 0) !== (sa === 1) ? CMP_GT : CMP_LT;
}

function compareMagnitude(aSe: number, aM: bigint, ka: number, bSe: number, bM: bigint, kb: number): number {
  if (ka === Cls.INF || kb === Cls.INF) return ka === kb ? 0 : ka === Cls.INF ? 1 : -1;
  const ea = trueExponent(aSe, aM), eb = trueExponent(bSe, bM);
  if (ea !== eb) return ea > eb ? 1 : -1;
  const na = aM << BigInt(64 - bitLength(aM)), nb = bM << BigInt(64 - bitLength(bM));
  return na === nb ? 0 : na > nb ? 1 : -1;
}

/** FXAM class bits C3 C2 C0 (as status word bits 0x4000, 0x400, 0x100) of a register of class k (Cls). */
export function examineClass(empty: boolean, k: number): number {
  if (empty) return 0x4100;
  switch (k) {
    case Cls.UNSUPPORTED: return 0;
    case Cls.QNAN:
    case Cls.SNAN: return 0x100;
    case Cls.NORMAL: return 0x400;
    case Cls.INF: return 0x500;
    case Cls.ZERO: return 0x4000;
    default: return 0x4400;
  }
}
