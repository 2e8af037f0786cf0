// Fast paths of the memory conversions on numbers (see limbs-round.ts): 32/64-bit reals and
// 16/32/64-bit integers to an 80-bit value, and 80-bit values to 32/64-bit reals and integers.
// Each covers the ordinary case and returns false, with nothing changed, where convert.ts (BigInt)
// must decide. Words and significand halves are int32, as in limbs-round.ts.

import { PE, type RoundContext } from "./float80.js";
import { J, type Parts, R_CARRY, R_INEXACT, R_UP, roundSig, roundToInteger, TWO32 } from "./limbs-round.js";

function zero(out: Parts, sign: number): true {
  out.se = sign;
  out.hi = 0;
  out.lo = 0;
  return true;
}

/** A normal or zero 64-bit real (low and high word) exactly; false for denormals, infinities, NaNs. */
export function f64Parts(lo: number, hi: number, out: Parts): boolean {
  const exp = (hi >>> 20) & 0x7ff, sign = (hi >>> 16) & 0x8000;
  if (exp === 0) return (hi & 0xfffff) === 0 && lo === 0 ? zero(out, sign) : false;
  if (exp === 0x7ff) return false;
  out.se = sign | (exp + 16383 - 1023);
  out.hi = J | ((hi & 0xfffff) << 11) | (lo >>> 21);
  out.lo = lo << 11;
  return true;
}

/** A normal or zero 32-bit real exactly; false for denormals, infinities, NaNs. */
export function f32Parts(bits: number, out: Parts): boolean {
  const exp = (bits >>> 23) & 0xff, sign = (bits >>> 16) & 0x8000;
  if (exp === 0) return (bits & 0x7fffff) === 0 ? zero(out, sign) : false;
  if (exp === 0xff) return false;
  out.se = sign | (exp + 16383 - 127);
  out.hi = J | ((bits & 0x7fffff) << 8);
  out.lo = 0;
  return true;
}

/** A 32-bit (or narrower) signed integer exactly. */
export function intParts(v: number, out: Parts): void {
  const sign = v < 0 ? 0x8000 : 0;
  const mag = Math.abs(v);
  if (mag === 0) {
    zero(out, sign);
    return;
  }
  const n = Math.clz32(mag);
  out.se = sign | (16383 + 31 - n);
  out.hi = mag << n;
  out.lo = 0;
}

/** A 64-bit signed integer (low and high word) exactly. */
export function int64Parts(lo: number, hi: number, out: Parts): void {
  const sign = hi < 0 ? 0x8000 : 0;
  let mh = hi >>> 0, ml = lo >>> 0;
  if (sign) {
    // Magnitude of the two's complement value.
    ml = TWO32 - ml;
    mh = 0xffffffff - mh;
    if (ml === TWO32) {
      ml = 0;
      mh += 1;
    }
  }
  if (mh === 0 && ml === 0) {
    zero(out, sign);
    return;
  }
  let E = 16383 + 63;
  if (mh === 0) {
    mh = ml;
    ml = 0;
    E -= 32;
  }
  const n = Math.clz32(mh);
  if (n !== 0) {
    mh = (mh << n) | (ml >>> (32 - n));
    ml <<= n;
    E -= n;
  }
  out.se = sign | E;
  out.hi = mh | 0;
  out.lo = ml | 0;
}

/**
 * FST m64 of a normal or zero register value whose rounded double is normal: the high word in
 * out.hi, the low word in out.lo. False, with ctx untouched, for everything else.
 */
export function storeF64Parts(ctx: RoundContext, se: number, hi: number, lo: number, out: Parts): boolean {
  const e = se & 0x7fff, sign = se >>> 15;
  if (e === 0) {
    if (hi !== 0 || lo !== 0) return false;
    out.hi = sign << 31;
    out.lo = 0;
    return true;
  }
  if (hi >= 0) return false;
  const flags = roundSig(out, sign, hi, lo, 0, 53, (ctx.cw >> 10) & 3);
  const exp = e - 16383 + 1023 + (flags & R_CARRY);
  if (exp <= 0 || exp >= 0x7ff) return false;
  if (flags & R_INEXACT) ctx.exc |= PE;
  ctx.up = flags & R_UP ? 1 : 0;
  const h = out.hi, l = out.lo;
  out.hi = (sign << 31) | (exp << 20) | ((h >>> 11) & 0xfffff);
  out.lo = (h << 21) | (l >>> 11);
  return true;
}

/** FST m32 of a normal or zero register value whose rounded single is normal: the word in out.lo. */
export function storeF32Parts(ctx: RoundContext, se: number, hi: number, lo: number, out: Parts): boolean {
  const e = se & 0x7fff, sign = se >>> 15;
  if (e === 0) {
    if (hi !== 0 || lo !== 0) return false;
    out.lo = sign << 31;
    return true;
  }
  if (hi >= 0) return false;
  const flags = roundSig(out, sign, hi, lo, 0, 24, (ctx.cw >> 10) & 3);
  const exp = e - 16383 + 127 + (flags & R_CARRY);
  if (exp <= 0 || exp >= 0xff) return false;
  if (flags & R_INEXACT) ctx.exc |= PE;
  ctx.up = flags & R_UP ? 1 : 0;
  out.lo = (sign << 31) | (exp << 23) | ((out.hi >>> 8) & 0x7fffff);
  return true;
}

/**
 * FIST/FISTP of a normal or zero register value under the rounding control: the two's complement
 * integer in out.hi:out.lo, for `bytes` = 2, 4 or 8. False, with ctx untouched, when the value is
 * special or the rounded integer does not fit (convert.ts raises IE there).
 */
export function fistParts(ctx: RoundContext, se: number, hi: number, lo: number, bytes: number, out: Parts): boolean {
  const e = se & 0x7fff, sign = se >>> 15;
  if (e === 0) {
    if (hi !== 0 || lo !== 0) return false;
    out.hi = 0;
    out.lo = 0;
    return true;
  }
  if (hi >= 0 || e === 0x7fff || e - 16383 > 62) return false;
  const flags = roundToInteger(out, sign, e - 16383, hi, lo, (ctx.cw >> 10) & 3);
  let ipHi = out.hi >>> 0, ipLo = out.lo >>> 0;
  // Range: up to 2^(8 bytes - 1) - 1, or 2^(...) for a negative value.
  if (bytes === 8) {
    if (ipHi > 0x80000000 || (ipHi === 0x80000000 && (ipLo !== 0 || sign === 0))) return false;
  } else {
    const limit = bytes === 4 ? 0x7fffffff : 0x7fff;
    if (ipHi !== 0 || ipLo > limit + sign) return false;
  }
  if (flags & R_INEXACT) ctx.exc |= PE;
  ctx.up = flags & R_UP ? 1 : 0;
  if (sign) {
    // Two's complement of the 64-bit magnitude.
    ipLo = TWO32 - ipLo;
    ipHi = 0xffffffff - ipHi;
    if (ipLo === TWO32) {
      ipLo = 0;
      ipHi += 1;
    }
  }
  out.hi = ipHi | 0;
  out.lo = ipLo | 0;
  return true;
}
