// Interrupt and exception delivery: real-mode IVT, protected-mode IDT gates (interrupt, trap,
// task), privilege changes with the TSS stack switch, virtual-8086 exits, and the
// double/triple fault rules.

import { ACC_BIG, ACC_DOWN, type Cpu, SEG_TR } from "./cpu.js";
import { SEG_CS, SEG_DS, SEG_ES, SEG_FS, SEG_GS, SEG_SS } from "./decoder.js";
import { AC, IF, materialize, NT, RF, TF, VM } from "./flags.js";
import {
  ATTR_UNUSABLE,
  descAttr,
  descBase,
  descDpl,
  descLimit,
  descPresent,
  fetchDescriptor,
  isCode,
  isConforming,
  isWritableData,
  markAccessed,
  readDescriptor,
  refreshAllAccess,
  setCpl,
  setSegment,
} from "./segments.js";
import { taskSwitch, TaskSource } from "./tss.js";

/** What raised the event: it decides privilege checks, the EXT bit and the pushed RF. */
export const Source = { FAULT: 0, TRAP: 1, SOFTWARE: 2, EXTERNAL: 3, NMI: 4 } as const;

const CONTRIBUTORY = (1 << 0) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13);
const FAULT_CLASS = CONTRIBUTORY | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 14) | (1 << 16) | (1 << 17);

/** Vectors that push an error code when raised as exceptions. */
export const HAS_ERROR_CODE = (1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17);

/** Whether an exception `second` raised while delivering `first` becomes a double fault. */
export function isDoubleFault(first: number, second: number): boolean {
  const contributory = (v: number) => v < 32 && ((CONTRIBUTORY >> v) & 1) === 1;
  if (first === 14) return second === 14 || contributory(second);
  return contributory(first) && contributory(second);
}

/**
 * Deliver interrupt/exception `vector` through the IVT or IDT. `returnEip` is the EIP pushed.
 * `code` < 0: no error code. Raises guest faults (the caller applies the double-fault rules).
 */
export function deliver(c: Cpu, vector: number, source: number, code: number, returnEip: number): void {
  const flags = materialize(c);
  if (!(c.cr0 & 1)) {
    realMode(c, vector, flags, returnEip);
    return;
  }
  if (source === Source.SOFTWARE && c.flags & VM && ((flags >> 12) & 3) < 3) c.fault(13, 0);
  const ext = source === Source.SOFTWARE ? 0 : 1;
  const software = source === Source.SOFTWARE || (source === Source.TRAP && (vector === 3 || vector === 4));
  const idtErr = vector * 8 + 2 + (software ? 0 : ext);
  if (vector * 8 + 7 > c.idtLimit) c.fault(13, idtErr);
  const gate = c.desc2;
  gate.addr = (c.idtBase + vector * 8) | 0;
  gate.lo = c.linRd32(gate.addr, false);
  gate.hi = c.linRd32(gate.addr + 4, false);
  const type = (gate.hi >>> 8) & 0x1f;
  if (type !== 5 && type !== 6 && type !== 7 && type !== 14 && type !== 15) c.fault(13, idtErr);
  if (software && descDpl(gate) < c.cpl) c.fault(13, vector * 8 + 2);
  if (!descPresent(gate)) c.fault(11, idtErr);
  const pushRf = source === Source.FAULT && (FAULT_CLASS >> vector) & 1 ? RF : 0;
  if (type === 5) {
    taskSwitch(c, gate.lo >>> 16, TaskSource.CALL_INT, returnEip, ext);
    if (code >= 0) {
      if (c.attr[SEG_CS] & 0x4000) c.push32(code);
      else c.push16(code);
    }
    return;
  }
  const sel = gate.lo >>> 16;
  const offset = type & 8 ? (gate.lo & 0xffff) | (gate.hi & 0xffff0000) : gate.lo & 0xffff;
  if ((sel & 0xfffc) === 0) c.fault(13, ext);
  const d = c.desc;
  fetchDescriptor(c, sel, d, 13);
  if ((sel & 0xfffc) !== 0 && (!isCode(d) || descDpl(d) > c.cpl)) c.fault(13, (sel & 0xfffc) + ext);
  if (!descPresent(d)) c.fault(11, (sel & 0xfffc) + ext);
  const dpl = descDpl(d);
  const size = type & 8 ? 4 : 2;
  const f = c.frame;
  let n = 0;
  const eflagsImage = (flags | pushRf) >>> 0;
  if (!isConforming(d) && dpl < c.cpl) {
    if (c.flags & VM && dpl !== 0) c.fault(13, (sel & 0xfffc) + ext);
    const ss = c.desc3;
    const { ssSel, esp } = readStackFromTss(c, dpl, ext);
    if ((ssSel & 0xfffc) === 0) c.fault(10, ext);
    if (!readDescriptor(c, ssSel, ss)) c.fault(10, (ssSel & 0xfffc) + ext);
    if ((ssSel & 3) !== dpl || descDpl(ss) !== dpl || !isWritableData(ss)) c.fault(10, (ssSel & 0xfffc) + ext);
    if (!descPresent(ss)) c.fault(12, (ssSel & 0xfffc) + ext);
    if (c.flags & VM) {
      f[n++] = c.sel[SEG_GS];
      f[n++] = c.sel[SEG_FS];
      f[n++] = c.sel[SEG_DS];
      f[n++] = c.sel[SEG_ES];
    }
    f[n++] = c.sel[SEG_SS];
    f[n++] = c.r[4];
    f[n++] = eflagsImage;
    f[n++] = c.sel[SEG_CS];
    f[n++] = returnEip;
    if (code >= 0) f[n++] = code;
    const attr = descAttr(ss);
    const big = (attr & 0x4000) !== 0;
    const newEsp = pushFrame(c, descBase(ss), descLimit(ss), attr & 4 ? ACC_DOWN | (big ? ACC_BIG : 0) : 0,
      esp, big, n, size, (ssSel & 0xfffc) + ext, false);
    const wasVm = (c.flags & VM) !== 0;
    markAccessed(c, ss);
    c.flags &= ~(TF | NT | RF | VM | (type & 1 ? 0 : IF));
    setCpl(c, dpl);
    setSegment(c, SEG_SS, (ssSel & 0xfffc) | dpl, descBase(ss), descLimit(ss), attr);
    if (wasVm) {
      for (const s of [SEG_ES, SEG_DS, SEG_FS, SEG_GS]) setSegment(c, s, 0, 0, 0, ATTR_UNUSABLE);
    }
    c.r[4] = big ? newEsp : (c.r[4] & ~0xffff) | (newEsp & 0xffff);
  } else if (isConforming(d) || dpl === c.cpl) {
    if (c.flags & VM) c.fault(13, (sel & 0xfffc) + ext);
    f[n++] = eflagsImage;
    f[n++] = c.sel[SEG_CS];
    f[n++] = returnEip;
    if (code >= 0) f[n++] = code;
    const acc = c.segAcc[SEG_SS];
    const newSp = pushFrame(c, c.base[SEG_SS], c.limit[SEG_SS], acc, c.r[4], c.stack32 === 1, n, size, ext, c.cpl === 3);
    c.flags &= ~(TF | NT | RF | VM | (type & 1 ? 0 : IF));
    c.setSp(newSp);
  } else {
    c.fault(13, (sel & 0xfffc) + ext);
  }
  markAccessed(c, d);
  setSegment(c, SEG_CS, (sel & 0xfffc) | c.cpl, descBase(d), descLimit(d), descAttr(d));
  refreshAllAccess(c);
  c.nextEip = size === 4 ? offset : offset & 0xffff;
  if (c.nextEip >>> 0 > c.limit[SEG_CS]) c.fault(13, 0);
}

function realMode(c: Cpu, vector: number, flags: number, returnEip: number): void {
  if (vector * 4 + 3 > c.idtLimit) c.fault(13, 0);
  const entry = c.linRd32((c.idtBase + vector * 4) | 0, false);
  // SP wraps at 64 KiB like any push; a word across the segment's end (SP 1, 3 or 5) raises #SS
  // with SP as it was (a fault), whose own delivery then ends in shutdown as the SDM describes.
  const f = c.frame;
  f[0] = flags;
  f[1] = c.sel[SEG_CS];
  f[2] = returnEip;
  const sp = pushFrame(c, c.base[SEG_SS], c.limit[SEG_SS], c.segAcc[SEG_SS], c.r[4], c.stack32 === 1, 3, 2, 0, false);
  c.setSp(sp);
  c.flags &= ~(IF | TF | AC | RF);
  setSegment(c, SEG_CS, entry >>> 16, (entry >>> 16) << 4, c.limit[SEG_CS], c.attr[SEG_CS]);
  c.nextEip = entry & 0xffff;
}

/**
 * Write frame values f[0..n-1] (f[0] pushed first) below `sp` on the stack (base, limit, acc);
 * returns the new stack pointer. Limit violations raise #SS(errorCode).
 */
export function pushFrame(
  c: Cpu, base: number, limit: number, acc: number, sp: number, big: boolean, n: number, size: number,
  errorCode: number, user: boolean,
): number {
  const f = c.frame;
  const mask = big ? -1 : 0xffff;
  const upper = acc & ACC_BIG ? 0xffffffff : 0xffff;
  let p = sp;
  for (let k = 0; k < n; k++) {
    p = (p - size) & mask;
    const o = p >>> 0;
    const bad = acc & ACC_DOWN ? o <= limit || o + size - 1 > upper : o + size - 1 > limit;
    if (bad) c.fault(12, errorCode);
    const lin = (base + p) | 0;
    if (size === 4) c.linWr32(lin, f[k], user);
    else c.linWr16(lin, f[k], user);
  }
  return p;
}

/** SS:ESP for privilege level `dpl` from the current TSS (#TS on a short TSS). */
export function readStackFromTss(c: Cpu, dpl: number, ext: number): { ssSel: number; esp: number } {
  const t = (c.attr[SEG_TR] & 0xf) === 11 || (c.attr[SEG_TR] & 0xf) === 9;
  const trErr = (c.sel[SEG_TR] & 0xfffc) + ext;
  if (t) {
    const at = 4 + dpl * 8;
    if (at + 5 > c.limit[SEG_TR]) c.fault(10, trErr);
    return { esp: c.linRd32(c.base[SEG_TR] + at, false), ssSel: c.linRd16(c.base[SEG_TR] + at + 4, false) };
  }
  const at = 2 + dpl * 4;
  if (at + 3 > c.limit[SEG_TR]) c.fault(10, trErr);
  return { esp: c.linRd16(c.base[SEG_TR] + at, false), ssSel: c.linRd16(c.base[SEG_TR] + at + 2, false) };
}
