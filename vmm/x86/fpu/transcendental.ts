// The x87 transcendental functions on 80-bit operands: F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN,
// FSIN, FCOS, FSINCOS. Each is evaluated with ~200-bit BigFloat arithmetic (exact argument
// reduction with a 480-bit pi) and rounded once to 64 bits, so results are correctly rounded
// except in astronomically rare near-halfway cases; special operands follow the SDM tables.

import { checkNaN1, checkNaNs, denormalStops, DONE, type F80, invalid, NO_RESULT, roundToStack } from "./arith.js";
import * as B from "./bigfloat.js";
import { classify, Cls, EXT_BIAS, INT_BIT, PE, type RoundContext, UE, ZE } from "./float80.js";

/** Returned by the trigonometric functions when |x| >= 2^63 (C2 = 1, operand unchanged). */
export const OUT_OF_RANGE = 2;

/** Round a BigFloat approximation (inexact unless `exact`) to the stack format, 64 bits. */
function round(ctx: RoundContext, v: B.BigFloat, exact: boolean, out: F80): void {
  if (v.m === 0n) {
    out.se = 0;
    out.m = 0n;
    return;
  }
  const negative = v.m < 0n;
  roundToStack(ctx, negative ? 1 : 0, negative ? -v.m : v.m, v.e, !exact, out, 64);
}

function set(out: F80, se: number, m: bigint): void {
  out.se = se;
  out.m = m;
}

const ONE_SE = 0x3fff;

/** 2^x - 1 for -1 <= x <= 1 (outside: computed the same way; the SDM leaves it undefined). */
export function f2xm1(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const nan = checkNaN1(ctx, se, m, out);
  if (nan >= 0) return nan;
  const k = classify(se, m);
  if (k === Cls.ZERO) return set(out, se, m), DONE;
  if (k === Cls.INF) {
    if (se & 0x8000) set(out, 0x8000 | ONE_SE, INT_BIT);
    else set(out, se, m);
    return DONE;
  }
  if (denormalStops(ctx, k)) return NO_RESULT;
  const x = B.fromF80(se, m);
  const e = B.magnitude(x);
  if (e >= 0 && B.cmp(B.abs(x), B.ONE) === 0) {
    round(ctx, se & 0x8000 ? B.bf(-1n, -1) : B.ONE, true, out);
    return DONE;
  }
  if (e > 14) {
    // Far outside the architectural range: 2^x - 1 saturates.
    if (se & 0x8000) set(out, 0x8000 | ONE_SE, INT_BIT);
    else roundToStack(ctx, 0, 1n, 1 << 15, false, out, 64);
    return DONE;
  }
  if (e >= 0) {
    const ax = B.abs(x);
    const whole = Number(ax.m >> BigInt(-ax.e)) * (x.m < 0n ? -1 : 1);
    // 2^x - 1 = 2^n * 2^f - 1 with |f| < 1.
    const f = B.sub(x, B.fromInt(whole));
    const twoF = B.add(B.ONE, B.expm1(B.mul(f, B.LN2)));
    round(ctx, B.sub(B.ldexp(twoF, whole), B.ONE), false, out);
    return DONE;
  }
  round(ctx, B.expm1(B.mul(x, B.LN2)), false, out);
  return DONE;
}

/** log2 of a positive finite x as a BigFloat, and whether it is exact (x a power of two). */
function log2(se: number, m: bigint): { v: B.BigFloat; exact: boolean } {
  const x = B.fromF80(se, m);
  let e = B.magnitude(x);
  let mant = B.ldexp(x, -e); // [1, 2)
  if (mant.m === 1n << BigInt(B.PRECISION - 1)) return { v: B.fromInt(e), exact: true };
  if (B.cmp(mant, B.bf(0xb504f333f9de6484n, -63)) > 0) {
    mant = B.ldexp(mant, -1);
    e += 1;
  }
  const frac = B.div(B.ln1p(B.sub(mant, B.ONE)), B.LN2);
  return { v: B.add(B.fromInt(e), frac), exact: false };
}

/** FYL2X: y * log2(x) (x = ST(0), y = ST(1)). */
export function fyl2x(ctx: RoundContext, xSe: number, xM: bigint, ySe: number, yM: bigint, out: F80): number {
  const nan = checkNaNs(ctx, xSe, xM, ySe, yM, out);
  if (nan >= 0) return nan;
  const kx = classify(xSe, xM), ky = classify(ySe, yM);
  const xNeg = xSe >> 15, yNeg = ySe >> 15;
  if (xNeg && kx !== Cls.ZERO) return invalid(ctx, out);
  if (kx === Cls.ZERO) {
    if (ky === Cls.ZERO) return invalid(ctx, out);
    if (ky !== Cls.INF) {
      ctx.exc |= ZE;
      if (!(ctx.cw & ZE)) return NO_RESULT;
    }
    set(out, ((yNeg ^ 1) << 15) | 0x7fff, INT_BIT);
    return DONE;
  }
  if (kx === Cls.INF) {
    if (ky === Cls.ZERO) return invalid(ctx, out);
    if (denormalStops(ctx, ky)) return NO_RESULT;
    set(out, (yNeg << 15) | 0x7fff, INT_BIT);
    return DONE;
  }
  if (denormalStops(ctx, kx) || denormalStops(ctx, ky)) return NO_RESULT;
  const { v, exact } = log2(xSe, xM);
  const sign = v.m < 0n ? 1 : 0; // log2(x) < 0 for x < 1
  if (ky === Cls.INF) {
    if (v.m === 0n) return invalid(ctx, out);
    set(out, ((yNeg ^ sign) << 15) | 0x7fff, INT_BIT);
    return DONE;
  }
  if (ky === Cls.ZERO || v.m === 0n) {
    set(out, (v.m === 0n ? yNeg : yNeg ^ sign) << 15, 0n);
    return DONE;
  }
  round(ctx, B.mul(v, B.fromF80(ySe, yM)), exact, out);
  // Even an exact y * log2(2^n) counts as inexact (as the host reports): PE, and UE when tiny.
  ctx.exc |= PE;
  if (exact && (out.se & 0x7fff) === 0 && out.m !== 0n && ctx.cw & UE) ctx.exc |= UE;
  return DONE;
}

/** FYL2XP1: y * log2(x + 1) (x = ST(0), y = ST(1)). */
export function fyl2xp1(ctx: RoundContext, xSe: number, xM: bigint, ySe: number, yM: bigint, out: F80): number {
  const nan = checkNaNs(ctx, xSe, xM, ySe, yM, out);
  if (nan >= 0) return nan;
  const kx = classify(xSe, xM), ky = classify(ySe, yM);
  const xNeg = xSe >> 15, yNeg = ySe >> 15;
  if (kx === Cls.ZERO) {
    if (ky === Cls.INF) return invalid(ctx, out);
    if (denormalStops(ctx, ky)) return NO_RESULT;
    set(out, (xNeg ^ yNeg) << 15, 0n);
    return DONE;
  }
  const x = kx === Cls.INF ? null : B.fromF80(xSe, xM);
  if (x === null || (xNeg && B.cmp(B.abs(x), B.ONE) >= 0)) {
    if (x === null && !xNeg) {
      if (ky === Cls.ZERO) return invalid(ctx, out);
      if (denormalStops(ctx, ky)) return NO_RESULT;
      set(out, (yNeg << 15) | 0x7fff, INT_BIT);
      return DONE;
    }
    return invalid(ctx, out);
  }
  if (denormalStops(ctx, kx) || denormalStops(ctx, ky)) return NO_RESULT;
  const sign = xNeg;
  if (ky === Cls.INF) {
    set(out, ((yNeg ^ sign) << 15) | 0x7fff, INT_BIT);
    return DONE;
  }
  if (ky === Cls.ZERO) {
    set(out, (yNeg ^ sign) << 15, 0n);
    return DONE;
  }
  const l = B.div(B.ln1p(x), B.LN2);
  round(ctx, B.mul(l, B.fromF80(ySe, yM)), false, out);
  return DONE;
}

/** |x| >= 2^63: the trigonometric instructions leave the operand alone and set C2. */
function outOfRange(se: number): boolean {
  return (se & 0x7fff) - EXT_BIAS >= 63;
}

/** Reduce x by multiples of pi/2: returns the quadrant (mod 4) and the remainder in [-pi/4, pi/4]. */
function reduce(x: B.BigFloat): { k: number; r: B.BigFloat } {
  if (B.cmp(B.abs(x), B.ldexp(B.HALF_PI, -1)) <= 0) return { k: 0, r: x };
  const shift = x.e + B.PI_BITS;
  const X = shift >= 0 ? x.m << BigInt(shift) : x.m >> BigInt(-shift);
  const H = B.PI_FIXED >> 1n;
  const negative = X < 0n;
  const ax = negative ? -X : X;
  let k = (2n * ax + H) / (2n * H);
  let R = ax - k * H;
  if (negative) {
    R = -R;
    k = -k;
  }
  return { k: Number(((k % 4n) + 4n) % 4n), r: B.bf(R, -B.PI_BITS) };
}

function sinOf(q: number, r: B.BigFloat): B.BigFloat {
  switch (q) {
    case 0: return B.sinSeries(r);
    case 1: return B.cosSeries(r);
    case 2: return B.neg(B.sinSeries(r));
    default: return B.neg(B.cosSeries(r));
  }
}

function cosOf(q: number, r: B.BigFloat): B.BigFloat {
  return sinOf((q + 1) & 3, r);
}

/** Checks shared by FSIN/FCOS/FSINCOS/FPTAN: -1 to go on with a finite nonzero x. */
function trigChecks(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const nan = checkNaN1(ctx, se, m, out);
  if (nan >= 0) return nan;
  const k = classify(se, m);
  if (k === Cls.INF) return invalid(ctx, out);
  if (k !== Cls.ZERO && outOfRange(se)) return OUT_OF_RANGE;
  if (denormalStops(ctx, k)) return NO_RESULT;
  return -1;
}

export function fsin(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const pre = trigChecks(ctx, se, m, out);
  if (pre >= 0) return pre;
  if (m === 0n) return set(out, se, m), DONE;
  const { k, r } = reduce(B.fromF80(se, m));
  round(ctx, sinOf(k, r), false, out);
  return DONE;
}

export function fcos(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const pre = trigChecks(ctx, se, m, out);
  if (pre >= 0) return pre;
  if (m === 0n) return set(out, ONE_SE, INT_BIT), DONE;
  const { k, r } = reduce(B.fromF80(se, m));
  round(ctx, cosOf(k, r), false, out);
  return DONE;
}

/** FSINCOS: sine into `sinOut`, cosine into `cosOut`. */
export function fsincos(ctx: RoundContext, se: number, m: bigint, sinOut: F80, cosOut: F80): number {
  const pre = trigChecks(ctx, se, m, sinOut);
  if (pre >= 0) {
    set(cosOut, sinOut.se, sinOut.m);
    return pre;
  }
  if (m === 0n) {
    set(sinOut, se, m);
    set(cosOut, ONE_SE, INT_BIT);
    return DONE;
  }
  const { k, r } = reduce(B.fromF80(se, m));
  round(ctx, sinOf(k, r), false, sinOut);
  const up = ctx.up;
  round(ctx, cosOf(k, r), false, cosOut);
  ctx.up |= up;
  return DONE;
}

/** FPTAN: tan(x) into out (the caller pushes 1.0). */
export function fptan(ctx: RoundContext, se: number, m: bigint, out: F80): number {
  const pre = trigChecks(ctx, se, m, out);
  if (pre >= 0) return pre;
  if (m === 0n) return set(out, se, m), DONE;
  const { k, r } = reduce(B.fromF80(se, m));
  if (k === 0 && B.magnitude(r) < -80) {
    // tan r = r + r^3/3 + O(r^5): summed last, so the tiny correction keeps its direction.
    round(ctx, B.add(r, B.divInt(B.mul(B.mul(r, r), r), 3)), false, out);
    return DONE;
  }
  const s = B.sinSeries(r), c = B.cosSeries(r);
  round(ctx, k & 1 ? B.neg(B.div(c, s)) : B.div(s, c), false, out);
  return DONE;
}

/** FPATAN: atan2(y, x) with y = ST(1), x = ST(0). */
export function fpatan(ctx: RoundContext, xSe: number, xM: bigint, ySe: number, yM: bigint, out: F80): number {
  const nan = checkNaNs(ctx, xSe, xM, ySe, yM, out);
  if (nan >= 0) return nan;
  const kx = classify(xSe, xM), ky = classify(ySe, yM);
  if (denormalStops(ctx, kx) || denormalStops(ctx, ky)) return NO_RESULT;
  const xNeg = xSe >> 15, yNeg = ySe >> 15;
  const withSign = (v: B.BigFloat): B.BigFloat => (yNeg ? B.neg(v) : v);
  if (ky === Cls.ZERO) {
    if (xNeg) round(ctx, withSign(B.PI), false, out);
    else set(out, ySe & 0x8000, 0n);
    return DONE;
  }
  if (ky === Cls.INF) {
    if (kx === Cls.INF) round(ctx, withSign(xNeg ? B.mul(B.PI, B.bf(3n, -2)) : B.ldexp(B.PI, -2)), false, out);
    else round(ctx, withSign(B.HALF_PI), false, out);
    return DONE;
  }
  if (kx === Cls.INF) {
    if (xNeg) round(ctx, withSign(B.PI), false, out);
    else set(out, ySe & 0x8000, 0n);
    return DONE;
  }
  if (kx === Cls.ZERO) {
    round(ctx, withSign(B.HALF_PI), false, out);
    return DONE;
  }
  const x = B.fromF80(xSe, xM), y = B.fromF80(ySe, yM);
  let v = B.atan(B.div(B.abs(y), B.abs(x)));
  if (xNeg) v = B.sub(B.PI, v);
  round(ctx, withSign(v), false, out);
  return DONE;
}
