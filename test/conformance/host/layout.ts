// Fixed memory layout and flag constants shared by the native harness and the emulator side.
//
// Both sides place the code and the data area at the same linear addresses, so absolute
// addresses (memory operands, return addresses pushed by CALL) mean the same thing.

/** Code of one case; the native side appends a 6-byte jump back to the harness, we append HLT. */
export const CODE_BASE = 0x1000_0000;
export const CODE_SIZE = 0x4000;
/** Data area: memory operands and the stack. Initial contents come from the case's fill seed. */
export const DATA_BASE = 0x1010_0000;
export const DATA_SIZE = 0x1_0000;
/** Emulator-only page with a flat GDT (natively unmapped, so test code never reaches it). */
export const GDT_BASE = 0x1020_0000;

/**
 * Data-area regions as offsets from DATA_BASE. The stack region is only ever written by stack
 * instructions (push, call, enter...): random memory writes stay out of it, so a return address
 * can never be overwritten and send the native CPU somewhere wild.
 */
export const STACK_LOW = 0x6000;
export const STACK_TOP = 0x8000; // initial ESP = DATA_BASE + STACK_TOP
export const STACK_HIGH = 0x8100; // reads above the initial ESP stay inside the region
/** Maximum stack depth in bytes that a sequence may reach. */
export const STACK_MAX_DEPTH = STACK_TOP - STACK_LOW - 0x100;

/** EFLAGS bits. */
export const CF = 0x001;
export const PF = 0x004;
export const AF = 0x010;
export const ZF = 0x040;
export const SF = 0x080;
export const TF = 0x100;
export const IF = 0x200;
export const DF = 0x400;
export const OF = 0x800;
/** The six arithmetic flags. */
export const ARITH = CF | PF | AF | ZF | SF | OF;
/** What a case may set initially and what is compared at the end: arithmetic flags and DF. */
export const COMPARED_FLAGS = ARITH | DF;
/** EFLAGS bits that are always 1 for a ring-3 Linux process: bit 1 and IF. */
export const FIXED_FLAGS = 0x002 | IF;

/** GPR names in x86 encoding order (also the order of register blocks in the case format). */
export const GPR_NAMES = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"] as const;

/** Exception vectors by name (SDM vol. 3, table 6-1). */
export const VECTOR_NAMES: Record<number, string> = {
  0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF", 10: "#TS",
  11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM",
};
/** Vectors that push an error code. */
export const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17]);
/** Trap-like vectors: the native EIP points after the instruction that raised them. */
export const TRAP_VECTORS = new Set([3, 4]);

export function vectorName(vector: number): string {
  return VECTOR_NAMES[vector] ?? `vector ${vector}`;
}

export function hex32(value: number): string {
  return "0x" + (value >>> 0).toString(16).padStart(8, "0");
}

/** Human-readable list of the flags set in `mask`, e.g. "CF ZF". */
export function flagNames(mask: number): string {
  const names: Array<[number, string]> = [
    [CF, "CF"], [PF, "PF"], [AF, "AF"], [ZF, "ZF"], [SF, "SF"], [TF, "TF"], [IF, "IF"], [DF, "DF"], [OF, "OF"],
  ];
  return names.filter(([bit]) => mask & bit).map(([, name]) => name).join(" ") || "-";
}
