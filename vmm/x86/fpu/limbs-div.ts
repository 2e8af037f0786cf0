// Fast paths of x87 divide and square root on significands held as two 32-bit halves (see
// limbs-round.ts): long division in 32-bit digits estimated in doubles and corrected on the exact
// remainder, and an integer square root refined on the exact remainder. Normal operands only;
// anything else returns false (ctx untouched) for the BigInt reference (arith.ts).

import type { RoundContext } from "./float80.js";
import { finish, INV32, isNormal, isZero, J, type Parts, TWO32 } from "./limbs-round.js";

/**
 * One 32-bit digit of long division: floor(R * 2^32 / B) for R < B (both 64-bit, unsigned halves),
 * estimated in doubles (off by at most one) and corrected on the exact remainder, which goes to
 * out.hi/out.lo. Returns the digit.
 */
function divDigit(rHi: number, rLo: number, bHi: number, bLo: number, bApprox: number, out: Parts): number {
  let d = Math.floor(((rHi * TWO32 + rLo) * TWO32) / bApprox);
  if (d > 0xffffffff) d = 0xffffffff;
  // d * B as p2:p1:p0, then R * 2^32 - d * B.
  const l0 = Math.imul(d, bLo) >>> 0, h0 = Math.round((d * bLo - l0) / TWO32);
  const l1 = Math.imul(d, bHi) >>> 0, h1 = Math.round((d * bHi - l1) / TWO32);
  const c = h0 + l1;
  const p1 = c >>> 0;
  const p2 = (c - p1) / TWO32 + h1;
  let r0 = -l0, r1 = rLo - p1, r2 = rHi - p2;
  if (r0 < 0) {
    r0 += TWO32;
    r1 -= 1;
  }
  if (r1 < 0) {
    r1 += TWO32;
    r2 -= 1;
  }
  while (r2 < 0) {
    d -= 1;
    r0 += bLo;
    if (r0 >= TWO32) {
      r0 -= TWO32;
      r1 += 1;
    }
    r1 += bHi;
    if (r1 >= TWO32) {
      r1 -= TWO32;
      r2 += 1;
    }
  }
  while (r2 > 0 || r1 > bHi || (r1 === bHi && r0 >= bLo)) {
    d += 1;
    r0 -= bLo;
    if (r0 < 0) {
      r0 += TWO32;
      r1 -= 1;
    }
    r1 -= bHi;
    if (r1 < 0) {
      r1 += TWO32;
      r2 -= 1;
    }
  }
  out.hi = r1 | 0;
  out.lo = r0 | 0;
  return d;
}

/** a / b. */
export function divParts(
  ctx: RoundContext, aSe: number, aHi: number, aLo: number, bSe: number, bHi: number, bLo: number, out: Parts,
): boolean {
  const sign = (aSe ^ bSe) >>> 15;
  if (!isNormal(bSe, bHi)) return false;
  if (!isNormal(aSe, aHi)) {
    if (!isZero(aSe, aHi, aLo)) return false;
    out.se = sign << 15;
    out.hi = 0;
    out.lo = 0;
    return true;
  }
  aHi >>>= 0;
  aLo >>>= 0;
  bHi >>>= 0;
  bLo >>>= 0;
  // Quotient 1.d1 d2 (65 bits) of A' / B with A' = A or 2A so that B <= A' < 2B; R = A' - B.
  let E = (aSe & 0x7fff) - (bSe & 0x7fff) + 16383;
  let rHi: number, rLo: number;
  if (aHi > bHi || (aHi === bHi && aLo >= bLo)) {
    rLo = aLo - bLo;
    rHi = aHi - bHi;
  } else {
    // 2A - B = A - (B - A), all in range.
    let gLo = bLo - aLo, gHi = bHi - aHi;
    if (gLo < 0) {
      gLo += TWO32;
      gHi -= 1;
    }
    rLo = aLo - gLo;
    rHi = aHi - gHi;
    E -= 1;
  }
  if (rLo < 0) {
    rLo += TWO32;
    rHi -= 1;
  }
  const bApprox = bHi * TWO32 + bLo;
  const d1 = divDigit(rHi, rLo, bHi, bLo, bApprox, out);
  const d2 = divDigit(out.hi >>> 0, out.lo >>> 0, bHi, bLo, bApprox, out);
  const sticky = out.hi !== 0 || out.lo !== 0 ? 1 : 0;
  return finish(ctx, sign, E, J | (d1 >>> 1), (d1 << 31) | (d2 >>> 1), (d2 << 31) | sticky, out);
}

/**
 * Square root of a positive normal (or zero) operand. The root Y = floor(sqrt(N)) of the 128-bit
 * N = significand * 2^63 (2^64 for an odd exponent) starts from the double estimate and takes
 * Newton corrections on the exact remainder N - Y^2 until 0 <= N - Y^2 <= 2Y; the remainder then
 * decides the rounding (the root of an integer is never exactly halfway).
 */
export function sqrtParts(ctx: RoundContext, se: number, hi: number, lo: number, out: Parts): boolean {
  if (isZero(se, hi, lo)) {
    out.se = se;
    out.hi = 0;
    out.lo = 0;
    return true;
  }
  if (se >>> 15 !== 0 || !isNormal(se, hi)) return false;
  const mh = hi >>> 0, ml = lo >>> 0;
  const u = (se & 0x7fff) - 16383, odd = u & 1;
  let n3: number, n2: number, n1: number;
  if (odd) {
    n3 = mh; n2 = ml; n1 = 0;
  } else {
    n3 = mh >>> 1;
    n2 = ((mh << 31) | (ml >>> 1)) >>> 0;
    n1 = (ml << 31) >>> 0;
  }
  let y = Math.sqrt((mh * TWO32 + ml) * (odd ? 2 ** 64 : 2 ** 63));
  if (y >= 2 ** 64) y = 2 ** 64 - 2048;
  let yHi = Math.floor(y * INV32), yLo = y - yHi * TWO32;
  for (let iteration = 0; iteration < 8; iteration++) {
    // S = Y^2 as s3:s2:s1:s0.
    const l0 = Math.imul(yLo, yLo) >>> 0, h0 = ((yLo * yLo - l0) * INV32 + 0.5) >>> 0;
    const l1 = Math.imul(yHi, yLo) >>> 0, h1 = ((yHi * yLo - l1) * INV32 + 0.5) >>> 0;
    const l3 = Math.imul(yHi, yHi) >>> 0, h3 = ((yHi * yHi - l3) * INV32 + 0.5) >>> 0;
    let c = h0 + 2 * l1;
    const s1 = c >>> 0;
    c = (c - s1) * INV32 + 2 * h1 + l3;
    const s2 = c >>> 0;
    const s3 = (c - s2) * INV32 + h3;
    // D = N - S, limbs d3 (signed) d2 d1 d0.
    let d0 = -l0, d1 = n1 - s1, d2 = n2 - s2, d3 = n3 - s3;
    if (d0 < 0) {
      d0 += TWO32;
      d1 -= 1;
    }
    if (d1 < 0) {
      d1 += TWO32;
      d2 -= 1;
    }
    if (d2 < 0) {
      d2 += TWO32;
      d3 -= 1;
    }
    if (d3 === 0) {
      // 0 <= D: done when D <= 2Y (D is then below 2^65: d2 is 0 or 1).
      const t2 = yHi >>> 31, t1 = ((yHi << 1) | (yLo >>> 31)) >>> 0, t0 = (yLo << 1) >>> 0;
      if (d2 < t2 || (d2 === t2 && (d1 < t1 || (d1 === t1 && d0 <= t0)))) {
        // Above one half past Y exactly when D > Y.
        const above = d2 > 0 || d1 > yHi || (d1 === yHi && d0 > yLo);
        const x0 = above ? 0x80000001 : d1 !== 0 || d0 !== 0 || d2 !== 0 ? 1 : 0;
        return finish(ctx, 0, (u >> 1) + 16383, yHi | 0, yLo | 0, x0 | 0, out);
      }
    }
    const dd = ((d3 * TWO32 + d2) * TWO32 + d1) * TWO32 + d0;
    yLo += Math.floor(dd / (2 * (yHi * TWO32 + yLo)));
    const k = Math.floor(yLo * INV32);
    yLo -= k * TWO32;
    yHi += k;
    if (yHi >= TWO32) {
      yHi = 0xffffffff;
      yLo = 0xffffffff;
    }
  }
  return false;
}
