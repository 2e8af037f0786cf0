// Hardware task switch through a TSS (16- and 32-bit), for JMP/CALL to a TSS or task gate,
// interrupts through task gates, and IRET with NT set.

import { type Cpu, SEG_LDTR, SEG_TR } from "./cpu.js";
import { SEG_CS, SEG_DS, SEG_ES, SEG_FS, SEG_GS, SEG_SS } from "./decoder.js";
import { materialize, NT, setArith, VM } from "./flags.js";
import { flushTlb } from "./mmu.js";
import {
  ATTR_UNUSABLE,
  descAttr,
  descBase,
  descDpl,
  descLimit,
  descPresent,
  descType,
  fetchDescriptor,
  isCode,
  isConforming,
  isReadable,
  isWritableData,
  loadFromDescriptor,
  loadRealSegment,
  readDescriptor,
  refreshAllAccess,
  setCpl,
  setSegment,
} from "./segments.js";

export const TaskSource = { JMP: 0, CALL_INT: 1, IRET: 2 } as const;

const SEG_ORDER = [SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS];

/** Switch to the task whose TSS selector is `sel`. `returnEip` is saved as the old task's EIP. */
export function taskSwitch(c: Cpu, sel: number, source: number, returnEip: number, ext: number): void {
  const d = c.desc3;
  const err = (sel & 0xfffc) + ext;
  if (sel & 4 || !readDescriptor(c, sel, d)) c.fault(source === TaskSource.IRET ? 10 : 13, err);
  const type = descType(d);
  const busy = type === 3 || type === 11;
  if (type !== 1 && type !== 9 && !busy) c.fault(source === TaskSource.IRET ? 10 : 13, err);
  if (source === TaskSource.IRET ? !busy : busy) c.fault(source === TaskSource.IRET ? 10 : 13, err);
  if (!descPresent(d)) c.fault(11, err);
  const big = (type & 8) !== 0;
  const newBase = descBase(d);
  const newLimit = descLimit(d);
  if (newLimit < (big ? 103 : 43)) c.fault(10, err);

  // Read the whole new TSS before changing anything (faults leave the old task intact).
  const v = c.frame;
  if (big) {
    v[0] = c.linRd32(newBase + 28, false); // cr3
    v[1] = c.linRd32(newBase + 32, false); // eip
    v[2] = c.linRd32(newBase + 36, false); // eflags
    for (let r = 0; r < 8; r++) v[3 + r] = c.linRd32(newBase + 40 + 4 * r, false);
    for (let s = 0; s < 6; s++) v[11 + s] = c.linRd16(newBase + 72 + 4 * s, false);
    v[17] = c.linRd16(newBase + 96, false);
  } else {
    v[0] = c.cr3;
    v[1] = c.linRd16(newBase + 14, false);
    v[2] = c.linRd16(newBase + 16, false);
    // The upper halves of the general registers become 0xFFFF (real 386s, Bochs and QEMU agree).
    for (let r = 0; r < 8; r++) v[3 + r] = c.linRd16(newBase + 18 + 2 * r, false) | 0xffff0000;
    for (let s = 0; s < 4; s++) v[11 + s] = c.linRd16(newBase + 34 + 2 * s, false);
    v[15] = 0;
    v[16] = 0;
    v[17] = c.linRd16(newBase + 42, false);
  }
  const newEip = v[1];
  const newFlags = v[2];
  const newCr3 = v[0];
  const regs = v.slice(3, 11);
  const segs = v.slice(11, 17);
  const ldt = v[17];

  // Save the old task.
  const oldBase = c.base[SEG_TR];
  const oldBig = (c.attr[SEG_TR] & 8) !== 0;
  let flags = materialize(c);
  if (source === TaskSource.IRET) flags &= ~NT;
  if (oldBig) {
    c.linWr32(oldBase + 32, returnEip, false);
    c.linWr32(oldBase + 36, flags, false);
    for (let r = 0; r < 8; r++) c.linWr32(oldBase + 40 + 4 * r, c.r[r], false);
    for (let s = 0; s < 6; s++) c.linWr16(oldBase + 72 + 4 * s, c.sel[s], false);
  } else {
    c.linWr16(oldBase + 14, returnEip, false);
    c.linWr16(oldBase + 16, flags, false);
    for (let r = 0; r < 8; r++) c.linWr16(oldBase + 18 + 2 * r, c.r[r], false);
    for (let s = 0; s < 4; s++) c.linWr16(oldBase + 34 + 2 * s, c.sel[s], false);
  }
  const oldSel = c.sel[SEG_TR];
  if (source !== TaskSource.CALL_INT) setBusy(c, oldSel, false);
  if (source === TaskSource.CALL_INT) c.linWr16(newBase, oldSel, false);
  if (source !== TaskSource.IRET) {
    d.hi |= 0x200;
    c.linWr8(d.addr + 5, (d.hi >>> 8) & 0xff, false);
  }
  setSegment(c, SEG_TR, sel, newBase, newLimit, descAttr(d) | (source !== TaskSource.IRET ? 2 : 0));
  c.cr0 |= 8; // TS

  // Load the new task's state; faults from here on happen in the new task.
  if (big && c.cr0 & 0x80000000) {
    c.cr3 = newCr3;
    flushTlb(c, false);
  }
  for (let r = 0; r < 8; r++) c.r[r] = regs[r];
  c.flags = (newFlags | 2) & (big ? 0x3f7fd7 : 0xffd7);
  if (source === TaskSource.CALL_INT) c.flags |= NT;
  setArith(c, c.flags);
  c.nextEip = big ? newEip : newEip & 0xffff;
  // Selectors first (so a fault shows the new values), then the descriptor checks.
  for (let s = 0; s < 6; s++) {
    c.sel[s] = segs[s];
    setSegment(c, s, segs[s], 0, 0, ATTR_UNUSABLE);
  }
  c.sel[SEG_LDTR] = ldt;
  setSegment(c, SEG_LDTR, ldt, 0, 0, ATTR_UNUSABLE);
  refreshAllAccess(c);
  if (c.flags & VM) {
    setCpl(c, 3);
    for (const s of SEG_ORDER) loadRealSegment(c, s, segs[s]);
    refreshAllAccess(c);
    return;
  }
  if (ldt & 0xfffc) {
    if (ldt & 4 || !readDescriptor(c, ldt, c.desc) || descType(c.desc) !== 2) c.fault(10, ldt & 0xfffc);
    if (!descPresent(c.desc)) c.fault(10, ldt & 0xfffc);
    setSegment(c, SEG_LDTR, ldt, descBase(c.desc), descLimit(c.desc), descAttr(c.desc));
  }
  const cs = segs[SEG_CS];
  const cpl = cs & 3;
  const sd = c.desc;
  if ((cs & 0xfffc) === 0) c.fault(10, 0);
  fetchDescriptor(c, cs, sd, 10);
  if (!isCode(sd) || (isConforming(sd) ? descDpl(sd) > cpl : descDpl(sd) !== cpl)) c.fault(10, cs & 0xfffc);
  if (!descPresent(sd)) c.fault(11, cs & 0xfffc);
  setCpl(c, cpl);
  const ss = segs[SEG_SS];
  if ((ss & 0xfffc) === 0) c.fault(10, 0);
  fetchDescriptor(c, ss, c.desc2, 10);
  if ((ss & 3) !== cpl || descDpl(c.desc2) !== cpl || !isWritableData(c.desc2)) c.fault(10, ss & 0xfffc);
  if (!descPresent(c.desc2)) c.fault(12, ss & 0xfffc);
  loadFromDescriptor(c, SEG_CS, cs, sd);
  loadFromDescriptor(c, SEG_SS, ss, c.desc2);
  for (const s of [SEG_ES, SEG_DS, SEG_FS, SEG_GS]) {
    const x = segs[s];
    if ((x & 0xfffc) === 0) continue;
    fetchDescriptor(c, x, sd, 10);
    if (!isReadable(sd) || (!isConforming(sd) && ((x & 3) > descDpl(sd) || cpl > descDpl(sd)))) {
      c.fault(10, x & 0xfffc);
    }
    if (!descPresent(sd)) c.fault(11, x & 0xfffc);
    loadFromDescriptor(c, s, x, sd);
  }
  if (c.nextEip >>> 0 > c.limit[SEG_CS]) c.fault(13, 0);
}

/** Set or clear the busy bit of the TSS descriptor `sel` in the GDT. */
export function setBusy(c: Cpu, sel: number, busy: boolean): void {
  const d = c.desc;
  if (!readDescriptor(c, sel, d)) return;
  const hi = busy ? d.hi | 0x200 : d.hi & ~0x200;
  c.linWr8(d.addr + 5, (hi >>> 8) & 0xff, false);
}
