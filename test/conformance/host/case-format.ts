// Binary batch format between the TypeScript side and the native harness (harness.c).
//
// All words are little-endian u32. A batch:
//   header: magic "HVB1", kind, count, codeBase, codeSize, dataBase, dataSize, extIn, extOut
//   case:   id, codeLength, fillSeed, eax ecx edx ebx esp ebp esi edi, eflags,
//           ext[extIn] (kind-specific initial state), code (padded to 4 bytes)
// A result stream:
//   header: magic "HVR1", count
//   result: id, status, vector, errorCode, eip, faultAddress, 8 GPRs, eflags,
//           ext[extOut] (kind-specific final state), runCount, runs of (offset, length, bytes
//           padded to 4) where the final data area differs from the initial fill.
// The `kind` and the ext blocks are what the x87 mode (issue 5) plugs into: an FPU case carries
// a 108-byte FSAVE image in and out; the integer kind has empty ext blocks.
import { CODE_BASE, CODE_SIZE, DATA_BASE, DATA_SIZE } from "./layout.js";

export const BATCH_MAGIC = 0x31425648; // "HVB1"
export const RESULT_MAGIC = 0x31525648; // "HVR1"

export const CaseKind = { INTEGER: 0, FPU: 1 } as const;
export type CaseKind = (typeof CaseKind)[keyof typeof CaseKind];

/** Size of the kind-specific state block in and out. */
export const EXT_SIZE: Record<CaseKind, number> = { [CaseKind.INTEGER]: 0, [CaseKind.FPU]: 108 };

export const Status = { DONE: 0, EXCEPTION: 1, TIMEOUT: 2, BAD_CASE: 3 } as const;
export type Status = (typeof Status)[keyof typeof Status];
export const STATUS_NAMES = ["done", "exception", "timeout", "bad case"] as const;

/** One test case: code plus the initial machine state. */
export interface HostCase {
  id: number;
  kind: CaseKind;
  code: Uint8Array;
  /** Seed of the data-area fill (see fill.ts). */
  fillSeed: number;
  /** eax ecx edx ebx esp ebp esi edi. */
  regs: readonly number[];
  /** Initial EFLAGS; only the arithmetic flags and DF are loaded. */
  eflags: number;
  /** Kind-specific initial state (EXT_SIZE[kind] bytes). */
  ext: Uint8Array;
}

/** The final state of a case on one side (native or emulator). */
export interface CaseOutcome {
  status: Status;
  /** Exception vector when status is EXCEPTION. */
  vector: number;
  errorCode: number;
  /** Final EIP: the end of the code when DONE, the faulting (or trapping) EIP otherwise. */
  eip: number;
  /** CR2 / si_addr of a page fault. */
  faultAddress: number;
  regs: number[];
  eflags: number;
  ext: Uint8Array;
}

/** A native result: the outcome plus the data-area runs that changed. */
export interface NativeResult extends CaseOutcome {
  id: number;
  runs: Array<{ offset: number; bytes: Uint8Array }>;
}

export class BatchFormatError extends Error {
  override readonly name = "BatchFormatError";
}

export function encodeBatch(kind: CaseKind, cases: readonly HostCase[]): Uint8Array {
  const extSize = EXT_SIZE[kind];
  let size = 36;
  for (const c of cases) {
    if (c.kind !== kind) throw new BatchFormatError(`case ${c.id}: kind ${c.kind} in a batch of kind ${kind}`);
    if (c.ext.length !== extSize) throw new BatchFormatError(`case ${c.id}: ext block of ${c.ext.length} bytes, want ${extSize}`);
    if (c.regs.length !== 8) throw new BatchFormatError(`case ${c.id}: ${c.regs.length} registers, want 8`);
    size += 48 + extSize + align4(c.code.length);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  const header = [BATCH_MAGIC, kind, cases.length, CODE_BASE, CODE_SIZE, DATA_BASE, DATA_SIZE, extSize, extSize];
  header.forEach((word, i) => view.setUint32(i * 4, word >>> 0, true));
  let at = 36;
  for (const c of cases) {
    const words = [c.id, c.code.length, c.fillSeed, ...c.regs, c.eflags];
    words.forEach((word, i) => view.setUint32(at + i * 4, word >>> 0, true));
    at += 48;
    out.set(c.ext, at);
    at += extSize;
    out.set(c.code, at);
    at += align4(c.code.length);
  }
  return out;
}

export function decodeResults(kind: CaseKind, bytes: Uint8Array): NativeResult[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const extSize = EXT_SIZE[kind];
  const need = (at: number, n: number): void => {
    if (at + n > bytes.length) throw new BatchFormatError(`result stream truncated at byte ${at}`);
  };
  need(0, 8);
  if (view.getUint32(0, true) !== RESULT_MAGIC) throw new BatchFormatError("bad result magic");
  const count = view.getUint32(4, true);
  const results: NativeResult[] = [];
  let at = 8;
  for (let n = 0; n < count; n++) {
    need(at, 60 + extSize);
    const word = (i: number): number => view.getUint32(at + i * 4, true);
    const regs = [word(6), word(7), word(8), word(9), word(10), word(11), word(12), word(13)];
    const status = word(1);
    if (status > Status.BAD_CASE) throw new BatchFormatError(`result ${n}: bad status ${status}`);
    const result: NativeResult = {
      id: word(0), status: status as Status, vector: word(2), errorCode: word(3), eip: word(4),
      faultAddress: word(5), regs, eflags: word(14), ext: bytes.slice(at + 60, at + 60 + extSize), runs: [],
    };
    at += 60 + extSize;
    need(at, 4);
    const runCount = view.getUint32(at, true);
    at += 4;
    for (let r = 0; r < runCount; r++) {
      need(at, 8);
      const offset = view.getUint32(at, true);
      const length = view.getUint32(at + 4, true);
      need(at + 8, length);
      if (offset + length > DATA_SIZE) throw new BatchFormatError(`result ${n}: run outside the data area`);
      result.runs.push({ offset, bytes: bytes.slice(at + 8, at + 8 + length) });
      at += 8 + align4(length);
    }
    results.push(result);
  }
  return results;
}

/** The final data area of a native result: the initial fill with the changed runs applied. */
export function applyRuns(initial: Uint8Array, runs: NativeResult["runs"], into: Uint8Array = new Uint8Array(initial.length)): Uint8Array {
  into.set(initial);
  for (const run of runs) into.set(run.bytes, run.offset);
  return into;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
