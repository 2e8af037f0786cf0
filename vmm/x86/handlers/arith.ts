// Handlers of the integer arithmetic and logic instructions: the ALU group, INC/DEC/NEG/NOT,
// TEST, multiply/divide, BCD adjusts, shifts and rotates, bit tests and scans, SETcc, CMOVcc,
// XADD, CMPXCHG(8B), BSWAP, sign extensions and flag-register moves.

import {
  aaa, aad, aam, alu, ALU_CMP, daa, das, dec, divS64, divU64, doubleShift, inc, mulFlags, mulS32, mulU32, neg, shift,
} from "../alu.js";
import type { Cpu, Handler } from "../cpu.js";
import { CF, condition, DF, getCF, lazy, LZ_LOGIC, materialize, setArith, ZF } from "../flags.js";
import { ALU_NAMES, SHIFT_NAMES } from "./names.js";
import {
  GET_G, getG16, getG32, getG8, loadRm, R8, READ_E, readE16, readE32, readE8, SET_G, setG16, setG32, SIGN_BIT,
  storeRm, WRITE_E, writeE8,
} from "../operands.js";

const SIZES = [
  { s: 0, suffix: "b", bit: 7 },
  { s: 1, suffix: "16", bit: 15 },
  { s: 2, suffix: "32", bit: 31 },
] as const;

/** Accumulator read/write by size index. */
function getAcc(c: Cpu, s: number): number {
  return s === 2 ? c.r[0] : s === 1 ? c.r16[0] : c.r8[0];
}
function setAcc(c: Cpu, s: number, v: number): void {
  if (s === 2) c.r[0] = v;
  else if (s === 1) c.r16[0] = v;
  else c.r8[0] = v;
}

export function registerArith(h: Record<string, Handler>): void {
  for (let op = 0; op < 8; op++) {
    const m = ALU_NAMES[op];
    const write = op !== ALU_CMP;
    for (const { s, suffix, bit } of SIZES) {
      const e = s === 0 ? "Eb" : "Ev";
      const g = s === 0 ? "Gb" : "Gv";
      const sz = s === 0 ? "" : suffix;
      const getG = GET_G[s];
      const setG = SET_G[s];
      const readE = READ_E[s];
      h[`${m}_${e}${g}${sz}`] = write
        ? (c, i) => storeRm(c, s, alu(c, op, loadRm(c, i, s), getG(c, i), bit))
        : (c, i) => void alu(c, op, readE(c, i), getG(c, i), bit);
      h[`${m}_${g}${e}${sz}`] = write
        ? (c, i) => setG(c, i, alu(c, op, getG(c, i), readE(c, i), bit))
        : (c, i) => void alu(c, op, getG(c, i), readE(c, i), bit);
      h[`${m}_${s === 0 ? "ALIb" : "eAXIz" + sz}`] = write
        ? (c, i) => setAcc(c, s, alu(c, op, getAcc(c, s), c.dec.imm[i], bit))
        : (c, i) => void alu(c, op, getAcc(c, s), c.dec.imm[i], bit);
      h[`${m}_${e}I${sz}`] = write
        ? (c, i) => storeRm(c, s, alu(c, op, loadRm(c, i, s), c.dec.imm[i], bit))
        : (c, i) => void alu(c, op, readE(c, i), c.dec.imm[i], bit);
    }
  }
  // The 8- and 32-bit forms again as their own function literals: direct register-file access
  // instead of the size-generic operand helpers (these are the hot forms in real code).
  for (let op = 0; op < 8; op++) {
    const m = ALU_NAMES[op];
    const write = op !== ALU_CMP;
    const rm32 = (c: Cpu, i: number, b: number) => {
      const d = c.dec;
      if (d.mod3[i]) {
        const rm = d.rm[i];
        const r = alu(c, op, c.r[rm], b, 31);
        if (write) c.r[rm] = r;
      } else {
        const seg = d.seg[i], off = c.ea(i);
        const r = alu(c, op, c.rd32(seg, off), b, 31);
        if (write) c.wr32(seg, off, r);
      }
    };
    const rm8 = (c: Cpu, i: number, b: number) => {
      const d = c.dec;
      if (d.mod3[i]) {
        const at = R8[d.rm[i]];
        const r = alu(c, op, c.r8[at], b, 7);
        if (write) c.r8[at] = r;
      } else {
        const seg = d.seg[i], off = c.ea(i);
        const r = alu(c, op, c.rd8(seg, off), b, 7);
        if (write) c.wr8(seg, off, r);
      }
    };
    h[`${m}_EvGv32`] = (c, i) => rm32(c, i, c.r[c.dec.reg[i]]);
    h[`${m}_EvI32`] = (c, i) => rm32(c, i, c.dec.imm[i]);
    h[`${m}_GvEv32`] = (c, i) => {
      const d = c.dec;
      const reg = d.reg[i];
      const r = alu(c, op, c.r[reg], d.mod3[i] ? c.r[d.rm[i]] : c.rd32(d.seg[i], c.ea(i)), 31);
      if (write) c.r[reg] = r;
    };
    h[`${m}_eAXIz32`] = (c, i) => {
      const r = alu(c, op, c.r[0], c.dec.imm[i], 31);
      if (write) c.r[0] = r;
    };
    h[`${m}_EbGb`] = (c, i) => rm8(c, i, c.r8[R8[c.dec.reg[i]]]);
    h[`${m}_EbI`] = (c, i) => rm8(c, i, c.dec.imm[i]);
    h[`${m}_GbEb`] = (c, i) => {
      const d = c.dec;
      const at = R8[d.reg[i]];
      const r = alu(c, op, c.r8[at], d.mod3[i] ? c.r8[R8[d.rm[i]]] : c.rd8(d.seg[i], c.ea(i)), 7);
      if (write) c.r8[at] = r;
    };
  }

  for (const { s, suffix, bit } of SIZES) {
    const sz = s === 0 ? "b" : "v" + suffix;
    const readE = READ_E[s];
    h[`inc_E${sz}`] = (c, i) => storeRm(c, s, inc(c, loadRm(c, i, s), bit));
    h[`dec_E${sz}`] = (c, i) => storeRm(c, s, dec(c, loadRm(c, i, s), bit));
    h[`not_E${sz}`] = (c, i) => storeRm(c, s, ~loadRm(c, i, s));
    h[`neg_E${sz}`] = (c, i) => storeRm(c, s, neg(c, loadRm(c, i, s), bit));
    h[s === 0 ? "test_EbI" : `test_EvI${suffix}`] = (c, i) => {
      const r = readE(c, i) & c.dec.imm[i];
      lazy(c, LZ_LOGIC, r, 0, r, bit);
    };
    h[s === 0 ? "test_ALIb" : `test_eAXIz${suffix}`] = (c, i) => {
      const r = getAcc(c, s) & c.dec.imm[i];
      lazy(c, LZ_LOGIC, r, 0, r, bit);
    };
    for (let op = 0; op < 8; op++) {
      h[`${SHIFT_NAMES[op]}_E${sz}`] = (c, i) => {
        const d = c.dec;
        const o = d.opc[i] & 0xfe;
        const count = o === 0xc0 ? d.imm[i] & 0xff : o === 0xd0 ? 1 : c.r8[4];
        if ((count & 31) === 0) {
          readE(c, i);
          return;
        }
        storeRm(c, s, shift(c, op, loadRm(c, i, s), count, bit));
      };
    }
  }
  h.test_EbGb = (c, i) => {
    const r = readE8(c, i) & getG8(c, i);
    lazy(c, LZ_LOGIC, r, 0, r, 7);
  };
  h.test_EvGv16 = (c, i) => {
    const r = readE16(c, i) & getG16(c, i);
    lazy(c, LZ_LOGIC, r, 0, r, 15);
  };
  h.test_EvGv32 = (c, i) => {
    const r = readE32(c, i) & getG32(c, i);
    lazy(c, LZ_LOGIC, r, 0, r, 31);
  };
  h.inc_r16 = (c, i) => {
    const n = (c.dec.opc[i] & 7) << 1;
    c.r16[n] = inc(c, c.r16[n], 15);
  };
  h.inc_r32 = (c, i) => {
    const n = c.dec.opc[i] & 7;
    c.r[n] = inc(c, c.r[n], 31);
  };
  h.dec_r16 = (c, i) => {
    const n = (c.dec.opc[i] & 7) << 1;
    c.r16[n] = dec(c, c.r16[n], 15);
  };
  h.dec_r32 = (c, i) => {
    const n = c.dec.opc[i] & 7;
    c.r[n] = dec(c, c.r[n], 31);
  };

  // Multiply and divide.
  h.mul_Eb = (c, i) => {
    const r = c.r8[0] * readE8(c, i);
    c.r16[0] = r;
    mulFlags(c, r > 0xff, r, 7);
  };
  h.imul_Eb = (c, i) => {
    const r = ((c.r8[0] << 24) >> 24) * ((readE8(c, i) << 24) >> 24);
    c.r16[0] = r;
    mulFlags(c, r !== (r << 24) >> 24, r, 7);
  };
  h.mul_Ev16 = (c, i) => {
    const r = c.r16[0] * readE16(c, i);
    c.r16[0] = r;
    c.r16[4] = r >>> 16;
    mulFlags(c, r > 0xffff, r, 15);
  };
  h.imul_Ev16 = (c, i) => {
    const r = ((c.r16[0] << 16) >> 16) * ((readE16(c, i) << 16) >> 16);
    c.r16[0] = r;
    c.r16[4] = r >> 16;
    mulFlags(c, r !== (r << 16) >> 16, r, 15);
  };
  h.mul_Ev32 = (c, i) => {
    const lo = mulU32(c, c.r[0], readE32(c, i));
    c.r[0] = lo;
    c.r[2] = c.mulHigh;
    mulFlags(c, c.mulHigh !== 0, lo, 31);
  };
  h.imul_Ev32 = (c, i) => {
    const lo = mulS32(c, c.r[0], readE32(c, i));
    c.r[0] = lo;
    c.r[2] = c.mulHigh;
    mulFlags(c, c.mulHigh !== lo >> 31, lo, 31);
  };
  const imul16 = (c: Cpu, i: number, b: number) => {
    const r = ((readE16(c, i) << 16) >> 16) * ((b << 16) >> 16);
    setG16(c, i, r);
    mulFlags(c, r !== (r << 16) >> 16, r, 15);
  };
  const imul32 = (c: Cpu, i: number, b: number) => {
    const lo = mulS32(c, readE32(c, i), b);
    setG32(c, i, lo);
    mulFlags(c, c.mulHigh !== lo >> 31, lo, 31);
  };
  h.imul_GvEv16 = (c, i) => imul16(c, i, getG16(c, i));
  h.imul_GvEv32 = (c, i) => imul32(c, i, getG32(c, i));
  h.imul_GvEvIz16 = (c, i) => imul16(c, i, c.dec.imm[i]);
  h.imul_GvEvIz32 = (c, i) => imul32(c, i, c.dec.imm[i]);
  h.imul_GvEvIb16 = h.imul_GvEvIz16;
  h.imul_GvEvIb32 = h.imul_GvEvIz32;
  h.div_Eb = (c, i) => {
    const d = readE8(c, i);
    const a = c.r16[0];
    if (d === 0) c.fault(0);
    const q = Math.floor(a / d);
    if (q > 0xff) c.fault(0);
    c.r8[0] = q;
    c.r8[1] = a % d;
  };
  h.idiv_Eb = (c, i) => {
    const d = (readE8(c, i) << 24) >> 24;
    const a = (c.r16[0] << 16) >> 16;
    if (d === 0) c.fault(0);
    const q = Math.trunc(a / d);
    if (q > 127 || q < -128) c.fault(0);
    c.r8[0] = q;
    c.r8[1] = a % d;
  };
  h.div_Ev16 = (c, i) => {
    const d = readE16(c, i);
    const a = c.r16[4] * 65536 + c.r16[0];
    if (d === 0) c.fault(0);
    const q = Math.floor(a / d);
    if (q > 0xffff) c.fault(0);
    c.r16[0] = q;
    c.r16[4] = a % d;
  };
  h.idiv_Ev16 = (c, i) => {
    const d = (readE16(c, i) << 16) >> 16;
    const a = (c.r16[4] << 16) | c.r16[0];
    if (d === 0) c.fault(0);
    const q = Math.trunc(a / d);
    if (q > 32767 || q < -32768) c.fault(0);
    c.r16[0] = q;
    c.r16[4] = a % d;
  };
  h.div_Ev32 = (c, i) => {
    if (!divU64(c, c.r[2], c.r[0], readE32(c, i))) c.fault(0);
    c.r[0] = c.divQuot;
    c.r[2] = c.divRem;
  };
  h.idiv_Ev32 = (c, i) => {
    if (!divS64(c, c.r[2], c.r[0], readE32(c, i))) c.fault(0);
    c.r[0] = c.divQuot;
    c.r[2] = c.divRem;
  };

  // BCD.
  h.daa = (c) => daa(c);
  h.das = (c) => das(c);
  h.aaa = (c) => aaa(c, false);
  h.aas = (c) => aaa(c, true);
  h.aam = (c, i) => aam(c, c.dec.imm[i] & 0xff);
  h.aad = (c, i) => aad(c, c.dec.imm[i] & 0xff);

  // Double shifts.
  for (const [name, left] of [["shld", true], ["shrd", false]] as const) {
    for (const [src, fromCl] of [["Ib", false], ["CL", true]] as const) {
      for (const s of [1, 2]) {
        const bit = SIGN_BIT[s];
        h[`${name}_${src}${s === 1 ? 16 : 32}`] = (c, i) => {
          const count = (fromCl ? c.r8[4] : c.dec.imm[i]) & 31;
          if (count === 0) {
            READ_E[s](c, i);
            return;
          }
          const b = GET_G[s](c, i);
          storeRm(c, s, doubleShift(c, left, loadRm(c, i, s), b, count, bit));
        };
      }
    }
  }

  // Bit test family: kind 0 BT, 1 BTS, 2 BTR, 3 BTC.
  for (const [k, name] of ["bt", "bts", "btr", "btc"].entries()) {
    for (const s of [1, 2]) {
      const width = s === 1 ? 16 : 32;
      const apply = (c: Cpu, v: number, bitIndex: number): number => {
        const m = 1 << bitIndex;
        materialize(c);
        c.flags = (c.flags & ~CF) | (v & m ? CF : 0);
        return k === 1 ? v | m : k === 2 ? v & ~m : k === 3 ? v ^ m : v;
      };
      const run = (c: Cpu, i: number, offset: number, fromReg: boolean) => {
        const d = c.dec;
        if (d.mod3[i]) {
          const bitIndex = offset & (width - 1);
          const rm = d.rm[i];
          if (s === 2) c.r[rm] = apply(c, c.r[rm], bitIndex);
          else c.r16[rm << 1] = apply(c, c.r16[rm << 1], bitIndex);
          return;
        }
        let off = c.ea(i);
        if (fromReg) {
          const signed = s === 2 ? offset | 0 : (offset << 16) >> 16;
          off = (off + (Math.floor(signed / width) * (width / 8))) & d.amask[i];
        }
        const bitIndex = offset & (width - 1);
        const seg = d.seg[i];
        const v = s === 2 ? c.rd32(seg, off) : c.rd16(seg, off);
        const r = apply(c, v, bitIndex);
        if (k !== 0) {
          if (s === 2) c.wr32(seg, off, r);
          else c.wr16(seg, off, r);
        }
      };
      h[`${name}_EvGv${width}`] = (c, i) => run(c, i, GET_G[s](c, i), true);
      h[`${name}_EvIb${width}`] = (c, i) => run(c, i, c.dec.imm[i] & 0xff, false);
    }
  }
  for (const s of [1, 2]) {
    const width = s === 1 ? 16 : 32;
    h[`bsf${width}`] = (c, i) => {
      const v = READ_E[s](c, i) & (s === 1 ? 0xffff : -1);
      materialize(c);
      if (v === 0) {
        c.flags |= ZF;
        return;
      }
      c.flags &= ~ZF;
      SET_G[s](c, i, 31 - Math.clz32(v & -v));
    };
    h[`bsr${width}`] = (c, i) => {
      const v = READ_E[s](c, i) & (s === 1 ? 0xffff : -1);
      materialize(c);
      if (v === 0) {
        c.flags |= ZF;
        return;
      }
      c.flags &= ~ZF;
      SET_G[s](c, i, 31 - Math.clz32(v));
    };
    // XADD, CMPXCHG
    const bit = SIGN_BIT[s];
    h[`xadd_EvGv${width}`] = (c, i) => xadd(c, i, s, bit);
    h[`cmpxchg_EvGv${width}`] = (c, i) => cmpxchg(c, i, s, bit);
    h[`cmov${width}`] = (c, i) => {
      const v = READ_E[s](c, i);
      if (condition(c, c.dec.opc[i] & 15)) SET_G[s](c, i, v);
    };
    h[`movzx_GvEb${width}`] = (c, i) => SET_G[s](c, i, readE8(c, i));
    h[`movzx_GvEw${width}`] = (c, i) => SET_G[s](c, i, readE16(c, i));
    h[`movsx_GvEb${width}`] = (c, i) => SET_G[s](c, i, (readE8(c, i) << 24) >> 24);
    h[`movsx_GvEw${width}`] = (c, i) => SET_G[s](c, i, (readE16(c, i) << 16) >> 16);
  }
  h.cmovcc16 = h.cmov16;
  h.cmovcc32 = h.cmov32;
  h.xadd_EbGb = (c, i) => xadd(c, i, 0, 7);
  h.cmpxchg_EbGb = (c, i) => cmpxchg(c, i, 0, 7);
  h.cmpxchg8b = (c, i) => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    const seg = d.seg[i], off = c.ea(i);
    const lo = c.rd32(seg, off);
    const hi = c.rd32(seg, (off + 4) & d.amask[i]);
    materialize(c);
    if (lo === c.r[0] && hi === c.r[2]) {
      c.wr32(seg, off, c.r[3]);
      c.wr32(seg, (off + 4) & d.amask[i], c.r[1]);
      c.flags |= ZF;
    } else {
      c.wr32(seg, off, lo);
      c.wr32(seg, (off + 4) & d.amask[i], hi);
      c.r[0] = lo;
      c.r[2] = hi;
      c.flags &= ~ZF;
    }
  };
  h.bswap = (c, i) => {
    const n = c.dec.opc[i] & 7;
    const v = c.r[n];
    c.r[n] = (v << 24) | ((v << 8) & 0xff0000) | ((v >>> 8) & 0xff00) | (v >>> 24);
  };
  h.setcc = (c, i) => writeE8(c, i, condition(c, c.dec.opc[i] & 15) ? 1 : 0);

  // Sign extension of the accumulator and flag moves.
  h.cbw16 = (c) => void (c.r16[0] = (c.r8[0] << 24) >> 24);
  h.cbw32 = (c) => void (c.r[0] = (c.r16[0] << 16) >> 16);
  h.cwd16 = (c) => void (c.r16[4] = c.r16[0] & 0x8000 ? 0xffff : 0);
  h.cwd32 = (c) => void (c.r[2] = c.r[0] >> 31);
  h.lahf = (c) => void (c.r8[1] = (materialize(c) & 0xd5) | 2);
  h.sahf = (c) => {
    materialize(c);
    c.flags = (c.flags & ~0xd5) | (c.r8[1] & 0xd5);
  };
  h.salc = (c) => void (c.r8[0] = getCF(c) ? 0xff : 0);
  h.clc = (c) => setArith(c, materialize(c) & ~CF);
  h.stc = (c) => setArith(c, materialize(c) | CF);
  h.cmc = (c) => setArith(c, materialize(c) ^ CF);
  h.cld = (c) => void (c.flags &= ~DF);
  h.std = (c) => void (c.flags |= DF);
}

function xadd(c: Cpu, i: number, s: number, bit: number): void {
  const d = c.dec;
  const src = GET_G[s](c, i);
  if (d.mod3[i]) {
    const dst = READ_E[s](c, i);
    const r = alu(c, 0, dst, src, bit);
    SET_G[s](c, i, dst);
    WRITE_E[s](c, i, r);
    return;
  }
  const seg = d.seg[i], off = c.ea(i);
  const dst = s === 2 ? c.rd32(seg, off) : s === 1 ? c.rd16(seg, off) : c.rd8(seg, off);
  c.probeWrite(seg, off, 1 << s);
  const r = alu(c, 0, dst, src, bit);
  if (s === 2) c.wr32(seg, off, r);
  else if (s === 1) c.wr16(seg, off, r);
  else c.wr8(seg, off, r);
  SET_G[s](c, i, dst);
}

function cmpxchg(c: Cpu, i: number, s: number, bit: number): void {
  const d = c.dec;
  const acc = getAcc(c, s);
  if (d.mod3[i]) {
    const dst = READ_E[s](c, i);
    alu(c, ALU_CMP, acc, dst, bit);
    if (((acc ^ dst) << (31 - bit)) === 0) WRITE_E[s](c, i, GET_G[s](c, i));
    else setAcc(c, s, dst);
    return;
  }
  const seg = d.seg[i], off = c.ea(i);
  const dst = s === 2 ? c.rd32(seg, off) : s === 1 ? c.rd16(seg, off) : c.rd8(seg, off);
  const equal = ((acc ^ dst) << (31 - bit)) === 0;
  const w = equal ? GET_G[s](c, i) : dst;
  if (s === 2) c.wr32(seg, off, w);
  else if (s === 1) c.wr16(seg, off, w);
  else c.wr8(seg, off, w);
  alu(c, ALU_CMP, acc, dst, bit);
  if (!equal) setAcc(c, s, dst);
}
