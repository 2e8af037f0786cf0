// 80-bit extended-precision values: formats, classification and exact rounding as the x87 does it.
//
// A value travels as sign, biased exponent and an integer significand (BigInt). Exact results of
// the arithmetic are handed to `roundPack` as (sign, m, e, sticky): value = m * 2^e, plus a nonzero
// amount below the last bit of m when `sticky` is set. `roundPack` rounds once, under the rounding
// and precision control of a context, and reports PE/UE/OE and the C1 round-up bit there.

/** Exception flag bits of the status word; the control word masks sit at the same positions. */
export const IE = 1, DE = 2, ZE = 4, OE = 8, UE = 16, PE = 32, SF = 64;

/** Rounding control (control word bits 11:10). */
export const RC_NEAREST = 0, RC_DOWN = 1, RC_UP = 2, RC_CHOP = 3;

export const EXT_BIAS = 16383;
export const EXP_MAX = 0x7fff;
export const INT_BIT = 1n << 63n;
export const QUIET_BIT = 1n << 62n;
export const MASK64 = (1n << 64n) - 1n;
/** Significand of the QNaN floating-point indefinite (sign set, exponent 7FFF). */
export const INDEFINITE_M = 0xc000000000000000n;
/** Exponent adjustment of unmasked overflow/underflow results on the stack (3 * 2^13). */
export const BIAS_ADJUST = 24576;

/** Operand classes of an 80-bit register value. */
export const Cls = {
  ZERO: 0,
  /** Denormal or pseudo-denormal (exponent 0, J either way): a valid operand raising DE. */
  DENORMAL: 1,
  NORMAL: 2,
  INF: 3,
  QNAN: 4,
  SNAN: 5,
  /** Unnormal, pseudo-NaN, pseudo-infinity: invalid operands on the P6. */
  UNSUPPORTED: 6,
} as const;

const QUIET_NAN_MIN = INT_BIT | QUIET_BIT;

/** Class of a register value (m < 2^64: the J bit is set exactly when m >= 2^63). */
export function classify(se: number, m: bigint): number {
  const e = se & EXP_MAX;
  if (e === 0) return m === 0n ? Cls.ZERO : Cls.DENORMAL;
  if (m < INT_BIT) return Cls.UNSUPPORTED;
  if (e !== EXP_MAX) return Cls.NORMAL;
  if (m === INT_BIT) return Cls.INF;
  return m >= QUIET_NAN_MIN ? Cls.QNAN : Cls.SNAN;
}

export const isNaNClass = (k: number): boolean => k === Cls.QNAN || k === Cls.SNAN;

/** A binary floating-point format: `bits` significand bits including the integer bit. */
export interface Format {
  readonly bits: number;
  readonly bias: number;
  /** Unbiased exponent of the smallest normal. */
  readonly emin: number;
  /** Unbiased exponent of the largest finite. */
  readonly emax: number;
  /** Exponent of the last significand bit of a denormal (emin - bits + 1). */
  readonly minLsb: number;
}

function format(bits: number, bias: number): Format {
  return { bits, bias, emin: 1 - bias, emax: bias, minLsb: 1 - bias - (bits - 1) };
}

export const EXT = format(64, 16383);
export const DBL = format(53, 1023);
export const SGL = format(24, 127);

/** Precision (significand bits) selected by the PC field (control word bits 9:8). */
export const PC_BITS = [24, 64, 53, 64];

/** Rounding state of one instruction: control word in, flags and round-up bit out. */
export interface RoundContext {
  /** Control word (masks, PC, RC). */
  cw: number;
  /** Exception flags raised by the instruction (IE..SF bits). */
  exc: number;
  /** 1 when the last rounding went up in magnitude (becomes C1). */
  up: number;
  /** Scratch of one rounding step: the result was inexact / rounded up. */
  inexact: boolean;
  roundUp: boolean;
  /** Scratch result of `roundPack` for callers that repack it. */
  readonly packed: Packed;
}

export function newRoundContext(cw = 0x37f): RoundContext {
  return { cw, exc: 0, up: 0, inexact: false, roundUp: false, packed: newPacked() };
}

/** The result of `roundPack`: a value of the format it was rounded to. */
export interface Packed {
  sign: number;
  /** Biased exponent; 0 for zero/denormal, all ones for infinity. */
  exp: number;
  /** Significand aligned to the format width (integer bit at bits-1 for normals). */
  mant: bigint;
  /** Set when an unmasked overflow/underflow happened (memory destinations store nothing). */
  trap: boolean;
}

export function newPacked(): Packed {
  return { sign: 0, exp: 0, mant: 0n, trap: false };
}

const B32 = 0x100000000n, B64 = 0x10000000000000000n, B96 = 1n << 96n, B128 = 1n << 128n;

/** Number of significant bits of x > 0 (compares first: they allocate nothing). */
export function bitLength(x: bigint): number {
  if (x < B32) return 32 - Math.clz32(Number(x));
  if (x < B64) return 64 - Math.clz32(Number(x >> 32n));
  if (x < B96) return 96 - Math.clz32(Number(x >> 64n));
  if (x < B128) return 128 - Math.clz32(Number(x >> 96n));
  let bits = 0;
  while (x >= B64) {
    x >>= 64n;
    bits += 64;
  }
  return bits + bitLength(x);
}

/** Round m * 2^e (+ sticky) to a multiple of 2^lsb under rc; returns the multiple count. */
export function roundAt(
  ctx: RoundContext, sign: number, m: bigint, e: number, sticky: boolean, lsb: number, rc: number,
): bigint {
  const shift = lsb - e;
  let r: bigint;
  let up = false;
  let inexact: boolean;
  if (shift <= 0) {
    r = m << BigInt(-shift);
    inexact = sticky; // the sticky amount is below half an ulp
    if (inexact && rc !== RC_NEAREST) up = rc === RC_UP ? sign === 0 : rc === RC_DOWN ? sign !== 0 : false;
  } else if (shift > bitLength(m) + 1) {
    r = 0n;
    inexact = true; // m < a quarter ulp
    if (rc !== RC_NEAREST) up = rc === RC_UP ? sign === 0 : rc === RC_DOWN ? sign !== 0 : false;
  } else {
    const s = BigInt(shift);
    r = m >> s;
    const rem = m & ((1n << s) - 1n);
    inexact = rem !== 0n || sticky;
    if (inexact) {
      if (rc === RC_NEAREST) {
        const half = 1n << (s - 1n);
        up = rem > half || (rem === half && (sticky || (r & 1n) !== 0n));
      } else if (rc === RC_UP) up = sign === 0;
      else if (rc === RC_DOWN) up = sign !== 0;
    }
  }
  if (up) r += 1n;
  ctx.inexact = inexact;
  ctx.roundUp = up;
  return r;
}

/** Store r * 2^lsb (r >= 0, fits the format) into out as a normal, denormal or zero. */
function place(f: Format, r: bigint, lsb: number, out: Packed): void {
  if (r === 0n) {
    out.exp = 0;
    out.mant = 0n;
    return;
  }
  const len = bitLength(r);
  const msb = lsb + len - 1;
  if (msb >= f.emin) {
    out.exp = msb + f.bias;
    out.mant = r << BigInt(f.bits - len);
  } else {
    out.exp = 0;
    out.mant = r << BigInt(lsb - f.minLsb);
  }
}

/** The largest finite of format f rounded to `prec` bits. */
function maxFinite(f: Format, prec: number, out: Packed): void {
  out.exp = f.emax + f.bias;
  out.mant = ((1n << BigInt(prec)) - 1n) << BigInt(f.bits - prec);
}

function infinity(f: Format, out: Packed): void {
  out.exp = 2 * f.bias + 1;
  out.mant = f === EXT ? INT_BIT : 0n;
}

/**
 * Round the exact nonzero value (-1)^sign * (m * 2^e + sticky) to `prec` bits of format f under
 * ctx's rounding control, with the x87's overflow/underflow responses. `stack` selects the
 * unmasked response: bias-adjusted result (register destination) or `trap` (memory destination).
 */
export function roundPack(
  ctx: RoundContext, f: Format, prec: number, sign: number, m: bigint, e: number, sticky: boolean,
  stack: boolean, out: Packed,
): void {
  const rc = (ctx.cw >> 10) & 3;
  out.sign = sign;
  out.trap = false;
  if (m === 0n) {
    // Only a sticky remainder: a value below every representable bit.
    m = 1n;
    e -= 1;
    if (!sticky) {
      out.exp = 0;
      out.mant = 0n;
      ctx.up = 0;
      return;
    }
  }
  const len = bitLength(m);
  const msb = e + len - 1;
  // Rounding with unbounded exponent decides overflow and tininess.
  let lsb = msb - (prec - 1);
  let r = roundAt(ctx, sign, m, e, sticky, lsb, rc);
  let inexact = ctx.inexact;
  let up = ctx.roundUp;
  let rMsb = msb + (bitLength(r) > prec ? 1 : 0);
  if (rMsb > f.emax) {
    if (ctx.cw & OE) {
      ctx.exc |= OE | PE;
      const toInf = rc === RC_NEAREST || (rc === RC_UP && sign === 0) || (rc === RC_DOWN && sign !== 0);
      if (toInf) infinity(f, out);
      else maxFinite(f, prec, out);
      ctx.up = toInf ? 1 : 0;
      return;
    }
    ctx.up = up ? 1 : 0;
    if (!stack) {
      ctx.exc |= OE;
      out.trap = true;
      return;
    }
    ctx.exc |= OE | (inexact ? PE : 0);
    if (rMsb - BIAS_ADJUST > f.emax) {
      // Massive overflow (FSCALE): still out of range after the bias adjust, infinity.
      ctx.exc |= PE;
      ctx.up = 1;
      infinity(f, out);
    } else place(f, r, lsb - BIAS_ADJUST, out);
    return;
  }
  if (rMsb < f.emin) {
    if (ctx.cw & UE) {
      // Masked: denormalize, round again; underflow only when the result is inexact. With
      // precision control the denormal keeps the significand-field positions of `prec` bits.
      lsb = Math.max(lsb, f.emin - (prec - 1));
      r = roundAt(ctx, sign, m, e, sticky, lsb, rc);
      inexact = ctx.inexact;
      up = ctx.roundUp;
      if (inexact) ctx.exc |= UE | PE;
      ctx.up = up ? 1 : 0;
      place(f, r, lsb, out);
      return;
    }
    ctx.up = up ? 1 : 0;
    if (!stack) {
      // Nothing is stored to memory, so nothing is inexact: UE alone.
      ctx.exc |= UE;
      out.trap = true;
      return;
    }
    ctx.exc |= UE | (inexact ? PE : 0);
    const adjusted = rMsb + BIAS_ADJUST;
    if (adjusted < f.emin) {
      // Massive underflow (FSCALE): a signed zero.
      ctx.exc |= PE;
      ctx.up = 0;
      out.exp = 0;
      out.mant = 0n;
    } else place(f, r, lsb + BIAS_ADJUST, out);
    return;
  }
  if (inexact) ctx.exc |= PE;
  ctx.up = up ? 1 : 0;
  place(f, r, lsb, out);
}

/** Exponent of the last bit of an 80-bit significand with biased exponent E (denormals use 1). */
export const lsbExponent = (E: number): number => (E === 0 ? 1 : E) - EXT_BIAS - 63;

/** The 80-bit NaN result of propagating one NaN: quieted (SNaN → QNaN), sign kept. */
export const quiet = (m: bigint): bigint => m | QUIET_BIT;
