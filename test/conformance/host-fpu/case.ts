// One x87 differential test case (code, initial state) and the result either side reports.

/** The FRSTOR/FNSAVE image: 32-bit protected-mode layout. */
export const IMAGE_SIZE = 108;
/** Operand memory at DATA_ADDR handed to both sides (EBX points at it). */
export const CASE_DATA_SIZE = 256;
export const CODE_ADDR = 0x10000000;
export const DATA_ADDR = 0x20000000;

export interface FpuCase {
  readonly code: Uint8Array;
  /** Initial x87 state as an FSAVE image. */
  readonly image: Uint8Array;
  readonly data: Uint8Array;
  /** EFLAGS loaded before the code (arithmetic flags for FCMOVcc). */
  readonly eflags: number;
  /** Disassembly, for reports. */
  readonly text: string;
  /** A transcendental instruction: registers compare within a tolerance (compare.ts). */
  readonly approximate: boolean;
}

export interface FpuResult {
  /** 0 completed, 1 #MF (SIGFPE), 2 another fault. */
  status: number;
  /** Offset of the faulting instruction in the code. */
  offset: number;
  image: Uint8Array;
  eflags: number;
  eax: number;
  data: Uint8Array;
}
