// EFLAGS bits and lazy evaluation of the arithmetic flags.
//
// Arithmetic instructions do not compute flags; they record (kind, a, b, result, sign-bit index)
// and a mask of the flag bits that are lazy. A flag is computed from that record only when read.

export const CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, IF = 0x200, DF = 0x400;
export const OF = 0x800, IOPL = 0x3000, NT = 0x4000, RF = 0x10000, VM = 0x20000, AC = 0x40000;
export const VIF = 0x80000, VIP = 0x100000, ID = 0x200000;
export const ARITH = CF | PF | AF | ZF | SF | OF;
/** Bits an i686 without VME lets software change (ID toggles so CPUID is detected). */
export const WRITABLE = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | ID;

/** Lazy record kinds. */
export const LZ_ADD = 1, LZ_SUB = 2, LZ_LOGIC = 3;

/** The fields of the CPU the lazy flag code reads. */
export interface LazyFlags {
  flags: number;
  /** Flag bits whose value comes from the lazy record instead of `flags`. */
  lzMask: number;
  lzOp: number;
  lzA: number;
  lzB: number;
  lzR: number;
  /** Index of the sign bit: 7, 15 or 31. */
  lzBit: number;
}

export const PARITY: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    let b = i, p = 1;
    while (b) {
      p ^= b & 1;
      b >>= 1;
    }
    t[i] = p ? PF : 0;
  }
  return t;
})();

export function getCF(c: LazyFlags): number {
  if (!(c.lzMask & CF)) return c.flags & CF;
  const a = c.lzA, b = c.lzB, r = c.lzR;
  if (c.lzOp === LZ_ADD) return (((a & b) | ((a | b) & ~r)) >>> c.lzBit) & 1;
  if (c.lzOp === LZ_SUB) return (((~a & b) | ((~a | b) & r)) >>> c.lzBit) & 1;
  return 0;
}

export function getOF(c: LazyFlags): number {
  if (!(c.lzMask & OF)) return c.flags & OF;
  const a = c.lzA, b = c.lzB, r = c.lzR;
  if (c.lzOp === LZ_ADD) return (((a ^ r) & (b ^ r)) >>> c.lzBit) & 1 ? OF : 0;
  if (c.lzOp === LZ_SUB) return (((a ^ b) & (a ^ r)) >>> c.lzBit) & 1 ? OF : 0;
  return 0;
}

export function getZF(c: LazyFlags): number {
  if (!(c.lzMask & ZF)) return c.flags & ZF;
  return c.lzR << (31 - c.lzBit) === 0 ? ZF : 0;
}

export function getSF(c: LazyFlags): number {
  if (!(c.lzMask & SF)) return c.flags & SF;
  return (c.lzR >>> c.lzBit) & 1 ? SF : 0;
}

export function getPF(c: LazyFlags): number {
  if (!(c.lzMask & PF)) return c.flags & PF;
  return PARITY[c.lzR & 0xff];
}

export function getAF(c: LazyFlags): number {
  if (!(c.lzMask & AF)) return c.flags & AF;
  if (c.lzOp === LZ_LOGIC) return 0;
  return (c.lzA ^ c.lzB ^ c.lzR) & AF;
}

/** Fold the lazy record into `flags` (afterwards `flags` is the whole truth). */
export function materialize(c: LazyFlags): number {
  if (c.lzMask !== 0) {
    const v = getCF(c) | getPF(c) | getAF(c) | getZF(c) | getSF(c) | getOF(c);
    c.flags = (c.flags & ~c.lzMask) | (v & c.lzMask);
    c.lzMask = 0;
  }
  return c.flags;
}

/** Record an arithmetic result lazily; all six arithmetic flags become lazy. */
export function lazy(c: LazyFlags, op: number, a: number, b: number, r: number, bit: number): void {
  c.lzOp = op;
  c.lzA = a;
  c.lzB = b;
  c.lzR = r;
  c.lzBit = bit;
  c.lzMask = ARITH;
}

/** Like `lazy`, but CF keeps its current value (INC, DEC). */
export function lazyKeepCF(c: LazyFlags, op: number, a: number, b: number, r: number, bit: number): void {
  const cf = getCF(c);
  c.flags = (c.flags & ~CF) | cf;
  c.lzOp = op;
  c.lzA = a;
  c.lzB = b;
  c.lzR = r;
  c.lzBit = bit;
  c.lzMask = ARITH & ~CF;
}

/** Set the arithmetic flags to `bits` (eager instructions: shifts, multiply, BCD). */
export function setArith(c: LazyFlags, bits: number): void {
  c.flags = (c.flags & ~ARITH) | (bits & ARITH);
  c.lzMask = 0;
}

/** SF, ZF, PF of a result whose sign bit is `bit`. */
export function szp(r: number, bit: number): number {
  return ((r >>> bit) & 1 ? SF : 0) | (r << (31 - bit) === 0 ? ZF : 0) | PARITY[r & 0xff];
}

/** Evaluate condition code `cc` (0-15, Jcc/SETcc/CMOVcc order). */
export function condition(c: LazyFlags, cc: number): boolean {
  let v: boolean;
  switch (cc >> 1) {
    case 0: v = getOF(c) !== 0; break;
    case 1: v = getCF(c) !== 0; break;
    case 2: v = getZF(c) !== 0; break;
    case 3: v = getCF(c) !== 0 || getZF(c) !== 0; break;
    case 4: v = getSF(c) !== 0; break;
    case 5: v = getPF(c) !== 0; break;
    case 6: v = (getSF(c) !== 0) !== (getOF(c) !== 0); break;
    default: v = getZF(c) !== 0 || (getSF(c) !== 0) !== (getOF(c) !== 0); break;
  }
  return (cc & 1) !== 0 ? !v : v;
}
