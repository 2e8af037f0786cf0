// Generator ops: ALU, INC/DEC/NEG/NOT, MUL/IMUL/DIV/IDIV, BCD adjusts, conversions, flag ops.
import { AF, ARITH, CF, OF, PF, SF, ZF } from "../layout.js";
import { REGS, type SequenceBuilder, type Size, imm, value } from "./builder.js";
import { type Op, anySize, db, dest, le, source, wideSize } from "./operands.js";

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"] as const;
const LOGIC = new Set(["and", "or", "xor", "test"]);

function aluEffect(op: string) {
  const reads = op === "adc" || op === "sbb" ? CF : 0;
  return LOGIC.has(op) ? { reads, writes: ARITH & ~AF, undefined: AF } : { reads, writes: ARITH };
}

function lockPrefix(b: SequenceBuilder, isMem: boolean, op: string): string {
  return isMem && op !== "cmp" && op !== "test" && b.rng.chance(0.15) ? "lock " : "";
}

function alu(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(ALU);
  const size = anySize(b);
  const form = r.below(10);
  const effect = aluEffect(op);
  const writesDest = op !== "cmp";
  if (form < 3) {
    // r/m, reg
    const d = writesDest ? dest(b, size) : source(b, size);
    b.insn(`${lockPrefix(b, d.isMem, op)}${op} ${d.text}, ${b.anyReg(size)}`, op, effect);
  } else if (form < 5) {
    // reg, r/m
    const s = source(b, size, 0.6);
    const d = writesDest ? b.writableReg(size) : b.anyReg(size);
    b.insn(`${op} ${d}, ${s.text}`, op, effect);
  } else if (form < 8) {
    // r/m, imm (nasm picks the imm8 sign-extended or the accumulator form where it fits)
    const d = writesDest ? dest(b, size) : source(b, size);
    const strict = size !== 8 && r.chance(0.2) ? `strict ${size === 16 ? "word" : "dword"} ` : "";
    b.insn(`${lockPrefix(b, d.isMem, op)}${op} ${d.text}, ${strict}${imm(r, size)}`, op, effect);
  } else if (form === 8) {
    // 82 /op ib: the 8-bit immediate alias of 80
    const reg = writesDest ? b.writableIndex(8) : r.below(8);
    const opIndex = ALU.indexOf(op);
    b.insn(db([0x82, 0xc0 | (opIndex << 3) | reg, value(r, 8)], `${op} ${REGS[8][reg]}, imm8 (82 alias)`), op, effect);
  } else {
    // reg, reg in the "reg, r/m" direction (nasm always picks the other one)
    const d = writesDest ? b.writableIndex(size) : r.below(8);
    const s = r.below(8);
    const opIndex = ALU.indexOf(op);
    const bytes = [...(size === 16 ? [0x66] : []), opIndex * 8 + (size === 8 ? 2 : 3), 0xc0 | (d << 3) | s];
    b.insn(db(bytes, `${op} ${REGS[size][d]}, ${REGS[size][s]} (reg,r/m form)`), op, effect);
  }
}

function test(b: SequenceBuilder): void {
  const r = b.rng;
  const size = anySize(b);
  const effect = aluEffect("test");
  if (r.chance(0.1)) {
    // F6/F7 /1: undocumented alias of TEST r/m, imm
    const reg = r.below(8);
    const bytes = [...(size === 16 ? [0x66] : []), size === 8 ? 0xf6 : 0xf7, 0xc8 | reg, ...le(value(r, size), size)];
    b.insn(db(bytes, `test ${REGS[size][reg]}, imm (/1 alias)`), "test", effect);
    return;
  }
  const s = source(b, size);
  const other = r.chance(0.5) ? b.anyReg(size) : imm(r, size);
  b.insn(`test ${s.text}, ${other}`, "test", effect);
}

function incDec(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["inc", "dec"]);
  const size = anySize(b);
  const effect = { writes: ARITH & ~CF };
  if (size !== 8 && r.chance(0.15)) {
    // FF /0, FF /1 on a register (nasm picks the one-byte 40+r / 48+r form)
    const reg = b.writableIndex(size);
    const bytes = [...(size === 16 ? [0x66] : []), 0xff, (op === "inc" ? 0xc0 : 0xc8) | reg];
    b.insn(db(bytes, `${op} ${REGS[size][reg]} (FF form)`), op, effect);
    return;
  }
  const d = dest(b, size);
  b.insn(`${lockPrefix(b, d.isMem, op)}${op} ${d.text}`, op, effect);
}

function negNot(b: SequenceBuilder): void {
  const op = b.rng.pick(["neg", "not"]);
  const d = dest(b, anySize(b));
  b.insn(`${lockPrefix(b, d.isMem, op)}${op} ${d.text}`, op, op === "neg" ? { writes: ARITH } : {});
}

const MUL_EFFECT = { writes: CF | OF, undefined: SF | ZF | AF | PF };

function mul(b: SequenceBuilder): void {
  const r = b.rng;
  const form = r.below(4);
  if (form < 2) {
    const op = r.pick(["mul", "imul"]);
    const s = source(b, anySize(b));
    b.insn(`${op} ${s.text}`, op, MUL_EFFECT);
  } else if (form === 2) {
    const size = wideSize(b);
    const s = source(b, size);
    b.insn(`imul ${b.writableReg(size)}, ${s.text}`, "imul", MUL_EFFECT);
  } else {
    const size = wideSize(b);
    const s = source(b, size);
    const small = r.chance(0.5) ? r.range(-128, 127).toString() : imm(r, size);
    b.insn(`imul ${b.writableReg(size)}, ${s.text}, ${small}`, "imul", MUL_EFFECT);
  }
}

/** DIV/IDIV; usually guarded so the quotient fits, sometimes left to raise #DE. */
function div(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["div", "idiv"]);
  const size = anySize(b);
  const guard = r.chance(0.85);
  // the divisor never lives in EAX/EDX: the guard below rewrites them
  const divisorMem = r.chance(0.35);
  const divisor = divisorMem ? b.mem(size, { avoid: [0, 2] }) : REGS[size][b.writableIndex(size, [0, 2])];
  if (guard) {
    if (size === 8) b.insn(op === "div" ? "movzx eax, al" : "movsx ax, al", op === "div" ? "movzx" : "movsx");
    else if (op === "div") b.insn(size === 16 ? "xor dx, dx" : "xor edx, edx", "xor", { writes: ARITH & ~AF, undefined: AF });
    else b.insn(size === 16 ? "cwd" : "cdq", size === 16 ? "cwd" : "cdq");
    if (!divisorMem) b.insn(`or ${divisor}, ${r.pick(["1", "0x10", "0x3"])}`, "or", { writes: ARITH & ~AF, undefined: AF });
  }
  b.insn(`${op} ${divisor}`, op, { undefined: ARITH });
}

function bcd(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["daa", "das", "aaa", "aas", "aam", "aad"]);
  if (r.chance(0.5)) b.insn(`mov al, ${imm(r, 8)}`, "setup");
  switch (op) {
    case "daa":
    case "das":
      b.insn(op, op, { reads: AF | CF, writes: CF | AF | SF | ZF | PF, undefined: OF });
      return;
    case "aaa":
    case "aas":
      b.insn(op, op, { reads: AF, writes: AF | CF, undefined: OF | SF | ZF | PF });
      return;
    default: {
      const base = r.chance(0.6) ? "" : ` ${r.pick([2, 7, 8, 16, 0x10, 0xff])}`;
      b.insn(`${op}${base}`, op, { writes: SF | ZF | PF, undefined: OF | AF | CF });
    }
  }
}

function convert(b: SequenceBuilder): void {
  const op = b.rng.pick(["cbw", "cwde", "cwd", "cdq"]);
  b.insn(op, op);
}

function flagOp(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["clc", "stc", "cmc", "cld", "std", "sahf", "lahf", "salc"]);
  switch (op) {
    case "clc":
    case "stc":
      b.insn(op, op, { writes: CF });
      return;
    case "cmc":
      b.insn(op, op, { reads: CF, writes: CF });
      return;
    case "cld":
    case "std":
      b.insn(op, op);
      b.df = op === "std" ? 1 : 0;
      return;
    case "sahf":
      b.insn(op, op, { writes: SF | ZF | AF | PF | CF });
      return;
    case "lahf":
      if (b.mayWrite(8, 4)) b.insn(op, op, { reads: SF | ZF | AF | PF | CF });
      return;
    default:
      b.insn(op, op, { reads: CF });
  }
}

/**
 * Redundant prefixes the CPU ignores on a register ALU op (segment overrides, REP/REPNE on a
 * one-byte opcode, repeated 66). F2/F3 never go before 0F opcodes: on newer CPUs F3 0F BC is
 * TZCNT, not BSF, so those bytes mean different instructions on the host and on a P6.
 */
function redundantPrefixes(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(ALU);
  const prefixes = Array.from({ length: r.range(1, 3) }, () => r.pick([0x26, 0x2e, 0x36, 0x3e, 0xf2, 0xf3, 0x66]));
  const size = prefixes.includes(0x66) ? 16 : 32;
  const d = op === "cmp" ? r.below(8) : b.writableIndex(size);
  const s = r.below(8);
  const bytes = [...prefixes, ALU.indexOf(op) * 8 + 1, 0xc0 | (s << 3) | d];
  b.insn(db(bytes, `${op} ${REGS[size][d]}, ${REGS[size][s]} with redundant prefixes`), op, aluEffect(op));
}

export const ARITH_OPS: readonly Op[] = [
  { name: "prefixes", weight: 2, emit: redundantPrefixes },
  { name: "alu", weight: 30, emit: alu },
  { name: "test", weight: 5, emit: test },
  { name: "incdec", weight: 6, emit: incDec },
  { name: "negnot", weight: 4, emit: negNot },
  { name: "mul", weight: 6, emit: mul },
  { name: "div", weight: 5, emit: div },
  { name: "bcd", weight: 5, emit: bcd },
  { name: "convert", weight: 3, emit: convert },
  { name: "flags", weight: 6, emit: flagOp },
];

