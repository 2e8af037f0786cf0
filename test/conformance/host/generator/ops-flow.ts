// Generator ops: forward Jcc/JMP, LOOP/LOOPE/LOOPNE (backward, bounded), JECXZ/JCXZ.
import { ARITH, ZF } from "../layout.js";
import { ECX, type SequenceBuilder } from "./builder.js";
import { CONDITIONS, type Op } from "./operands.js";

/**
 * Emits a body of `count` items at one more nesting level, coming back to the same stack depth
 * and the same DF: a skipped or repeated body must not leave DF path-dependent, since string
 * ops pick their address ranges from the DF the builder knows.
 */
function body(b: SequenceBuilder, count: number, short: boolean): void {
  const saved = b.beginBody();
  const wasShort = b.shortBody;
  const df = b.df;
  b.nesting++;
  b.shortBody = wasShort || short;
  b.emitItems(count);
  b.shortBody = wasShort;
  b.nesting--;
  if (b.df !== df) {
    b.insn(df ? "std" : "cld", df ? "std" : "cld");
    b.df = df;
  }
  b.endBody(saved);
}

/** Jcc forward over a body; at the label the undefined flags of both paths join. */
function jcc(b: SequenceBuilder): void {
  const r = b.rng;
  const c = r.pick(CONDITIONS);
  const label = b.newLabel();
  b.insn(`j${c.cc} ${r.chance(0.2) ? "near " : ""}${label}`, "jcc", { reads: c.reads });
  const skipped = b.undef;
  body(b, r.range(1, 4), false);
  b.placeLabel(label);
  b.undef |= skipped;
}

/** JMP forward over bytes that must never run. */
function jmp(b: SequenceBuilder): void {
  const r = b.rng;
  const label = b.newLabel();
  b.insn(`jmp ${r.chance(0.3) ? "near " : ""}${label}`, "jmp");
  const dead = Array.from({ length: r.range(1, 8) }, () => r.pick([0xf4, 0xcc, 0x0f, 0x0b, r.below(256)]));
  b.insn(`db ${dead.map((x) => "0x" + x.toString(16)).join(", ")} ; never executed`, "dead");
  b.placeLabel(label);
}

/**
 * LOOP back over a short body, ECX (or CX with an address-size prefix) set to 1-4 first and
 * reserved inside. The body may run after itself, so it starts with all flags undefined.
 */
function loop(b: SequenceBuilder): void {
  const r = b.rng;
  if (!b.mayWrite(32, ECX)) return;
  const variant = r.pick(["loop", "loop", "loope", "loopne"]);
  const a16 = r.chance(0.25);
  const n = r.range(1, 4);
  b.setReg(ECX, a16 ? ((r.u32() & 0xffff0000) | n) >>> 0 : n);
  const top = b.newLabel();
  b.placeLabel(top);
  b.undef = ARITH;
  b.reserved.add(ECX);
  body(b, r.range(1, 2), true);
  b.insn(`${a16 ? "a16 " : ""}${variant} ${top}`, "loop", { reads: variant === "loop" ? 0 : ZF });
  b.reserved.delete(ECX);
}

function jecxz(b: SequenceBuilder): void {
  const r = b.rng;
  const label = b.newLabel();
  b.insn(`${r.chance(0.25) ? "jcxz" : "jecxz"} ${label}`, "jecxz");
  const skipped = b.undef;
  body(b, r.range(1, 2), true);
  b.placeLabel(label);
  b.undef |= skipped;
}

export const FLOW_OPS: readonly Op[] = [
  { name: "jcc", weight: 8, emit: jcc, flow: true },
  { name: "jmp", weight: 2, emit: jmp, flow: true },
  { name: "loop", weight: 4, emit: loop, flow: true },
  { name: "jecxz", weight: 2, emit: jecxz, flow: true },
];
