// Far control transfers: JMP/CALL far (code segments, call gates, task gates, TSS), RETF and
// IRET, in real, protected and virtual-8086 mode, with all privilege checks.

import { ACC_BIG, ACC_DOWN, type Cpu } from "./cpu.js";
import { SEG_CS, SEG_DS, SEG_ES, SEG_FS, SEG_GS, SEG_SS } from "./decoder.js";
import { AC, ID, IF, IOPL, materialize, NT, RF, setArith, VM } from "./flags.js";
import { pushFrame, readStackFromTss } from "./interrupts.js";
import {
  descAttr, descBase, descDpl, descLimit, descPresent, type Descriptor, descType, fetchDescriptor, isCode,
  isConforming, isWritableData, loadFromDescriptor, loadRealSegment, markAccessed, nullInaccessibleSegments,
  readDescriptor, refreshAllAccess, setCpl, setSegment,
} from "./segments.js";
import { taskSwitch, TaskSource } from "./tss.js";

const realOrV86 = (c: Cpu) => !(c.cr0 & 1) || (c.flags & VM) !== 0;

function checkLimit(c: Cpu, eip: number): void {
  if (eip >>> 0 > c.limit[SEG_CS]) c.fault(13, 0);
}

/** Load CS from a checked code descriptor at privilege `cpl` and continue at `eip`. */
function enterCode(c: Cpu, sel: number, d: Descriptor, cpl: number, eip: number): void {
  markAccessed(c, d);
  setSegment(c, SEG_CS, (sel & 0xfffc) | cpl, descBase(d), descLimit(d), descAttr(d));
  if (cpl !== c.cpl) setCpl(c, cpl);
  c.nextEip = eip;
}

/** Checks of a direct JMP/CALL to a code segment descriptor. */
function checkDirectCode(c: Cpu, sel: number, d: Descriptor): void {
  if (isConforming(d)) {
    if (descDpl(d) > c.cpl) c.fault(13, sel & 0xfffc);
  } else if ((sel & 3) > c.cpl || descDpl(d) !== c.cpl) {
    c.fault(13, sel & 0xfffc);
  }
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
}

export function farJump(c: Cpu, sel: number, offset: number, o32: boolean): void {
  if (realOrV86(c)) {
    const eip = o32 ? offset : offset & 0xffff;
    checkLimit(c, eip);
    loadRealSegment(c, SEG_CS, sel);
    c.nextEip = eip;
    return;
  }
  const d = c.desc;
  if ((sel & 0xfffc) === 0) c.fault(13, 0);
  fetchDescriptor(c, sel, d, 13);
  if (isCode(d)) {
    checkDirectCode(c, sel, d);
    const eip = o32 ? offset : offset & 0xffff;
    if (eip >>> 0 > descLimit(d)) c.fault(13, 0);
    enterCode(c, sel, d, c.cpl, eip);
    return;
  }
  const type = descType(d);
  if (type === 4 || type === 12) {
    checkGate(c, sel, d);
    const target = (d.lo >>> 16) & 0xffff;
    const eip = type === 12 ? (d.lo & 0xffff) | (d.hi & 0xffff0000) : d.lo & 0xffff;
    const t = c.desc2;
    if ((target & 0xfffc) === 0) c.fault(13, 0);
    fetchDescriptor(c, target, t, 13);
    if (!isCode(t) || (isConforming(t) ? descDpl(t) > c.cpl : descDpl(t) !== c.cpl)) c.fault(13, target & 0xfffc);
    if (!descPresent(t)) c.fault(11, target & 0xfffc);
    if (eip >>> 0 > descLimit(t)) c.fault(13, 0);
    enterCode(c, target, t, c.cpl, eip);
    return;
  }
  if (type === 5 || type === 1 || type === 9) {
    checkGate(c, sel, d);
    taskSwitch(c, type === 5 ? d.lo >>> 16 : sel, TaskSource.JMP, c.nextEip, 0);
    return;
  }
  c.fault(13, sel & 0xfffc);
}

function checkGate(c: Cpu, sel: number, d: Descriptor): void {
  if (descDpl(d) < c.cpl || descDpl(d) < (sel & 3)) c.fault(13, sel & 0xfffc);
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
}

export function farCall(c: Cpu, sel: number, offset: number, o32: boolean): void {
  const ret = c.nextEip;
  if (realOrV86(c)) {
    const eip = o32 ? offset : offset & 0xffff;
    checkLimit(c, eip);
    pushPair(c, c.sel[SEG_CS], ret, o32);
    loadRealSegment(c, SEG_CS, sel);
    c.nextEip = eip;
    return;
  }
  const d = c.desc;
  if ((sel & 0xfffc) === 0) c.fault(13, 0);
  fetchDescriptor(c, sel, d, 13);
  if (isCode(d)) {
    checkDirectCode(c, sel, d);
    const eip = o32 ? offset : offset & 0xffff;
    if (eip >>> 0 > descLimit(d)) c.fault(13, 0);
    pushPair(c, c.sel[SEG_CS], ret, o32);
    enterCode(c, sel, d, c.cpl, eip);
    return;
  }
  const type = descType(d);
  if (type === 5 || type === 1 || type === 9) {
    checkGate(c, sel, d);
    taskSwitch(c, type === 5 ? d.lo >>> 16 : sel, TaskSource.CALL_INT, ret, 0);
    return;
  }
  if (type !== 4 && type !== 12) c.fault(13, sel & 0xfffc);
  checkGate(c, sel, d);
  const gate32 = type === 12;
  const target = (d.lo >>> 16) & 0xffff;
  const eip = gate32 ? (d.lo & 0xffff) | (d.hi & 0xffff0000) : d.lo & 0xffff;
  const params = d.hi & 0x1f;
  const t = c.desc2;
  if ((target & 0xfffc) === 0) c.fault(13, 0);
  fetchDescriptor(c, target, t, 13);
  if (!isCode(t) || descDpl(t) > c.cpl) c.fault(13, target & 0xfffc);
  if (!descPresent(t)) c.fault(11, target & 0xfffc);
  const dpl = descDpl(t);
  const size = gate32 ? 4 : 2;
  if (!isConforming(t) && dpl < c.cpl) {
    const ss = c.desc3;
    const { ssSel, esp } = readStackFromTss(c, dpl, 0);
    if ((ssSel & 0xfffc) === 0) c.fault(10, 0);
    if (!readDescriptor(c, ssSel, ss)) c.fault(10, ssSel & 0xfffc);
    if ((ssSel & 3) !== dpl || descDpl(ss) !== dpl || !isWritableData(ss)) c.fault(10, ssSel & 0xfffc);
    if (!descPresent(ss)) c.fault(12, ssSel & 0xfffc);
    const f = c.frame;
    let n = 0;
    f[n++] = c.sel[SEG_SS];
    f[n++] = c.r[4];
    for (let k = params - 1; k >= 0; k--) f[n++] = size === 4 ? c.peek32(k * 4) : c.peek16(k * 2);
    f[n++] = c.sel[SEG_CS];
    f[n++] = ret;
    if (eip >>> 0 > descLimit(t)) c.fault(13, 0);
    const attr = descAttr(ss);
    const big = (attr & 0x4000) !== 0;
    const newEsp = pushFrame(c, descBase(ss), descLimit(ss), attr & 4 ? ACC_DOWN | (big ? ACC_BIG : 0) : 0,
      esp, big, n, size, ssSel & 0xfffc, false);
    markAccessed(c, ss);
    setCpl(c, dpl);
    setSegment(c, SEG_SS, (ssSel & 0xfffc) | dpl, descBase(ss), descLimit(ss), attr);
    c.r[4] = big ? newEsp : (c.r[4] & ~0xffff) | (newEsp & 0xffff);
    enterCode(c, target, t, dpl, eip);
    return;
  }
  if (eip >>> 0 > descLimit(t)) c.fault(13, 0);
  pushPair(c, c.sel[SEG_CS], ret, gate32);
  enterCode(c, target, t, c.cpl, eip);
}

/** Push CS then EIP (checked as one unit so a fault leaves ESP unchanged). */
function pushPair(c: Cpu, cs: number, eip: number, o32: boolean): void {
  const size = o32 ? 4 : 2;
  const sp = c.sp;
  const mask = c.stack32 ? -1 : 0xffff;
  const a = (sp - size) & mask, b = (sp - 2 * size) & mask;
  c.probeWrite(SEG_SS, b, size);
  c.probeWrite(SEG_SS, a, size);
  if (o32) {
    c.wr16(SEG_SS, a, cs);
    c.wr32(SEG_SS, b, eip);
  } else {
    c.wr16(SEG_SS, a, cs);
    c.wr16(SEG_SS, b, eip);
  }
  c.setSp(b);
}

/** RETF [imm]. */
export function farReturn(c: Cpu, o32: boolean, release: number): void {
  const size = o32 ? 4 : 2;
  const eip = o32 ? c.peek32(0) : c.peek16(0);
  const sel = c.peek16(size);
  if (realOrV86(c)) {
    checkLimit(c, eip);
    loadRealSegment(c, SEG_CS, sel);
    c.setSp(c.sp + 2 * size + release);
    c.nextEip = eip;
    return;
  }
  const d = c.desc;
  if ((sel & 0xfffc) === 0) c.fault(13, 0);
  fetchDescriptor(c, sel, d, 13);
  const rpl = sel & 3;
  if (!isCode(d) || rpl < c.cpl) c.fault(13, sel & 0xfffc);
  if (isConforming(d) ? descDpl(d) > rpl : descDpl(d) !== rpl) c.fault(13, sel & 0xfffc);
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
  if (rpl === c.cpl) {
    if (eip >>> 0 > descLimit(d)) c.fault(13, 0);
    c.setSp(c.sp + 2 * size + release);
    enterCode(c, sel, d, rpl, eip);
    return;
  }
  const newEsp = o32 ? c.peek32(2 * size + release) : c.peek16(2 * size + release);
  const ssSel = c.peek16(3 * size + release);
  loadOuterStack(c, ssSel, rpl);
  if (eip >>> 0 > descLimit(d)) c.fault(13, 0);
  enterCode(c, sel, d, rpl, eip);
  commitOuterStack(c, ssSel, rpl, (newEsp + release) | 0, o32);
}

/** Check the outer-level SS of a RETF/IRET (fault before anything changes); leaves it in desc3. */
function loadOuterStack(c: Cpu, ssSel: number, rpl: number): void {
  const ss = c.desc3;
  if ((ssSel & 0xfffc) === 0) c.fault(13, 0);
  fetchDescriptor(c, ssSel, ss, 13);
  if ((ssSel & 3) !== rpl || descDpl(ss) !== rpl || !isWritableData(ss)) c.fault(13, ssSel & 0xfffc);
  if (!descPresent(ss)) c.fault(12, ssSel & 0xfffc);
}

function commitOuterStack(c: Cpu, ssSel: number, rpl: number, esp: number, o32: boolean): void {
  loadFromDescriptor(c, SEG_SS, ssSel, c.desc3);
  if (c.stack32 || o32) c.r[4] = esp;
  else c.r16[8] = esp;
  if (!c.stack32) c.r[4] = (c.r[4] & ~0xffff) | (esp & 0xffff);
  setCpl(c, rpl);
  nullInaccessibleSegments(c);
}

/** IRET / IRETD. */
export function interruptReturn(c: Cpu, o32: boolean): void {
  const size = o32 ? 4 : 2;
  c.nmiBlocked = false;
  const flags = materialize(c);
  if (!(c.cr0 & 1)) {
    const eip = o32 ? c.peek32(0) : c.peek16(0);
    const cs = c.peek16(size);
    const f = o32 ? c.peek32(2 * size) : c.peek16(2 * size);
    checkLimit(c, eip);
    loadRealSegment(c, SEG_CS, cs);
    c.setSp(c.sp + 3 * size);
    setFlags(c, o32 ? (f & 0x257fd5) | (flags & 0x1a0000) | 2 : (f & 0x7fd5) | (flags & 0xffff0000) | 2);
    c.nextEip = eip;
    return;
  }
  if (flags & VM) {
    if (((flags >> 12) & 3) < 3) c.fault(13, 0);
    const eip = o32 ? c.peek32(0) : c.peek16(0);
    const cs = c.peek16(size);
    const f = o32 ? c.peek32(2 * size) : c.peek16(2 * size);
    checkLimit(c, eip & (o32 ? -1 : 0xffff));
    loadRealSegment(c, SEG_CS, cs);
    c.setSp(c.sp + 3 * size);
    const keep = VM | IOPL | 0x80000 | 0x100000 | (o32 ? 0 : 0xffff0000);
    setFlags(c, (f & ~keep & 0x3f7fd5) | (flags & keep) | 2);
    c.nextEip = eip;
    return;
  }
  if (flags & NT) {
    const back = c.linRd16(c.base[7], false);
    taskSwitch(c, back, TaskSource.IRET, c.nextEip, 0);
    return;
  }
  const eip = o32 ? c.peek32(0) : c.peek16(0);
  const sel = c.peek16(size);
  const f = o32 ? c.peek32(2 * size) : c.peek16(2 * size) | (flags & 0xffff0000);
  if (o32 && f & VM && c.cpl === 0) {
    returnToV86(c, eip, sel, f);
    return;
  }
  const d = c.desc;
  if ((sel & 0xfffc) === 0) c.fault(13, 0);
  fetchDescriptor(c, sel, d, 13);
  const rpl = sel & 3;
  if (!isCode(d) || rpl < c.cpl) c.fault(13, sel & 0xfffc);
  if (isConforming(d) ? descDpl(d) > rpl : descDpl(d) !== rpl) c.fault(13, sel & 0xfffc);
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
  const oldCpl = c.cpl;
  if (rpl === c.cpl) {
    if (eip >>> 0 > descLimit(d)) c.fault(13, 0);
    c.setSp(c.sp + 3 * size);
    enterCode(c, sel, d, rpl, eip);
  } else {
    const newEsp = o32 ? c.peek32(3 * size) : c.peek16(3 * size);
    const ssSel = c.peek16(4 * size);
    loadOuterStack(c, ssSel, rpl);
    if (eip >>> 0 > descLimit(d)) c.fault(13, 0);
    enterCode(c, sel, d, rpl, eip);
    commitOuterStack(c, ssSel, rpl, newEsp, o32);
  }
  setFlags(c, protectedFlags(flags, f, oldCpl, o32));
}

/** The EFLAGS an IRET/POPF in protected mode produces from the popped image `f`. */
export function protectedFlags(old: number, f: number, cpl: number, o32: boolean): number {
  let changeable = 0x0dd5 | 0x100 | NT | (o32 ? RF | AC | ID : 0);
  const iopl = (old >> 12) & 3;
  if (cpl <= iopl) changeable |= IF;
  if (cpl === 0) changeable |= IOPL;
  return ((old & ~changeable) | (f & changeable) | 2) & ~VM;
}

function returnToV86(c: Cpu, eip: number, cs: number, f: number): void {
  const esp = c.peek32(12);
  const ss = c.peek32(16);
  const es = c.peek32(20);
  const ds = c.peek32(24);
  const fs = c.peek32(28);
  const gs = c.peek32(32);
  setFlags(c, (f & 0x3f7fd5) | 2);
  setCpl(c, 3);
  loadRealSegment(c, SEG_CS, cs);
  loadRealSegment(c, SEG_SS, ss);
  loadRealSegment(c, SEG_ES, es);
  loadRealSegment(c, SEG_DS, ds);
  loadRealSegment(c, SEG_FS, fs);
  loadRealSegment(c, SEG_GS, gs);
  c.r[4] = esp;
  c.nextEip = eip & 0xffff;
}

/** Write EFLAGS (all bits), refreshing what depends on VM. */
export function setFlags(c: Cpu, v: number): void {
  const wasVm = c.flags & VM;
  setArith(c, v);
  c.flags = v | 2;
  c.attention = true;
  if ((v & VM) !== wasVm) {
    if (v & VM) setCpl(c, 3);
    refreshAllAccess(c);
  }
}
