// Paging (4 KiB and 4 MiB pages, PGE, CR0.WP, accessed/dirty bits), the software TLB fill and
// flush, and the slow paths of memory access: page-crossing accesses, MMIO exits.

import { MemRights } from "../../kernel/guest-memory.js";
import { ExitReason } from "../../kernel/vcpu.js";
import {
  type Cpu,
  TLB_GLOBAL,
  TLB_LIST_MAX,
  TLB_RS,
  TLB_RU,
  TLB_VALID,
  TLB_WS,
  TLB_WU,
} from "./cpu.js";

const CR0_PG = 0x80000000 | 0, CR0_WP = 0x10000;
const CR4_PSE = 0x10, CR4_PGE = 0x80;

/** Drop cached translations; global pages stay unless `all`. Costs the entries filled since the last flush. */
export function flushTlb(c: Cpu, all: boolean): void {
  const flags = c.tlbFlags, where = c.tlbWhere;
  const list = c.tlbList;
  for (let k = 0; k < c.tlbCount; k++) {
    const p = list[k];
    if (where[p] === 1) flags[p] = where[p] = 0;
  }
  c.tlbCount = 0;
  if (all) {
    const global = c.tlbGlobalList;
    for (let k = 0; k < c.tlbGlobalCount; k++) {
      const p = global[k];
      if (where[p] === 2) flags[p] = where[p] = 0;
    }
    c.tlbGlobalCount = 0;
  }
  fetchChanged(c);
}

export function invalidatePage(c: Cpu, lin: number): void {
  c.tlbFlags[lin >>> 12] = 0; // stays in its list: a refill finds it there
  fetchChanged(c);
}

/**
 * What instruction fetch depends on changed (the linear-to-physical map; CS base, limit or code
 * size; the CPL): forget the fetch page and advance the code epoch (block links and loops assume
 * all of it), noting that no bytes changed (Cpu.flushEpoch).
 */
export function fetchChanged(c: Cpu): void {
  c.fetchPage = -1;
  if (c.codeEpoch !== c.flushEpoch) c.byteEpoch = c.codeEpoch;
  c.flushEpoch = ++c.codeEpoch;
}

/**
 * Whether guest RAM bytes may have changed after code epoch `epoch` (< c.codeEpoch): some advance
 * other than a TLB flush happened since.
 */
export function bytesChangedAfter(c: Cpu, epoch: number): boolean {
  return c.codeEpoch !== c.flushEpoch || c.byteEpoch > epoch;
}

function pageFault(c: Cpu, lin: number, present: boolean, write: boolean, user: boolean): never {
  c.faultLinear = lin;
  c.fault(14, (present ? 1 : 0) | (write ? 2 : 0) | (user ? 4 : 0));
}

/**
 * Translate linear `lin` for an access (write?, user?) and return the physical address; fills
 * the TLB entry. Raises #PF (faultLinear = lin) when the access is not allowed.
 */
export function translate(c: Cpu, lin: number, write: boolean, user: boolean): number {
  const p = lin >>> 12;
  const need = write ? (user ? TLB_WU : TLB_WS) : user ? TLB_RU : TLB_RS;
  const f = c.tlbFlags[p];
  if (f & need) return ((c.tlbPhys[p] << 12) | (lin & 0xfff)) >>> 0;
  if (!(c.cr0 & CR0_PG)) return fill(c, p, p, TLB_RS | TLB_WS | TLB_RU | TLB_WU, lin);
  const pdeAddr = ((c.cr3 & ~0xfff) | ((lin >>> 22) << 2)) >>> 0;
  let pde = physRead(c, pdeAddr, 4);
  if (!(pde & 1)) pageFault(c, lin, false, write, user);
  let phys: number, bits: number, global: boolean;
  if (pde & 0x80 && c.cr4 & CR4_PSE) {
    bits = pde;
    if (!allowed(c, bits, write, user)) pageFault(c, lin, true, write, user);
    const want = pde | 0x20 | (write ? 0x40 : 0);
    if (want !== pde) physWrite(c, pdeAddr, 4, (pde = want));
    bits = pde;
    phys = ((pde & 0xffc00000) >>> 12) | (p & 0x3ff);
    global = (pde & 0x100) !== 0;
  } else {
    const pteAddr = ((pde & ~0xfff) | ((p & 0x3ff) << 2)) >>> 0;
    let pte = physRead(c, pteAddr, 4);
    if (!(pte & 1)) pageFault(c, lin, false, write, user);
    bits = (pte & 0x60) | (pde & pte & 6);
    if (!allowed(c, bits, write, user)) pageFault(c, lin, true, write, user);
    if (!(pde & 0x20)) physWrite(c, pdeAddr, 4, (pde |= 0x20));
    const want = pte | 0x20 | (write ? 0x40 : 0);
    if (want !== pte) physWrite(c, pteAddr, 4, (pte = want));
    bits = (pte & 0x60) | (pde & pte & 6);
    phys = pte >>> 12;
    global = (pte & 0x100) !== 0;
  }
  const dirty = (bits & 0x40) !== 0;
  const w = (bits & 2) !== 0;
  const u = (bits & 4) !== 0;
  let rights = TLB_RS;
  if (dirty && (w || !(c.cr0 & CR0_WP))) rights |= TLB_WS;
  if (u) rights |= TLB_RU;
  if (u && w && dirty) rights |= TLB_WU;
  if (global && c.cr4 & CR4_PGE) rights |= TLB_GLOBAL;
  return fill(c, p, phys, rights, lin);
}

function allowed(c: Cpu, bits: number, write: boolean, user: boolean): boolean {
  if (user) return (bits & 4) !== 0 && (!write || (bits & 2) !== 0);
  return !write || (bits & 2) !== 0 || !(c.cr0 & CR0_WP);
}

/** Enter a translation; rights are reduced to what the guest-physical page allows. */
function fill(c: Cpu, p: number, gpn: number, rights: number, lin: number): number {
  const m = c.memory;
  const s = m.storeOf[gpn];
  const r = m.rightsOf[gpn];
  let f = rights | TLB_VALID;
  if (s < 0 || !(r & MemRights.R)) f &= TLB_VALID | TLB_GLOBAL;
  else {
    if (!(r & MemRights.W) || c.codePage[gpn]) f &= ~(TLB_WS | TLB_WU);
    c.tlbStore[p] = s;
    c.tlbOff[p] = m.offsetOf[gpn];
    if (c.tlbAddr !== null) {
      const at = m.storeAddress[s];
      c.tlbAddr[p] = at !== 0 ? at + m.offsetOf[gpn] : 0;
    }
  }
  const list = f & TLB_GLOBAL ? 2 : 1;
  if (c.tlbWhere[p] !== list) {
    if (list === 1) {
      if (c.tlbCount >= TLB_LIST_MAX) flushTlb(c, true);
      c.tlbList[c.tlbCount++] = p;
    } else {
      if (c.tlbGlobalCount >= TLB_LIST_MAX) flushTlb(c, true);
      c.tlbGlobalList[c.tlbGlobalCount++] = p;
    }
    c.tlbWhere[p] = list;
  }
  c.tlbFlags[p] = f;
  c.tlbPhys[p] = gpn;
  return ((gpn << 12) | (lin & 0xfff)) >>> 0;
}

// ---- physical access ----

export function physRead(c: Cpu, pa: number, size: number): number {
  const gpn = pa >>> 12;
  const m = c.memory;
  const s = m.storeOf[gpn];
  if (s >= 0 && m.rightsOf[gpn] & MemRights.R && (pa & 0xfff) + size <= 0x1000) {
    const o = m.offsetOf[gpn] + (pa & 0xfff);
    if (size === 1) return c.bytes[s][o];
    if (size === 2) return c.views[s].getUint16(o, true);
    return c.views[s].getInt32(o, true);
  }
  if ((pa & 0xfff) + size > 0x1000) {
    let v = 0;
    for (let k = 0; k < size; k++) v |= physRead(c, (pa + k) >>> 0, 1) << (8 * k);
    return size === 4 ? v | 0 : v;
  }
  return mmio(c, pa, size, false, 0);
}

export function physWrite(c: Cpu, pa: number, size: number, v: number): void {
  const gpn = pa >>> 12;
  const m = c.memory;
  const s = m.storeOf[gpn];
  if (s >= 0 && m.rightsOf[gpn] & MemRights.W && (pa & 0xfff) + size <= 0x1000) {
    if (c.codePage[gpn]) {
      // A write into a page with cached code: end the running block and make every block
      // compare its bytes again on its next entry. The page stays marked (writes stay slow).
      c.codeEpoch++;
      c.attention = true;
    }
    const o = m.offsetOf[gpn] + (pa & 0xfff);
    if (size === 1) c.bytes[s][o] = v;
    else if (size === 2) c.views[s].setUint16(o, v, true);
    else c.views[s].setInt32(o, v, true);
    return;
  }
  if ((pa & 0xfff) + size > 0x1000) {
    for (let k = 0; k < size; k++) physWrite(c, (pa + k) >>> 0, 1, v >>> (8 * k));
    return;
  }
  mmio(c, pa, size, true, v);
}

const SIZE_MASK = [0, 0xff, 0xffff, 0, -1];

/** A synchronous MMIO exit; returns the value read (all ones when nobody answered). */
function mmio(c: Cpu, pa: number, size: number, write: boolean, v: number): number {
  const st = c.state;
  const q = st.qual;
  const mask = SIZE_MASK[size];
  q.address = pa >>> 0;
  q.size = size;
  q.write = write;
  q.data = write ? (size === 4 ? v >>> 0 : v & mask) : 0;
  q.linear = 0;
  const ok = c.exits !== null && c.exits.exit(ExitReason.MMIO, st);
  c.exited();
  if (write) return 0;
  const r = ok ? q.data : -1;
  return size === 4 ? r | 0 : r & mask;
}

// ---- slow paths of linear access ----

export function readSlow(c: Cpu, lin: number, size: number, user: boolean): number {
  if ((lin & 0xfff) + size <= 0x1000) return physRead(c, translate(c, lin, false, user), size);
  const second = (lin + size) & ~0xfff;
  const pa1 = translate(c, lin, false, user);
  const pa2 = translate(c, second, false, user);
  const firstLen = 0x1000 - (lin & 0xfff);
  let v = 0;
  for (let k = 0; k < size; k++) {
    const pa = k < firstLen ? pa1 + k : pa2 + (k - firstLen);
    v |= physRead(c, pa >>> 0, 1) << (8 * k);
  }
  return size === 4 ? v | 0 : v;
}

export function writeSlow(c: Cpu, lin: number, size: number, v: number, user: boolean): void {
  if ((lin & 0xfff) + size <= 0x1000) {
    physWrite(c, translate(c, lin, true, user), size, v);
    return;
  }
  const second = (lin + size) & ~0xfff;
  const pa1 = translate(c, lin, true, user);
  const pa2 = translate(c, second, true, user);
  const firstLen = 0x1000 - (lin & 0xfff);
  for (let k = 0; k < size; k++) {
    const pa = k < firstLen ? pa1 + k : pa2 + (k - firstLen);
    physWrite(c, pa >>> 0, 1, v >>> (8 * k));
  }
}

/** Raise the fault a write would raise, without writing. */
export function probeSlow(c: Cpu, lin: number, size: number, user: boolean): void {
  translate(c, lin, true, user);
  translate(c, (lin + size - 1) | 0, true, user);
}

/** Make the fetch page cover linear `lin` (raises #PF); false when the page is not RAM. */
export function setFetchPage(c: Cpu, lin: number): boolean {
  translate(c, lin, false, c.cpl === 3);
  const p = lin >>> 12;
  if (!(c.tlbFlags[p] & TLB_RS)) return false;
  c.fetchPage = p;
  c.fetchStore = c.tlbStore[p];
  c.fetchOff = c.tlbOff[p];
  c.fetchPhys = c.tlbPhys[p] << 12;
  return true;
}
