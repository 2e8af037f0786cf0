// The x86 engine: the run loop (fetch through the decoded-instruction cache, execute, events at
// instruction boundaries, exceptions with double/triple fault) behind the kernel's VcpuEngine.

import type { GuestMemory } from "../../kernel/guest-memory.js";
import {
  ExitReason, InjectionType, InvalidStateCause, Mtd, type SegmentState, VcpuEngine, type VcpuExitHandler, VcpuState, copyInjection, copyQual,
} from "../../kernel/vcpu.js";
import { BlockCache, CodeSource, MAX_INSTRUCTIONS, MIN_BLOCK_BITS, PAGE_TAIL, slotsFor } from "./blocks.js";
import { Cpu, FAULT, SEG_LDTR, SEG_TR, STOP } from "./cpu.js";
import { decodeInto, SEG_CS, SEG_SS } from "./decoder.js";
import { setFlags } from "./far.js";
import { IF, materialize, TF } from "./flags.js";
import type { Fpu } from "./fpu/hook.js";
import { CPU_HANDLERS } from "./handlers/index.js";
import { deliver, HAS_ERROR_CODE, isDoubleFault, Source } from "./interrupts.js";
import { bytesChangedAfter, flushTlb, physRead, setFetchPage } from "./mmu.js";
import { translateBlock } from "./translate.js";
import { attachWasm, translateWasm } from "./wasm/translate.js";
import { refreshAllAccess, setCpl, setSegment } from "./segments.js";

/** c.retired is rebased to 0 at the start of a run once it reaches this (see X86Engine.retiredBase). */
const REBASE_AT = 1 << 28;

export class X86Engine implements VcpuEngine {
  readonly cpu: Cpu;
  readonly blocks = new BlockCache();
  private readonly source: CodeSource;
  private readonly state = new VcpuState();
  /** Pending injection and window request (the INJ group). */
  private readonly inj = { valid: false, vector: 0, type: 0, errorCode: -1, requestWindow: false };
  private stepArmed = false;
  private stepAt = 0;
  /** Compile hot blocks into JS functions (translate.ts); off: every block is interpreted. */
  translate = true;
  /**
   * Runs of a decoded block before it is translated (1 to 65535; 1: at its first run). High on
   * purpose: every translation is a new function V8 must compile and optimize (milliseconds
   * each), which only pays off for really hot code. Measured on the Linux boot: 50 gave 61 s of
   * CPU, 20000 gave 40 s; 40000 translates 400 blocks instead of 620, as fast (boot 31 s), with
   * 15 MiB less peak RSS (compiled code, bytecode and feedback of the functions). Tried for the
   * XZ decompressor before the first serial byte (2.3 G instructions, a flat profile over ~170
   * translated blocks): 4000, or a rate (2000-4000 runs with the counts halved every 2-4 M
   * instructions), reached the first byte 5-13% sooner in CPU time but cost the whole boot 8-15%
   * more CPU and 10-75 MiB more RSS (more, colder blocks translated). Again with device access
   * times (issue 15, `bench:boot-phases -- --until boot-ok`, one busy machine, one after the
   * other): after the first byte 40 s of CPU at 40000 (401 blocks), 51 s at 10000 (1224 blocks),
   * 57 s at 4000 (1754 blocks), though the interpreter then ran 364 M instructions, half of them
   * the first 40000 runs of blocks that were translated later.
   */
  translateAfter = 40000;
  /**
   * Translate blocks of 32-bit code whose instructions all have a WebAssembly form to wasm
   * (wasm/translate.ts) instead of JS; only where the guest memory is in a WebAssembly arena.
   */
  wasm: boolean;
  /**
   * Runs of a decoded block before the wasm tier translates it (at most translateAfter): a wasm
   * module costs little to compile (V8's Liftoff, then TurboFan in the background). At 2000 the
   * XZ decompressor took 14.5 s of CPU instead of 16.9 s (382 blocks instead of 188), but the boot
   * after the first byte took longer (2000-2900 blocks, one busy machine): 40000 until measured
   * better. The thresholds change speed only: every tier retires the same instructions, so the
   * default guest's whole state at VM time 4 s is the same at 2000 and 40000, with either tier.
   */
  wasmAfter = 40000;
  /**
   * Let the wasm tier also take blocks in which up to one instruction in four calls its handler
   * (through an import, with the lazy flags copied to the Cpu and back). Off: measured on the
   * default guest's boot to BOOT-OK (HV_WASM=1, thresholds 40000, two alternated rounds on a busy
   * machine), CPU seconds 64.2 and 66.9 with only blocks whose instructions all have a wasm form,
   * 77.8 with these too, 82.6 and 79.0 without the wasm tier.
   */
  wasmMixed = false;

  constructor(memory: GuestMemory) {
    this.cpu = new Cpu(memory, this.state, CPU_HANDLERS, slotsFor(MIN_BLOCK_BITS));
    this.wasm = this.cpu.areaAddress !== 0;
    attachWasm(this.cpu, this.blocks);
    this.source = new CodeSource(this.cpu);
    const c = this.cpu;
    memory.onInvalidate(() => {
      flushTlb(c, true);
      c.codeEpoch++; // frames were replaced: the bytes behind guest-physical pages changed
    });
    this.reset();
  }

  /** Power-on state: real mode at F000:FFF0 with CS base FFFF0000. */
  reset(): void {
    const c = this.cpu;
    c.r.fill(0);
    c.r[2] = 0x652;
    c.cr0 = 0x60000010;
    c.cr2 = c.cr3 = c.cr4 = 0;
    c.flags = 2;
    c.lzMask = 0;
    setCpl(c, 0);
    for (let s = 0; s < 6; s++) setSegment(c, s, 0, 0, 0xffff, 0x93);
    setSegment(c, SEG_CS, 0xf000, 0xffff0000 | 0, 0xffff, 0x9b);
    setSegment(c, SEG_LDTR, 0, 0, 0xffff, 0x82);
    setSegment(c, SEG_TR, 0, 0, 0xffff, 0x8b);
    c.gdtBase = c.idtBase = 0;
    c.gdtLimit = c.idtLimit = 0xffff;
    c.eip = c.nextEip = 0xfff0;
    c.dr.fill(0);
    c.dr[6] = 0xffff0ff0 | 0;
    c.dr[7] = 0x400;
    c.activity = 0;
    c.attention = true;
    flushTlb(c, true);
  }

  /** Plug in the x87 unit: ESC opcodes and WAIT go to it, CPUID reports the FPU. */
  attachFpu(fpu: Fpu | null): void {
    this.cpu.fpu = fpu;
  }

  /**
   * Instructions retired before the last rebase: c.retired is kept below REBASE_AT (plus one
   * run's budget) so that it and the budget end stay small integers (V8 Smis). Past 2^31 they
   * would be heap numbers, and every `c.retired = r0 + k` of not yet optimized translated code
   * would allocate one.
   */
  private retiredBase = 0;
  /**
   * Instruction times the current instruction stalled in slow device accesses (stall()), not yet
   * in c.retired: translated code sets c.retired from its own count until the block leaves, so
   * they move there at the next instruction boundary (stall() asks for one).
   */
  private stalled = 0;

  get retired(): number {
    return this.retiredBase + this.cpu.retired + this.stalled;
  }

  stall(instructionTimes: number): void {
    this.stalled += instructionTimes;
    this.cpu.attention = true;
  }

  private takeStalled(): void {
    this.cpu.retired += this.stalled;
    this.stalled = 0;
  }

  /** Move c.retired's count into retiredBase; everything relative to c.retired moves along. */
  private rebase(): void {
    const c = this.cpu;
    const s = c.retired;
    this.retiredBase += s;
    c.retired = 0;
    c.inhibitUntil -= s;
    c.tscOffset += s;
    this.stepAt -= s;
  }

  run(budget: number, exits: VcpuExitHandler): ExitReason {
    const c = this.cpu;
    if (c.retired >= REBASE_AT) this.rebase();
    c.exits = exits;
    c.attention = true;
    c.codeEpoch++; // guest RAM may have changed since the last run
    this.blocks.growIfFull(c, this.retiredBase + c.retired);
    try {
      return this.loop(c.retired + Math.max(0, Math.floor(budget)));
    } catch (e) {
      if (e === STOP && c.stop >= 0) return this.takeStop();
      if (e !== STOP) c.lastError = e;
      return this.invalid(InvalidStateCause.ENGINE_ERROR, 0);
    } finally {
      c.exits = null;
      this.takeStalled();
    }
  }

  /** INVALID_STATE, with its cause in the qualification the VMM reads. */
  private invalid(cause: InvalidStateCause, linear: number): ExitReason {
    const q = this.state.qual;
    q.address = cause;
    q.linear = linear;
    q.size = 0;
    q.write = false;
    return ExitReason.INVALID_STATE;
  }

  private takeStop(): ExitReason {
    const r = this.cpu.stop;
    this.cpu.stop = -1;
    return r;
  }

  private loop(end: number): ExitReason {
    const c = this.cpu;
    c.budgetEnd = end;
    const d = c.dec;
    const table = d.table;
    const scratch = d.size - 1;
    const blocks = this.blocks;
    const src = this.source;
    for (;;) {
      if (c.attention) {
        const r = this.boundary();
        if (r >= 0) return r;
      }
      if (c.retired >= end) return ExitReason.BUDGET;
      try {
        do {
          const eip = c.eip;
          const lin = (c.base[SEG_CS] + eip) | 0;
          if (lin >>> 12 !== c.fetchPage && !setFetchPage(c, lin) && !fetchAfterExit(c, lin)) {
            c.invalidReason = `code fetch from non-RAM at linear ${(lin >>> 0).toString(16)}`;
            return this.invalid(InvalidStateCause.FETCH_OUTSIDE_RAM, lin >>> 0);
          }
          const po = lin & 0xfff;
          const phys = c.fetchPhys | po;
          let b = blocks.index(phys);
          let single = po > PAGE_TAIL;
          if (!single) {
            if ((blocks.tag[b] !== phys || blocks.mode[b] !== c.codeMode) && (blocks.tag[++b] !== phys || blocks.mode[b] !== c.codeMode)) {
              b = blocks.victim(b - 1, phys);
              blocks.build(c, b, src, lin, eip, phys, po);
            } else if (blocks.epoch[b] !== c.codeEpoch) {
              if (!bytesChangedAfter(c, blocks.epoch[b]) || blocks.same(c, b, c.fetchOff + po)) blocks.epoch[b] = c.codeEpoch;
              else blocks.build(c, b, src, lin, eip, phys, po);
            }
            blocks.recent[b >> 1] = b & 1;
            single = ((eip + blocks.bytes[b] - 1) >>> 0) > c.limit[SEG_CS];
          }
          if (single) {
            // One instruction decoded on its own (page tail, or a block that crosses the CS limit).
            src.lin = lin;
            src.eip = eip;
            decodeInto(d, scratch, src, c.codeMode === 1, CPU_HANDLERS);
            const len = d.len[scratch];
            if (((eip + len - 1) >>> 0) > c.limit[SEG_CS]) c.fault(13, 0);
            c.nextEip = c.codeMode ? (eip + len) | 0 : (eip + len) & 0xffff;
            table[d.handler[scratch]](c, scratch);
            c.eip = c.nextEip;
            c.retired++;
            continue;
          }
          const left = end - c.retired;
          let count = blocks.count[b];
          // With c.attention set (an interrupt shadow, single-stepping) the interpreter runs one
          // instruction; translated code runs whole blocks.
          if (this.translate && count <= left && !c.attention) {
            let code = blocks.code[b];
            const h = code === null ? ++blocks.hits[b] : 0;
            if (h >= this.translateAfter || (h === this.wasmAfter && this.wasm)) {
              if (blocks.open[b] !== 0) {
                blocks.extend(c, b, src, lin, eip, po, true);
                count = blocks.count[b];
              }
              const first = b * MAX_INSTRUCTIONS, wide = c.codeMode === 1;
              code = this.wasm ? translateWasm(c, first, count, wide, blocks.code, this.wasmMixed) : null;
              if (code !== null) blocks.stats.wasm++;
              else if (h >= this.translateAfter) code = translateBlock(c, first, count, wide, blocks.code);
              if (code !== null) blocks.setCode(b, code);
            }
            if (code !== null && count <= left) {
              // Link the exit of the translated block that ran before (if any) to this one, then
              // run this block and the blocks it links to.
              const from = c.linkFrom;
              if (from !== null) {
                from.set(c.linkExit, code, b, count, eip, c);
                c.linkFrom = null;
              }
              const r0 = c.retired;
              let next = code(c, end);
              while (next !== null) next = next(c, end);
              blocks.stats.translatedRetired += c.retired - r0;
              continue;
            }
            c.linkFrom = null;
          }
          const first = b * MAX_INSTRUCTIONS;
          let n = count < left ? count : left;
          const wide = c.codeMode;
          for (let k = 0; k < n; k++) {
            const slot = first + k;
            const at = c.eip;
            const fall = wide ? (at + d.len[slot]) | 0 : (at + d.len[slot]) & 0xffff;
            c.nextEip = fall;
            table[d.handler[slot]](c, slot);
            c.eip = c.nextEip;
            c.retired++;
            if (c.nextEip !== fall || c.attention) break;
            // Fallen through the last branch of an open block: it goes on here (decoded now, while
            // its page and code epoch are the ones it was checked in).
            if (k === n - 1 && blocks.open[b] !== 0 && n < left && blocks.code[b] === null && blocks.epoch[b] === c.codeEpoch && lin >>> 12 === c.fetchPage) {
              blocks.extend(c, b, src, lin, eip, po, false);
              n = blocks.count[b] < left ? blocks.count[b] : left;
            }
          }
        } while (c.retired < end && !c.attention);
      } catch (e) {
        if (e !== FAULT) throw e;
        const r = this.exception();
        if (r >= 0) return r;
      }
    }
  }

  /** Deliver the exception in c.fault*, applying the exception bitmap and double/triple fault rules. */
  private exception(): number {
    const c = this.cpu;
    let vector = c.faultVector;
    let code = c.faultHasCode ? c.faultCode : 0;
    let trap = c.faultTrap;
    c.faultTrap = false;
    for (;;) {
      if (c.exceptionBitmap & (1 << vector)) {
        const q = this.state.qual;
        q.address = vector;
        q.errorCode = code;
        q.linear = vector === 14 ? c.faultLinear >>> 0 : 0;
        if (trap) {
          c.eip = c.nextEip;
          c.retired++;
        }
        return ExitReason.EXCEPTION;
      }
      if (vector === 14) {
        c.cr2 = c.faultLinear;
        c.codeEpoch++; // a page fault often precedes mapping new code
      }
      try {
        deliver(c, vector, trap ? Source.TRAP : Source.FAULT, (HAS_ERROR_CODE >> vector) & 1 ? code : -1,
          trap ? c.nextEip : c.eip);
        if (trap) c.retired++;
        c.eip = c.nextEip;
        c.activity = 0;
        return -1;
      } catch (e) {
        if (e !== FAULT) throw e;
        const second = c.faultVector;
        if (vector === 8) {
          c.activity = 2;
          return ExitReason.TRIPLE_FAULT;
        }
        if (isDoubleFault(vector, second)) {
          vector = 8;
          code = 0;
        } else {
          vector = second;
          code = c.faultHasCode ? c.faultCode : 0;
        }
        trap = false;
      }
    }
  }

  /** Events at an instruction boundary; returns an exit reason or -1 to go on executing. */
  private boundary(): number {
    const c = this.cpu;
    if (this.stalled !== 0) this.takeStalled();
    if (c.stop >= 0) {
      const r = c.stop;
      c.stop = -1;
      if (r === ExitReason.HLT) this.stepArmed = false;
      return r;
    }
    if (c.activity === 2) return ExitReason.TRIPLE_FAULT;
    if (this.stepArmed) {
      this.stepArmed = false;
      if (c.retired > this.stepAt) {
        c.dr[6] |= 0x4000;
        c.faultVector = 1;
        c.faultHasCode = false;
        c.faultTrap = false;
        c.nextEip = c.eip;
        const r = this.exceptionAtBoundary(1);
        if (r >= 0) return r;
      }
    }
    const inj = this.inj;
    const inhibited = c.retired < c.inhibitUntil;
    if (inj.valid) {
      let take = false;
      if (inj.type === InjectionType.NMI) take = !c.nmiBlocked && !inhibited;
      else if (inj.type === InjectionType.EXTERNAL) take = (c.flags & IF) !== 0 && !inhibited;
      else take = true;
      if (take) {
        inj.valid = false;
        c.activity = 0;
        if (inj.type === InjectionType.NMI) c.nmiBlocked = true;
        const r = this.inject(inj.vector & 0xff, inj.type, inj.errorCode);
        if (r >= 0) return r;
      }
    }
    if (c.activity === 1) return ExitReason.HLT;
    if (inj.requestWindow && !inj.valid && c.flags & IF && !inhibited) {
      inj.requestWindow = false;
      return ExitReason.INTR_WINDOW;
    }
    if (c.flags & TF) {
      this.stepArmed = true;
      this.stepAt = c.retired;
    }
    c.attention =
      this.stepArmed ||
      c.retired < c.inhibitUntil ||
      (inj.valid && (inj.type !== InjectionType.EXTERNAL || (c.flags & IF) !== 0)) ||
      (inj.requestWindow && (c.flags & IF) !== 0);
    return -1;
  }

  private exceptionAtBoundary(vector: number): number {
    const c = this.cpu;
    c.faultVector = vector;
    c.faultTrap = false;
    return this.exception();
  }

  /** Deliver an injected event at the boundary. */
  private inject(vector: number, type: number, errorCode: number): number {
    const c = this.cpu;
    c.nextEip = c.eip;
    if (type === InjectionType.HARDWARE_EXCEPTION) {
      c.faultVector = vector;
      c.faultHasCode = errorCode >= 0;
      c.faultCode = errorCode >= 0 ? errorCode : 0;
      c.faultTrap = false;
      // An injected exception is delivered, not reflected back to the VMM.
      const bitmap = c.exceptionBitmap;
      c.exceptionBitmap = 0;
      try {
        return this.exception();
      } finally {
        c.exceptionBitmap = bitmap;
      }
    }
    try {
      const source = type === InjectionType.NMI ? Source.NMI : type === InjectionType.SOFTWARE_INTERRUPT ? Source.SOFTWARE : Source.EXTERNAL;
      deliver(c, vector, source, -1, c.eip);
      c.eip = c.nextEip;
      return -1;
    } catch (e) {
      if (e !== FAULT) throw e;
      return this.exception();
    }
  }

  saveState(mtd: number, to: VcpuState): void {
    const c = this.cpu;
    to.mtd = mtd;
    const r = c.r;
    if (mtd & Mtd.GPR_ACDB) {
      to.eax = r[0] >>> 0; to.ecx = r[1] >>> 0; to.edx = r[2] >>> 0; to.ebx = r[3] >>> 0;
    }
    if (mtd & Mtd.GPR_BSD) {
      to.ebp = r[5] >>> 0; to.esi = r[6] >>> 0; to.edi = r[7] >>> 0;
    }
    if (mtd & Mtd.ESP) to.esp = r[4] >>> 0;
    if (mtd & Mtd.EIP_LEN) {
      to.eip = c.eip >>> 0;
      to.instructionLength = c.exits !== null ? (c.nextEip - c.eip) & 0xf : 0;
    }
    if (mtd & Mtd.EFLAGS) to.eflags = materialize(c) >>> 0;
    if (mtd & Mtd.DS_ES) {
      saveSeg(c, 0, to.es);
      saveSeg(c, 3, to.ds);
    }
    if (mtd & Mtd.FS_GS) {
      saveSeg(c, 4, to.fs);
      saveSeg(c, 5, to.gs);
    }
    if (mtd & Mtd.CS_SS) {
      saveSeg(c, 1, to.cs);
      saveSeg(c, 2, to.ss);
    }
    if (mtd & Mtd.TR) saveSeg(c, SEG_TR, to.tr);
    if (mtd & Mtd.LDTR) saveSeg(c, SEG_LDTR, to.ldtr);
    if (mtd & Mtd.GDTR) {
      to.gdtrBase = c.gdtBase >>> 0;
      to.gdtrLimit = c.gdtLimit;
    }
    if (mtd & Mtd.IDTR) {
      to.idtrBase = c.idtBase >>> 0;
      to.idtrLimit = c.idtLimit;
    }
    if (mtd & Mtd.CR) {
      to.cr0 = c.cr0 >>> 0; to.cr2 = c.cr2 >>> 0; to.cr3 = c.cr3 >>> 0; to.cr4 = c.cr4 >>> 0;
    }
    if (mtd & Mtd.DR) {
      const dr = c.dr;
      to.dr0 = dr[0] >>> 0; to.dr1 = dr[1] >>> 0; to.dr2 = dr[2] >>> 0; to.dr3 = dr[3] >>> 0;
      to.dr6 = dr[6] >>> 0; to.dr7 = dr[7] >>> 0;
    }
    if (mtd & Mtd.SYSENTER) {
      to.sysenterCs = c.sysenterCs; to.sysenterEsp = c.sysenterEsp >>> 0; to.sysenterEip = c.sysenterEip >>> 0;
    }
    if (mtd & Mtd.QUAL) copyQual(this.state.qual, to.qual);
    if (mtd & Mtd.CTRL) {
      to.exceptionBitmap = c.exceptionBitmap >>> 0;
      to.cpuidExits = c.cpuidExits;
      to.ferrExits = c.ferrExits;
      to.hypervisorLeaves = c.hypervisorLeaves;
      to.msrExits = c.msrExits;
      to.vmcallExits = c.vmcallExits;
    }
    if (mtd & Mtd.INJ) copyInjection(this.inj, to.inj);
    if (mtd & Mtd.STA) {
      to.interruptibility = (c.retired < c.inhibitUntil ? 1 : 0) | (c.nmiBlocked ? 8 : 0);
      to.activity = c.activity;
      to.ferr = c.ferrLevel;
      to.ignne = c.fpu !== null && c.fpu.ignne;
    }
    if (mtd & Mtd.TSC) to.tsc = BigInt(c.retired + this.stalled + c.tscOffset);
    if (mtd & Mtd.MSR) {
      to.apicBase = c.apicBase >>> 0;
      to.apicId = c.apicId;
    }
    if (mtd & Mtd.FPU) to.fpu = c.fpu !== null ? c.fpu.save() : null;
  }

  addTsc(ticks: number): void {
    this.cpu.tscOffset += ticks;
  }

  loadState(mtd: number, from: VcpuState): void {
    const c = this.cpu;
    const r = c.r;
    if (mtd & Mtd.GPR_ACDB) {
      r[0] = from.eax; r[1] = from.ecx; r[2] = from.edx; r[3] = from.ebx;
    }
    if (mtd & Mtd.GPR_BSD) {
      r[5] = from.ebp; r[6] = from.esi; r[7] = from.edi;
    }
    if (mtd & Mtd.ESP) r[4] = from.esp;
    if (mtd & Mtd.CR) {
      c.cr0 = from.cr0 | 0x10;
      c.cr2 = from.cr2;
      c.cr3 = from.cr3;
      c.cr4 = from.cr4;
      flushTlb(c, true);
    }
    if (mtd & Mtd.EFLAGS) setFlags(c, (from.eflags | 2) & 0x3f7fd7);
    if (mtd & Mtd.DS_ES) {
      loadSeg(c, 0, from.es);
      loadSeg(c, 3, from.ds);
    }
    if (mtd & Mtd.FS_GS) {
      loadSeg(c, 4, from.fs);
      loadSeg(c, 5, from.gs);
    }
    if (mtd & Mtd.CS_SS) {
      loadSeg(c, 1, from.cs);
      loadSeg(c, 2, from.ss);
    }
    if (mtd & Mtd.TR) loadSeg(c, SEG_TR, from.tr);
    if (mtd & Mtd.LDTR) loadSeg(c, SEG_LDTR, from.ldtr);
    if (mtd & Mtd.GDTR) {
      c.gdtBase = from.gdtrBase | 0;
      c.gdtLimit = from.gdtrLimit & 0xffff;
    }
    if (mtd & Mtd.IDTR) {
      c.idtBase = from.idtrBase | 0;
      c.idtLimit = from.idtrLimit & 0xffff;
    }
    if (mtd & (Mtd.CR | Mtd.CS_SS | Mtd.EFLAGS)) {
      const pe = (c.cr0 & 1) !== 0;
      const vm = (c.flags & 0x20000) !== 0;
      setCpl(c, !pe ? 0 : vm ? 3 : (c.attr[SEG_SS] >> 5) & 3);
      refreshAllAccess(c);
    }
    if (mtd & Mtd.EIP_LEN) {
      const len = c.nextEip - c.eip;
      c.eip = from.eip | 0;
      c.nextEip = c.exits !== null ? (c.eip + len) | 0 : c.eip;
    }
    if (mtd & Mtd.DR) {
      const dr = c.dr;
      dr[0] = from.dr0; dr[1] = from.dr1; dr[2] = from.dr2; dr[3] = from.dr3; dr[6] = from.dr6; dr[7] = from.dr7;
    }
    if (mtd & Mtd.SYSENTER) {
      c.sysenterCs = from.sysenterCs & 0xffff; c.sysenterEsp = from.sysenterEsp | 0; c.sysenterEip = from.sysenterEip | 0;
    }
    if (mtd & Mtd.QUAL) this.state.qual.data = from.qual.data;
    if (mtd & Mtd.CTRL) {
      c.exceptionBitmap = from.exceptionBitmap | 0;
      c.cpuidExits = from.cpuidExits;
      c.ferrExits = from.ferrExits;
      c.hypervisorLeaves = from.hypervisorLeaves;
      c.msrExits = from.msrExits;
      c.vmcallExits = from.vmcallExits;
    }
    if (mtd & Mtd.INJ) copyInjection(from.inj, this.inj);
    if (mtd & Mtd.STA) {
      c.inhibitUntil = from.interruptibility & 3 ? c.retired + 1 : 0;
      c.nmiBlocked = (from.interruptibility & 8) !== 0;
      c.activity = from.activity;
      if (c.fpu !== null) c.fpu.ignne = from.ignne;
    }
    if (mtd & Mtd.TSC) c.tscOffset = Number(from.tsc) - c.retired - this.stalled;
    if (mtd & Mtd.MSR) {
      c.apicBase = (from.apicBase & 0xfffff900) | 0;
      c.apicId = from.apicId & 0xff;
    }
    // A loaded x87 state brings its FERR# level along; the VMM that loads it knows it (no exit).
    if (mtd & Mtd.FPU && from.fpu && c.fpu !== null) {
      c.fpu.load(from.fpu);
      c.ferrLevel = c.fpu.ferr;
    }
    c.attention = true;
  }
}

function saveSeg(c: Cpu, s: number, to: SegmentState): void {
  to.selector = c.sel[s];
  to.base = c.base[s] >>> 0;
  to.limit = c.limit[s];
  to.attributes = c.attr[s];
}

function loadSeg(c: Cpu, s: number, from: SegmentState): void {
  setSegment(c, s, from.selector & 0xffff, from.base | 0, from.limit >>> 0, from.attributes);
}

/**
 * Code fetch from a guest-physical page that is not RAM: one MMIO read exit for that byte first,
 * so that a VMM that maps memory on demand (a lazily restored snapshot) can map it, then try again.
 */
function fetchAfterExit(c: Cpu, lin: number): boolean {
  physRead(c, ((c.tlbPhys[lin >>> 12] << 12) | (lin & 0xfff)) >>> 0, 1);
  return setFetchPage(c, lin);
}
