// The hook through which the x87 unit plugs into the integer core: the unit sees the core only
// through `FpuHost`, which the core's Cpu implements. It lives beside the unit, so the core
// imports down into fpu/ and nothing in fpu/ imports the core.

/** The decoded-instruction fields an x87 unit reads (a subset of the core's decoded slots). */
export interface FpuDecoded {
  readonly opc: Uint16Array;
  readonly modrm: Uint8Array;
  readonly mod3: Uint8Array;
  readonly reg: Uint8Array;
  readonly rm: Uint8Array;
  readonly seg: Uint8Array;
  readonly pfx: Uint8Array;
}

/** What an x87 unit needs of the core: operands, guest memory with the core's faults, a few registers. */
export interface FpuHost {
  readonly dec: FpuDecoded;
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
  /**
   * Stop before the current instruction and wait for an external interrupt (the FERR# freeze of
   * a waiting instruction under CR0.NE = 0 without IGNNE#). Throws; EIP stays at the instruction.
   */
  freeze(): never;
  cr0: number;
  /** EFLAGS bits that are not arithmetic (VM, for the image layouts). */
  readonly flags: number;
  /** Start of the current instruction (its prefixes included). */
  eip: number;
  readonly sel: Uint16Array;
  readonly base: Int32Array;
  /** 16-bit view of the general registers (AX = r16[0]). */
  readonly r16: Uint16Array;
  /** Is Jcc condition `cc` (0-15) true now? (FCMOVcc) */
  condition(cc: number): boolean;
  /** Set OF SF ZF AF PF CF to these bits (FCOMI, FUCOMI). */
  setArithFlags(bits: number): void;
}

/**
 * An x87 unit. The core decodes ESC opcodes (D8-DF with ModRM; the memory operand's segment and
 * offset are `c.dec.seg[i]` and `c.ea(i)`), checks CR0.EM/TS (#NM) and then calls `execute`.
 * Without an Fpu the core raises #UD for ESC opcodes and treats WAIT as a no-op, and CPUID does
 * not report the FPU feature.
 */
export interface Fpu {
  /** Execute the ESC instruction in decoded slot `i` (opcode `c.dec.opc[i]`, ModRM `c.dec.modrm[i]`). */
  execute(c: FpuHost, i: number): void;
  /** WAIT/FWAIT: deliver a pending unmasked x87 exception (#MF, or the FERR# freeze). */
  wait(c: FpuHost): void;
  /** The FERR# output: an unmasked exception is flagged (status word ES). */
  readonly ferr: boolean;
  /** The IGNNE# input: under CR0.NE = 0 a pending exception is ignored rather than frozen on. */
  ignne: boolean;
  /** FXSAVE-layout image of the x87 state (the MTD FPU group). */
  save(): Uint8Array;
  load(image: Uint8Array): void;
}
