// Generator ops: shifts and rotates, SHLD/SHRD, BT*, BSF/BSR, BSWAP, SETcc, CMOVcc.
import { AF, CF, OF, PF, SF, ZF } from "../layout.js";
import { ECX, type FlagEffect, REGS, type SequenceBuilder, type Size } from "./builder.js";
import { CONDITIONS, type Op, anySize, db, dest, source, wideSize } from "./operands.js";
import { shiftCount } from "./values.js";

const SHIFTS = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"] as const;
type Shift = (typeof SHIFTS)[number];

/**
 * Flags of a shift or rotate by `count` (SDM: the count is masked to 5 bits; a masked count of
 * 0 changes nothing; OF is defined only for a masked count of 1; AF is undefined for shifts;
 * SHL/SHR leave CF undefined when the count reaches the operand width).
 */
export function shiftEffect(op: Shift, size: Size, count: number): FlagEffect {
  const m = count & 31;
  const rc = op === "rcl" || op === "rcr";
  if (m === 0) return { reads: rc ? CF : 0 };
  const of = m === 1 ? { writes: OF, undefined: 0 } : { writes: 0, undefined: OF };
  if (op === "rol" || op === "ror" || rc) return { reads: rc ? CF : 0, writes: CF | of.writes, undefined: of.undefined };
  const cfUndefined = op !== "sar" && size < 32 && m >= size;
  return {
    writes: SF | ZF | PF | (cfUndefined ? 0 : CF) | of.writes,
    undefined: AF | of.undefined | (cfUndefined ? CF : 0),
  };
}

/** Loads CL with `count` when ECX may be written; returns whether the CL form can be used. */
function loadCount(b: SequenceBuilder, count: number): boolean {
  if (!b.mayWrite(32, ECX)) return false;
  b.insn(`mov cl, ${count}`, "setup");
  return true;
}

function shift(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(SHIFTS);
  const size = anySize(b);
  let count = shiftCount(r, size);
  const form = r.below(10);
  if (form < 4 && loadCount(b, count)) {
    const d = dest(b, size, 0.3, [ECX]);
    b.insn(`${op} ${d.text}, cl`, op, shiftEffect(op, size, count));
  } else if (form < 6) {
    count = 1;
    const d = dest(b, size, 0.3);
    b.insn(`${op} ${d.text}, 1`, op, shiftEffect(op, size, 1));
  } else if (form < 9) {
    const d = dest(b, size, 0.3);
    b.insn(`${op} ${d.text}, ${count}`, op, shiftEffect(op, size, count));
  } else {
    // SAL's undocumented /6 encoding (D0/D1/C0/C1 /6 act as SHL)
    const reg = b.writableIndex(size);
    const wide = size !== 8 ? 1 : 0;
    const bytes = [...(size === 16 ? [0x66] : []), 0xc0 | wide, 0xf0 | reg, count];
    b.insn(db(bytes, `sal ${REGS[size][reg]}, ${count} (/6 alias)`), "sal", shiftEffect("sal", size, count));
  }
}

function doubleShift(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["shld", "shrd"]);
  const size = wideSize(b);
  // a masked count above the operand size leaves result and flags undefined: never generate it
  let count = shiftCount(r, size);
  if ((count & 31) > size) count = r.pick([0, 1, size, size - 1, r.below(size)]);
  const effect = shiftEffect("shl", 32, count); // SHLD/SHRD: CF SF ZF PF defined, AF undefined, OF if 1
  const useCl = r.chance(0.4) && loadCount(b, count);
  const d = dest(b, size, 0.3, [ECX]);
  const s = REGS[size][r.below(8)];
  b.insn(`${op} ${d.text}, ${s}, ${useCl ? "cl" : count}`, op, effect);
}

const BT_EFFECT = { writes: CF, undefined: OF | SF | AF | PF };

function bitTest(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["bt", "bts", "btr", "btc"]);
  const size = wideSize(b);
  const writes = op !== "bt";
  const form = r.below(3);
  if (form === 0) {
    const d = writes ? dest(b, size) : source(b, size);
    const lock = d.isMem && writes && r.chance(0.2) ? "lock " : "";
    b.insn(`${lock}${op} ${d.text}, ${r.below(256)}`, op, BT_EFFECT);
  } else if (form === 1) {
    const d = writes ? b.writableReg(size) : b.anyReg(size);
    b.insn(`${op} ${d}, ${b.anyReg(size)}`, op, BT_EFFECT);
  } else {
    // memory bit string with a signed register offset: the access may move ±32 bytes
    const offsetReg = b.writableIndex(32);
    const operand = b.mem(size, { write: writes, margin: 48, avoid: [offsetReg] });
    b.setReg(offsetReg, r.range(-256, 255));
    const lock = writes && r.chance(0.2) ? "lock " : "";
    b.insn(`${lock}${op} ${operand}, ${REGS[size][offsetReg]}`, op, BT_EFFECT);
  }
}

function bitScan(b: SequenceBuilder): void {
  const r = b.rng;
  const op = r.pick(["bsf", "bsr"]);
  const size = wideSize(b);
  const s = source(b, size);
  const d = b.writableIndex(size);
  b.insn(`${op} ${REGS[size][d]}, ${s.text}`, op, { writes: ZF, undefined: CF | OF | SF | AF | PF });
  // the destination is undefined for a zero source (ZF=1): overwrite it then
  const other = (d + 1 + r.below(7)) % 8;
  b.insn(`cmovz ${REGS[size][d]}, ${REGS[size][other]}`, "cmovcc", { reads: ZF });
}

function bswap(b: SequenceBuilder): void {
  b.insn(`bswap ${b.writableReg(32)}`, "bswap");
}

function setcc(b: SequenceBuilder): void {
  const c = b.rng.pick(CONDITIONS);
  const d = dest(b, 8);
  b.insn(`set${c.cc} ${d.text}`, "setcc", { reads: c.reads });
}

function cmovcc(b: SequenceBuilder): void {
  const c = b.rng.pick(CONDITIONS);
  const size = wideSize(b);
  const s = source(b, size);
  b.insn(`cmov${c.cc} ${b.writableReg(size)}, ${s.text}`, "cmovcc", { reads: c.reads });
}

export const BIT_OPS: readonly Op[] = [
  { name: "shift", weight: 16, emit: shift },
  { name: "shld", weight: 5, emit: doubleShift },
  { name: "bt", weight: 6, emit: bitTest },
  { name: "bsf", weight: 4, emit: bitScan },
  { name: "bswap", weight: 2, emit: bswap },
  { name: "setcc", weight: 5, emit: setcc },
  { name: "cmovcc", weight: 5, emit: cmovcc },
];
