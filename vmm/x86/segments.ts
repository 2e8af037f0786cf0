// Segmentation: descriptor caches, descriptor table reads, and segment register loads with the
// protected-mode privilege, type and presence checks.

import { ACC_BIG, ACC_DOWN, ACC_NULL, ACC_R, ACC_W, type Cpu, SEG_LDTR, SEG_TR, TLB_RS, TLB_RU, TLB_WS, TLB_WU } from "./cpu.js";
import { SEG_CS, SEG_SS } from "./decoder.js";
import { fetchChanged } from "./mmu.js";

export const ATTR_UNUSABLE = 0x10000;

/** A descriptor read from a table: two dwords plus where it came from. */
export interface Descriptor {
  lo: number;
  hi: number;
  /** Linear address of the descriptor. */
  addr: number;
}

export function newDescriptor(): Descriptor {
  return { lo: 0, hi: 0, addr: 0 };
}

export const descBase = (d: Descriptor): number => ((d.lo >>> 16) | ((d.hi & 0xff) << 16) | (d.hi & 0xff000000)) | 0;
export const descLimit = (d: Descriptor): number => {
  const l = (d.lo & 0xffff) | (d.hi & 0xf0000);
  return d.hi & 0x800000 ? ((l << 12) | 0xfff) >>> 0 : l;
};
/** VMX-style attributes of a descriptor. */
export const descAttr = (d: Descriptor): number => ((d.hi >>> 8) & 0xff) | ((d.hi >>> 8) & 0xf000);
export const descDpl = (d: Descriptor): number => (d.hi >>> 13) & 3;
export const descPresent = (d: Descriptor): boolean => (d.hi & 0x8000) !== 0;
/** System (S=0) type or code/data type with S in bit 4. */
export const descType = (d: Descriptor): number => (d.hi >>> 8) & 0x1f;
export const isCode = (d: Descriptor): boolean => (d.hi & 0x1800) === 0x1800;
export const isData = (d: Descriptor): boolean => (d.hi & 0x1800) === 0x1000;
export const isConforming = (d: Descriptor): boolean => (d.hi & 0x1c00) === 0x1c00;
export const isReadable = (d: Descriptor): boolean => isData(d) || (d.hi & 0x200) !== 0;
export const isWritableData = (d: Descriptor): boolean => (d.hi & 0x1a00) === 0x1200;

/** Recompute the access bits of segment `seg` from its cache and the current mode. */
export function refreshAccess(c: Cpu, seg: number): void {
  const a = c.attr[seg];
  let acc: number;
  if (!(c.cr0 & 1) || c.flags & 0x20000) {
    acc = ACC_R | ACC_W;
    if (a & 0x4000) acc |= ACC_BIG;
  } else if (a & ATTR_UNUSABLE || !(a & 0x80)) {
    acc = ACC_NULL;
  } else if (a & 8) {
    acc = a & 2 ? ACC_R : 0; // code: readable or execute-only; never writable
    if (a & 0x4000) acc |= ACC_BIG;
  } else {
    acc = ACC_R | (a & 2 ? ACC_W : 0) | (a & 4 ? ACC_DOWN : 0) | (a & 0x4000 ? ACC_BIG : 0);
  }
  c.segAcc[seg] = acc;
  // Any base: the fast paths add it. Linux's per-CPU segment (FS) and TLS segments have one.
  const flat = c.limit[seg] === 0xffffffff && !(acc & (ACC_DOWN | ACC_NULL));
  c.segFast[seg] = flat ? (acc & ACC_R ? 1 : 0) | (acc & ACC_W ? 2 : 0) : 0;
}

export function refreshAllAccess(c: Cpu): void {
  for (let s = 0; s < 6; s++) refreshAccess(c, s);
}

/** Load a segment register's visible part and cache without checks. */
export function setSegment(c: Cpu, seg: number, sel: number, base: number, limit: number, attr: number): void {
  // CS loaded again as it is (an interrupt and its IRET in one code segment): instruction fetch
  // depends on nothing that changed, so cached blocks and their links stand.
  const csChanged = seg === SEG_CS && (c.sel[seg] !== (sel & 0xffff) || c.base[seg] !== (base | 0) || c.limit[seg] !== limit >>> 0 || c.attr[seg] !== (attr | 0));
  c.sel[seg] = sel;
  c.base[seg] = base;
  c.limit[seg] = limit >>> 0;
  c.attr[seg] = attr;
  if (seg === SEG_CS) {
    c.codeMode = (attr >> 14) & 1;
    if (csChanged) fetchChanged(c);
  } else if (seg === SEG_SS) {
    c.stack32 = (attr >> 14) & 1;
  }
  if (seg < 6) refreshAccess(c, seg);
}

/** Change the current privilege level (TLB access masks depend on it). */
export function setCpl(c: Cpu, cpl: number): void {
  c.cpl = cpl;
  c.rdMask = cpl === 3 ? TLB_RU : TLB_RS;
  c.wrMask = cpl === 3 ? TLB_WU : TLB_WS;
  fetchChanged(c);
}

/** Real-mode / virtual-8086 segment load: base = selector * 16. */
export function loadRealSegment(c: Cpu, seg: number, sel: number): void {
  sel &= 0xffff;
  if (c.flags & 0x20000) {
    setSegment(c, seg, sel, sel << 4, 0xffff, seg === SEG_CS ? 0xfb : 0xf3);
  } else {
    c.sel[seg] = sel;
    c.base[seg] = sel << 4;
    if (seg === SEG_CS) fetchChanged(c);
    if (seg < 6) refreshAccess(c, seg);
  }
}

/**
 * Read the descriptor for `sel` into `d`. Returns false when the selector is outside its table
 * (the caller raises the fault its instruction specifies).
 */
export function readDescriptor(c: Cpu, sel: number, d: Descriptor): boolean {
  let base: number, limit: number;
  if (sel & 4) {
    if (c.attr[SEG_LDTR] & ATTR_UNUSABLE || (c.sel[SEG_LDTR] & 0xfffc) === 0) return false;
    base = c.base[SEG_LDTR];
    limit = c.limit[SEG_LDTR];
  } else {
    base = c.gdtBase;
    limit = c.gdtLimit;
  }
  if (((sel & 0xfff8) | 7) > limit) return false;
  d.addr = (base + (sel & 0xfff8)) | 0;
  d.lo = c.linRd32(d.addr, false);
  d.hi = c.linRd32(d.addr + 4, false);
  return true;
}

/** Fetch a descriptor or raise `vector` with the selector as error code. */
export function fetchDescriptor(c: Cpu, sel: number, d: Descriptor, vector: number): void {
  if (!readDescriptor(c, sel, d)) c.fault(vector, sel & 0xfffc);
}

/** Set the accessed bit of a code/data descriptor in memory. */
export function markAccessed(c: Cpu, d: Descriptor): void {
  if (!(d.hi & 0x100)) {
    d.hi |= 0x100;
    c.linWr8(d.addr + 5, (d.hi >>> 8) & 0xff, false);
  }
}

/** Load segment `seg` from descriptor `d` (checks already done). */
export function loadFromDescriptor(c: Cpu, seg: number, sel: number, d: Descriptor): void {
  markAccessed(c, d);
  setSegment(c, seg, sel, descBase(d), descLimit(d), descAttr(d));
}

/** MOV/POP/LxS to a data segment register or SS, in any mode. */
export function loadSegment(c: Cpu, seg: number, sel: number): void {
  sel &= 0xffff;
  if (!(c.cr0 & 1) || c.flags & 0x20000) {
    loadRealSegment(c, seg, sel);
    return;
  }
  const d = c.desc;
  const rpl = sel & 3;
  if (seg === SEG_SS) {
    if ((sel & 0xfffc) === 0) c.fault(13, 0);
    fetchDescriptor(c, sel, d, 13);
    if (rpl !== c.cpl || descDpl(d) !== c.cpl || !isWritableData(d)) c.fault(13, sel & 0xfffc);
    if (!descPresent(d)) c.fault(12, sel & 0xfffc);
    loadFromDescriptor(c, seg, sel, d);
    return;
  }
  if ((sel & 0xfffc) === 0) {
    setSegment(c, seg, sel, 0, 0, ATTR_UNUSABLE);
    return;
  }
  fetchDescriptor(c, sel, d, 13);
  if (!isReadable(d)) c.fault(13, sel & 0xfffc);
  if (!isConforming(d) && (rpl > descDpl(d) || c.cpl > descDpl(d))) c.fault(13, sel & 0xfffc);
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
  loadFromDescriptor(c, seg, sel, d);
}

/** After a privilege drop (RETF/IRET to an outer ring): data segments the new CPL may not use become null. */
export function nullInaccessibleSegments(c: Cpu): void {
  for (const s of [0, 3, 4, 5]) {
    const a = c.attr[s];
    if (a & ATTR_UNUSABLE) continue;
    const dpl = (a >> 5) & 3;
    const conformingCode = (a & 0x1c) === 0x1c;
    if ((a & 0x10) === 0 || (!conformingCode && dpl < c.cpl)) {
      setSegment(c, s, 0, 0, 0, ATTR_UNUSABLE);
    }
  }
}

/** LLDT. */
export function loadLdt(c: Cpu, sel: number): void {
  if ((sel & 0xfffc) === 0) {
    setSegment(c, SEG_LDTR, sel, 0, 0, ATTR_UNUSABLE);
    return;
  }
  if (sel & 4) c.fault(13, sel & 0xfffc);
  const d = c.desc;
  fetchDescriptor(c, sel, d, 13);
  if (descType(d) !== 2) c.fault(13, sel & 0xfffc);
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
  setSegment(c, SEG_LDTR, sel, descBase(d), descLimit(d), descAttr(d));
}

/** LTR: load an available TSS and mark it busy. */
export function loadTr(c: Cpu, sel: number): void {
  if ((sel & 0xfffc) === 0 || sel & 4) c.fault(13, sel & 0xfffc);
  const d = c.desc;
  fetchDescriptor(c, sel, d, 13);
  const t = descType(d);
  if (t !== 1 && t !== 9) c.fault(13, sel & 0xfffc);
  if (!descPresent(d)) c.fault(11, sel & 0xfffc);
  d.hi |= 0x200;
  c.linWr8(d.addr + 5, (d.hi >>> 8) & 0xff, false);
  setSegment(c, SEG_TR, sel, descBase(d), descLimit(d), descAttr(d));
}
