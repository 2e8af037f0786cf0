// Compares the native outcome of a case with the emulator's, with undefined flags masked.
import type { AssembledCase } from "./assemble.js";
import { type CaseOutcome, STATUS_NAMES, Status } from "./case-format.js";
import { ARITH, CODE_BASE, COMPARED_FLAGS, DATA_BASE, ERROR_CODE_VECTORS, GPR_NAMES, TRAP_VECTORS, flagNames, hex32, vectorName } from "./layout.js";

export interface Difference {
  what: string;
  native: string;
  emulator: string;
  /** Extra context (initial memory value, flags that differ). */
  note?: string;
}

/**
 * EFLAGS bits compared for a case that ended at `eip` (native). At the end of the code: the
 * flags not undefined at the end. At an exception: the flags not undefined before the
 * instruction at `eip` (all arithmetic flags masked if `eip` is no instruction start).
 */
export function comparedFlags(c: AssembledCase, eip: number): number {
  const offset = eip - CODE_BASE;
  if (offset === c.code.length) return COMPARED_FLAGS & ~c.source.finalUndef;
  const lines = c.source.lines.filter((line) => !line.isLabel);
  const index = c.offsets.indexOf(offset);
  if (index < 0) return COMPARED_FLAGS & ~ARITH;
  return COMPARED_FLAGS & ~lines[index].undefBefore;
}

/** Everything that differs; empty when the emulator matches the host. */
export function compareOutcomes(
  native: CaseOutcome,
  nativeData: Uint8Array,
  emulator: CaseOutcome & { instructionLength?: number; data: Uint8Array },
  initialData: Uint8Array,
  flagMask: number,
  maxMemoryDiffs = 16,
): Difference[] {
  const diffs: Difference[] = [];
  if (native.status !== emulator.status) {
    diffs.push({ what: "outcome", native: describe(native), emulator: describe(emulator) });
  } else if (native.status === Status.EXCEPTION) {
    if (native.vector !== emulator.vector) {
      diffs.push({ what: "vector", native: vectorName(native.vector), emulator: vectorName(emulator.vector) });
    } else if (ERROR_CODE_VECTORS.has(native.vector) && native.errorCode !== emulator.errorCode) {
      diffs.push({ what: "error code", native: hex32(native.errorCode), emulator: hex32(emulator.errorCode) });
    }
  }
  if (native.eip !== emulator.eip) {
    // a trap (INT3, INTO) may be reported at the instruction with its length, VMX style
    const trapAtInstruction = native.status === Status.EXCEPTION && TRAP_VECTORS.has(native.vector) &&
      emulator.eip + (emulator.instructionLength ?? 0) === native.eip;
    if (!trapAtInstruction) diffs.push({ what: "eip", native: hex32(native.eip), emulator: hex32(emulator.eip) });
  }
  for (let i = 0; i < 8; i++) {
    if (native.regs[i] >>> 0 !== emulator.regs[i] >>> 0) {
      diffs.push({ what: GPR_NAMES[i], native: hex32(native.regs[i]), emulator: hex32(emulator.regs[i]) });
    }
  }
  const flagDiff = (native.eflags ^ emulator.eflags) & flagMask;
  if (flagDiff) {
    diffs.push({
      what: "eflags", native: hex32(native.eflags & flagMask), emulator: hex32(emulator.eflags & flagMask),
      note: `differ in ${flagNames(flagDiff)}; compared ${flagNames(flagMask)}`,
    });
  }
  let memoryDiffs = 0;
  const same = Buffer.from(nativeData.buffer, nativeData.byteOffset, nativeData.length)
    .equals(Buffer.from(emulator.data.buffer, emulator.data.byteOffset, emulator.data.length));
  for (let i = 0; !same && i < nativeData.length; i++) {
    {
      if (nativeData[i] === emulator.data[i]) continue;
      memoryDiffs++;
      if (memoryDiffs <= maxMemoryDiffs) {
        diffs.push({
          what: `[${hex32(DATA_BASE + i)}]`, native: byteHex(nativeData[i]), emulator: byteHex(emulator.data[i]),
          note: `initially ${byteHex(initialData[i])}`,
        });
      }
    }
  }
  if (memoryDiffs > maxMemoryDiffs) {
    diffs.push({ what: "memory", native: "", emulator: "", note: `${memoryDiffs - maxMemoryDiffs} more bytes differ` });
  }
  return diffs;
}

function describe(o: CaseOutcome): string {
  if (o.status === Status.EXCEPTION) return `${vectorName(o.vector)} at ${hex32(o.eip)}`;
  return STATUS_NAMES[o.status];
}

function byteHex(v: number): string {
  return "0x" + v.toString(16).padStart(2, "0");
}
