// The emulator side: runs a case on our x86 core through the kernel's VcpuEngine contract only.
//
// The vCPU starts in flat 32-bit protected mode (CR0.PE, no paging): CS/DS/ES/SS/FS/GS base 0,
// limit 4 GiB, ring 0 by default (ring 3 on request), with a matching GDT in guest memory in
// case the core looks at it. The code and data pages sit at the same guest-physical addresses
// as the native mappings; the code is followed by HLT. Every exception vector is set in the
// exception bitmap, so a fault exits with ExitReason.EXCEPTION before any IDT delivery and the
// register state is the one at the fault, as the native signal context has it.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { GuestMemory, MemRights, PAGE_SIZE } from "../../../kernel/guest-memory.js";
import { ExitReason, Mtd, type VcpuEngine, type VcpuEngineFactory, type VcpuExitHandler, VcpuState } from "../../../kernel/vcpu.js";
import { type CaseOutcome, type HostCase, Status } from "./case-format.js";
import { CODE_BASE, CODE_SIZE, COMPARED_FLAGS, DATA_BASE, DATA_SIZE, FIXED_FLAGS, GDT_BASE } from "./layout.js";

/** What the core module offers; `disassemble` is optional and only used in failure reports. */
export interface CoreModule {
  createX86Engine: VcpuEngineFactory;
  /** One instruction at `offset` of `bytes`. */
  disassemble?: (bytes: Uint8Array, offset: number, mode: 16 | 32) => { text: string; length: number };
}

const CORE_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "vmm", "x86", "index.ts");

/** Loads vmm/x86/index.ts; null (with the reason) when it is absent or lacks createX86Engine. */
export async function loadCore(): Promise<{ core: CoreModule | null; reason: string }> {
  if (!existsSync(CORE_PATH)) return { core: null, reason: "vmm/x86/index.ts does not exist yet" };
  try {
    const mod = (await import(pathToFileURL(CORE_PATH).href)) as Partial<CoreModule>;
    if (typeof mod.createX86Engine !== "function") return { core: null, reason: "vmm/x86/index.ts does not export createX86Engine" };
    return { core: mod as CoreModule, reason: "" };
  } catch (error) {
    return { core: null, reason: `vmm/x86/index.ts failed to load: ${(error as Error).message}` };
  }
}

export interface EmulatorOptions {
  /** Privilege level of the test code (0: HLT ends the case; 3: the #GP that HLT raises does). */
  ring?: 0 | 3;
  /** Instruction budget of one case. */
  budget?: number;
}

/** An emulator outcome; `data` is the engine's live data area (valid until the next run). */
export interface EmulatorOutcome extends CaseOutcome {
  data: Uint8Array;
  instructionLength: number;
  /** Why the run did not end as a HLT or an exception, for the report. */
  note: string;
}

const OUT_MTD = Mtd.GPR_ACDB | Mtd.GPR_BSD | Mtd.ESP | Mtd.EIP_LEN | Mtd.EFLAGS | Mtd.QUAL | Mtd.CR;
const IN_MTD = Mtd.ALL & ~(Mtd.FPU | Mtd.QUAL);
const HLT = 0xf4;

/** GDT: null, ring-0 code 0x08, ring-0 data 0x10, ring-3 code 0x18, ring-3 data 0x20, TSS 0x28. */
const GDT_ENTRIES = [
  [0, 0], [0x0000ffff, 0x00cf9b00], [0x0000ffff, 0x00cf9300], [0x0000ffff, 0x00cffb00], [0x0000ffff, 0x00cff300],
  [0x00000067 | ((GDT_BASE + 0x100) & 0xffff) << 16, ((GDT_BASE + 0x100) >>> 16 & 0xff) | 0x8b00 | ((GDT_BASE + 0x100) & 0xff000000)],
];

export class EmulatorSide {
  private readonly memory = new GuestMemory();
  private readonly code = new Uint8Array(CODE_SIZE);
  private readonly data = new Uint8Array(DATA_SIZE);
  private readonly gdt = new Uint8Array(PAGE_SIZE);
  private readonly engine: VcpuEngine;
  private readonly ring: 0 | 3;
  private readonly budget: number;
  private readonly events: string[] = [];
  private readonly exits: VcpuExitHandler;
  private used = CODE_SIZE;

  constructor(core: CoreModule, options: EmulatorOptions = {}) {
    this.ring = options.ring ?? 0;
    this.budget = options.budget ?? 1_000_000;
    const view = new DataView(this.gdt.buffer);
    GDT_ENTRIES.forEach(([low, high], i) => {
      view.setUint32(i * 8, low >>> 0, true);
      view.setUint32(i * 8 + 4, high >>> 0, true);
    });
    this.memory.map(GDT_BASE >>> 12, this.gdt, 0, MemRights.ALL);
    for (let off = 0; off < DATA_SIZE; off += PAGE_SIZE) this.memory.map((DATA_BASE + off) >>> 12, this.data, off, MemRights.ALL);
    this.mapCode();
    this.engine = core.createX86Engine(this.memory);
    const events = this.events;
    this.exits = {
      stopRequested: false,
      exit(reason: ExitReason, state: VcpuState): boolean {
        const what = reason === ExitReason.PIO ? "port I/O" : reason === ExitReason.MMIO ? "MMIO" : ExitReason[reason];
        events.push(`${what} exit at ${state.qual.address.toString(16)} (${state.qual.write ? "write" : "read"})`);
        return false;
      },
    };
  }

  /** Runs `c` with the data area initialised from `fill`. */
  run(c: HostCase, fill: Uint8Array): EmulatorOutcome {
    this.code.fill(HLT, 0, this.used);
    this.code.set(c.code);
    this.used = c.code.length + 1;
    this.mapCode(); // remapping invalidates whatever the engine cached about the code pages
    this.data.set(fill);
    this.events.length = 0;
    const end = CODE_BASE + c.code.length;
    const state = this.initialState(c);
    const out = new VcpuState();
    let reason: ExitReason;
    try {
      this.engine.loadState(IN_MTD, state);
      reason = this.engine.run(this.budget, this.exits);
      this.engine.saveState(OUT_MTD, out);
    } catch (error) {
      return this.outcome(out, Status.BAD_CASE, `the engine threw: ${(error as Error).stack ?? error}`);
    }
    const note = this.events.join("; ");
    if (reason === ExitReason.HLT) {
      const atEnd = out.eip === end || out.eip === end + 1;
      return { ...this.outcome(out, atEnd ? Status.DONE : Status.BAD_CASE, atEnd ? note : `HLT at ${out.eip.toString(16)}`), eip: atEnd ? end : out.eip };
    }
    if (reason === ExitReason.EXCEPTION) {
      if (this.ring === 3 && out.qual.address === 13 && out.eip === end) return { ...this.outcome(out, Status.DONE, note), eip: end };
      return this.outcome(out, Status.EXCEPTION, note);
    }
    if (reason === ExitReason.BUDGET) return this.outcome(out, Status.TIMEOUT, `budget of ${this.budget} instructions used up`);
    return this.outcome(out, Status.BAD_CASE, `unexpected exit ${ExitReason[reason] ?? reason}${note ? `; ${note}` : ""}`);
  }

  private outcome(out: VcpuState, status: Status, note: string): EmulatorOutcome {
    return {
      status, vector: status === Status.EXCEPTION ? out.qual.address : 0, errorCode: out.qual.errorCode,
      eip: out.eip >>> 0, faultAddress: out.qual.linear || out.cr2, instructionLength: out.instructionLength,
      regs: [out.eax, out.ecx, out.edx, out.ebx, out.esp, out.ebp, out.esi, out.edi].map((v) => v >>> 0),
      eflags: out.eflags >>> 0, ext: new Uint8Array(0), data: this.data, note,
    };
  }

  private initialState(c: HostCase): VcpuState {
    const s = new VcpuState();
    [s.eax, s.ecx, s.edx, s.ebx, s.esp, s.ebp, s.esi, s.edi] = c.regs.map((v) => v >>> 0);
    s.eip = CODE_BASE;
    s.eflags = (c.eflags & COMPARED_FLAGS) | FIXED_FLAGS;
    const dpl = this.ring << 5;
    const code = { selector: this.ring ? 0x1b : 0x08, base: 0, limit: 0xffffffff, attributes: 0xc09b | dpl };
    const data = (): typeof code => ({ selector: this.ring ? 0x23 : 0x10, base: 0, limit: 0xffffffff, attributes: 0xc093 | dpl });
    s.cs = code;
    s.ss = data();
    s.ds = data();
    s.es = data();
    s.fs = data();
    s.gs = data();
    s.ldtr = { selector: 0, base: 0, limit: 0, attributes: 0x10000 };
    s.tr = { selector: 0x28, base: GDT_BASE + 0x100, limit: 0x67, attributes: 0x8b };
    s.gdtrBase = GDT_BASE;
    s.gdtrLimit = GDT_ENTRIES.length * 8 - 1;
    s.idtrBase = 0;
    s.idtrLimit = 0;
    s.cr0 = 0x00000031; // PE, ET, NE
    s.exceptionBitmap = 0xffffffff;
    return s;
  }

  private mapCode(): void {
    for (let off = 0; off < CODE_SIZE; off += PAGE_SIZE) {
      const gpn = (CODE_BASE + off) >>> 12;
      this.memory.unmap(gpn);
      this.memory.map(gpn, this.code, off, MemRights.ALL);
    }
  }
}
