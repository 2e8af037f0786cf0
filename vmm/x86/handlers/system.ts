// Handlers of system instructions: flags (CLI/STI/PUSHF/POPF), port I/O, descriptor tables and
// segment queries (group 6/7, LAR/LSL/VERR/VERW), control/debug registers, MSRs, TSC, CPUID,
// SYSENTER/SYSEXIT, cache control, UD2 and the x87 escape hook.

import { ExitReason } from "../../../kernel/vcpu.js";
import { type Cpu, type Handler, SEG_LDTR, SEG_TR } from "../cpu.js";
import { cpuid } from "../cpuid.js";
import { Pfx, SEG_CS, SEG_SS } from "../decoder.js";
import { protectedFlags, setFlags } from "../far.js";
import { IF, IOPL, materialize, RF, VM, ZF } from "../flags.js";
import { checkIoPermission, portIn, portOut } from "../io.js";
import { flushTlb, invalidatePage } from "../mmu.js";
import { readMsr, writeMsr } from "../msr.js";
import { readE16, writeE16 } from "../operands.js";
import {
  descDpl, descLimit, descType, isCode, isConforming, isData, loadLdt, loadTr, readDescriptor, refreshAllAccess,
  setCpl, setSegment,
} from "../segments.js";

const realOrV86 = (c: Cpu) => !(c.cr0 & 1) || (c.flags & VM) !== 0;
const iopl = (c: Cpu) => (c.flags >> 12) & 3;

/** #GP(0) unless running at CPL 0 (real mode counts as CPL 0). */
function requireCpl0(c: Cpu): void {
  if (c.cr0 & 1 && c.cpl !== 0) c.fault(13, 0);
}

function requireProtected(c: Cpu): void {
  if (realOrV86(c)) c.fault(6);
}

export function registerSystem(h: Record<string, Handler>): void {
  h.cli = (c) => {
    if (c.cr0 & 1 && (c.flags & VM ? iopl(c) < 3 : c.cpl > iopl(c))) c.fault(13, 0);
    c.flags &= ~IF;
  };
  h.sti = (c) => {
    if (c.cr0 & 1 && (c.flags & VM ? iopl(c) < 3 : c.cpl > iopl(c))) c.fault(13, 0);
    if (!(c.flags & IF)) c.inhibitUntil = c.retired + 2;
    c.flags |= IF;
    c.attention = true;
  };
  h.pushf16 = (c) => {
    if (c.flags & VM && iopl(c) < 3) c.fault(13, 0);
    c.push16(materialize(c));
  };
  h.pushf32 = (c) => {
    if (c.flags & VM && iopl(c) < 3) c.fault(13, 0);
    c.push32(materialize(c) & ~(VM | RF));
  };
  const popf = (c: Cpu, o32: boolean) => {
    if (c.flags & VM && iopl(c) < 3) c.fault(13, 0);
    const old = materialize(c);
    let f = o32 ? c.peek32(0) : c.peek16(0) | (old & 0xffff0000);
    if (!(c.cr0 & 1)) {
      f = (f & 0x3f7fd5 & ~(VM | RF | 0x180000)) | (old & (VM | 0x180000)) | 2;
    } else if (c.flags & VM) {
      f = (f & 0x3f7fd5 & ~(VM | RF | IOPL | 0x180000)) | (old & (VM | IOPL | 0x180000)) | 2;
    } else {
      f = protectedFlags(old, f, c.cpl, o32) & ~RF;
    }
    c.setSp(c.sp + (o32 ? 4 : 2));
    setFlags(c, f);
  };
  h.popf16 = (c) => popf(c, false);
  h.popf32 = (c) => popf(c, true);

  // Port I/O.
  const inp = (c: Cpu, port: number, size: number) => {
    checkIoPermission(c, port, size);
    const v = portIn(c, port, size);
    if (size === 1) c.r8[0] = v;
    else if (size === 2) c.r16[0] = v;
    else c.r[0] = v;
  };
  const outp = (c: Cpu, port: number, size: number) => {
    checkIoPermission(c, port, size);
    portOut(c, port, size, size === 1 ? c.r8[0] : size === 2 ? c.r16[0] : c.r[0]);
  };
  h.in_ALIb = (c, i) => inp(c, c.dec.imm[i] & 0xff, 1);
  h.in_eAXIb16 = (c, i) => inp(c, c.dec.imm[i] & 0xff, 2);
  h.in_eAXIb32 = (c, i) => inp(c, c.dec.imm[i] & 0xff, 4);
  h.out_IbAL = (c, i) => outp(c, c.dec.imm[i] & 0xff, 1);
  h.out_IbeAX16 = (c, i) => outp(c, c.dec.imm[i] & 0xff, 2);
  h.out_IbeAX32 = (c, i) => outp(c, c.dec.imm[i] & 0xff, 4);
  h.in_ALDX = (c) => inp(c, c.r16[4], 1);
  h.in_eAXDX16 = (c) => inp(c, c.r16[4], 2);
  h.in_eAXDX32 = (c) => inp(c, c.r16[4], 4);
  h.out_DXAL = (c) => outp(c, c.r16[4], 1);
  h.out_DXeAX16 = (c) => outp(c, c.r16[4], 2);
  h.out_DXeAX32 = (c) => outp(c, c.r16[4], 4);

  // Group 6.
  const storeSel = (c: Cpu, i: number, v: number) => {
    const d = c.dec;
    if (d.mod3[i] && d.pfx[i] & Pfx.O32) c.r[d.rm[i]] = v;
    else writeE16(c, i, v);
  };
  h.sldt = (c, i) => {
    requireProtected(c);
    storeSel(c, i, c.sel[SEG_LDTR]);
  };
  h.str = (c, i) => {
    requireProtected(c);
    storeSel(c, i, c.sel[SEG_TR]);
  };
  h.lldt = (c, i) => {
    requireProtected(c);
    requireCpl0(c);
    loadLdt(c, readE16(c, i));
  };
  h.ltr = (c, i) => {
    requireProtected(c);
    requireCpl0(c);
    loadTr(c, readE16(c, i));
  };
  h.verr = (c, i) => verify(c, readE16(c, i), false);
  h.verw = (c, i) => verify(c, readE16(c, i), true);

  // Group 7.
  const storeTable = (c: Cpu, i: number, limit: number, base: number) => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    const off = c.ea(i);
    c.probeWrite(d.seg[i], off, 1);
    c.wr16(d.seg[i], off, limit);
    c.wr32(d.seg[i], (off + 2) & d.amask[i], d.pfx[i] & Pfx.O32 ? base : base & 0xffffff);
  };
  const loadTable = (c: Cpu, i: number): [number, number] => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    requireCpl0(c);
    const off = c.ea(i);
    const limit = c.rd16(d.seg[i], off);
    const base = c.rd32(d.seg[i], (off + 2) & d.amask[i]);
    return [limit, d.pfx[i] & Pfx.O32 ? base : base & 0xffffff];
  };
  // 0F 01 with mod = 3 and reg = 0 are the VMX instructions; of those only VMCALL (rm = 1) means
  // anything to a guest (a hypercall), the others raise #UD as outside VMX operation.
  h.sgdt = (c, i) => (c.dec.mod3[i] && c.dec.rm[i] === 1 ? vmcall(c) : storeTable(c, i, c.gdtLimit, c.gdtBase));
  h.sidt = (c, i) => storeTable(c, i, c.idtLimit, c.idtBase);
  h.lgdt = (c, i) => {
    const [limit, base] = loadTable(c, i);
    c.gdtLimit = limit;
    c.gdtBase = base;
  };
  h.lidt = (c, i) => {
    const [limit, base] = loadTable(c, i);
    c.idtLimit = limit;
    c.idtBase = base;
  };
  h.smsw16 = (c, i) => writeE16(c, i, c.cr0);
  h.smsw32 = (c, i) => {
    const d = c.dec;
    if (d.mod3[i]) c.r[d.rm[i]] = c.cr0;
    else writeE16(c, i, c.cr0);
  };
  h.lmsw = (c, i) => {
    requireCpl0(c);
    const v = readE16(c, i);
    // LMSW sets PE but never clears it.
    writeCr0(c, (c.cr0 & ~0xe) | (v & 0xf) | (c.cr0 & 1));
  };
  h.invlpg = (c, i) => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    requireCpl0(c);
    invalidatePage(c, c.base[d.seg[i]] + c.ea(i));
  };
  for (const [name, lsl] of [["lar", false], ["lsl", true]] as const) {
    for (const o32 of [false, true]) {
      h[`${name}${o32 ? 32 : 16}`] = (c, i) => {
        requireProtected(c);
        const sel = readE16(c, i);
        const v = accessQuery(c, sel, lsl);
        materialize(c);
        if (v === null) {
          c.flags &= ~ZF;
          return;
        }
        c.flags |= ZF;
        const d = c.dec;
        if (o32) c.r[d.reg[i]] = v;
        else c.r16[d.reg[i] << 1] = v;
      };
    }
  }
  h.clts = (c) => {
    requireCpl0(c);
    c.cr0 &= ~8;
  };
  h.invd = (c) => requireCpl0(c);
  h.wbinvd = (c) => requireCpl0(c);
  h.ud2 = (c) => c.fault(6);

  // Control and debug registers.
  h.mov_RdCd = (c, i) => {
    if (c.cr0 & 1 && (c.cpl !== 0 || c.flags & VM)) c.fault(13, 0);
    const d = c.dec;
    const n = d.reg[i];
    let v = 0;
    if (n === 0) v = c.cr0;
    else if (n === 2) v = c.cr2;
    else if (n === 3) v = c.cr3;
    else if (n === 4) v = c.cr4;
    else c.fault(6);
    c.r[d.rm[i]] = v;
  };
  h.mov_CdRd = (c, i) => {
    if (c.cr0 & 1 && (c.cpl !== 0 || c.flags & VM)) c.fault(13, 0);
    const d = c.dec;
    const n = d.reg[i];
    const v = c.r[d.rm[i]];
    if (n === 0) writeCr0(c, v);
    else if (n === 2) c.cr2 = v;
    else if (n === 3) {
      c.cr3 = v & ~0xfe7;
      flushTlb(c, false);
    } else if (n === 4) writeCr4(c, v);
    else c.fault(6);
  };
  h.mov_RdDd = (c, i) => {
    if (c.cr0 & 1 && (c.cpl !== 0 || c.flags & VM)) c.fault(13, 0);
    const d = c.dec;
    c.r[d.rm[i]] = c.dr[debugIndex(c, d.reg[i])];
  };
  h.mov_DdRd = (c, i) => {
    if (c.cr0 & 1 && (c.cpl !== 0 || c.flags & VM)) c.fault(13, 0);
    const d = c.dec;
    const n = debugIndex(c, d.reg[i]);
    const v = c.r[d.rm[i]];
    c.dr[n] = n === 6 ? (v | 0xffff0ff0) & ~0x1000 : n === 7 ? (v | 0x400) & ~0xd800 : v;
  };

  // MSRs, TSC, CPUID.
  h.rdmsr = (c) => {
    requireCpl0(c);
    const index = c.r[1] >>> 0;
    if (!readMsr(c, index) && !msrExit(c, index, false)) c.fault(13, 0);
  };
  h.wrmsr = (c) => {
    requireCpl0(c);
    const index = c.r[1] >>> 0;
    if (!writeMsr(c, index, c.r[0], c.r[2]) && !msrExit(c, index, true)) c.fault(13, 0);
  };
  h.rdtsc = (c) => {
    if (c.cr4 & 4 && c.cr0 & 1 && c.cpl !== 0) c.fault(13, 0);
    const t = c.retired + c.tscOffset;
    c.r[0] = t % 4294967296;
    c.r[2] = Math.floor(t / 4294967296);
  };
  h.rdpmc = (c) => {
    if (c.r[1] >>> 0 > 1 || (!(c.cr4 & 0x100) && c.cr0 & 1 && c.cpl !== 0)) c.fault(13, 0);
    c.r[0] = 0;
    c.r[2] = 0;
  };
  h.cpuid = (c) => cpuidInstruction(c);
  h.sysenter = (c) => {
    if (!(c.cr0 & 1) || (c.sysenterCs & 0xfffc) === 0) c.fault(13, 0);
    materialize(c);
    const wasVm = c.flags & VM;
    c.flags &= ~(VM | IF | RF);
    setCpl(c, 0);
    const cs = c.sysenterCs & 0xfffc;
    setSegment(c, SEG_CS, cs, 0, 0xffffffff, 0xc09b);
    setSegment(c, SEG_SS, (cs + 8) & 0xfffc, 0, 0xffffffff, 0xc093);
    if (wasVm) refreshAllAccess(c);
    c.r[4] = c.sysenterEsp;
    c.nextEip = c.sysenterEip;
  };
  h.sysexit = (c) => {
    if (!(c.cr0 & 1) || c.cpl !== 0 || (c.sysenterCs & 0xfffc) === 0 || c.flags & VM) c.fault(13, 0);
    const cs = c.sysenterCs & 0xfffc;
    setCpl(c, 3);
    setSegment(c, SEG_CS, (cs + 16) | 3, 0, 0xffffffff, 0xc0fb);
    setSegment(c, SEG_SS, (cs + 24) | 3, 0, 0xffffffff, 0xc0f3);
    c.r[4] = c.r[1];
    c.nextEip = c.r[2];
  };

  // x87 escape and WAIT.
  h.esc = (c, i) => {
    if (c.cr0 & 0xc) c.fault(7);
    const fpu = c.fpu;
    if (fpu === null) return c.fault(6);
    fpu.execute(c, i);
    if (fpu.ferr !== c.ferrLevel) ferrChanged(c, fpu.ferr);
  };
  h.fwait = (c) => {
    if ((c.cr0 & 0xa) === 0xa) c.fault(7);
    if (c.fpu !== null) c.fpu.wait(c);
  };
  // FXSAVE/FXRSTOR: the x87 state in the 512-byte layout (a P6 without SSE: MXCSR and XMM are 0).
  h.fxsave = (c, i) => fxImage(c, i, true);
  h.fxrstor = (c, i) => fxImage(c, i, false);
}

function fxImage(c: Cpu, i: number, save: boolean): void {
  const d = c.dec;
  const fpu = c.fpu;
  if (d.mod3[i] || fpu === null) c.fault(6);
  if (c.cr0 & 0xc) c.fault(7);
  const seg = d.seg[i];
  const off = c.ea(i);
  if ((c.base[seg] + off) & 15) c.fault(13, 0);
  const mask = d.amask[i];
  if (save) {
    c.probeWrite(seg, off, 512);
    const image = fpu!.save();
    const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
    for (let k = 0; k < 512; k += 4) c.wr32(seg, (off + k) & mask, view.getInt32(k, true));
  } else {
    const image = new Uint8Array(512);
    const view = new DataView(image.buffer);
    for (let k = 0; k < 512; k += 4) view.setInt32(k, c.rd32(seg, (off + k) & mask), true);
    fpu!.load(image);
    if (fpu!.ferr !== c.ferrLevel) ferrChanged(c, fpu!.ferr);
  }
}

/** FERR# changed level after an x87 instruction: end the run after it when the VMM asked. */
function ferrChanged(c: Cpu, level: boolean): void {
  c.ferrLevel = level;
  if (!c.ferrExits || c.stop >= 0) return;
  c.stop = ExitReason.FERR;
  c.attention = true;
}

function debugIndex(c: Cpu, n: number): number {
  if (n === 4 || n === 5) {
    if (c.cr4 & 8) c.fault(6);
    return n + 2;
  }
  return n;
}

const CR0_PG = 0x80000000 | 0, CR0_WP = 0x10000;

/** Write CR0 with its consistency checks; flushes the TLB when paging bits change. */
export function writeCr0(c: Cpu, v: number): void {
  v |= 0x10; // ET is fixed on P6
  if (v & 0x80000000 && !(v & 1)) c.fault(13, 0);
  if (v & 0x20000000 && !(v & 0x40000000)) c.fault(13, 0);
  const old = c.cr0;
  c.cr0 = v & (0xe005003f | 0);
  // Without paging the TLB holds identity entries with all rights, whatever PE and WP say: only
  // a change of PG, or of WP under paging, makes them wrong (a loop toggling TS or CD stays cheap).
  const changed = old ^ c.cr0;
  if (changed & CR0_PG || (c.cr0 & CR0_PG && changed & CR0_WP)) flushTlb(c, true);
  if ((old ^ c.cr0) & 1) {
    if (!(c.cr0 & 1)) setCpl(c, 0);
    refreshAllAccess(c);
  }
}

export function writeCr4(c: Cpu, v: number): void {
  // TSD, DE, PSE, PGE, PCE; OSFXSR when an x87 unit (and so FXSAVE) is there.
  const supported = 0x4 | 0x8 | 0x10 | 0x80 | 0x100 | (c.fpu !== null ? 0x200 : 0);
  if (v & ~supported) c.fault(13, 0);
  const old = c.cr4;
  c.cr4 = v;
  // PSE and PGE change what page walks and flushes do; without paging there is nothing to change.
  if ((old ^ v) & 0x90 && c.cr0 & CR0_PG) flushTlb(c, true);
}

/** The access-rights word (LAR) or limit (LSL) of `sel`, or null when the query fails (ZF=0). */
function accessQuery(c: Cpu, sel: number, lsl: boolean): number | null {
  if ((sel & 0xfffc) === 0) return null;
  const d = c.desc;
  if (!readDescriptor(c, sel, d)) return null;
  if (!(d.hi & 0x1000)) {
    const t = descType(d);
    const ok = lsl ? [1, 2, 3, 9, 11].includes(t) : [1, 2, 3, 4, 5, 9, 11, 12].includes(t);
    if (!ok) return null;
  }
  if (!(isCode(d) && isConforming(d))) {
    if (descDpl(d) < c.cpl || descDpl(d) < (sel & 3)) return null;
  }
  return lsl ? descLimit(d) | 0 : d.hi & 0x00ffff00;
}

function verify(c: Cpu, sel: number, write: boolean): void {
  requireProtected(c);
  materialize(c);
  c.flags &= ~ZF;
  if ((sel & 0xfffc) === 0) return;
  const d = c.desc;
  if (!readDescriptor(c, sel, d) || !(d.hi & 0x1000)) return;
  if (!(isCode(d) && isConforming(d)) && (descDpl(d) < c.cpl || descDpl(d) < (sel & 3))) return;
  const ok = write ? isData(d) && (d.hi & 0x200) !== 0 : isData(d) || (d.hi & 0x200) !== 0;
  if (ok) c.flags |= ZF;
}

/**
 * RDMSR/WRMSR of an MSR the core does not implement: the VMM's answer, when it asked for MSR exits.
 * False when the access raises #GP(0) (no MSR exits, no VMM, or the VMM refused it).
 */
function msrExit(c: Cpu, index: number, write: boolean): boolean {
  if (!c.msrExits || c.exits === null) return false;
  const q = c.state.qual;
  q.address = index;
  q.size = 8;
  q.write = write;
  q.data = write ? c.r[0] >>> 0 : 0;
  q.edx = write ? c.r[2] >>> 0 : 0;
  q.ebx = q.ecx = 0;
  q.refused = false;
  const ok = c.exits.exit(ExitReason.MSR, c.state);
  c.codeEpoch++; // the VMM may have written guest memory (a kvm-clock record)
  if (!ok || q.refused) return false;
  if (!write) {
    c.r[0] = q.data;
    c.r[2] = q.edx;
  }
  return true;
}

/**
 * VMCALL: a synchronous exit when the VMM takes hypercalls (the number in `qual.address`, the
 * VMM's answer in `qual.data` becomes EAX; no answer leaves EAX as it was); else #UD. Synchronous,
 * not at the boundary: the run goes on in translated code, as after CPUID.
 */
function vmcall(c: Cpu): void {
  if (!c.vmcallExits) c.fault(6);
  if (c.exits === null) return;
  const q = c.state.qual;
  q.address = q.data = c.r[0] >>> 0;
  q.size = 0;
  q.write = false;
  q.ebx = q.ecx = q.edx = 0;
  const ok = c.exits.exit(ExitReason.VMCALL, c.state);
  c.exited(); // the VMM may have written guest memory (multicall results, grant copies) unless it says not
  if (ok) c.r[0] = q.data;
}

function cpuidInstruction(c: Cpu): void {
  const hypervisorLeaf = c.hypervisorLeaves && c.r[0] >>> 28 === 4;
  if ((c.cpuidExits || hypervisorLeaf) && c.exits !== null) {
    const st = c.state;
    const q = st.qual;
    q.address = c.r[0] >>> 0;
    q.data = c.r[1] >>> 0;
    q.size = 0;
    q.write = false;
    q.ebx = q.ecx = q.edx = 0;
    const ok = c.exits.exit(ExitReason.CPUID, st);
    c.codeEpoch++;
    if (ok) {
      c.r[0] = q.data;
      c.r[3] = q.ebx;
      c.r[1] = q.ecx;
      c.r[2] = q.edx;
      return;
    }
  }
  cpuid(c);
}


