// Helpers for tests that drive the kernel directly: run code as a given EC without a scheduler,
// and a scripted vCPU engine that stands in for the x86 core.

import { Kernel, type KernelOptions } from "../../kernel/kernel.js";
import type { Ec } from "../../kernel/ec.js";
import type { Sys } from "../../kernel/sys.js";
import { ExitReason, Mtd, VcpuState, type VcpuEngine, type VcpuExitHandler } from "../../kernel/vcpu.js";

/** Run `fn` as if `ec` were executing (hypercalls are made on its behalf). */
export function runAs<T>(k: Kernel, ec: Ec, fn: () => T): T {
  const prev = k.current;
  k.current = ec;
  try {
    return fn();
  } finally {
    k.current = prev;
  }
}

/** A booted kernel whose root body is idle, and a function to act as the root task. */
export function bootedKernel(options: KernelOptions = {}): { k: Kernel; asRoot: <T>(fn: (sys: Sys) => T) => T } {
  const k = new Kernel({ memoryMiB: 1, ...options });
  k.boot(function* () {});
  const root = k.rootEc!;
  return { k, asRoot: (fn) => runAs(k, root, () => fn(k.sysFor(k.root))) };
}

// ---- a scripted vCPU engine ---------------------------------------------------------------------


/** One step of a scripted guest. */
export type ScriptStep =
  | { readonly op: "spin"; readonly instructions: number }
  | { readonly op: "in" | "out"; readonly port: number; readonly size: 1 | 2 | 4; readonly value?: number }
  | { readonly op: "exit"; readonly reason: ExitReason }
  | { readonly op: "cpuid"; readonly leaf: number };

/**
 * A stand-in for the x86 core: it "executes" a script, making the exits the script asks for, and
 * records every state transfer so tests can check that exactly the MTD's groups moved.
 */
export class ScriptedEngine implements VcpuEngine {
  retired = 0;
  /** The architectural state, as a real engine would hold it. */
  readonly regs = new VcpuState();
  readonly saved: number[] = [];
  readonly loaded: number[] = [];
  /** Values IN instructions got, and CPUID answers. */
  readonly inputs: number[] = [];
  private pc = 0;
  private spun = 0;
  private readonly exit = new VcpuState();

  constructor(private readonly script: readonly ScriptStep[]) {}

  run(budget: number, exits: VcpuExitHandler): ExitReason {
    let left = budget;
    while (this.pc < this.script.length) {
      const step = this.script[this.pc];
      if (step.op === "spin") {
        const n = Math.min(left, step.instructions - this.spun);
        this.retired += n;
        this.spun += n;
        left -= n;
        if (this.spun < step.instructions) return ExitReason.BUDGET;
        this.spun = 0;
        this.pc++;
        continue;
      }
      if (left === 0) return ExitReason.BUDGET;
      this.pc++;
      this.retired++;
      left--;
      this.regs.eip += 1;
      if (step.op === "exit") return step.reason;
      const q = this.exit.qual;
      if (step.op === "cpuid") {
        q.address = step.leaf;
        q.data = 0;
        const ok = exits.exit(ExitReason.CPUID, this.exit);
        this.inputs.push(ok ? q.data : -1);
        if (exits.stopRequested) return ExitReason.BUDGET;
        continue;
      }
      q.address = step.port;
      q.size = step.size;
      q.write = step.op === "out";
      q.data = step.op === "out" ? (step.value ?? this.regs.eax) : 0;
      const ok = exits.exit(ExitReason.PIO, this.exit);
      if (step.op === "in") {
        const mask = step.size === 4 ? 0xffffffff : (1 << (8 * step.size)) - 1;
        const v = ok ? q.data & mask : mask;
        this.regs.eax = ((this.regs.eax & ~mask) | v) >>> 0;
        this.inputs.push(v);
      }
      if (exits.stopRequested) return ExitReason.BUDGET;
    }
    return ExitReason.HLT;
  }

  /** Stalls count as retired instructions, as the x86 core's do. */
  stall(instructionTimes: number): void {
    this.retired += instructionTimes;
  }

  /** The TSC as the kernel set it (this engine does not tick it per instruction). */
  tsc = 0n;

  saveState(mtd: number, to: VcpuState): void {
    this.saved.push(mtd);
    copyGroups(mtd, this.regs, to, this.exit);
    if (mtd & Mtd.TSC) to.tsc = this.tsc + BigInt(this.retired);
    to.mtd = mtd;
  }

  loadState(mtd: number, from: VcpuState): void {
    this.loaded.push(mtd);
    copyGroups(mtd & ~Mtd.QUAL, from, this.regs, null);
    if (mtd & Mtd.TSC) this.tsc = from.tsc - BigInt(this.retired);
  }
}

function copyGroups(mtd: number, from: VcpuState, to: VcpuState, qual: VcpuState | null): void {
  if (mtd & Mtd.GPR_ACDB) {
    to.eax = from.eax; to.ecx = from.ecx; to.edx = from.edx; to.ebx = from.ebx;
  }
  if (mtd & Mtd.GPR_BSD) {
    to.ebp = from.ebp; to.esi = from.esi; to.edi = from.edi;
  }
  if (mtd & Mtd.ESP) to.esp = from.esp;
  if (mtd & Mtd.EIP_LEN) {
    to.eip = from.eip; to.instructionLength = from.instructionLength;
  }
  if (mtd & Mtd.EFLAGS) to.eflags = from.eflags;
  if (mtd & Mtd.CR) {
    to.cr0 = from.cr0; to.cr2 = from.cr2; to.cr3 = from.cr3; to.cr4 = from.cr4;
  }
  if (mtd & Mtd.INJ) to.inj = { ...from.inj };
  if (mtd & Mtd.QUAL && qual) to.qual = { ...qual.qual };
}
