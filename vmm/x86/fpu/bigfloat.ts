// Binary floating point with a 200-bit BigInt significand, for evaluating the x87 transcendental
// functions well beyond extended precision before rounding once. Values are immutable records
// { m, e } meaning m * 2^e (m signed). Operations round to odd at PRECISION bits (truncate, and
// set the last bit when anything was lost), so a final rounding to 64 bits stays correct.

import { bitLength, EXT_BIAS } from "./float80.js";

export const PRECISION = 200;

export interface BigFloat {
  readonly m: bigint;
  readonly e: number;
}

const ZERO: BigFloat = { m: 0n, e: 0 };

export function bf(m: bigint, e: number, inexact = false): BigFloat {
  if (m === 0n) return ZERO;
  const negative = m < 0n;
  let a = negative ? -m : m;
  const shift = bitLength(a) - PRECISION;
  if (shift > 0) {
    const s = BigInt(shift);
    const lost = (a & ((1n << s) - 1n)) !== 0n;
    a >>= s;
    if (lost || inexact) a |= 1n;
  } else {
    a <<= BigInt(-shift);
    if (inexact) a |= 1n;
  }
  return { m: negative ? -a : a, e: e + shift };
}

export const fromInt = (n: number | bigint): BigFloat => bf(BigInt(n), 0);

/** The exact value of an 80-bit register (finite). */
export function fromF80(se: number, m: bigint): BigFloat {
  const exp = se & 0x7fff;
  const v = bf(m, (exp === 0 ? 1 : exp) - EXT_BIAS - 63);
  return se & 0x8000 ? neg(v) : v;
}

export const neg = (a: BigFloat): BigFloat => ({ m: -a.m, e: a.e });
export const abs = (a: BigFloat): BigFloat => (a.m < 0n ? neg(a) : a);
export const isZero = (a: BigFloat): boolean => a.m === 0n;
export const sign = (a: BigFloat): number => (a.m < 0n ? 1 : 0);
export const ldexp = (a: BigFloat, n: number): BigFloat => (a.m === 0n ? a : { m: a.m, e: a.e + n });

/** Exponent of the leading bit (value in [2^k, 2^(k+1))). */
export const magnitude = (a: BigFloat): number => a.e + bitLength(a.m < 0n ? -a.m : a.m) - 1;

export function add(a: BigFloat, b: BigFloat): BigFloat {
  if (a.m === 0n) return b;
  if (b.m === 0n) return a;
  if (a.e < b.e) [a, b] = [b, a];
  const d = a.e - b.e;
  if (d > 2 * PRECISION + 8) {
    // b is far below a's last bit: keep it as a nudge below every bit that matters.
    return bf((a.m << 4n) + (b.m < 0n ? -1n : 1n), a.e - 4);
  }
  return bf((a.m << BigInt(d)) + b.m, b.e);
}

export const sub = (a: BigFloat, b: BigFloat): BigFloat => add(a, neg(b));
export const mul = (a: BigFloat, b: BigFloat): BigFloat => bf(a.m * b.m, a.e + b.e);

export function div(a: BigFloat, b: BigFloat): BigFloat {
  if (a.m === 0n) return a;
  const num = a.m << BigInt(PRECISION + 8);
  const q = num / b.m;
  return bf(q, a.e - b.e - PRECISION - 8, q * b.m !== num);
}

export function divInt(a: BigFloat, n: number): BigFloat {
  const num = a.m << 32n;
  const q = num / BigInt(n);
  return bf(q, a.e - 32, q * BigInt(n) !== num);
}

export function sqrt(a: BigFloat): BigFloat {
  if (a.m <= 0n) return ZERO;
  let m = a.m << BigInt(2 * PRECISION + 2);
  let e = a.e - 2 * PRECISION - 2;
  if (e & 1) {
    m <<= 1n;
    e -= 1;
  }
  let x = 1n << BigInt((bitLength(m) + 1) >> 1);
  for (;;) {
    const y = (x + m / x) >> 1n;
    if (y >= x) break;
    x = y;
  }
  return bf(x, e / 2, x * x !== m);
}

export function cmp(a: BigFloat, b: BigFloat): number {
  const d = sub(a, b).m;
  return d === 0n ? 0 : d > 0n ? 1 : -1;
}

/** Sum a series term by term until the term no longer changes the sum. */
function series(first: BigFloat, next: (term: BigFloat, n: number) => BigFloat): BigFloat {
  let sum = first, term = first;
  for (let n = 1; n < 400; n++) {
    term = next(term, n);
    if (term.m === 0n) break;
    sum = add(sum, term); // a negligible term still nudges the sum in its direction, once
    if (magnitude(term) < magnitude(sum) - PRECISION - 4) break;
  }
  return sum;
}

/** atanh(t) = t + t^3/3 + t^5/5 + ... for |t| <= 1/2. */
function atanh(t: BigFloat): BigFloat {
  if (t.m === 0n) return t;
  const t2 = mul(t, t);
  let power = t;
  let sum = t;
  for (let k = 3; k < 2000; k += 2) {
    power = mul(power, t2);
    const term = divInt(power, k);
    if (term.m === 0n) break;
    sum = add(sum, term);
    if (magnitude(term) < magnitude(sum) - PRECISION - 4) break;
  }
  return sum;
}

/** atan(t) = t - t^3/3 + ... for |t| <= 1/4. */
function atanSeries(t: BigFloat): BigFloat {
  if (t.m === 0n) return t;
  const t2 = neg(mul(t, t));
  let power = t;
  let sum = t;
  for (let k = 3; k < 2000; k += 2) {
    power = mul(power, t2);
    const term = divInt(power, k);
    if (term.m === 0n) break;
    sum = add(sum, term);
    if (magnitude(term) < magnitude(sum) - PRECISION - 4) break;
  }
  return sum;
}

const ONE = fromInt(1);
const TWO = fromInt(2);

/** ln(1 + z) for z > -1 (accurate relative to the result also for tiny z). */
export function ln1p(z: BigFloat): BigFloat {
  return ldexp(atanh(div(z, add(TWO, z))), 1);
}

/** atan(z) for any z (halving the argument until the series converges fast). */
export function atan(z: BigFloat): BigFloat {
  if (z.m === 0n) return z;
  const negative = z.m < 0n;
  let t = abs(z);
  let offset: BigFloat | null = null;
  if (cmp(t, ONE) > 0) {
    offset = HALF_PI;
    t = div(ONE, t);
  }
  let doublings = 0;
  while (magnitude(t) >= -2) {
    t = div(t, add(ONE, sqrt(add(ONE, mul(t, t)))));
    doublings++;
  }
  let r = ldexp(atanSeries(t), doublings);
  if (offset) r = sub(offset, r);
  return negative ? neg(r) : r;
}

/** e^y - 1 for |y| <= 1 (relative accuracy also for tiny y). */
export function expm1(y: BigFloat): BigFloat {
  return series(y, (term, n) => divInt(mul(term, y), n + 1));
}

/** sin(r) and cos(r) for |r| <= pi/4. */
export function sinSeries(r: BigFloat): BigFloat {
  const r2 = neg(mul(r, r));
  return series(r, (term, n) => divInt(mul(term, r2), (2 * n) * (2 * n + 1)));
}

export function cosSeries(r: BigFloat): BigFloat {
  const r2 = neg(mul(r, r));
  return series(ONE, (term, n) => divInt(mul(term, r2), (2 * n - 1) * (2 * n)));
}

/** Fixed-point constant with `bits` fractional bits: pi by Machin's formula. */
function piFixed(bits: number): bigint {
  const one = 1n << BigInt(bits + 16);
  const arctanInv = (x: bigint): bigint => {
    let sum = 0n, power = one / x, k = 1n, sgn = 1n;
    const x2 = x * x;
    while (power !== 0n) {
      sum += (sgn * power) / k;
      power /= x2;
      k += 2n;
      sgn = -sgn;
    }
    return sum;
  };
  return (16n * arctanInv(5n) - 4n * arctanInv(239n)) >> 16n;
}

/** Fractional bits of the fixed-point pi used for argument reduction (|x| < 2^63). */
export const PI_BITS = 480;
export const PI_FIXED: bigint = piFixed(PI_BITS);
export const PI: BigFloat = bf(PI_FIXED, -PI_BITS);
export const HALF_PI: BigFloat = ldexp(PI, -1);
export const LN2: BigFloat = ln1p(ONE);
export { ONE, TWO };
