// Generator ops: PUSH/POP, PUSHA/POPA, PUSHF/POPF, ENTER/LEAVE, CALL/RET (all within the case).
import { ARITH, CODE_BASE, DATA_BASE, DF, FIXED_FLAGS } from "../layout.js";
import { EBP, ECX, REGS, type SequenceBuilder, hex, value } from "./builder.js";
import { type Op, source, wideSize } from "./operands.js";

function push(b: SequenceBuilder): void {
  const r = b.rng;
  const size = wideSize(b);
  const bytes = size / 8;
  if (!b.canPush(bytes)) return;
  const form = r.below(5);
  if (form === 0) b.insn(`push ${REGS[size][r.below(8)]}`, "push");
  else if (form === 1) b.insn(`push ${source(b, size, 1).text}`, "push");
  else if (form === 2) b.insn(`push ${size === 16 ? "word" : "strict byte"} ${r.range(-128, 127)}`, "push");
  else if (form === 3) b.insn(`push ${size === 16 ? "word" : "strict dword"} ${hex(value(r, size))}`, "push");
  else {
    // PUSH ESP pushes the value before the push; POP ESP loads the popped value
    if (!b.canPush(4)) return;
    b.insn("push esp", "push");
    if (r.chance(0.5)) b.insn("pop esp", "pop");
    else b.pushed(4);
    return;
  }
  b.pushed(bytes);
}

function pop(b: SequenceBuilder): void {
  const r = b.rng;
  const size = wideSize(b);
  const bytes = size / 8;
  if (!b.canPop(bytes)) return push(b);
  if (r.chance(0.15)) b.insn(`pop ${b.stackBelow(size)}`, "pop");
  else if (r.chance(0.3)) b.insn(`pop ${b.mem(size, { write: true })}`, "pop");
  else b.insn(`pop ${b.writableReg(size)}`, "pop");
  b.popped(bytes);
}

function pushaPopa(b: SequenceBuilder): void {
  const r = b.rng;
  const wide = r.chance(0.7);
  const bytes = wide ? 32 : 16;
  const popa = r.chance(0.5) && b.canPop(bytes) && b.mayWrite(32, ECX) && b.mayWrite(32, EBP);
  if (popa) {
    b.insn(wide ? "popad" : "popaw", "popa");
    b.popped(bytes);
  } else if (b.canPush(bytes)) {
    b.insn(wide ? "pushad" : "pushaw", "pusha");
    b.pushed(bytes);
  }
}

/** A safe EFLAGS image: arithmetic flags and DF random, IF and bit 1 set, nothing else. */
function safeFlags(b: SequenceBuilder): number {
  return (b.rng.u32() & (ARITH | DF)) | FIXED_FLAGS;
}

function pushfPopf(b: SequenceBuilder): void {
  const r = b.rng;
  const size = wideSize(b);
  const bytes = size / 8;
  const suffix = size === 16 ? "w" : "d";
  if (r.chance(0.5) && b.canPop(bytes, true)) {
    b.df = b.topFlagsDf();
    b.insn(`popf${suffix}`, "popf", { writes: ARITH });
    b.popped(bytes);
    return;
  }
  if (!b.canPush(bytes)) return;
  if (r.chance(0.5)) {
    b.insn(`pushf${suffix}`, "pushf", { reads: ARITH });
    b.pushed(bytes, b.df);
  } else {
    const image = safeFlags(b);
    b.insn(`push ${size === 16 ? "word" : "strict dword"} ${hex(image)}`, "push");
    b.pushed(bytes, image & DF ? 1 : 0);
  }
}

/** ENTER size, level + a body + LEAVE; EBP is reserved inside. */
function frame(b: SequenceBuilder): void {
  const r = b.rng;
  const level = r.pick([0, 0, 1, 2, 3, 31]);
  const size = r.pick([0, 4, 8, 12, 3, 64, r.below(100)]);
  const frameBytes = 4 + 4 * level + size;
  if (!b.canPush(frameBytes + 64)) return;
  const wasReserved = b.reserved.has(EBP);
  if (level > 0 && !wasReserved) {
    // ENTER copies level-1 frame pointers from [ebp-4], [ebp-8]...
    b.setReg(EBP, DATA_BASE + b.dataOffset(4 * level + 4, false) + 4 * level);
  }
  b.insn(`enter ${size}, ${level}`, "enter");
  b.pushed(frameBytes);
  const saved = b.beginBody();
  b.reserved.add(EBP);
  b.nesting++;
  b.emitItems(r.range(1, 4));
  b.nesting--;
  if (!wasReserved) b.reserved.delete(EBP);
  b.insn("leave", "leave");
  b.endBody(saved, false);
  b.popped(frameBytes);
}

/** CALL (direct, through a register or through memory) to a body that returns with RET [n]. */
function call(b: SequenceBuilder): void {
  const r = b.rng;
  const args = r.pick([0, 0, 1, 2]);
  if (!b.canPush(4 + 4 * args + 64)) return;
  for (let i = 0; i < args; i++) {
    b.insn(`push strict dword ${hex(value(r, 32))}`, "push");
    b.pushed(4);
  }
  const body = b.newLabel();
  const after = b.newLabel();
  const target = `${hex(CODE_BASE)}+(${body}-${b.prefix}start)`;
  const form = r.below(4);
  if (form === 0) {
    const reg = b.writableIndex(32);
    b.insn(`mov ${REGS[32][reg]}, ${target}`, "setup");
    b.insn(`call ${REGS[32][reg]}`, "call");
  } else if (form === 1) {
    const operand = b.mem(32, { write: true });
    b.insn(`mov ${operand}, ${target}`, "setup");
    b.insn(`call ${operand}`, "call");
  } else {
    b.insn(`call ${body}`, "call");
  }
  b.pushed(4);
  const jumpLine = b.lines.length;
  b.insn(`jmp ${after}`, "jmp");
  b.placeLabel(body);
  const saved = b.beginBody();
  b.nesting++;
  b.emitItems(r.range(1, 4));
  b.nesting--;
  b.endBody(saved);
  b.insn(args ? `ret ${4 * args}` : "ret", "ret");
  b.popped(4 + 4 * args);
  // the JMP runs after the return, with the flags the body left
  b.lines[jumpLine].undefBefore = b.undef;
  b.placeLabel(after);
}

export const STACK_OPS: readonly Op[] = [
  { name: "push", weight: 6, emit: push },
  { name: "pop", weight: 5, emit: pop },
  { name: "pusha", weight: 2, emit: pushaPopa },
  { name: "pushf", weight: 4, emit: pushfPopf },
  { name: "enter", weight: 3, emit: frame, flow: true },
  { name: "call", weight: 4, emit: call, flow: true },
];
