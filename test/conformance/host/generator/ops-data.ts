// Generator ops: MOV, MOVZX/MOVSX, LEA, XCHG, CMPXCHG(8B), XADD, XLAT, NOPs, ARPL, string ops.
import { ARITH, DATA_BASE, ZF } from "../layout.js";
import { ECX, REGS, type SequenceBuilder, type Size, hex, imm, signed, value } from "./builder.js";
import { type Op, anySize, db, dest, le, source, wideSize } from "./operands.js";

function mov(b: SequenceBuilder): void {
  const r = b.rng;
  const size = anySize(b);
  const form = r.below(8);
  if (form === 0) {
    b.insn(`mov ${b.writableReg(size)}, ${imm(r, size)}`, "mov");
  } else if (form === 1) {
    const d = dest(b, size, 0.6);
    b.insn(`mov ${d.text}, ${imm(r, size)}`, "mov");
  } else if (form <= 3) {
    const d = dest(b, size);
    b.insn(`mov ${d.text}, ${b.anyReg(size)}`, "mov");
  } else if (form <= 5) {
    const s = source(b, size, 0.7);
    b.insn(`mov ${b.writableReg(size)}, ${s.text}`, "mov");
  } else if (form === 6) {
    // moffs forms A0-A3 (nasm picks them for an absolute address with the accumulator)
    const acc = REGS[size][0];
    const address = hex(DATA_BASE + b.dataOffset(size / 8, true));
    b.insn(r.chance(0.5) ? `mov ${acc}, [${address}]` : `mov [${address}], ${acc}`, "mov");
  } else {
    // encodings nasm does not pick: 8A/8B reg, reg and C6/C7 /0 reg, imm
    const d = b.writableIndex(size);
    const prefix = size === 16 ? [0x66] : [];
    const bytes = r.chance(0.5)
      ? [...prefix, size === 8 ? 0x8a : 0x8b, 0xc0 | (d << 3) | r.below(8)]
      : [...prefix, size === 8 ? 0xc6 : 0xc7, 0xc0 | d, ...le(value(r, size), size)];
    b.insn(db(bytes, `mov ${REGS[size][d]}, ... (alternate encoding)`), "mov");
  }
}

function movExtend(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["movzx", "movsx"]);
  const from = r.pick([8, 8, 16] as const);
  const to = from === 16 ? 32 : wideSize(b);
  const s = source(b, from);
  b.insn(`${op} ${b.writableReg(to)}, ${s.text}`, op);
}

/** LEA computes an address without touching memory, so any register values will do. */
function lea(b: SequenceBuilder): void {
  const r = b.rng;
  const size = wideSize(b);
  const reg = (): string => REGS[32][r.below(8)];
  const disp = r.pick([0, r.range(-128, 127), r.u32() | 0]);
  let address: string;
  const form = r.below(6);
  if (form === 0) address = `${reg()}${signed(disp)}`;
  else if (form === 1) address = `${reg()}+${REGS[32][r.pick([0, 1, 2, 3, 5, 6, 7])]}*${r.pick([1, 2, 4, 8])}${signed(disp)}`;
  else if (form === 2) address = `nosplit ${REGS[32][r.pick([0, 1, 2, 3, 5, 6, 7])]}*${r.pick([1, 2, 4, 8])}${signed(disp)}`;
  else if (form === 3) address = hex(disp);
  else {
    // 16-bit addressing (67 prefix): only LEA may use it, a 16-bit address is below the data area
    const base = r.pick(["bx+si", "bx+di", "bp+si", "bp+di", "si", "di", "bx", "bp+0"]);
    address = `${base}${signed(r.range(-0x8000, 0x7fff))}`;
  }
  b.insn(`lea ${b.writableReg(size)}, [${address}]`, "lea");
}

function xchg(b: SequenceBuilder): void {
  const size = anySize(b);
  const d = dest(b, size, 0.4);
  b.insn(`xchg ${d.text}, ${b.writableReg(size)}`, "xchg");
}

/** CMPXCHG/XADD; a memory destination is sometimes first loaded into the accumulator to hit "equal". */
function exchangeAdd(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["cmpxchg", "xadd"]);
  const size = anySize(b);
  const d = dest(b, size, 0.5, [0]);
  if (op === "cmpxchg" && r.chance(0.4)) {
    const copy = d.isMem ? d.text : REGS[size][d.reg];
    b.insn(`mov ${REGS[size][0]}, ${copy}`, "setup");
  }
  const lock = d.isMem && r.chance(0.3) ? "lock " : "";
  b.insn(`${lock}${op} ${d.text}, ${b.writableReg(size)}`, op, { writes: ARITH });
}

function cmpxchg8b(b: SequenceBuilder): void {
  const r = b.rng;
  const operand = b.mem(64, { write: true, avoid: [0, 2] });
  if (r.chance(0.5)) {
    // load EDX:EAX from the operand so the compare can succeed
    const inner = operand.slice(operand.indexOf("["));
    b.insn(`mov eax, dword ${inner}`, "setup");
    b.insn(`mov edx, dword ${inner.replace("]", "+4]")}`, "setup");
  }
  const lock = r.chance(0.3) ? "lock " : "";
  b.insn(`${lock}cmpxchg8b ${operand}`, "cmpxchg8b", { writes: ZF });
}

function xlat(b: SequenceBuilder): void {
  const r = b.rng;
  b.setReg(3, DATA_BASE + b.dataOffset(256, false));
  const prefix = r.chance(0.2) ? r.pick(["es ", "ss ", "cs "]) : "";
  b.insn(`${prefix}xlatb`, "xlat");
}

function nop(b: SequenceBuilder): void {
  const r = b.rng;
  const forms = ["nop", "pause", "xchg ax, ax", `nop dword [${REGS[32][r.below(8)]}+${REGS[32][r.pick([0, 1, 2, 3, 5, 6, 7])]}*2+0x10]`, "nop word [eax]"];
  b.insn(r.pick(forms), "nop");
}

function arpl(b: SequenceBuilder): void {
  const d = dest(b, 16);
  b.insn(`arpl ${d.text}, ${b.anyReg(16)}`, "arpl", { writes: ZF });
}

const STRING_OPS = ["movs", "cmps", "scas", "lods", "stos"] as const;
const SUFFIX: Record<Size, string> = { 8: "b", 16: "w", 32: "d" };

function stringOp(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(STRING_OPS);
  const size = anySize(b);
  const step = size / 8;
  const rep = b.mayWrite(32, ECX) && r.chance(0.7);
  const n = rep ? r.pick([0, 1, 2, 3, 7, 16, 33, 64, r.below(40)]) : 1;
  if (r.chance(0.3)) {
    b.df = r.below(2);
    b.insn(b.df ? "std" : "cld", b.df ? "std" : "cld");
  }
  const span = Math.max(n, 1) * step;
  // with DF=1 the pointer starts at the top of the range and walks down
  const pointer = (write: boolean): number => {
    const off = b.dataOffset(span, write);
    return DATA_BASE + (b.df ? off + span - step : off);
  };
  if (op === "movs" || op === "cmps" || op === "lods") b.setReg(6, pointer(false));
  if (op !== "lods") b.setReg(7, pointer(op === "movs" || op === "stos"));
  if (rep) b.setReg(ECX, n);
  let prefix = "";
  if (rep) prefix = op === "cmps" || op === "scas" ? r.pick(["repe ", "repne ", "rep "]) : "rep ";
  const override = (op === "movs" || op === "cmps" || op === "lods") && r.chance(0.2) ? r.pick(["es ", "ss ", "cs ", "ds "]) : "";
  const compares = op === "cmps" || op === "scas";
  b.insn(`${override}${prefix}${op}${SUFFIX[size]}`, op, compares && !(rep && n === 0) ? { writes: ARITH } : {});
}

export const DATA_OPS: readonly Op[] = [
  { name: "mov", weight: 12, emit: mov },
  { name: "movx", weight: 5, emit: movExtend },
  { name: "lea", weight: 6, emit: lea },
  { name: "xchg", weight: 4, emit: xchg },
  { name: "cmpxchg", weight: 6, emit: exchangeAdd },
  { name: "cmpxchg8b", weight: 2, emit: cmpxchg8b },
  { name: "xlat", weight: 1, emit: xlat },
  { name: "nop", weight: 1, emit: nop },
  { name: "arpl", weight: 1, emit: arpl },
  { name: "string", weight: 10, emit: stringOp },
];
