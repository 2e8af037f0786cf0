// What the x87 unit needs of the integer core: decoded operands, guest memory through
// segmentation and paging (with the core's faults), a few registers, EFLAGS and CR0.
// The core's `Cpu` satisfies it structurally; tests drive the unit through a small mock.

import type { LazyFlags } from "../flags.js";

/** The decoded-instruction fields the x87 reads (a subset of the core's `Decoded`). */
export interface X87Decoded {
  readonly opc: Uint16Array;
  readonly modrm: Uint8Array;
  readonly mod3: Uint8Array;
  readonly reg: Uint8Array;
  readonly rm: Uint8Array;
  readonly seg: Uint8Array;
  readonly pfx: Uint8Array;
}

export interface X87Host extends LazyFlags {
  readonly dec: X87Decoded;
  /** Offset of the memory operand of slot i. */
  ea(i: number): number;
  rd8(seg: number, off: number): number;
  rd16(seg: number, off: number): number;
  rd32(seg: number, off: number): number;
  wr8(seg: number, off: number, v: number): void;
  wr16(seg: number, off: number, v: number): void;
  wr32(seg: number, off: number, v: number): void;
  /** Fault now if a write of `size` bytes at seg:off would fault. */
  probeWrite(seg: number, off: number, size: number): void;
  /** Raise a guest exception (throws). */
  fault(vector: number, code?: number): never;
  cr0: number;
  /** Start of the current instruction (its prefixes included). */
  eip: number;
  readonly sel: Uint16Array;
  readonly base: Int32Array;
  /** 16-bit view of the general registers (AX = r16[0]). */
  readonly r16: Uint16Array;
}

/** CR0 bits the x87 looks at. */
export const CR0_PE = 1, CR0_NE = 0x20;
/** EFLAGS.VM (virtual-8086 mode uses the real-mode image layouts). */
export const EFLAGS_VM = 0x20000;
/** Operand-size prefix bit of `X87Decoded.pfx` (1: 32-bit operand size). */
export const PFX_O32 = 1;
export const SEG_CS = 1;
/** #MF. */
export const VECTOR_MF = 16;
export const VECTOR_UD = 6;
