// x87 arithmetic on 80-bit operands: add, subtract, multiply, divide, square root, with the
// operand checks (unsupported formats, NaN propagation, invalid combinations, zero divide,
// denormal operands) in the order the P6 applies them.

import {
  bitLength, classify, Cls, DE, EXT, IE, INDEFINITE_M, lsbExponent, PC_BITS, QUIET_BIT, quiet,
  RC_DOWN, roundPack, type RoundContext, ZE,
} from "./float80.js";

/** An 80-bit value: sign and biased exponent in `se` (bit 15 sign), significand in `m`. */
export interface F80 {
  se: number;
  m: bigint;
}

export const newF80 = (se = 0, m = 0n): F80 => ({ se, m });

/** What an operation did: a result to store, or nothing (an unmasked exception stopped it). */
export const DONE = 0, NO_RESULT = 1;

export function setIndefinite(out: F80): void {
  out.se = 0xffff;
  out.m = INDEFINITE_M;
}

/** Raise IE; returns NO_RESULT when unmasked, else stores the indefinite. */
export function invalid(ctx: RoundContext, out: F80): number {
  ctx.exc |= IE;
  if (!(ctx.cw & IE)) return NO_RESULT;
  setIndefinite(out);
  return DONE;
}

/**
 * The NaN result of two operands at least one of which is a NaN (x87 rules): SNaN and QNaN give
 * the QNaN, two NaNs of the same kind give the one with the larger significand (quieted).
 */
function pickNaN(aSe: number, aM: bigint, ka: number, bSe: number, bM: bigint, kb: number, out: F80): void {
  const aNaN = ka === Cls.QNAN || ka === Cls.SNAN;
  const bNaN = kb === Cls.QNAN || kb === Cls.SNAN;
  let takeA: boolean;
  if (aNaN && bNaN && (ka === kb)) {
    const qa = quiet(aM), qb = quiet(bM);
    takeA = qa > qb || (qa === qb && aSe <= bSe);
  } else if (aNaN && bNaN) takeA = ka === Cls.QNAN;
  else takeA = aNaN;
  if (takeA) {
    out.se = aSe;
    out.m = quiet(aM);
  } else {
    out.se = bSe;
    out.m = quiet(bM);
  }
}

/**
 * Checks shared by two-operand arithmetic: unsupported formats and NaNs. Returns -1 when the
 * operation must go on, else DONE/NO_RESULT with `out` set.
 */
export function checkNaNs(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, out: F80): number {
  const ka = classify(aSe, aM), kb = classify(bSe, bM);
  if (ka < Cls.QNAN && kb < Cls.QNAN) return -1;
  if (ka === Cls.UNSUPPORTED || kb === Cls.UNSUPPORTED) return invalid(ctx, out);
  if (ka === Cls.SNAN || kb === Cls.SNAN) {
    ctx.exc |= IE;
    if (!(ctx.cw & IE)) return NO_RESULT;
  }
  pickNaN(aSe, aM, ka, bSe, bM, kb, out);
  return DONE;
}

/** One-operand version: unsupported → indefinite, SNaN → quieted, QNaN → itself. */
export function checkNaN1(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const k = classify(se, m);
  if (k < Cls.QNAN) return -1;
  if (k === Cls.UNSUPPORTED) return invalid(ctx, out);
  if (k === Cls.SNAN) {
    ctx.exc |= IE;
    if (!(ctx.cw & IE)) return NO_RESULT;
  }
  out.se = se;
  out.m = m | QUIET_BIT;
  return DONE;
}

/** Raise DE for a denormal operand; true when the (unmasked) exception stops the instruction. */
export function denormalStops(ctx: RoundContext, k: number): boolean {
  if (k !== Cls.DENORMAL) return false;
  ctx.exc |= DE;
  return (ctx.cw & DE) === 0;
}

/** Round the exact value to the PC precision and store it in out (register destination). */
export function roundToStack(ctx: RoundContext, sign: number, m: bigint, e: number, sticky: boolean, out: F80, prec = PC_BITS[(ctx.cw >> 8) & 3]): void {
  const p = ctx.packed;
  roundPack(ctx, EXT, prec, sign, m, e, sticky, true, p);
  out.se = (p.sign << 15) | p.exp;
  out.m = p.mant;
}

function zero(out: F80, sign: number): void {
  out.se = sign << 15;
  out.m = 0n;
}

function inf(out: F80, sign: number): void {
  out.se = (sign << 15) | 0x7fff;
  out.m = 1n << 63n;
}

/**
 * Classes of two operands; `den` marks operands widened from a 32/64-bit denormal (bit 0: a,
 * bit 1: b), which count as denormal operands although they are normal in 80 bits.
 */
function classes(aSe: number, aM: bigint, bSe: number, bM: bigint, den: number): number {
  let ka = classify(aSe, aM), kb = classify(bSe, bM);
  if (den & 1 && ka === Cls.NORMAL) ka = Cls.DENORMAL;
  if (den & 2 && kb === Cls.NORMAL) kb = Cls.DENORMAL;
  return ka | (kb << 4);
}

/** a + b (negB: a - b). */
export function add(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, negB: boolean, out: F80, den = 0): number {
  const nan = checkNaNs(ctx, aSe, aM, bSe, bM, out);
  if (nan >= 0) return nan;
  if (negB) bSe ^= 0x8000;
  const k = classes(aSe, aM, bSe, bM, den);
  const ka = k & 15, kb = k >> 4;
  const sa = aSe >> 15, sb = bSe >> 15;
  if (ka === Cls.INF || kb === Cls.INF) {
    if (ka === Cls.INF && kb === Cls.INF && sa !== sb) return invalid(ctx, out);
    if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
    inf(out, ka === Cls.INF ? sa : sb);
    return DONE;
  }
  if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
  if (ka === Cls.ZERO && kb === Cls.ZERO) {
    zero(out, sa === sb ? sa : ((ctx.cw >> 10) & 3) === RC_DOWN ? 1 : 0);
    return DONE;
  }
  let ea = lsbExponent(aSe & 0x7fff), eb = lsbExponent(bSe & 0x7fff);
  let ma = aM, mb = bM;
  if (ma === 0n) ea = eb;
  if (mb === 0n) eb = ea;
  // Align on the smaller exponent; a far smaller operand only matters as a sticky amount.
  if (ea < eb) return finishAdd(ctx, sb, mb, eb, sa, ma, ea, out);
  return finishAdd(ctx, sa, ma, ea, sb, mb, eb, out);
}

/** Sum of big (exponent ea >= eb) and small, rounded to the stack. */
function finishAdd(ctx: RoundContext, sa: number, ma: bigint, ea: number, sb: number, mb: bigint, eb: number, out: F80): number {
  const d = ea - eb;
  let a: bigint, b: bigint, e: number;
  if (d > 69 && mb !== 0n && ma !== 0n) {
    a = ma << 3n;
    b = 1n;
    e = ea - 3;
  } else {
    a = ma << BigInt(d);
    b = mb;
    e = eb;
  }
  const s = (sa ? -a : a) + (sb ? -b : b);
  if (s === 0n) {
    zero(out, ((ctx.cw >> 10) & 3) === RC_DOWN ? 1 : 0);
    return DONE;
  }
  roundToStack(ctx, s < 0n ? 1 : 0, s < 0n ? -s : s, e, false, out);
  return DONE;
}

export function mul(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, out: F80, den = 0): number {
  const nan = checkNaNs(ctx, aSe, aM, bSe, bM, out);
  if (nan >= 0) return nan;
  const k = classes(aSe, aM, bSe, bM, den);
  const ka = k & 15, kb = k >> 4;
  const sign = (aSe ^ bSe) >> 15;
  if (ka === Cls.INF || kb === Cls.INF) {
    if (ka === Cls.ZERO || kb === Cls.ZERO) return invalid(ctx, out);
    if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
    inf(out, sign);
    return DONE;
  }
  if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
  if (ka === Cls.ZERO || kb === Cls.ZERO) {
    zero(out, sign);
    return DONE;
  }
  roundToStack(ctx, sign, aM * bM, lsbExponent(aSe & 0x7fff) + lsbExponent(bSe & 0x7fff), false, out);
  return DONE;
}

/** a / b. */
export function div(ctx: RoundContext, aSe: number, aM: bigint, bSe: number, bM: bigint, out: F80, den = 0): number {
  const nan = checkNaNs(ctx, aSe, aM, bSe, bM, out);
  if (nan >= 0) return nan;
  const k = classes(aSe, aM, bSe, bM, den);
  const ka = k & 15, kb = k >> 4;
  const sign = (aSe ^ bSe) >> 15;
  if (ka === Cls.INF) {
    if (kb === Cls.INF) return invalid(ctx, out);
    if (denormalStops(ctx, kb)) return NO_RESULT;
    inf(out, sign);
    return DONE;
  }
  if (kb === Cls.INF) {
    if (denormalStops(ctx, ka)) return NO_RESULT;
    zero(out, sign);
    return DONE;
  }
  if (kb === Cls.ZERO) {
    if (ka === Cls.ZERO) return invalid(ctx, out);
    ctx.exc |= ZE;
    if (!(ctx.cw & ZE)) return NO_RESULT;
    inf(out, sign);
    return DONE;
  }
  if (denormalStops(ctx, ka) || denormalStops(ctx, kb)) return NO_RESULT;
  if (ka === Cls.ZERO) {
    zero(out, sign);
    return DONE;
  }
  const num = aM << 130n;
  const q = num / bM;
  const sticky = q * bM !== num;
  roundToStack(ctx, sign, q, lsbExponent(aSe & 0x7fff) - lsbExponent(bSe & 0x7fff) - 130, sticky, out);
  return DONE;
}

/** Integer square root (floor) of n >= 0. */
export function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt((bitLength(n) + 1) >> 1);
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

export function sqrt(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const nan = checkNaN1(ctx, se, m, out);
  if (nan >= 0) return nan;
  const k = classify(se, m);
  const sign = se >> 15;
  if (k === Cls.ZERO) {
    zero(out, sign);
    return DONE;
  }
  if (sign) return invalid(ctx, out);
  if (k === Cls.INF) {
    inf(out, 0);
    return DONE;
  }
  if (denormalStops(ctx, k)) return NO_RESULT;
  let e = lsbExponent(se & 0x7fff);
  let v = m;
  if (e & 1) {
    v <<= 1n;
    e -= 1;
  }
  v <<= 200n;
  e -= 200;
  const r = isqrt(v);
  roundToStack(ctx, 0, r, e / 2, r * r !== v, out);
  return DONE;
}
