// Operand pickers and the opcode-family record shared by the generator's op tables.
import { CF, OF, PF, SF, ZF } from "../layout.js";
import { REGS, type SequenceBuilder, type Size } from "./builder.js";

/** One family of instructions: `emit` writes one instance (plus any setup) into the builder. */
export interface Op {
  name: string;
  weight: number;
  emit(b: SequenceBuilder): void;
  /** Contains a branch or a body: not allowed inside rel8-limited bodies or past nesting 2. */
  flow?: boolean;
  /** Ends the sequence with an exception (used only as the last item). */
  fault?: boolean;
}

/** Condition codes: nasm suffix and the flags the condition reads. */
export const CONDITIONS: ReadonlyArray<{ cc: string; code: number; reads: number }> = [
  { cc: "o", code: 0, reads: OF }, { cc: "no", code: 1, reads: OF },
  { cc: "b", code: 2, reads: CF }, { cc: "ae", code: 3, reads: CF },
  { cc: "e", code: 4, reads: ZF }, { cc: "ne", code: 5, reads: ZF },
  { cc: "be", code: 6, reads: CF | ZF }, { cc: "a", code: 7, reads: CF | ZF },
  { cc: "s", code: 8, reads: SF }, { cc: "ns", code: 9, reads: SF },
  { cc: "p", code: 10, reads: PF }, { cc: "np", code: 11, reads: PF },
  { cc: "l", code: 12, reads: SF | OF }, { cc: "ge", code: 13, reads: SF | OF },
  { cc: "le", code: 14, reads: ZF | SF | OF }, { cc: "g", code: 15, reads: ZF | SF | OF },
];

export interface Operand {
  text: string;
  isMem: boolean;
  /** Register number when not memory. */
  reg: number;
}

/** A destination: a writable register (60%) or a memory operand outside the stack region. */
export function dest(b: SequenceBuilder, size: Size, memChance = 0.4, avoid: readonly number[] = []): Operand {
  if (b.rng.chance(memChance)) {
    const text = b.rng.chance(0.08) ? b.stackBelow(size) : b.mem(size, { write: true, avoid });
    return { text, isMem: true, reg: -1 };
  }
  const reg = b.writableIndex(size);
  return { text: REGS[size][reg], isMem: false, reg };
}

/** A source: any register, a data-area operand or (rarely) a stack-relative one. */
export function source(b: SequenceBuilder, size: Size, memChance = 0.35, avoid: readonly number[] = []): Operand {
  if (b.rng.chance(memChance)) {
    const stack = b.rng.chance(0.15) ? b.stackMem(size) : null;
    return { text: stack ?? b.mem(size, { avoid }), isMem: true, reg: -1 };
  }
  const reg = b.rng.below(8);
  return { text: REGS[size][reg], isMem: false, reg };
}

export function anySize(b: SequenceBuilder): Size {
  return b.rng.pick([8, 16, 32, 32] as const);
}

export function wideSize(b: SequenceBuilder): 16 | 32 {
  return b.rng.pick([16, 32, 32] as const);
}

/** nasm `db` text for raw bytes, with a comment saying what they are. */
export function db(bytes: readonly number[], comment: string): string {
  return `db ${bytes.map((x) => "0x" + (x & 0xff).toString(16)).join(", ")} ; ${comment}`;
}

/** Little-endian bytes of `value` in `size` bits. */
export function le(value: number, size: Size): number[] {
  const out: number[] = [];
  for (let i = 0; i < size / 8; i++) out.push((value >>> (8 * i)) & 0xff);
  return out;
}
