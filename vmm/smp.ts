// The vCPUs of a VM as its VMM keeps them: per-processor state (parked in an exit, pending NMI,
// waiting for a start-up IPI) and the processor states INIT and SIPI give (SDM vol. 3, 9.1.1
// and 9.4.4: after INIT an application processor waits for SIPI; SIPI with vector VV starts it in
// real mode at VV00:0000).

import { VcpuState, type ReplyToken } from "../kernel/index.js";
import { SIGNATURE } from "./x86/cpuid.js";

/** The most vCPUs a VM may have (the MADT, the APIC IDs and the ICR's logical flat mode allow 8). */
export const MAX_CPUS = 8;

/** IA32_APIC_BASE: the xAPIC page, globally enabled (bit 11), BSP flag (bit 8) on the boot processor. */
export function apicBaseOf(cpu: number): number {
  return cpu === 0 ? 0xfee00900 : 0xfee00800;
}

/** A vCPU stopped in an exit whose reply the VMM holds back: halted (HLT) or paused. */
export interface Parked {
  token: ReplyToken;
  /**
   * Its state when it stopped: the groups its exit moved (`state.mtd`; a halt moves few, a pause
   * all); the rest is still in the vCPU (the VMM's wholeState reads it from there).
   */
  state: VcpuState;
  /** VM time of `state.tsc`. */
  vmTimeNs: number;
  /** The reply must load the whole state (a resumed VM's first exit, a start-up), not only what changed. */
  fullReply: boolean;
}

export class VcpuSlot {
  /** Waiting in HLT (or for SIPI) with its exit's reply held back. */
  halted: Parked | null = null;
  /** An NMI was delivered by its local APIC and not handed to the vCPU yet. */
  nmiPending = false;
  /** After INIT (or from power-on, for an application processor): only a start-up IPI wakes it. */
  waitForSipi: boolean;
  /** A start-up IPI's vector that came before the processor parked to wait for it (-1: none). */
  pendingSipi = -1;
  /** INIT arrived while it ran: it goes to wait-for-SIPI at its next exit. */
  initPending = false;
  /** Halted with interrupts disabled: nothing but an NMI, INIT or SIPI wakes it. */
  off = false;

  constructor(
    /** vCPU index, which is also its APIC ID. */
    readonly index: number,
  ) {
    this.waitForSipi = index > 0;
  }

  /** Can it never run again by itself (the VM is off when every vCPU is so)? */
  get stopped(): boolean {
    return this.halted !== null && (this.off || this.waitForSipi);
  }
}

/**
 * The state of a processor that waits for SIPI (after INIT): the reset state, halted with
 * interrupts off, so that its first instruction boundary is a HLT exit where the VMM parks it.
 */
export function waitForSipiState(cpu: number): VcpuState {
  const s = new VcpuState();
  s.edx = SIGNATURE;
  s.cs = { selector: 0xf000, base: 0xffff0000, limit: 0xffff, attributes: 0x9b };
  s.eip = 0xfff0;
  s.activity = 1;
  s.apicBase = apicBaseOf(cpu);
  s.apicId = cpu;
  return s;
}

/** Start a processor waiting for SIPI (its `state`) at `vector`: real mode, CS = vector << 8, IP = 0, running. */
export function startAt(state: VcpuState, vector: number): void {
  state.cs = { selector: vector << 8, base: vector << 12, limit: 0xffff, attributes: 0x9b };
  state.eip = 0;
  state.activity = 0;
  state.interruptibility = 0;
}
