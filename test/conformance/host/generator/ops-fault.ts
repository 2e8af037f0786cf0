// Generator ops that end a sequence with an exception (used only as a case's last item).
import { AF, ARITH, OF } from "../layout.js";
import { REGS, type SequenceBuilder, hex, value } from "./builder.js";
import { type Op, db } from "./operands.js";

function undefinedOpcode(b: SequenceBuilder): void {
  const r = b.rng;
  const form = r.pick([
    ["ud2", "ud2"],
    [db([0x0f, 0xff], "UD0"), "ud0"],
    [db([0xf0, 0x01, 0xd8], "lock add eax, ebx: LOCK on a register operand"), "lock-reg"],
    [db([0xf0, 0x90], "lock nop"), "lock-nop"],
    [db([0x0f, 0xc7, 0xc8], "cmpxchg8b with a register operand"), "cmpxchg8b-reg"],
    [db([0x0f, 0x04], "reserved two-byte opcode"), "reserved"],
  ] as const);
  b.insn(form[0], form[1]);
}

function breakpoint(b: SequenceBuilder): void {
  b.insn("int3", "int3");
}

function overflowTrap(b: SequenceBuilder): void {
  // make OF=1 likely: add two large positive numbers
  if (b.rng.chance(0.7)) b.insn(`add ${b.writableReg(32)}, 0x7fffffff`, "add", { writes: ARITH });
  b.insn("into", "into", { reads: OF });
}

function bound(b: SequenceBuilder): void {
  const r = b.rng;
  const wide = r.chance(0.7);
  const operand = b.mem(0, { span: wide ? 8 : 4 });
  const reg = REGS[wide ? 32 : 16][r.below(8)];
  b.insn(`bound ${reg}, ${operand}`, "bound");
}

function codeSegmentWrite(b: SequenceBuilder): void {
  const operand = b.mem(32, { write: true, override: false }).replace("[", "[cs:");
  b.insn(`mov ${operand}, eax`, "cs-write");
}

function divideError(b: SequenceBuilder): void {
  const r = b.rng;
  const form = r.below(3);
  if (form === 0) {
    const reg = b.writableIndex(32, [0, 2]);
    b.insn(`xor ${REGS[32][reg]}, ${REGS[32][reg]}`, "xor", { writes: ARITH & ~AF, undefined: AF });
    b.insn(`${r.pick(["div", "idiv"])} ${REGS[32][reg]}`, "div", { undefined: ARITH });
  } else if (form === 1) {
    b.insn("mov eax, 0x80000000", "setup");
    b.insn("cdq", "cdq");
    const reg = b.writableIndex(32, [0, 2]);
    b.setReg(reg, 0xffffffff);
    b.insn(`idiv ${REGS[32][reg]}`, "idiv", { undefined: ARITH });
  } else {
    b.insn(`mov ax, ${hex(value(r, 16))}`, "setup");
    // A fault: AX and every flag stay as they were (SDM; the host, Bochs and QEMU agree; issue 17).
    b.insn("aam 0", "aam");
  }
}

export const FAULT_OPS: readonly Op[] = [
  { name: "ud", weight: 3, emit: undefinedOpcode, fault: true },
  { name: "int3", weight: 1, emit: breakpoint, fault: true },
  { name: "into", weight: 2, emit: overflowTrap, fault: true },
  { name: "bound", weight: 2, emit: bound, fault: true },
  { name: "cs-write", weight: 1, emit: codeSegmentWrite, fault: true },
  { name: "divide-error", weight: 2, emit: divideError, fault: true },
];
