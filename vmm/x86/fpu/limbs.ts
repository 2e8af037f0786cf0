// Fast paths of x87 add, subtract, multiply, compare, FRNDINT and classification on significands
// held as two 32-bit halves (JS numbers, no BigInt; see limbs-round.ts). They cover the common
// case only: normal (or zero) operands and a normal result. Anything else (denormal, NaN,
// infinity, unsupported operands; overflow or underflow) returns false with the rounding context
// untouched, and the caller runs the BigInt reference (arith.ts, ops.ts), which gives the same
// result wherever both apply.

import { Cls, PE, RC_DOWN, type RoundContext } from "./float80.js";
import { finish, INV32, isNormal, isZero, J, type Parts, R_INEXACT, R_UP, roundToInteger, TWO32 } from "./limbs-round.js";

export { newParts, type Parts } from "./limbs-round.js";

/** a + b (neg = 1: a - b). */
export function addParts(
  ctx: RoundContext, aSe: number, aHi: number, aLo: number, bSe: number, bHi: number, bLo: number, neg: number,
  out: Parts,
): boolean {
  let sa = aSe >>> 15, sb = (bSe >>> 15) ^ neg;
  if (!isNormal(aSe, aHi) || !isNormal(bSe, bHi)) {
    // x + 0 and 0 + x: x rounded to the precision control.
    if (isZero(bSe, bHi, bLo) && isNormal(aSe, aHi)) return finish(ctx, sa, aSe & 0x7fff, aHi, aLo, 0, out);
    if (isZero(aSe, aHi, aLo) && isNormal(bSe, bHi)) return finish(ctx, sb, bSe & 0x7fff, bHi, bLo, 0, out);
    return false;
  }
  aHi >>>= 0;
  aLo >>>= 0;
  bHi >>>= 0;
  bLo >>>= 0;
  let ea = aSe & 0x7fff, eb = bSe & 0x7fff;
  if (eb > ea || (eb === ea && (bHi > aHi || (bHi === aHi && bLo > aLo)))) {
    let t = ea; ea = eb; eb = t;
    t = aHi; aHi = bHi; bHi = t;
    t = aLo; aLo = bLo; bLo = t;
    t = sa; sa = sb; sb = t;
  }
  // Align b (the smaller magnitude) under a = aHi:aLo:0.
  const d = ea - eb;
  let b2: number, b1: number, b0: number;
  if (d === 0) {
    b2 = bHi; b1 = bLo; b0 = 0;
  } else if (d < 32) {
    b2 = bHi >>> d;
    b1 = ((bHi << (32 - d)) | (bLo >>> d)) >>> 0;
    b0 = (bLo << (32 - d)) >>> 0;
  } else if (d === 32) {
    b2 = 0; b1 = bHi; b0 = bLo;
  } else if (d < 64) {
    const s = d - 32;
    b2 = 0;
    b1 = bHi >>> s;
    b0 = ((bHi << (32 - s)) | (bLo >>> s) | ((bLo << (32 - s)) !== 0 ? 1 : 0)) >>> 0;
  } else if (d === 64) {
    b2 = 0; b1 = 0;
    b0 = (bHi | (bLo !== 0 ? 1 : 0)) >>> 0;
  } else if (d < 96) {
    const s = d - 64;
    b2 = 0; b1 = 0;
    b0 = (bHi >>> s) | ((bHi << (32 - s)) !== 0 || bLo !== 0 ? 1 : 0);
  } else {
    b2 = 0; b1 = 0; b0 = 1;
  }
  let x2: number, x1: number, x0: number, E = ea;
  if (sa === sb) {
    x0 = b0;
    x1 = aLo + b1;
    x2 = aHi + b2;
    if (x1 >= TWO32) {
      x1 -= TWO32;
      x2 += 1;
    }
    if (x2 >= TWO32) {
      // Carry out of bit 95: shift right by one, keeping a sticky bit.
      x2 -= TWO32;
      x0 = ((x1 << 31) | (x0 >>> 1) | (x0 & 1)) >>> 0;
      x1 = ((x2 << 31) | (x1 >>> 1)) >>> 0;
      x2 = (x2 >>> 1) | J;
      E += 1;
    }
    return finish(ctx, sa, E, x2 | 0, x1 | 0, x0 | 0, out);
  }
  x0 = b0 === 0 ? 0 : TWO32 - b0;
  x1 = aLo - b1 - (b0 === 0 ? 0 : 1);
  x2 = aHi - b2;
  if (x1 < 0) {
    x1 += TWO32;
    x2 -= 1;
  }
  if (x2 === 0) {
    if (x1 === 0 && x0 === 0) {
      // Exact cancellation: +0, or -0 when rounding down.
      out.se = ((ctx.cw >> 10) & 3) === RC_DOWN ? 0x8000 : 0;
      out.hi = 0;
      out.lo = 0;
      return true;
    }
    x2 = x1; x1 = x0; x0 = 0;
    E -= 32;
    if (x2 === 0) {
      x2 = x1; x1 = 0;
      E -= 32;
    }
  }
  const n = Math.clz32(x2);
  if (n !== 0) {
    x2 = (x2 << n) | (x1 >>> (32 - n));
    x1 = (x1 << n) | (x0 >>> (32 - n));
    x0 = x0 << n;
    E -= n;
  }
  return finish(ctx, sa, E, x2 | 0, x1 | 0, x0 | 0, out);
}

/** a * b. */
export function mulParts(
  ctx: RoundContext, aSe: number, aHi: number, aLo: number, bSe: number, bHi: number, bLo: number, out: Parts,
): boolean {
  const sign = (aSe ^ bSe) >>> 15;
  if (!isNormal(aSe, aHi) || !isNormal(bSe, bHi)) {
    const aOk = isNormal(aSe, aHi) || isZero(aSe, aHi, aLo), bOk = isNormal(bSe, bHi) || isZero(bSe, bHi, bLo);
    if (!aOk || !bOk) return false;
    out.se = sign << 15;
    out.hi = 0;
    out.lo = 0;
    return true;
  }
  // 64 x 64 -> 128 bits from four 32 x 32 products: the low half of each exactly (Math.imul), the
  // high half from the double product, whose error (< 2^11) is far below the rounding to 2^32.
  const ah = aHi >>> 0, al = aLo >>> 0, bh = bHi >>> 0, bl = bLo >>> 0;
  const l0 = Math.imul(aLo, bLo) >>> 0, h0 = ((al * bl - l0) * INV32 + 0.5) >>> 0;
  const l1 = Math.imul(aHi, bLo) >>> 0, h1 = ((ah * bl - l1) * INV32 + 0.5) >>> 0;
  const l2 = Math.imul(aLo, bHi) >>> 0, h2 = ((al * bh - l2) * INV32 + 0.5) >>> 0;
  const l3 = Math.imul(aHi, bHi) >>> 0, h3 = ((ah * bh - l3) * INV32 + 0.5) >>> 0;
  let c = h0 + l1 + l2;
  const p1 = c >>> 0;
  c = (c - p1) / TWO32 + h1 + h2 + l3;
  let x1 = c >>> 0;
  let x2 = (c - x1) / TWO32 + h3;
  let x0: number;
  let E = (aSe & 0x7fff) + (bSe & 0x7fff) - 16383;
  if (x2 >= J) {
    E += 1;
    x0 = p1 | (l0 !== 0 ? 1 : 0);
  } else {
    x2 = (x2 << 1) | (x1 >>> 31);
    x1 = (x1 << 1) | (p1 >>> 31);
    x0 = (p1 << 1) | (l0 >>> 31) | ((l0 << 1) !== 0 ? 1 : 0);
  }
  return finish(ctx, sign, E, x2 | 0, x1 | 0, x0 | 0, out);
}


/**
 * Compare a with b when both are normal or zero: CMP_GT 0, CMP_LT 1, CMP_EQ 2 (ops.ts's codes);
 * -1 for anything else (the BigInt compare decides NaNs, denormals and their flags).
 */
export function compareParts(aSe: number, aHi: number, aLo: number, bSe: number, bHi: number, bLo: number): number {
  const aZero = isZero(aSe, aHi, aLo), bZero = isZero(bSe, bHi, bLo);
  if ((!aZero && !isNormal(aSe, aHi)) || (!bZero && !isNormal(bSe, bHi))) return -1;
  const sa = aSe >>> 15, sb = bSe >>> 15;
  if (aZero) return bZero ? 2 : sb ? 0 : 1;
  if (bZero || sa !== sb) return sa ? 1 : 0;
  const ea = aSe & 0x7fff, eb = bSe & 0x7fff;
  let mag: number;
  if (ea !== eb) mag = ea > eb ? 1 : -1;
  else if (aHi !== bHi) mag = aHi >>> 0 > bHi >>> 0 ? 1 : -1;
  else if (aLo !== bLo) mag = aLo >>> 0 > bLo >>> 0 ? 1 : -1;
  else return 2;
  return (mag > 0) !== (sa === 1) ? 0 : 1;
}

/** FRNDINT of a normal or zero value: round to an integer under RC (PC does not apply). */
export function frndintParts(ctx: RoundContext, se: number, hi: number, lo: number, out: Parts): boolean {
  const e = se & 0x7fff, sign = se >>> 15;
  if (isZero(se, hi, lo) || (isNormal(se, hi) && e - 16383 >= 63)) {
    // Zeros and values without fraction bits are their own integers.
    out.se = se;
    out.hi = hi;
    out.lo = lo;
    return true;
  }
  if (!isNormal(se, hi)) return false;
  const flags = roundToInteger(out, sign, e - 16383, hi, lo, (ctx.cw >> 10) & 3);
  if (flags & R_INEXACT) ctx.exc |= PE;
  ctx.up = flags & R_UP ? 1 : 0;
  let ipHi = out.hi >>> 0, ipLo = out.lo >>> 0;
  if (ipHi === 0 && ipLo === 0) {
    out.se = sign << 15;
    return true;
  }
  // Normalize the integer: leading one to bit 63.
  let E = 16383 + 63;
  if (ipHi === 0) {
    ipHi = ipLo;
    ipLo = 0;
    E -= 32;
  }
  const n = Math.clz32(ipHi);
  if (n !== 0) {
    ipHi = (ipHi << n) | (ipLo >>> (32 - n));
    ipLo <<= n;
    E -= n;
  }
  out.se = (sign << 15) | E;
  out.hi = ipHi | 0;
  out.lo = ipLo | 0;
  return true;
}


/** `classify` (float80.ts) of a value given as int32 halves. */
export function classifyParts(se: number, hi: number, lo: number): number {
  const e = se & 0x7fff;
  if (e === 0) return hi === 0 && lo === 0 ? Cls.ZERO : Cls.DENORMAL;
  if (hi >= 0) return Cls.UNSUPPORTED;
  if (e !== 0x7fff) return Cls.NORMAL;
  if (hi === (J | 0) && lo === 0) return Cls.INF;
  return hi & 0x40000000 ? Cls.QNAN : Cls.SNAN;
}
