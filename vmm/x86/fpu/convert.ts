// Conversions between the 80-bit register format and the memory formats of the x87: 32/64-bit
// reals, 16/32/64-bit integers and 18-digit packed BCD, with their exceptions.

import { DONE, type F80, NO_RESULT } from "./arith.js";
import {
  bitLength, classify, Cls, DBL, DE, EXT_BIAS, type Format, IE, INT_BIT, lsbExponent, QUIET_BIT, roundAt,
  roundPack, type RoundContext, SGL,
} from "./float80.js";

/** Store the integer (-1)^sign * mag exactly. */
export function fromInteger(sign: number, mag: bigint, out: F80): void {
  if (mag === 0n) {
    out.se = sign << 15;
    out.m = 0n;
    return;
  }
  const len = bitLength(mag);
  out.se = (sign << 15) | (EXT_BIAS + len - 1);
  out.m = mag << BigInt(64 - len);
}

/**
 * Load a 32/64-bit real given as sign, biased exponent field and fraction field. Returns DONE or
 * NO_RESULT (an SNaN with IE unmasked: nothing is loaded). A denormal raises DE but loads.
 */
function loadReal(ctx: RoundContext, f: Format, sign: number, exp: number, frac: bigint, out: F80): number {
  const fracBits = BigInt(f.bits - 1);
  const maxExp = 2 * f.bias + 1;
  if (exp === maxExp) {
    if (frac === 0n) {
      out.se = (sign << 15) | 0x7fff;
      out.m = INT_BIT;
      return DONE;
    }
    const m = INT_BIT | (frac << (63n - fracBits));
    if ((m & QUIET_BIT) === 0n) {
      ctx.exc |= IE;
      if (!(ctx.cw & IE)) return NO_RESULT;
    }
    out.se = (sign << 15) | 0x7fff;
    out.m = m | QUIET_BIT;
    return DONE;
  }
  if (exp === 0) {
    if (frac === 0n) {
      out.se = sign << 15;
      out.m = 0n;
      return DONE;
    }
    ctx.exc |= DE;
    const len = bitLength(frac);
    out.se = (sign << 15) | (f.minLsb + len - 1 + EXT_BIAS);
    out.m = frac << BigInt(64 - len);
    return DONE;
  }
  out.se = (sign << 15) | (exp - f.bias + EXT_BIAS);
  out.m = (INT_BIT | (frac << (63n - fracBits)));
  return DONE;
}

/**
 * The exact 80-bit value of a 32/64-bit real, SNaNs kept signaling (operands of arithmetic, whose
 * NaN rules need the original kind). Returns true when the source was a denormal.
 */
function widenReal(f: Format, sign: number, exp: number, frac: bigint, out: F80): boolean {
  const fracBits = BigInt(f.bits - 1);
  if (exp === 2 * f.bias + 1) {
    out.se = (sign << 15) | 0x7fff;
    out.m = INT_BIT | (frac << (63n - fracBits));
    return false;
  }
  if (exp === 0) {
    if (frac === 0n) {
      out.se = sign << 15;
      out.m = 0n;
      return false;
    }
    const len = bitLength(frac);
    out.se = (sign << 15) | (f.minLsb + len - 1 + EXT_BIAS);
    out.m = frac << BigInt(64 - len);
    return true;
  }
  out.se = (sign << 15) | (exp - f.bias + EXT_BIAS);
  out.m = INT_BIT | (frac << (63n - fracBits));
  return false;
}

export function widenF32(bits: number, out: F80): boolean {
  return widenReal(SGL, bits >>> 31, (bits >>> 23) & 0xff, BigInt(bits & 0x7fffff), out);
}

export function widenF64(lo: number, hi: number, out: F80): boolean {
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo >>> 0);
  return widenReal(DBL, hi >>> 31, (hi >>> 20) & 0x7ff, frac, out);
}

export function loadF32(ctx: RoundContext, bits: number, out: F80): number {
  return loadReal(ctx, SGL, bits >>> 31, (bits >>> 23) & 0xff, BigInt(bits & 0x7fffff), out);
}

export function loadF64(ctx: RoundContext, lo: number, hi: number, out: F80): number {
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo >>> 0);
  return loadReal(ctx, DBL, hi >>> 31, (hi >>> 20) & 0x7ff, frac, out);
}

/**
 * Convert an 80-bit value to a 32/64-bit real: returns the bit pattern as a BigInt, or -1n when
 * an unmasked exception suppresses the store.
 */
function storeReal(ctx: RoundContext, f: Format, se: number, m: bigint): bigint {
  const k = classify(se, m);
  const sign = BigInt(se >> 15);
  const fracBits = BigInt(f.bits - 1);
  const expShift = fracBits;
  const signShift = BigInt(f.bits - 1 + (f === SGL ? 8 : 11));
  const maxExp = BigInt(2 * f.bias + 1);
  const nanOf = (mm: bigint): bigint =>
    (sign << signShift) | (maxExp << expShift) | ((mm & ~INT_BIT) >> (63n - fracBits));
  switch (k) {
    case Cls.UNSUPPORTED:
      ctx.exc |= IE;
      if (!(ctx.cw & IE)) return -1n;
      return (1n << signShift) | (maxExp << expShift) | (1n << (fracBits - 1n));
    case Cls.SNAN:
      ctx.exc |= IE;
      if (!(ctx.cw & IE)) return -1n;
      return nanOf(m | QUIET_BIT);
    case Cls.QNAN:
      return nanOf(m);
    case Cls.INF:
      return (sign << signShift) | (maxExp << expShift);
    case Cls.ZERO:
      return sign << signShift;
  }
  // A denormal source does not raise DE on a store (the host agrees).
  const p = ctx.packed;
  roundPack(ctx, f, f.bits, se >> 15, m, lsbExponent(se & 0x7fff), false, false, p);
  if (p.trap) return -1n;
  const frac = p.mant & ((1n << fracBits) - 1n);
  return (sign << signShift) | (BigInt(p.exp) << expShift) | frac;
}

/** FST m32: the single-precision bit pattern, or -1 when nothing is stored. */
export function storeF32(ctx: RoundContext, se: number, m: bigint): number {
  const v = storeReal(ctx, SGL, se, m);
  return v < 0n ? -1 : Number(v);
}

/** FST m64: the double-precision bit pattern (BigInt), or -1n when nothing is stored. */
export function storeF64(ctx: RoundContext, se: number, m: bigint): bigint {
  return storeReal(ctx, DBL, se, m);
}

/**
 * Round to a signed integer of `bits` bits under the rounding control (FIST, FBSTP use `limit`).
 * Returns the integer, or null when the result is invalid (IE raised; caller stores the
 * indefinite if masked).
 */
export function toInteger(ctx: RoundContext, se: number, m: bigint, limit: bigint, negLimit: bigint): bigint | null {
  const k = classify(se, m);
  if (k === Cls.UNSUPPORTED || k === Cls.SNAN || k === Cls.QNAN || k === Cls.INF) {
    ctx.exc |= IE;
    return null;
  }
  if (k === Cls.ZERO) return 0n;
  const sign = se >> 15;
  const unbiased = (se & 0x7fff) - EXT_BIAS;
  if (unbiased > 66) {
    ctx.exc |= IE;
    return null;
  }
  const rc = (ctx.cw >> 10) & 3;
  const r = roundAt(ctx, sign, m, lsbExponent(se & 0x7fff), false, 0, rc);
  if (sign ? r > negLimit : r > limit) {
    ctx.exc |= IE;
    return null;
  }
  if (ctx.inexact) ctx.exc |= 0x20;
  ctx.up = ctx.roundUp ? 1 : 0;
  return sign ? -r : r;
}

/** FBLD: ten bytes of packed BCD (18 digits, sign in bit 7 of byte 9). */
export function loadBcd(bytes: ArrayLike<number>, out: F80): void {
  let v = 0n;
  for (let j = 8; j >= 0; j--) {
    const b = bytes[j];
    v = v * 100n + BigInt(((b >> 4) & 15) * 10 + (b & 15));
  }
  fromInteger(bytes[9] >> 7, v, out);
}

const BCD_LIMIT = 999999999999999999n;

/** FBSTP: writes ten bytes into `bytes`; returns false when nothing is stored (unmasked IE). */
export function storeBcd(ctx: RoundContext, se: number, m: bigint, bytes: Uint8Array): boolean {
  const v = toInteger(ctx, se, m, BCD_LIMIT, BCD_LIMIT);
  if (v === null) {
    if (!(ctx.cw & IE)) return false;
    bytes.fill(0);
    bytes[7] = 0xc0;
    bytes[8] = 0xff;
    bytes[9] = 0xff;
    return true;
  }
  let mag = v < 0n ? -v : v;
  for (let j = 0; j < 9; j++) {
    const two = Number(mag % 100n);
    mag /= 100n;
    bytes[j] = ((two / 10) | 0) * 16 + (two % 10);
  }
  bytes[9] = se & 0x8000 ? 0x80 : 0;
  return true;
}
