// The hook through which a later x87 module plugs into the integer core.

import type { Cpu } from "./cpu.js";

/**
 * An x87 unit. The core decodes ESC opcodes (D8-DF with ModRM; the memory operand's segment and
 * offset are `c.dec.seg[i]` and `c.ea(i)`), checks CR0.EM/TS (#NM) and then calls `execute`.
 * Without an Fpu the core raises #UD for ESC opcodes and treats WAIT as a no-op, and CPUID does
 * not report the FPU feature.
 */
export interface Fpu {
  /** Execute the ESC instruction in decoded slot `i` (opcode `c.dec.opc[i]`, ModRM `c.dec.modrm[i]`). */
  execute(c: Cpu, i: number): void;
  /** WAIT/FWAIT: deliver a pending unmasked x87 exception (#MF or the IRQ13 route). */
  wait(c: Cpu): void;
  /** FXSAVE-layout image of the x87 state (the MTD FPU group). */
  save(): Uint8Array;
  load(image: Uint8Array): void;
}
