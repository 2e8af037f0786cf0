// Rounding primitives of the x87 number fast paths (limbs.ts, limbs-div.ts, limbs-convert.ts):
// a value as int32 halves, rounding of a 96-bit significand window to 24/53/64 bits, and rounding
// to an integer, under the x87's rounding control.
//
// Halves cross function boundaries and object fields as signed int32 (`| 0`): V8 keeps those
// unboxed (a uint32 above 2^31 would be a heap number on every call); functions widen them to
// unsigned locally (`>>> 0`) where they compare or add.
//
// Exact intermediate values live in a 96-bit window x2:x1:x0 (x2 most significant, bit 95 set
// once normalized). Bits shifted out below the window are jammed into bit 0: every rounding
// boundary then sits on an even position at least 2^30, so the jammed value and the exact value
// round alike and are inexact alike.

import { PE, RC_DOWN, RC_NEAREST, RC_UP, type RoundContext } from "./float80.js";

/** An 80-bit value as numbers: sign and biased exponent, significand high and low halves (int32). */
export interface Parts {
  se: number;
  hi: number;
  lo: number;
}

export const newParts = (): Parts => ({ se: 0, hi: 0, lo: 0 });

export const TWO32 = 0x100000000, INV32 = 1 / TWO32;
/** The integer bit (bit 63 of the significand) in the high half. */
export const J = 0x80000000;

/** Bits of the `roundSig` answer. */
export const R_CARRY = 1, R_INEXACT = 2, R_UP = 4;

/**
 * Round the significand x2:x1:x0 (bit 95 set) to `prec` (24, 53 or 64) bits under rc; the rounded
 * significand goes to out.hi/out.lo (bits below `prec` cleared). Returns R_CARRY when rounding
 * carried out of bit 63 (out is then 1.0: the exponent must grow by one), R_INEXACT, R_UP.
 */
export function roundSig(out: Parts, sign: number, x2: number, x1: number, x0: number, prec: number, rc: number): number {
  x2 >>>= 0;
  x1 >>>= 0;
  x0 >>>= 0;
  let hi = x2, lo: number, inexact: boolean, up = false;
  if (prec === 64) {
    lo = x1;
    inexact = x0 !== 0;
    if (inexact) {
      up = rc === RC_NEAREST ? x0 > 0x80000000 || (x0 === 0x80000000 && (x1 & 1) !== 0)
        : rc === RC_UP ? sign === 0 : rc === RC_DOWN ? sign !== 0 : false;
      if (up) {
        lo = (lo + 1) >>> 0;
        if (lo === 0) hi += 1;
      }
    }
  } else if (prec === 53) {
    const r = x1 & 0x7ff;
    lo = x1 - r;
    inexact = r !== 0 || x0 !== 0;
    if (inexact) {
      up = rc === RC_NEAREST ? r > 0x400 || (r === 0x400 && (x0 !== 0 || (x1 & 0x800) !== 0))
        : rc === RC_UP ? sign === 0 : rc === RC_DOWN ? sign !== 0 : false;
      if (up) {
        lo += 0x800;
        if (lo >= TWO32) {
          lo -= TWO32;
          hi += 1;
        }
      }
    }
  } else {
    const r = x2 & 0xff;
    hi = x2 - r;
    lo = 0;
    inexact = r !== 0 || x1 !== 0 || x0 !== 0;
    if (inexact) {
      up = rc === RC_NEAREST ? r > 0x80 || (r === 0x80 && (x1 !== 0 || x0 !== 0 || (x2 & 0x100) !== 0))
        : rc === RC_UP ? sign === 0 : rc === RC_DOWN ? sign !== 0 : false;
      if (up) hi += 0x100;
    }
  }
  let flags = (inexact ? R_INEXACT : 0) | (up ? R_UP : 0);
  if (hi >= TWO32) {
    hi = J;
    flags |= R_CARRY;
  }
  out.hi = hi | 0;
  out.lo = lo | 0;
  return flags;
}

/** Precision (significand bits) of the PC field of a control word. */
const precisionOf = (cw: number): number => {
  const pc = (cw >> 8) & 3;
  return pc === 0 ? 24 : pc === 2 ? 53 : 64;
};

/**
 * Round x2:x1:x0 (bit 95 set; value x2:x1:x0 * 2^(E - 16383 - 95)) to the stack under ctx into
 * out. False, with ctx untouched, when the rounded result is not a normal 80-bit number.
 */
export function finish(ctx: RoundContext, sign: number, E: number, x2: number, x1: number, x0: number, out: Parts): boolean {
  const cw = ctx.cw;
  let flags: number;
  if ((cw & 0xf00) === 0x300) {
    // The default (64 bits, to nearest), inline: round on x0 alone.
    flags = 0;
    if (x0 !== 0) {
      flags = R_INEXACT;
      x0 >>>= 0;
      if (x0 > 0x80000000 || (x0 === 0x80000000 && (x1 & 1) !== 0)) {
        flags |= R_UP;
        x1 = (x1 + 1) | 0;
        if (x1 === 0) {
          x2 = (x2 + 1) | 0;
          if (x2 === 0) {
            x2 = J | 0;
            flags |= R_CARRY;
          }
        }
      }
    }
    out.hi = x2;
    out.lo = x1;
  } else flags = roundSig(out, sign, x2, x1, x0, precisionOf(cw), (cw >> 10) & 3);
  E += flags & R_CARRY;
  if (E <= 0 || E >= 0x7fff) return false;
  if (flags & R_INEXACT) ctx.exc |= PE;
  ctx.up = flags & R_UP ? 1 : 0;
  out.se = (sign << 15) | E;
  return true;
}


/** Normal: exponent 1..7FFE and the integer bit set. */
export const isNormal = (se: number, hi: number): boolean => ((se & 0x7fff) - 1) >>> 0 < 0x7ffe && hi < 0;
export const isZero = (se: number, hi: number, lo: number): boolean => (se & 0x7fff) === 0 && hi === 0 && lo === 0;

/**
 * Round the normal value (-1)^sign * hi:lo * 2^(unbiased - 63), unbiased <= 62, to an integer
 * under rc: its magnitude (at most 2^63) goes to out.hi:out.lo. Returns R_INEXACT, R_UP.
 */
export function roundToInteger(out: Parts, sign: number, unbiased: number, hi: number, lo: number, rc: number): number {
  hi >>>= 0;
  lo >>>= 0;
  // Integer part ipHi:ipLo; the fraction against one half: above, at (tie), below; inexact.
  let ipHi = 0, ipLo = 0, above: boolean, tie: boolean, inexact: boolean;
  if (unbiased < 0) {
    inexact = true;
    tie = unbiased === -1 && hi === J && lo === 0;
    above = unbiased === -1 && !tie;
  } else {
    const s = 63 - unbiased;
    let frac: number, half: number, rest: boolean;
    if (s < 32) {
      ipHi = hi >>> s;
      ipLo = ((hi << (32 - s)) | (lo >>> s)) >>> 0;
      frac = lo & (0xffffffff >>> (32 - s));
      half = 2 ** (s - 1);
      rest = false;
    } else if (s === 32) {
      ipLo = hi;
      frac = lo;
      half = J;
      rest = false;
    } else {
      ipLo = hi >>> (s - 32);
      frac = hi & (0xffffffff >>> (64 - s));
      half = 1 << (s - 33);
      rest = lo !== 0;
    }
    inexact = frac !== 0 || rest;
    tie = frac === half && !rest;
    above = frac > half || (frac === half && rest);
  }
  let up = false;
  if (inexact) {
    up = rc === RC_NEAREST ? above || (tie && (ipLo & 1) !== 0)
      : rc === RC_UP ? sign === 0 : rc === RC_DOWN ? sign !== 0 : false;
    if (up) {
      ipLo += 1;
      if (ipLo === TWO32) {
        ipLo = 0;
        ipHi += 1;
      }
    }
  }
  out.hi = ipHi | 0;
  out.lo = ipLo | 0;
  return (inexact ? R_INEXACT : 0) | (up ? R_UP : 0);
}
