// What the x87 unit needs of the integer core (the hook's FpuHost: decoded operands, guest memory
// through segmentation and paging with the core's faults, a few registers, EFLAGS and CR0), and
// the architectural constants it uses. Tests drive the unit through a small mock host.

export type { FpuDecoded as X87Decoded, FpuHost as X87Host } from "./hook.js";

/** CR0 bits the x87 looks at. */
export const CR0_PE = 1, CR0_NE = 0x20;
/** EFLAGS.VM (virtual-8086 mode uses the real-mode image layouts). */
export const EFLAGS_VM = 0x20000;
/** Operand-size prefix bit of `X87Decoded.pfx` (1: 32-bit operand size). */
export const PFX_O32 = 1;
export const SEG_CS = 1;
/** EFLAGS bits FCOMI/FUCOMI set. */
export const CF = 0x1, PF = 0x4, ZF = 0x40;
/** #MF. */
export const VECTOR_MF = 16;
export const VECTOR_UD = 6;
