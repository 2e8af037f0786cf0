// Handlers of x87 data transfer: loads and stores of reals, integers and BCD, register moves
// (FLD/FST ST(i), FXCH, FCMOVcc), constants and the one-register operations FCHS/FABS/FXAM.

import type { F80 } from "./arith.js";
import { loadBcd, loadF32, loadF64, storeBcd, storeF32, storeF64, toInteger } from "./convert.js";
import { IE, INDEFINITE_M, RC_DOWN, RC_CHOP, RC_UP } from "./float80.js";
import type { X87Host } from "./host.js";
import { classifyParts } from "./limbs.js";
import { f32Parts, f64Parts, fistParts, int64Parts, intParts, storeF32Parts, storeF64Parts } from "./limbs-convert.js";
import { examineClass } from "./ops.js";
import type { X87 } from "./x87.js";
import { SW_C1 } from "./status.js";

// ---- loads ----

/** Memory real/integer kinds of loads and stores. */
export const LD_F32 = 0, LD_F64 = 1, LD_F80 = 2, LD_I16 = 3, LD_I32 = 4, LD_I64 = 5, LD_BCD = 6;

/** High half of the indefinite's significand (int32). */
const INDEFINITE_HI = 0xc0000000 | 0;

/** Read ten bytes at the operand into x.image[0..9]. */
function read80(x: X87, c: X87Host, i: number): void {
  const seg = c.dec.seg[i];
  const off = c.ea(i);
  const b = x.image;
  const lo = c.rd32(seg, off), hi = c.rd32(seg, (off + 4) | 0), top = c.rd16(seg, (off + 8) | 0);
  b[0] = lo; b[1] = lo >>> 8; b[2] = lo >>> 16; b[3] = lo >>> 24;
  b[4] = hi; b[5] = hi >>> 8; b[6] = hi >>> 16; b[7] = hi >>> 24;
  b[8] = top; b[9] = top >>> 8;
}

export function fldMemory(x: X87, c: X87Host, i: number, kind: number): void {
  const seg = c.dec.seg[i];
  const off = c.ea(i);
  const t = x.t0;
  let lo = 0, hi = 0;
  if (kind === LD_F80 || kind === LD_BCD) read80(x, c, i);
  else if (kind === LD_F64 || kind === LD_I64) {
    lo = c.rd32(seg, off);
    hi = c.rd32(seg, (off + 4) | 0);
  } else if (kind === LD_I16) lo = (c.rd16(seg, off) << 16) >> 16;
  else lo = c.rd32(seg, off);
  x.setC1(0);
  if (!x.pushCheck()) return;
  const p = x.p1;
  switch (kind) {
    case LD_F32:
      if (f32Parts(lo, p)) break;
      loadF32(x.ctx, lo, t);
      return pushLoaded(x, t);
    case LD_F64:
      if (f64Parts(lo, hi, p)) break;
      loadF64(x.ctx, lo, hi, t);
      return pushLoaded(x, t);
    case LD_F80: {
      const b = x.image;
      p.se = b[8] | (b[9] << 8);
      p.hi = b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24);
      p.lo = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24);
      break;
    }
    case LD_I64:
      int64Parts(lo, hi, p);
      break;
    case LD_BCD:
      loadBcd(x.image, t);
      return pushLoaded(x, t);
    default:
      intParts(lo | 0, p);
  }
  // The number paths: exact, no exceptions.
  x.pushParts(p.se, p.hi, p.lo);
}

/** Push a value converted by convert.ts (x.t0) unless the conversion raised an unmasked IE. */
function pushLoaded(x: X87, t: F80): void {
  // An unmasked DE does not stop a load (the host pushes the value); an unmasked IE does.
  if (x.ctx.exc & ~x.cw & IE) return;
  x.push(t.se, t.m);
}

/** FLD ST(i). */
export function fldRegister(x: X87, c: X87Host, i: number): void {
  const sti = c.dec.rm[i];
  x.setC1(0);
  // An empty source is reported (underflow, C1 = 0) even when the push also overflows.
  if (x.isEmpty(sti)) {
    if (!x.stackUnderflow(-1)) return;
    x.push(0xffff, INDEFINITE_M);
    return;
  }
  if (!x.pushCheck()) return;
  x.pushCopy(x.phys(sti));
}

/** FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ (index 0-6, as E8-EE). */
const CONSTANTS: readonly [number, bigint, number][] = [
  // [sign/exponent, truncated significand, rounding modes that round the 66-bit constant up]
  [0x3fff, 0x8000000000000000n, 0],
  [0x4000, 0xd49a784bcd1b8afen, 1 << RC_UP],
  [0x3fff, 0xb8aa3b295c17f0bbn, ~((1 << RC_DOWN) | (1 << RC_CHOP))],
  [0x4000, 0xc90fdaa22168c234n, ~((1 << RC_DOWN) | (1 << RC_CHOP))],
  [0x3ffd, 0x9a209a84fbcff798n, ~((1 << RC_DOWN) | (1 << RC_CHOP))],
  [0x3ffe, 0xb17217f7d1cf79abn, ~((1 << RC_DOWN) | (1 << RC_CHOP))],
  [0, 0n, 0],
];

export function fldConstant(x: X87, k: number): void {
  x.setC1(0);
  if (!x.pushCheck()) return;
  const [se, m, upModes] = CONSTANTS[k];
  const rc = (x.cw >> 10) & 3;
  x.push(se, (upModes >> rc) & 1 ? m + 1n : m);
}

// ---- stores ----

/** Write the ten bytes of x.image[0..9] (probed first so a fault leaves memory unchanged). */
function write80(x: X87, c: X87Host, seg: number, off: number): void {
  const b = x.image;
  c.probeWrite(seg, off, 10);
  c.wr32(seg, off, b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24));
  c.wr32(seg, (off + 4) | 0, b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24));
  c.wr16(seg, (off + 8) | 0, b[8] | (b[9] << 8));
}

function write64(c: X87Host, seg: number, off: number, v: bigint): void {
  c.probeWrite(seg, off, 8);
  c.wr32(seg, off, Number(v & 0xffffffffn));
  c.wr32(seg, (off + 4) | 0, Number((v >> 32n) & 0xffffffffn));
}

function setImage80(x: X87, se: number, hi: number, lo: number): void {
  const b = x.image;
  b[0] = lo; b[1] = lo >>> 8; b[2] = lo >>> 16; b[3] = lo >>> 24;
  b[4] = hi; b[5] = hi >>> 8; b[6] = hi >>> 16; b[7] = hi >>> 24;
  b[8] = se & 0xff;
  b[9] = se >> 8;
}

const INT_LIMITS: readonly [bigint, bigint, number][] = [
  [0x7fffn, 0x8000n, 2],
  [0x7fffffffn, 0x80000000n, 4],
  [0x7fffffffffffffffn, 0x8000000000000000n, 8],
];
export const ST_F32 = 0, ST_F64 = 1, ST_F80 = 2, ST_I16 = 3, ST_I32 = 4, ST_I64 = 5, ST_BCD = 6;

/** FST/FSTP/FIST/FISTP/FBSTP to memory. */
export function fstMemory(x: X87, c: X87Host, i: number, kind: number, popAfter: boolean): void {
  const seg = c.dec.seg[i];
  const off = c.ea(i);
  const ctx = x.ctx;
  let up = 0;
  if (x.isEmpty(0)) {
    ctx.exc |= IE | 0x40;
    if (!(x.cw & IE)) {
      x.setC1(0);
      return;
    }
    storeIndefinite(x, c, seg, off, kind);
    x.setC1(0);
    if (popAfter) x.pop();
    return;
  }
  const r = x.phys(0);
  const se = x.se[r];
  const p = x.p1;
  if (kind === ST_F64 && storeF64Parts(ctx, se, x.sigHi(r), x.sigLo(r), p)) {
    c.probeWrite(seg, off, 8);
    c.wr32(seg, off, p.lo | 0);
    c.wr32(seg, (off + 4) | 0, p.hi | 0);
    x.setC1(ctx.up);
    if (popAfter) x.pop();
    return;
  }
  if (kind === ST_F32 && storeF32Parts(ctx, se, x.sigHi(r), x.sigLo(r), p)) {
    c.probeWrite(seg, off, 4);
    c.wr32(seg, off, p.lo | 0);
    x.setC1(ctx.up);
    if (popAfter) x.pop();
    return;
  }
  if (kind >= ST_I16 && kind <= ST_I64 && fistParts(ctx, se, x.sigHi(r), x.sigLo(r), INT_LIMITS[kind - ST_I16][2], p)) {
    const size = INT_LIMITS[kind - ST_I16][2];
    c.probeWrite(seg, off, size);
    if (size === 2) c.wr16(seg, off, p.lo & 0xffff);
    else {
      c.wr32(seg, off, p.lo);
      if (size === 8) c.wr32(seg, (off + 4) | 0, p.hi);
    }
    x.setC1(ctx.up);
    if (popAfter) x.pop();
    return;
  }
  const m = x.m[r];
  switch (kind) {
    case ST_F32: {
      const v = storeF32(ctx, se, m);
      if (v === -1) return x.setC1(0);
      c.probeWrite(seg, off, 4);
      c.wr32(seg, off, v);
      break;
    }
    case ST_F64: {
      const v = storeF64(ctx, se, m);
      if (v === -1n) return x.setC1(0);
      write64(c, seg, off, v);
      break;
    }
    case ST_F80:
      setImage80(x, se, x.sigHi(r), x.sigLo(r));
      write80(x, c, seg, off);
      break;
    case ST_BCD:
      if (!storeBcd(ctx, se, m, x.image)) return x.setC1(0);
      write80(x, c, seg, off);
      break;
    default: {
      const [limit, negLimit, size] = INT_LIMITS[kind - ST_I16];
      let v = toInteger(ctx, se, m, limit, negLimit);
      if (v === null) {
        if (!(x.cw & IE)) return x.setC1(0);
        v = -negLimit;
        ctx.up = 0;
      }
      if (size === 8) write64(c, seg, off, v & 0xffffffffffffffffn);
      else if (size === 4) {
        c.probeWrite(seg, off, 4);
        c.wr32(seg, off, Number(v & 0xffffffffn));
      } else {
        c.probeWrite(seg, off, 2);
        c.wr16(seg, off, Number(v & 0xffffn));
      }
    }
  }
  up = ctx.up;
  x.setC1(up);
  if (popAfter) x.pop();
}

function storeIndefinite(x: X87, c: X87Host, seg: number, off: number, kind: number): void {
  switch (kind) {
    case ST_F32:
      c.probeWrite(seg, off, 4);
      c.wr32(seg, off, 0xffc00000 | 0);
      return;
    case ST_F64:
      write64(c, seg, off, 0xfff8000000000000n);
      return;
    case ST_F80:
      setImage80(x, 0xffff, INDEFINITE_HI, 0);
      write80(x, c, seg, off);
      return;
    case ST_BCD:
      x.image.fill(0, 0, 10);
      x.image[7] = 0xc0;
      x.image[8] = 0xff;
      x.image[9] = 0xff;
      write80(x, c, seg, off);
      return;
    case ST_I16:
      c.probeWrite(seg, off, 2);
      c.wr16(seg, off, 0x8000);
      return;
    case ST_I32:
      c.probeWrite(seg, off, 4);
      c.wr32(seg, off, 0x80000000 | 0);
      return;
    default:
      write64(c, seg, off, 0x8000000000000000n);
  }
}

/** FST/FSTP ST(i). */
export function fstRegister(x: X87, c: X87Host, i: number, popAfter: boolean): void {
  const sti = c.dec.rm[i];
  x.setC1(0);
  if (x.isEmpty(0)) {
    if (x.stackUnderflow(sti) && popAfter) x.pop();
    return;
  }
  x.copyTo(sti, x.phys(0));
  if (popAfter) x.pop();
}

// ---- register operations ----

export function fxch(x: X87, c: X87Host, i: number): void {
  const sti = c.dec.rm[i];
  x.setC1(0);
  const a = x.phys(0), b = x.phys(sti);
  const aEmpty = x.isEmpty(0), bEmpty = x.isEmpty(sti);
  if (aEmpty || bEmpty) {
    if (!x.stackUnderflow(-1)) return;
  }
  // An empty side reads as the indefinite (0xffff, C000000000000000).
  const aSe = aEmpty ? 0xffff : x.se[a], aHi = aEmpty ? INDEFINITE_HI : x.sigHi(a), aLo = aEmpty ? 0 : x.sigLo(a);
  const bSe = bEmpty ? 0xffff : x.se[b], bHi = bEmpty ? INDEFINITE_HI : x.sigHi(b), bLo = bEmpty ? 0 : x.sigLo(b);
  x.writeParts(0, bSe, bHi, bLo);
  x.writeParts(sti, aSe, aHi, aLo);
}

/** FCMOVcc: `cc` is the Jcc condition number (B=2, E=4, BE=6, P=10; odd: negated). */
export function fcmov(x: X87, c: X87Host, i: number, cc: number): void {
  const sti = c.dec.rm[i];
  if (x.isEmpty(0) || x.isEmpty(sti)) {
    x.stackUnderflow(0);
    return;
  }
  // C1 is left alone unless the stack underflows (as the host does).
  if (!c.condition(cc)) return;
  x.copyTo(0, x.phys(sti));
}

/** FCHS (negate) and FABS (clear the sign). */
export function fsign(x: X87, abs: boolean): void {
  x.setC1(0);
  if (x.isEmpty(0)) {
    x.stackUnderflow(0);
    return;
  }
  const r = x.phys(0);
  x.se[r] = abs ? x.se[r] & 0x7fff : x.se[r] ^ 0x8000;
}

export function fxam(x: X87): void {
  const r = x.phys(0);
  const cls = examineClass(x.isEmpty(0), classifyParts(x.se[r], x.sigHi(r), x.sigLo(r)));
  x.setCC(cls | (x.se[r] & 0x8000 ? SW_C1 : 0));
}

export function ffree(x: X87, c: X87Host, i: number, popAfter: boolean): void {
  x.setC1(0);
  x.free(c.dec.rm[i]);
  if (popAfter) x.pop();
}

export function fincstp(x: X87, delta: number): void {
  x.setC1(0);
  x.top = (x.top + delta) & 7;
}
