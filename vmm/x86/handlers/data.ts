// Handlers of data movement: MOV forms, LEA, XCHG, stack (PUSH/POP/PUSHA/POPA/ENTER/LEAVE),
// segment register loads (MOV Sreg, POP Sreg, LDS/LES/LSS/LFS/LGS), BOUND, ARPL, XLAT.

import type { Cpu, Handler } from "../cpu.js";
import { Pfx, SEG_SS } from "../decoder.js";
import { materialize, ZF } from "../flags.js";
import {
  getG16, getG32, getG8, R8, readE16, readE32, readE8, setG16, setG32, setG8, writeE16, writeE32, writeE8,
} from "../operands.js";
import { loadSegment } from "../segments.js";

const SREGS = ["ES", "CS", "SS", "DS", "FS", "GS"] as const;

/** Interrupts stay blocked until after the next instruction (MOV SS, POP SS). */
export function inhibitInterrupts(c: Cpu): void {
  c.inhibitUntil = c.retired + 2;
  c.attention = true;
}

function setSreg(c: Cpu, seg: number, sel: number): void {
  loadSegment(c, seg, sel);
  if (seg === SEG_SS) inhibitInterrupts(c);
}

export function registerData(h: Record<string, Handler>): void {
  h.mov_EbGb = (c, i) => writeE8(c, i, getG8(c, i));
  h.mov_EvGv16 = (c, i) => writeE16(c, i, getG16(c, i));
  h.mov_EvGv32 = (c, i) => {
    const d = c.dec;
    if (d.mod3[i]) c.r[d.rm[i]] = c.r[d.reg[i]];
    else c.wr32(d.seg[i], c.ea(i), c.r[d.reg[i]]);
  };
  h.mov_GbEb = (c, i) => setG8(c, i, readE8(c, i));
  h.mov_GvEv16 = (c, i) => setG16(c, i, readE16(c, i));
  h.mov_GvEv32 = (c, i) => {
    const d = c.dec;
    c.r[d.reg[i]] = d.mod3[i] ? c.r[d.rm[i]] : c.rd32(d.seg[i], c.ea(i));
  };
  h.mov_EbIb = (c, i) => writeE8(c, i, c.dec.imm[i]);
  h.mov_EvIz16 = (c, i) => writeE16(c, i, c.dec.imm[i]);
  h.mov_EvIz32 = (c, i) => writeE32(c, i, c.dec.imm[i]);
  h.mov_r8Ib = (c, i) => void (c.r8[R8[c.dec.opc[i] & 7]] = c.dec.imm[i]);
  h.mov_rIv16 = (c, i) => void (c.r16[(c.dec.opc[i] & 7) << 1] = c.dec.imm[i]);
  h.mov_rIv32 = (c, i) => void (c.r[c.dec.opc[i] & 7] = c.dec.imm[i]);
  const moff = (c: Cpu, i: number) => c.dec.disp[i] & c.dec.amask[i];
  h.mov_ALOb = (c, i) => void (c.r8[0] = c.rd8(c.dec.seg[i], moff(c, i)));
  h.mov_eAXOv16 = (c, i) => void (c.r16[0] = c.rd16(c.dec.seg[i], moff(c, i)));
  h.mov_eAXOv32 = (c, i) => void (c.r[0] = c.rd32(c.dec.seg[i], moff(c, i)));
  h.mov_ObAL = (c, i) => c.wr8(c.dec.seg[i], moff(c, i), c.r8[0]);
  h.mov_OveAX16 = (c, i) => c.wr16(c.dec.seg[i], moff(c, i), c.r16[0]);
  h.mov_OveAX32 = (c, i) => c.wr32(c.dec.seg[i], moff(c, i), c.r[0]);
  const movFromSreg = (c: Cpu, i: number, o32: boolean) => {
    const d = c.dec;
    const s = d.reg[i];
    if (s > 5) c.fault(6);
    if (d.mod3[i]) {
      if (o32) c.r[d.rm[i]] = c.sel[s];
      else c.r16[d.rm[i] << 1] = c.sel[s];
    } else c.wr16(d.seg[i], c.ea(i), c.sel[s]);
  };
  h.mov_EvSw16 = (c, i) => movFromSreg(c, i, false);
  h.mov_EvSw32 = (c, i) => movFromSreg(c, i, true);
  h.mov_SwEw = (c, i) => {
    const s = c.dec.reg[i];
    if (s > 5 || s === 1) c.fault(6);
    setSreg(c, s, readE16(c, i));
  };
  h.lea16 = (c, i) => {
    if (c.dec.mod3[i]) c.fault(6);
    setG16(c, i, c.ea(i));
  };
  h.lea32 = (c, i) => {
    if (c.dec.mod3[i]) c.fault(6);
    setG32(c, i, c.ea(i));
  };
  h.xchg_EbGb = (c, i) => {
    const v = readE8(c, i);
    writeE8(c, i, getG8(c, i));
    setG8(c, i, v);
  };
  h.xchg_EvGv16 = (c, i) => {
    const v = readE16(c, i);
    writeE16(c, i, getG16(c, i));
    setG16(c, i, v);
  };
  h.xchg_EvGv32 = (c, i) => {
    const v = readE32(c, i);
    writeE32(c, i, getG32(c, i));
    setG32(c, i, v);
  };
  h.xchg_rAX16 = (c, i) => {
    const n = (c.dec.opc[i] & 7) << 1;
    const v = c.r16[n];
    c.r16[n] = c.r16[0];
    c.r16[0] = v;
  };
  h.xchg_rAX32 = (c, i) => {
    const n = c.dec.opc[i] & 7;
    const v = c.r[n];
    c.r[n] = c.r[0];
    c.r[0] = v;
  };
  h.nop = () => {};
  h.nop_Ev = () => {};

  // Stack.
  h.push_r16 = (c, i) => c.push16(c.r16[(c.dec.opc[i] & 7) << 1]);
  h.push_r32 = (c, i) => c.push32(c.r[c.dec.opc[i] & 7]);
  h.pop_r16 = (c, i) => {
    const v = c.pop16();
    c.r16[(c.dec.opc[i] & 7) << 1] = v;
  };
  h.pop_r32 = (c, i) => {
    const v = c.pop32();
    c.r[c.dec.opc[i] & 7] = v;
  };
  h.push_Iz16 = (c, i) => c.push16(c.dec.imm[i]);
  h.push_Iz32 = (c, i) => c.push32(c.dec.imm[i]);
  h.push_Ib16 = h.push_Iz16;
  h.push_Ib32 = h.push_Iz32;
  h.push_Ev16 = (c, i) => c.push16(readE16(c, i));
  h.push_Ev32 = (c, i) => c.push32(readE32(c, i));
  h.pop_Ev16 = (c, i) => {
    const v = c.peek16(0);
    const old = c.r[4];
    c.setSp(c.sp + 2);
    try {
      writeE16(c, i, v);
    } catch (e) {
      c.r[4] = old;
      throw e;
    }
  };
  h.pop_Ev32 = (c, i) => {
    const v = c.peek32(0);
    const old = c.r[4];
    c.setSp(c.sp + 4);
    try {
      writeE32(c, i, v);
    } catch (e) {
      c.r[4] = old;
      throw e;
    }
  };
  for (let s = 0; s < 6; s++) {
    const name = SREGS[s];
    h[`push_${name}16`] = (c) => c.push16(c.sel[s]);
    h[`push_${name}32`] = (c) => {
      // P6: a 16-bit write into the 32-bit stack slot.
      const sp = c.stack32 ? (c.r[4] - 4) | 0 : (c.r16[8] - 4) & 0xffff;
      c.probeWrite(SEG_SS, sp, 4);
      c.wr16(SEG_SS, sp, c.sel[s]);
      c.setSp(sp);
    };
    if (s === 1) continue;
    // The pop is from the old stack: SP or ESP moves by the old SS's B bit, also when POP SS
    // loads a stack segment of the other size (as Bochs and QEMU do).
    h[`pop_${name}16`] = (c) => {
      const big = c.stack32;
      setSreg(c, s, c.peek16(0));
      if (big) c.r[4] = c.r[4] + 2;
      else c.r16[8] = c.r16[8] + 2;
    };
    h[`pop_${name}32`] = (c) => {
      const big = c.stack32;
      setSreg(c, s, c.peek32(0) & 0xffff);
      if (big) c.r[4] = c.r[4] + 4;
      else c.r16[8] = c.r16[8] + 4;
    };
  }
  h.pusha16 = (c) => {
    const sp = c.sp;
    for (let k = 0; k < 8; k++) {
      c.wr16(SEG_SS, c.stack32 ? (sp - 2 * (k + 1)) | 0 : (sp - 2 * (k + 1)) & 0xffff, c.r16[k << 1]);
    }
    c.setSp(sp - 16);
  };
  h.pusha32 = (c) => {
    const sp = c.sp;
    for (let k = 0; k < 8; k++) {
      c.wr32(SEG_SS, c.stack32 ? (sp - 4 * (k + 1)) | 0 : (sp - 4 * (k + 1)) & 0xffff, c.r[k]);
    }
    c.setSp(sp - 32);
  };
  h.popa16 = (c) => {
    const v = c.frame;
    for (let k = 0; k < 8; k++) v[7 - k] = c.peek16(2 * k);
    for (let k = 0; k < 8; k++) if (k !== 4) c.r16[k << 1] = v[k];
    c.setSp(c.sp + 16);
  };
  h.popa32 = (c) => {
    const v = c.frame;
    for (let k = 0; k < 8; k++) v[7 - k] = c.peek32(4 * k);
    for (let k = 0; k < 8; k++) if (k !== 4) c.r[k] = v[k];
    c.setSp(c.sp + 32);
  };
  h.enter16 = (c, i) => enter(c, i, 2);
  h.enter32 = (c, i) => enter(c, i, 4);
  h.leave16 = (c) => {
    const bp = c.stack32 ? c.r[5] : c.r16[10];
    const v = c.rd16(SEG_SS, bp);
    c.setSp(bp + 2);
    c.r16[10] = v;
  };
  h.leave32 = (c) => {
    const bp = c.stack32 ? c.r[5] : c.r16[10];
    const v = c.rd32(SEG_SS, bp);
    c.setSp(bp + 4);
    c.r[5] = v;
  };

  // Far pointer loads.
  for (const [name, seg] of [["les", 0], ["lds", 3], ["lss", 2], ["lfs", 4], ["lgs", 5]] as const) {
    for (const o32 of [false, true]) {
      h[`${name}${o32 ? 32 : 16}`] = (c, i) => {
        const d = c.dec;
        if (d.mod3[i]) c.fault(6);
        const off = c.ea(i);
        const v = o32 ? c.rd32(d.seg[i], off) : c.rd16(d.seg[i], off);
        const sel = c.rd16(d.seg[i], (off + (o32 ? 4 : 2)) & d.amask[i]);
        setSreg(c, seg, sel);
        if (o32) setG32(c, i, v);
        else setG16(c, i, v);
      };
    }
  }
  h.bound16 = (c, i) => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    const off = c.ea(i);
    const lo = (c.rd16(d.seg[i], off) << 16) >> 16;
    const hi = (c.rd16(d.seg[i], (off + 2) & d.amask[i]) << 16) >> 16;
    const v = (getG16(c, i) << 16) >> 16;
    if (v < lo || v > hi) c.fault(5);
  };
  h.bound32 = (c, i) => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    const off = c.ea(i);
    const lo = c.rd32(d.seg[i], off);
    const hi = c.rd32(d.seg[i], (off + 4) & d.amask[i]);
    const v = getG32(c, i);
    if (v < lo || v > hi) c.fault(5);
  };
  h.arpl = (c, i) => {
    if (!(c.cr0 & 1) || c.flags & 0x20000) c.fault(6);
    const dst = readE16(c, i);
    const src = getG16(c, i);
    materialize(c);
    if ((dst & 3) < (src & 3)) {
      writeE16(c, i, (dst & ~3) | (src & 3));
      c.flags |= ZF;
    } else {
      c.flags &= ~ZF;
    }
  };
  h.xlat = (c, i) => {
    const d = c.dec;
    const a32 = d.pfx[i] & Pfx.A32;
    const off = a32 ? (c.r[3] + c.r8[0]) | 0 : (c.r16[6] + c.r8[0]) & 0xffff;
    c.r8[0] = c.rd8(d.seg[i], off);
  };
}

function enter(c: Cpu, i: number, size: number): void {
  const d = c.dec;
  const frameSize = d.imm2[i] & 0xffff;
  const level = d.imm[i] & 31;
  const big = c.stack32 === 1;
  const mask = big ? -1 : 0xffff;
  let sp = c.sp;
  const wr = (v: number) => {
    sp = (sp - size) & mask;
    if (size === 4) c.wr32(SEG_SS, sp, v);
    else c.wr16(SEG_SS, sp, v);
  };
  const bp0 = big ? c.r[5] : c.r16[10];
  wr(size === 4 ? c.r[5] : c.r16[10]);
  // The frame pointer is the stack pointer after that push: on a 16-bit stack, SP under ESP's
  // unchanged upper half, which a 32-bit ENTER pushes and puts in EBP whole (Bochs and QEMU).
  const frameTemp = big ? sp : (c.r[4] & ~0xffff) | sp;
  if (level > 0) {
    let bp = bp0;
    for (let k = 1; k < level; k++) {
      bp = (bp - size) & mask;
      wr(size === 4 ? c.rd32(SEG_SS, bp) : c.rd16(SEG_SS, bp));
    }
    wr(frameTemp);
  }
  const newSp = (sp - frameSize) & mask;
  // The new top of stack must be writable (checked before anything is committed).
  c.probeWrite(SEG_SS, newSp, 1);
  if (size === 4) c.r[5] = frameTemp;
  else c.r16[10] = frameTemp;
  c.setSp(newSp);
}
