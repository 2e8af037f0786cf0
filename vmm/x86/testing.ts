// Test and benchmark harness for the x86 core: guest RAM, an engine, nasm-assembled code and a
// flat protected-mode setup (GDT, IDT, TSS) for ring 0 and ring 3.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemory, MemRights, PAGE_SIZE } from "../../kernel/guest-memory.js";
import { WasmArena } from "../../kernel/wasm-arena.js";
import { ExitReason, Mtd, VcpuState, type VcpuExitHandler } from "../../kernel/vcpu.js";
import { X86Engine } from "./engine.js";

/** Assemble `source` with nasm (flat binary; put BITS/ORG in the source). */
export function nasm(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "x86asm-"));
  try {
    writeFileSync(join(dir, "a.asm"), source);
    execFileSync("nasm", ["-f", "bin", "-o", join(dir, "a.bin"), join(dir, "a.asm")], { stdio: "pipe" });
    return new Uint8Array(readFileSync(join(dir, "a.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const GDT = 0x1000, TSS = 0x2000, IDT = 0x3000, STACK0 = 0x9000, CODE = 0x10000;
export const SEL_CODE0 = 0x08, SEL_DATA0 = 0x10, SEL_CODE3 = 0x1b, SEL_DATA3 = 0x23, SEL_TSS = 0x28;

export interface ExitRecord {
  reason: ExitReason;
  address: number;
  size: number;
  write: boolean;
  data: number;
}

/** A machine: RAM from 0 to `ramBytes`, one engine, an exit log and port/MMIO answers. */
export class Machine {
  readonly memory: GuestMemory;
  readonly ram: Uint8Array;
  readonly view: DataView;
  readonly engine: X86Engine;
  readonly state = new VcpuState();
  readonly exits: ExitRecord[] = [];
  /** Value returned for port/MMIO reads. */
  readValue = 0xffffffff;
  readonly handler: VcpuExitHandler = {
    exit: (reason, st) => {
      const q = st.qual;
      this.exits.push({ reason, address: q.address, size: q.size, write: q.write, data: q.data });
      if (!q.write) q.data = this.readValue;
      return true;
    },
  };

  /**
   * RAM of `ramBytes` mapped at 0; `guardBytes` more bytes of the same store stay unmapped. With
   * `arena`, RAM and the CPU state are in a WebAssembly arena (the wasm tier translates).
   */
  constructor(ramBytes = 8 << 20, guardBytes = 0, arena = false) {
    const a = arena ? new WasmArena(ramBytes + guardBytes + (24 << 20)) : null;
    this.memory = new GuestMemory([], [], a);
    this.ram = a?.alloc(ramBytes + guardBytes) ?? new Uint8Array(ramBytes + guardBytes);
    this.view = new DataView(this.ram.buffer, this.ram.byteOffset, this.ram.byteLength);
    for (let p = 0; p < ramBytes / PAGE_SIZE; p++) this.memory.map(p, this.ram, p * PAGE_SIZE, MemRights.ALL);
    this.engine = new X86Engine(this.memory);
  }

  write(addr: number, bytes: Uint8Array | number[]): void {
    this.ram.set(bytes, addr);
  }
  w32(addr: number, v: number): void {
    this.view.setUint32(addr, v >>> 0, true);
  }
  r32(addr: number): number {
    return this.view.getUint32(addr, true);
  }

  /** Write a segment descriptor into the GDT slot `index`. */
  descriptor(index: number, base: number, limit: number, access: number, flags = 0xc): void {
    const lo = ((base & 0xffff) << 16) | (limit & 0xffff);
    const hi = (base & 0xff000000) | ((flags & 0xf) << 20) | (limit & 0xf0000) | ((access & 0xff) << 8) | ((base >>> 16) & 0xff);
    this.w32(GDT + index * 8, lo);
    this.w32(GDT + index * 8 + 4, hi);
  }

  /** An IDT gate: type 0xE interrupt, 0xF trap, 0x5 task; dpl. */
  gate(vector: number, selector: number, offset: number, type: number, dpl = 0): void {
    this.w32(IDT + vector * 8, ((selector & 0xffff) << 16) | (offset & 0xffff));
    this.w32(IDT + vector * 8 + 4, (offset & 0xffff0000) | 0x8000 | (dpl << 13) | (type << 8));
  }

  /**
   * Flat 32-bit protected mode at `cpl` with code at CODE: GDT (code/data for ring 0 and 3, a
   * TSS with ring-0 stack STACK0), an empty IDT (256 not-present gates).
   */
  flat(cpl: 0 | 3, eip = CODE, esp = 0x8000): void {
    this.descriptor(0, 0, 0, 0, 0);
    this.descriptor(1, 0, 0xfffff, 0x9b);
    this.descriptor(2, 0, 0xfffff, 0x93);
    this.descriptor(3, 0, 0xfffff, 0xfb);
    this.descriptor(4, 0, 0xfffff, 0xf3);
    this.descriptor(5, TSS, 0x67 + 0x2000 / 8 + 1, 0x89, 0);
    this.w32(TSS + 4, STACK0);
    this.w32(TSS + 8, SEL_DATA0);
    this.view.setUint16(TSS + 102, 0x68, true);
    const st = this.state;
    st.cr0 = 0x60000011 | 0; st.cr2 = 0; st.cr3 = 0; st.cr4 = 0;
    st.gdtrBase = GDT; st.gdtrLimit = 8 * 8 - 1;
    st.idtrBase = IDT; st.idtrLimit = 256 * 8 - 1;
    const seg = (s: typeof st.cs, sel: number, attr: number) => {
      s.selector = sel; s.base = 0; s.limit = 0xffffffff; s.attributes = attr;
    };
    const code = cpl === 3 ? SEL_CODE3 : SEL_CODE0, data = cpl === 3 ? SEL_DATA3 : SEL_DATA0;
    const dpl = cpl << 5;
    seg(st.cs, code, 0xc09b | dpl);
    for (const s of [st.ss, st.ds, st.es, st.fs, st.gs]) seg(s, data, 0xc093 | dpl);
    st.tr.selector = SEL_TSS; st.tr.base = TSS; st.tr.limit = 0x67 + 0x2000 / 8 + 1; st.tr.attributes = 0x8b;
    st.ldtr.selector = 0; st.ldtr.base = 0; st.ldtr.limit = 0; st.ldtr.attributes = 0x10000;
    st.eip = eip; st.esp = esp; st.eflags = 0x202;
    st.eax = st.ebx = st.ecx = st.edx = st.esi = st.edi = st.ebp = 0;
    st.exceptionBitmap = 0; st.cpuidExits = false; st.hypervisorLeaves = st.msrExits = st.vmcallExits = false;
    st.inj.valid = false; st.inj.requestWindow = false;
    st.activity = 0; st.interruptibility = 0;
    this.engine.loadState(Mtd.ALL & ~Mtd.FPU, st);
  }

  /** Assemble 32-bit code at `addr` (default CODE). */
  code32(source: string, addr = CODE): void {
    this.write(addr, nasm(`bits 32\norg ${addr}\n${source}\n`));
  }

  run(budget = 1_000_000): ExitReason {
    return this.engine.run(budget, this.handler);
  }

  /** The engine's state (all groups but FPU). */
  get regs(): VcpuState {
    const st = new VcpuState();
    this.engine.saveState(Mtd.ALL & ~Mtd.FPU, st);
    return st;
  }

  /** Apply changes to the engine state (all groups but FPU). */
  update(change: (st: VcpuState) => void): void {
    const st = this.regs;
    change(st);
    this.engine.loadState(Mtd.ALL & ~Mtd.FPU, st);
  }
}
