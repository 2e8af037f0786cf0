// Shared arithmetic helpers: the eight ALU operations, shifts and rotates, multiply and divide,
// BCD adjusts. `bit` is the sign-bit index (7, 15, 31) of the operand size.

import type { Cpu } from "./cpu.js";
import { AF, CF, getCF, lazy, lazyKeepCF, LZ_ADD, LZ_LOGIC, LZ_SUB, materialize, OF, setArith, szp } from "./flags.js";

export const ALU_ADD = 0, ALU_OR = 1, ALU_ADC = 2, ALU_SBB = 3, ALU_AND = 4, ALU_SUB = 5, ALU_XOR = 6, ALU_CMP = 7;

/** ALU operation `op` on a, b; returns the result (callers skip the write for CMP). */
export function alu(c: Cpu, op: number, a: number, b: number, bit: number): number {
  let r: number;
  switch (op) {
    case ALU_ADD:
      r = (a + b) | 0;
      lazy(c, LZ_ADD, a, b, r, bit);
      return r;
    case ALU_OR:
      r = a | b;
      lazy(c, LZ_LOGIC, a, b, r, bit);
      return r;
    case ALU_ADC:
      r = (a + b + getCF(c)) | 0;
      lazy(c, LZ_ADD, a, b, r, bit);
      return r;
    case ALU_SBB:
      r = (a - b - getCF(c)) | 0;
      lazy(c, LZ_SUB, a, b, r, bit);
      return r;
    case ALU_AND:
      r = a & b;
      lazy(c, LZ_LOGIC, a, b, r, bit);
      return r;
    case ALU_XOR:
      r = a ^ b;
      lazy(c, LZ_LOGIC, a, b, r, bit);
      return r;
    default:
      r = (a - b) | 0;
      lazy(c, LZ_SUB, a, b, r, bit);
      return r;
  }
}

export function inc(c: Cpu, a: number, bit: number): number {
  const r = (a + 1) | 0;
  lazyKeepCF(c, LZ_ADD, a, 1, r, bit);
  return r;
}

export function dec(c: Cpu, a: number, bit: number): number {
  const r = (a - 1) | 0;
  lazyKeepCF(c, LZ_SUB, a, 1, r, bit);
  return r;
}

export function neg(c: Cpu, a: number, bit: number): number {
  const r = -a | 0;
  lazy(c, LZ_SUB, 0, a, r, bit);
  return r;
}

const WIDTH = (bit: number) => bit + 1;
const maskOf = (bit: number) => (bit === 31 ? -1 : (1 << (bit + 1)) - 1);

/** Shift/rotate group operation `op` (ROL ROR RCL RCR SHL SHR SAL SAR) of `a` by `count`. */
export function shift(c: Cpu, op: number, a: number, count: number, bit: number): number {
  count &= 31;
  if (count === 0) return a;
  const w = WIDTH(bit);
  const mask = maskOf(bit);
  a &= mask;
  let r: number, cf: number, of: number;
  // Shifts rewrite all six arithmetic flags (AF is undefined: 0), so only rotates need the old ones.
  const flags = op < 4 ? materialize(c) : c.flags;
  switch (op) {
    case 0: { // ROL
      const n = count % w;
      r = n === 0 ? a : ((a << n) | (a >>> (w - n))) & mask;
      cf = r & 1;
      of = ((r >>> bit) & 1) ^ cf;
      c.flags = (flags & ~(CF | OF)) | cf | (of ? OF : 0);
      return r;
    }
    case 1: { // ROR
      const n = count % w;
      r = n === 0 ? a : ((a >>> n) | (a << (w - n))) & mask;
      cf = (r >>> bit) & 1;
      of = cf ^ ((r >>> (bit - 1)) & 1);
      c.flags = (flags & ~(CF | OF)) | cf | (of ? OF : 0);
      return r;
    }
    case 2: { // RCL
      const n = count % (w + 1);
      cf = flags & CF;
      r = a;
      for (let k = 0; k < n; k++) {
        const out = (r >>> bit) & 1;
        r = ((r << 1) | cf) & mask;
        cf = out;
      }
      of = ((r >>> bit) & 1) ^ cf;
      c.flags = (flags & ~(CF | OF)) | cf | (of ? OF : 0);
      return r;
    }
    case 3: { // RCR
      const n = count % (w + 1);
      cf = flags & CF;
      r = a;
      for (let k = 0; k < n; k++) {
        const out = r & 1;
        r = ((r >>> 1) | (cf << bit)) & mask;
        cf = out;
      }
      of = ((r >>> bit) & 1) ^ ((r >>> (bit - 1)) & 1);
      c.flags = (flags & ~(CF | OF)) | cf | (of ? OF : 0);
      return r;
    }
    case 4:
    case 6: { // SHL/SAL
      r = count < 32 ? (a << count) & mask : 0;
      cf = count <= w ? (a >>> (w - count)) & 1 : 0;
      of = ((r >>> bit) & 1) ^ cf;
      setArith(c, szp(r, bit) | cf | (of ? OF : 0));
      return r;
    }
    case 5: { // SHR
      r = count >= w ? 0 : a >>> count;
      cf = count > w ? 0 : (a >>> (count - 1)) & 1;
      of = (a >>> bit) & 1;
      setArith(c, szp(r, bit) | cf | (of ? OF : 0));
      return r;
    }
    default: { // SAR
      const s = (a << (31 - bit)) >> (31 - bit);
      r = (s >> Math.min(count, 31)) & mask;
      cf = (s >> Math.min(count - 1, 31)) & 1;
      setArith(c, szp(r, bit) | cf);
      return r;
    }
  }
}

/** SHLD/SHRD: shift `a` by `count` filling from `b`. */
export function doubleShift(c: Cpu, left: boolean, a: number, b: number, count: number, bit: number): number {
  count &= 31;
  if (count === 0) return a;
  const w = bit + 1;
  const mask = maskOf(bit);
  a &= mask;
  b &= mask;
  materialize(c);
  let r: number, cf: number;
  if (w === 16) {
    // Counts above 16 are undefined; this is what P6-family parts produce (a:b:a pattern).
    if (left) {
      const temp = ((a << 16) | b) >>> 0;
      let res = count < 32 ? temp << count : 0;
      if (count > 16) res |= a << (count - 16);
      r = (res >>> 16) & 0xffff;
      cf = (temp >>> (32 - count)) & 1;
    } else {
      const temp = ((b << 16) | a) >>> 0;
      let res = temp >>> count;
      if (count > 16) res |= a << (32 - count);
      r = res & 0xffff;
      cf = (temp >>> (count - 1)) & 1;
    }
  } else if (left) {
    r = ((a << count) | (b >>> (32 - count))) | 0;
    cf = (a >>> (32 - count)) & 1;
  } else {
    r = ((a >>> count) | (b << (32 - count))) | 0;
    cf = (a >>> (count - 1)) & 1;
  }
  const of = ((r ^ a) >>> bit) & 1;
  setArith(c, szp(r, bit) | cf | (of ? OF : 0) | (c.flags & AF));
  return r & mask;
}

/** Unsigned 32x32 multiply: returns the low half; the high half goes to `c.mulHigh`. */
export function mulU32(c: Cpu, a: number, b: number): number {
  a >>>= 0;
  b >>>= 0;
  const aL = a & 0xffff, aH = a >>> 16, bL = b & 0xffff, bH = b >>> 16;
  const ll = aL * bL;
  const mid = aH * bL + aL * bH + (ll >>> 16);
  const hi = aH * bH + Math.floor(mid / 65536);
  c.mulHigh = hi | 0;
  return ((mid << 16) | (ll & 0xffff)) | 0;
}

/** Signed 32x32 multiply; high half in `c.mulHigh`. */
export function mulS32(c: Cpu, a: number, b: number): number {
  const lo = mulU32(c, a, b);
  let hi = c.mulHigh;
  if (a < 0) hi = (hi - b) | 0;
  if (b < 0) hi = (hi - a) | 0;
  c.mulHigh = hi;
  return lo;
}

/** Flags of a multiply: CF = OF = overflow; SF/ZF/PF from the low half (undefined in the manual). */
export function mulFlags(c: Cpu, overflow: boolean, lo: number, bit: number): void {
  const f = overflow ? CF | OF : 0;
  setArith(c, f | szp(lo, bit));
}

/**
 * Unsigned divide of hi:lo (64 bits, as two uint32 numbers) by d; sets c.divQuot/c.divRem.
 * Returns false on overflow (quotient > 32 bits) or d = 0.
 */
export function divU64(c: Cpu, hi: number, lo: number, d: number): boolean {
  hi >>>= 0;
  lo >>>= 0;
  d >>>= 0;
  if (d === 0 || hi >= d) return false;
  let r = hi * 65536 + (lo >>> 16);
  const q1 = Math.floor(r / d);
  r -= q1 * d;
  r = r * 65536 + (lo & 0xffff);
  const q2 = Math.floor(r / d);
  r -= q2 * d;
  c.divQuot = ((q1 << 16) | q2) | 0;
  c.divRem = r | 0;
  return true;
}

/** Signed 64/32 divide (IDIV r/m32). Returns false on #DE. */
export function divS64(c: Cpu, hi: number, lo: number, d: number): boolean {
  const negDividend = hi < 0;
  const negDivisor = d < 0;
  let h = hi >>> 0, l = lo >>> 0;
  if (negDividend) {
    l = (~l + 1) >>> 0;
    h = (~h + (l === 0 ? 1 : 0)) >>> 0;
  }
  const ad = negDivisor ? (-d) >>> 0 : d >>> 0;
  if (ad === 0) return false;
  if (h >= ad) return false;
  if (!divU64(c, h, l, ad)) return false;
  const q = c.divQuot >>> 0;
  const negQ = negDividend !== negDivisor;
  if (negQ ? q > 0x80000000 : q > 0x7fffffff) return false;
  c.divQuot = negQ ? -q | 0 : q | 0;
  c.divRem = negDividend ? -(c.divRem >>> 0) | 0 : c.divRem;
  return true;
}

export function daa(c: Cpu): void {
  const f = materialize(c);
  const al = c.r8[0];
  let r = al, cf = 0, af = 0;
  if ((al & 0xf) > 9 || f & AF) {
    r = (al + 6) & 0xff;
    cf = f & CF || al + 6 > 0xff ? 1 : 0;
    af = AF;
  }
  if (al > 0x99 || f & CF) {
    r = (r + 0x60) & 0xff;
    cf = 1;
  }
  c.r8[0] = r;
  setArith(c, szp(r, 7) | cf | af | (f & OF));
}

export function das(c: Cpu): void {
  const f = materialize(c);
  const al = c.r8[0];
  let r = al, cf = 0, af = 0;
  if ((al & 0xf) > 9 || f & AF) {
    r = (al - 6) & 0xff;
    cf = f & CF || al < 6 ? 1 : 0;
    af = AF;
  }
  if (al > 0x99 || f & CF) {
    r = (r - 0x60) & 0xff;
    cf = 1;
  }
  c.r8[0] = r;
  setArith(c, szp(r, 7) | cf | af | (f & OF));
}

export function aaa(c: Cpu, subtract: boolean): void {
  const f = materialize(c);
  const al = c.r8[0];
  if ((al & 0xf) > 9 || f & AF) {
    if (subtract) {
      c.r16[0] = (c.r16[0] - 6) & 0xffff;
      c.r8[1] = (c.r8[1] - 1) & 0xff;
    } else {
      c.r16[0] = (c.r16[0] + 0x106) & 0xffff;
    }
    c.r8[0] &= 0xf;
    setArith(c, (f & ~(CF | AF)) | CF | AF);
  } else {
    c.r8[0] &= 0xf;
    setArith(c, f & ~(CF | AF));
  }
}

export function aam(c: Cpu, base: number): void {
  if (base === 0) c.fault(0);
  const al = c.r8[0];
  c.r8[1] = Math.floor(al / base);
  c.r8[0] = al % base;
  setArith(c, szp(c.r8[0], 7));
}

export function aad(c: Cpu, base: number): void {
  const a = c.r8[0], b = (c.r8[1] * base) & 0xff;
  const r = (a + b) & 0xff;
  c.r16[0] = r;
  lazy(c, LZ_ADD, a, b, a + b, 7);
}
