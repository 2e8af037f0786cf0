// The i686 CPU state (registers, segment caches, control registers, software TLB) and the hot
// paths of memory access. Everything lives in typed arrays and plain fields of one object, so
// many CPUs coexist and a snapshot is a copy.

import type { GuestMemory } from "../../kernel/guest-memory.js";
import { ExitReason, type VcpuExitHandler, type VcpuState } from "../../kernel/vcpu.js";
import { Decoded, type HandlerResolver, SEG_SS } from "./decoder.js";
import { condition, setArith, type LazyFlags } from "./flags.js";
import { probeSlow, readSlow, writeSlow } from "./mmu.js";
import type { Fpu, FpuHost } from "./fpu/hook.js";
import type { BlockLinks } from "./block-links.js";

/** Thrown (never allocated per fault) when a guest exception is raised; details are in the CPU. */
export const FAULT: { readonly guestFault: true } = Object.freeze({ guestFault: true });

/** Thrown to leave the run loop at once (triple fault, internal stop); reason in `Cpu.stop`. */
export const STOP: { readonly stopRun: true } = Object.freeze({ stopRun: true });

export type Handler = (c: Cpu, i: number) => void;

/** TLB entry bits: read/write allowed for supervisor and user accesses, global page. */
export const TLB_RS = 1, TLB_WS = 2, TLB_RU = 4, TLB_WU = 8, TLB_GLOBAL = 16, TLB_VALID = 32;

/** Segment access bits (`segAcc`). */
export const ACC_R = 1, ACC_W = 2, ACC_DOWN = 4, ACC_BIG = 8, ACC_NULL = 16;

export const SEG_LDTR = 6, SEG_TR = 7;

const LINEAR_PAGES = 1 << 20;
export const TLB_LIST_MAX = 8192;

/**
 * Byte offsets in a Cpu's state area (Cpu.area). `words` is scratch for the wasm tier (its lazy
 * flag record and results, wasm/translate.ts W_*); tlbAddr and codeIndex exist only in an arena.
 */
export const STATE_LAYOUT = {
  regs: 0,
  base: 64,
  limit: 96,
  segFast: 128,
  words: 256,
  tlbOff: 4096,
  tlbPhys: 4096 + 4 * LINEAR_PAGES,
  tlbStore: 4096 + 8 * LINEAR_PAGES,
  tlbFlags: 4096 + 10 * LINEAR_PAGES,
  tlbWhere: 4096 + 11 * LINEAR_PAGES,
  codePage: 4096 + 12 * LINEAR_PAGES,
  tlbAddr: 4096 + 13 * LINEAR_PAGES,
  /** The block cache's codeIndex (2^14 entries at most, blocks.ts BLOCK_BITS). */
  codeIndex: 4096 + 17 * LINEAR_PAGES,
  bytes: (arena: boolean): number => 4096 + (arena ? 17 * LINEAR_PAGES + 4 * (1 << 14) : 13 * LINEAR_PAGES),
} as const;

export class Cpu implements LazyFlags {
  /**
   * The registers, segment caches and TLB arrays below live in one block of bytes: in the guest
   * memory's WebAssembly arena when it has one (the wasm tier reads them there), else in an
   * ArrayBuffer of their own. Layout: STATE_LAYOUT.
   */
  readonly area: Uint8Array;
  /** Address of `area` in the arena, 0 when it is not in one. */
  readonly areaAddress: number;
  // General registers: r[0..7] = EAX ECX EDX EBX ESP EBP ESI EDI, r[8] is always 0 (no base/index).
  readonly r: Int32Array;
  readonly r16: Uint16Array;
  readonly r8: Uint8Array;
  /** Start of the current instruction. */
  eip = 0;
  /** Where execution continues after the current instruction (control transfers set it). */
  nextEip = 0;

  // EFLAGS with lazy arithmetic flags (see flags.ts).
  flags = 2;
  lzMask = 0;
  lzOp = 0;
  lzA = 0;
  lzB = 0;
  lzR = 0;
  lzBit = 31;

  // Segment registers ES CS SS DS FS GS LDTR TR with their descriptor caches.
  readonly sel = new Uint16Array(8);
  readonly base: Int32Array;
  readonly limit: Uint32Array;
  /** VMX-style attributes: type[3:0] S[4] DPL[6:5] P[7] AVL[12] D/B[14] G[15], bit 16 unusable. */
  readonly attr = new Int32Array(8);
  /** ACC_* bits derived from attr and the mode. */
  readonly segAcc = new Uint8Array(8);
  /** Bit 0: reads need no limit check (a 4 GiB limit, expand-up), bit 1: writes need none. */
  readonly segFast: Uint8Array;

  cpl = 0;
  /** CS.D: 1 when code decodes with 32-bit defaults. */
  codeMode = 0;
  /** SS.B: 1 when the stack pointer is ESP, 0 for SP. */
  stack32 = 0;

  cr0 = 0x60000010;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  readonly dr = new Int32Array(8);
  gdtBase = 0;
  gdtLimit = 0xffff;
  idtBase = 0;
  idtLimit = 0xffff;
  sysenterCs = 0;
  sysenterEsp = 0;
  sysenterEip = 0;
  apicBase = 0xfee00900;
  /** Initial APIC ID, reported by CPUID leaf 1. */
  apicId = 0;
  /** TSC = retired + tscOffset (a float holding an integer; exact below 2^53). */
  tscOffset = 0;

  /** Results of multi-result helpers (high half of a multiply, quotient and remainder). */
  mulHigh = 0;
  /** Location of the last r/m operand read by loadRm (register, or segment:offset when rmReg < 0). */
  rmReg = 0;
  rmSeg = 0;
  rmOff = 0;
  divQuot = 0;
  divRem = 0;

  retired = 0;
  /** The retired count the current run ends at (its budget): repeated string instructions stop there. */
  budgetEnd = 0;
  /** Interrupts are inhibited while retired < inhibitUntil (STI, MOV SS, POP SS shadow). */
  inhibitUntil = 0;
  /** NMI blocked (from NMI delivery until the next IRET). */
  nmiBlocked = false;
  /** 0 active, 1 halted, 2 shutdown. */
  activity = 0;
  /** Set when the run loop must look at events before the next instruction. */
  attention = true;
  /** Boundary exit to return at the next boundary, or -1. */
  stop = -1;

  // The raised exception (valid while FAULT propagates).
  faultVector = 0;
  faultCode = 0;
  faultHasCode = false;
  faultLinear = 0;
  /** The exception is a trap (INT3, INTO, INT1): the pushed EIP is the next instruction's. */
  faultTrap = false;
  /** Vector of the exception being delivered (for double fault), -1 when none. */
  delivering = -1;

  // Software TLB, indexed by linear page number. Its arrays (and codePage) share the state area:
  // one allocation of 13 MiB, left untouched but where used, instead of six (a vCPU's start).
  /** Byte offset in the store of the linear page's first byte. */
  readonly tlbOff: Int32Array;
  readonly tlbPhys: Int32Array;
  readonly tlbStore: Int16Array;
  readonly tlbFlags: Uint8Array;
  /**
   * With an arena: the arena address of the linear page's first byte, 0 when its store is not in
   * the arena (valid where tlbFlags allows the access). Null without an arena.
   */
  readonly tlbAddr: Int32Array | null;
  /**
   * The filled entries, so that a flush costs what was filled, not the 2^20 pages: non-global
   * pages in tlbList, global ones in tlbGlobalList (a MOV CR3 walks only the first). Every page
   * with tlbFlags non-zero is in the list tlbWhere names (1 non-global, 2 global, 0 none); a list
   * may also hold pages that moved to the other list or were invalidated since (skipped).
   */
  readonly tlbList = new Int32Array(TLB_LIST_MAX);
  tlbCount = 0;
  readonly tlbGlobalList = new Int32Array(TLB_LIST_MAX);
  tlbGlobalCount = 0;
  readonly tlbWhere: Uint8Array;
  /** Current access masks (depend on CPL). */
  rdMask = TLB_RS;
  wrMask = TLB_WS;
  /** The guest memory's stores and their DataViews (the same arrays: a store's storage may change). */
  readonly bytes: Uint8Array[];
  readonly views: DataView[];

  // Code fetch: the linear page last used for fetching and its store.
  fetchPage = -1;
  fetchStore = 0;
  fetchOff = 0;
  fetchPhys = 0;

  /** Scratch descriptors for segment loads and gates (no allocation per load). */
  readonly desc = { lo: 0, hi: 0, addr: 0 };
  readonly desc2 = { lo: 0, hi: 0, addr: 0 };
  readonly desc3 = { lo: 0, hi: 0, addr: 0 };
  /** Values of a stack frame being built (interrupt delivery, far calls). */
  readonly frame = new Int32Array(32);

  /** Decoded instructions; the block cache replaces them when it grows (between runs). */
  dec: Decoded<Cpu>;
  /** Exit handler of the current run (synchronous exits) and the state record they fill. */
  exits: VcpuExitHandler | null = null;
  state: VcpuState;
  /** CPUID answered by the VMM when set. */
  cpuidExits = false;
  exceptionBitmap = 0;
  /** The x87 unit (a later module); null: ESC opcodes raise #NM/#UD as configured. */
  fpu: Fpu | null = null;
  /** FERR# as last seen by the core, and whether its changes end the run (ExitReason.FERR). */
  ferrLevel = false;
  ferrExits = false;
  /** Paravirtual exits the VMM asked for (VcpuState's CTRL group says what each does). */
  hypervisorLeaves = false;
  msrExits = false;
  vmcallExits = false;
  /** Last host error caught by the run loop (an engine bug); reported as INVALID_STATE. */
  lastError: unknown = null;
  /** Why the last run ended with INVALID_STATE for a guest reason (e.g. executing MMIO). */
  invalidReason = "";

  /** Physical pages holding cached code: guest writes to them take the slow path. */
  readonly codePage: Uint8Array;
  /** Advances whenever cached code may be stale (see blocks.ts). */
  codeEpoch = 0;
  /**
   * TLB flushes and changes of CS or the CPL advance codeEpoch too (block links and loops assume
   * the linear-to-physical map of code and the code segment), but they change no bytes: codeEpoch right after the last flush, and the last value
   * codeEpoch had from any other advance before it, let the run loop skip comparing a block's
   * bytes when only flushes happened since it last compared them (see bytesChangedAfter).
   */
  flushEpoch = -1;
  byteEpoch = 0;
  /**
   * Set by a translated block that left without a valid link for its exit (translate.ts): the
   * run loop records the block it finds next in that exit's link.
   */
  linkFrom: BlockLinks | null = null;
  linkExit = 0;

  constructor(
    readonly memory: GuestMemory,
    state: VcpuState,
    handlers: HandlerResolver<Cpu>,
    decodeSlots: number,
  ) {
    const arenaBytes = memory.arena?.alloc(STATE_LAYOUT.bytes(true)) ?? null;
    const area = this.area = arenaBytes ?? new Uint8Array(STATE_LAYOUT.bytes(false));
    this.areaAddress = arenaBytes !== null && memory.arena !== null ? memory.arena.addressOf(arenaBytes) : 0;
    const buf = area.buffer, at = area.byteOffset, L = STATE_LAYOUT;
    this.r = new Int32Array(buf, at + L.regs, 9);
    this.r16 = new Uint16Array(buf, at + L.regs, 20);
    this.r8 = new Uint8Array(buf, at + L.regs, 40);
    this.base = new Int32Array(buf, at + L.base, 8);
    this.limit = new Uint32Array(buf, at + L.limit, 8);
    this.segFast = new Uint8Array(buf, at + L.segFast, 8);
    this.tlbOff = new Int32Array(buf, at + L.tlbOff, LINEAR_PAGES);
    this.tlbPhys = new Int32Array(buf, at + L.tlbPhys, LINEAR_PAGES);
    this.tlbStore = new Int16Array(buf, at + L.tlbStore, LINEAR_PAGES);
    this.tlbFlags = new Uint8Array(buf, at + L.tlbFlags, LINEAR_PAGES);
    this.tlbWhere = new Uint8Array(buf, at + L.tlbWhere, LINEAR_PAGES);
    this.codePage = new Uint8Array(buf, at + L.codePage, LINEAR_PAGES);
    this.tlbAddr = arenaBytes !== null ? new Int32Array(buf, at + L.tlbAddr, LINEAR_PAGES) : null;
    this.state = state;
    this.dec = new Decoded<Cpu>(decodeSlots, handlers);
    this.bytes = memory.stores;
    this.views = memory.views;
  }

  /** FpuHost: is Jcc condition `cc` true now? */
  condition(cc: number): boolean {
    return condition(this, cc);
  }

  /** FpuHost: set the six arithmetic flags to `bits`. */
  setArithFlags(bits: number): void {
    setArith(this, bits);
  }

  /**
   * After a synchronous exit: the VMM may have written guest RAM (DMA) unless its reply says it did
   * not, and when it recalled the vCPU the run ends after this instruction (BUDGET; the kernel then
   * delivers RECALL).
   */
  exited(): void {
    if (!this.state.qual.ramUnchanged) this.codeEpoch++;
    if (this.exits !== null && this.exits.stopRequested) {
      if (this.stop < 0) this.stop = ExitReason.BUDGET;
      this.attention = true;
    }
  }

  /**
   * FERR# freeze (x87 exception pending, CR0.NE = 0, IGNNE# inactive): the current instruction
   * is not executed; the CPU waits for an external interrupt with EIP at it.
   */
  freeze(): never {
    this.activity = 1;
    this.stop = ExitReason.HLT;
    throw STOP;
  }

  /** Raise guest exception `vector` (never returns). */
  fault(vector: number, code = -1): never {
    this.faultVector = vector;
    this.faultHasCode = code >= 0;
    this.faultCode = code >= 0 ? code : 0;
    throw FAULT;
  }

  // ---- effective addresses and segment checks ----

  /** Effective (offset) address of the memory operand of slot i. */
  ea(i: number): number {
    const d = this.dec;
    const r = this.r;
    return (r[d.base[i]] + (r[d.index[i]] << d.scale[i]) + d.disp[i]) & d.amask[i];
  }

  /** Check an access of `size` bytes at `off` in segment `seg`; returns the linear address. */
  segCheck(seg: number, off: number, size: number, write: boolean): number {
    const a = this.segAcc[seg];
    const v = seg === SEG_SS ? 12 : 13;
    if (a & ACC_NULL) this.fault(v, 0);
    if (!(a & (write ? ACC_W : ACC_R))) this.fault(v, 0);
    const o = off >>> 0;
    const last = o + size - 1;
    if (a & ACC_DOWN) {
      if (o <= this.limit[seg] || last > (a & ACC_BIG ? 0xffffffff : 0xffff)) this.fault(v, 0);
    } else if (last > this.limit[seg]) {
      this.fault(v, 0);
    }
    return (this.base[seg] + off) | 0;
  }

  // ---- memory by segment:offset (current privilege) ----

  rd8(seg: number, off: number): number {
    const lin = this.segFast[seg] & 1 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, 1, false);
    const p = lin >>> 12;
    if (this.tlbFlags[p] & this.rdMask) return this.bytes[this.tlbStore[p]][this.tlbOff[p] + (lin & 0xfff)];
    return readSlow(this, lin, 1, this.cpl === 3);
  }

  rd16(seg: number, off: number): number {
    const lin = this.segFast[seg] & 1 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, 2, false);
    const p = lin >>> 12;
    if (this.tlbFlags[p] & this.rdMask && (lin & 0xfff) !== 0xfff) {
      return this.views[this.tlbStore[p]].getUint16(this.tlbOff[p] + (lin & 0xfff), true);
    }
    return readSlow(this, lin, 2, this.cpl === 3);
  }

  rd32(seg: number, off: number): number {
    const lin = this.segFast[seg] & 1 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, 4, false);
    const p = lin >>> 12;
    if (this.tlbFlags[p] & this.rdMask && (lin & 0xfff) <= 0xffc) {
      return this.views[this.tlbStore[p]].getInt32(this.tlbOff[p] + (lin & 0xfff), true);
    }
    return readSlow(this, lin, 4, this.cpl === 3);
  }

  wr8(seg: number, off: number, v: number): void {
    const lin = this.segFast[seg] & 2 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, 1, true);
    const p = lin >>> 12;
    if (this.tlbFlags[p] & this.wrMask) this.bytes[this.tlbStore[p]][this.tlbOff[p] + (lin & 0xfff)] = v;
    else writeSlow(this, lin, 1, v, this.cpl === 3);
  }

  wr16(seg: number, off: number, v: number): void {
    const lin = this.segFast[seg] & 2 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, 2, true);
    const p = lin >>> 12;
    if (this.tlbFlags[p] & this.wrMask && (lin & 0xfff) !== 0xfff) {
      this.views[this.tlbStore[p]].setUint16(this.tlbOff[p] + (lin & 0xfff), v, true);
    } else writeSlow(this, lin, 2, v, this.cpl === 3);
  }

  wr32(seg: number, off: number, v: number): void {
    const lin = this.segFast[seg] & 2 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, 4, true);
    const p = lin >>> 12;
    if (this.tlbFlags[p] & this.wrMask && (lin & 0xfff) <= 0xffc) {
      this.views[this.tlbStore[p]].setInt32(this.tlbOff[p] + (lin & 0xfff), v, true);
    } else writeSlow(this, lin, 4, v, this.cpl === 3);
  }

  /** Check that a write of `size` bytes at seg:off would succeed (segment and paging), without writing. */
  probeWrite(seg: number, off: number, size: number): void {
    const lin = this.segFast[seg] & 2 ? (this.base[seg] + off) | 0 : this.segCheck(seg, off, size, true);
    const p = lin >>> 12;
    const q = ((lin + size - 1) | 0) >>> 12;
    if (!(this.tlbFlags[p] & this.wrMask) || !(this.tlbFlags[q] & this.wrMask)) {
      probeSlow(this, lin, size, this.cpl === 3);
    }
  }

  // ---- linear memory with explicit privilege (descriptor tables, TSS, stacks of other rings) ----

  linRd8(lin: number, user: boolean): number {
    return readSlow(this, lin | 0, 1, user);
  }
  linRd16(lin: number, user: boolean): number {
    return readSlow(this, lin | 0, 2, user);
  }
  linRd32(lin: number, user: boolean): number {
    return readSlow(this, lin | 0, 4, user);
  }
  linWr8(lin: number, v: number, user: boolean): void {
    writeSlow(this, lin | 0, 1, v, user);
  }
  linWr16(lin: number, v: number, user: boolean): void {
    writeSlow(this, lin | 0, 2, v, user);
  }
  linWr32(lin: number, v: number, user: boolean): void {
    writeSlow(this, lin | 0, 4, v, user);
  }

  // ---- stack ----

  get sp(): number {
    return this.stack32 ? this.r[4] : this.r16[8];
  }

  /** Set the stack pointer respecting the stack size (SP only for 16-bit stacks). */
  setSp(v: number): void {
    if (this.stack32) this.r[4] = v;
    else this.r16[8] = v;
  }

  push16(v: number): void {
    const sp = this.stack32 ? (this.r[4] - 2) | 0 : (this.r16[8] - 2) & 0xffff;
    this.wr16(SEG_SS, sp, v);
    this.setSp(sp);
  }

  push32(v: number): void {
    const sp = this.stack32 ? (this.r[4] - 4) | 0 : (this.r16[8] - 4) & 0xffff;
    this.wr32(SEG_SS, sp, v);
    this.setSp(sp);
  }

  pop16(): number {
    const sp = this.stack32 ? this.r[4] : this.r16[8];
    const v = this.rd16(SEG_SS, sp);
    this.setSp(sp + 2);
    return v;
  }

  pop32(): number {
    const sp = this.stack32 ? this.r[4] : this.r16[8];
    const v = this.rd32(SEG_SS, sp);
    this.setSp(sp + 4);
    return v;
  }

  /** Read the stack at SP + delta without popping. */
  peek16(delta: number): number {
    return this.rd16(SEG_SS, this.stack32 ? (this.r[4] + delta) | 0 : (this.r16[8] + delta) & 0xffff);
  }
  peek32(delta: number): number {
    return this.rd32(SEG_SS, this.stack32 ? (this.r[4] + delta) | 0 : (this.r16[8] + delta) & 0xffff);
  }

  get protectedMode(): boolean {
    return (this.cr0 & 1) !== 0;
  }
  get v86(): boolean {
    return (this.flags & 0x20000) !== 0;
  }
}

