// Inline forms of the block translator: for each handler with one, a generator that emits the
// instruction's code (operands resolved from the decoded slot) with the handler's exact effects
// on registers, memory and the lazy flags.

import type { Handler } from "./cpu.js";
import { Pfx, SEG_SS } from "./decoder.js";
import { type Emitter, type KnownFlags, LZ_ADD, LZ_LOGIC, LZ_SUB, MIN } from "./emitter.js";
import { HANDLERS } from "./handlers/index.js";
import { ALU_NAMES, SHIFT_NAMES } from "./handlers/names.js";

/** Condition code cc from the known lazy record, or null when only the generic evaluation will do. */
function knownCondition(cc: number, k: KnownFlags): string | null {
  const A = "c.lzA", B = "c.lzB", R = "c.lzR";
  const sh = 31 - k.bit;
  const shl = (x: string) => (sh === 0 ? x : `(${x} << ${sh})`);
  const zf = `${shl(R)} === 0`;
  const sf = k.bit === 31 ? `${R} < 0` : `(${R} & ${1 << k.bit}) !== 0`;
  let cf: string, of: string;
  if (k.op === LZ_LOGIC) {
    cf = "false";
    of = "false";
  } else if (k.op === LZ_ADD) {
    cf = `((((${A} & ${B}) | ((${A} | ${B}) & ~${R})) >>> ${k.bit}) & 1) !== 0`;
    of = `((((${A} ^ ${R}) & (${B} ^ ${R})) >>> ${k.bit}) & 1) !== 0`;
  } else {
    cf = `((((~${A} & ${B}) | ((~${A} | ${B}) & ${R})) >>> ${k.bit}) & 1) !== 0`;
    of = `((((${A} ^ ${B}) & (${A} ^ ${R})) >>> ${k.bit}) & 1) !== 0`;
  }
  if (k.keepCF) cf = "(c.flags & 1) !== 0";
  const exactSub = k.op === LZ_SUB && k.exact && !k.keepCF;
  let v: string;
  switch (cc >> 1) {
    case 0: v = of; break;
    case 1: v = exactSub ? `(${shl(A)} ^ ${MIN}) < (${shl(B)} ^ ${MIN})` : cf; break;
    case 2: v = zf; break;
    case 3: v = exactSub ? `(${shl(A)} ^ ${MIN}) <= (${shl(B)} ^ ${MIN})` : k.op === LZ_LOGIC ? zf : `(${cf}) || ${zf}`; break;
    case 4: v = sf; break;
    case 5: v = `PARITY[${R} & 255] !== 0`; break;
    case 6: v = exactSub ? `${shl(A)} < ${shl(B)}` : k.op === LZ_LOGIC ? sf : `(${sf}) !== (${of})`; break;
    default: v = exactSub ? `${shl(A)} <= ${shl(B)}` : k.op === LZ_LOGIC ? `${zf} || ${sf}` : `${zf} || ((${sf}) !== (${of}))`; break;
  }
  return cc & 1 ? `!(${v})` : `(${v})`;
}

/** An inline generator: emits the instruction's code, or returns false to call the handler. */
export type Gen = (g: Emitter, i: number) => boolean;

/**
 * An instruction form of a translation tier (JS here, wasm in wasm/forms.ts): `keepsFlags` when it
 * never changes the arithmetic flags other than through its tier's lazy record.
 */
export interface InstructionForm<G> {
  gen: G;
  ends: boolean;
  keepsFlags: boolean;
}
export type InlineForm = InstructionForm<Gen>;

/** Generators by handler function (aliases of one function share a generator). */
export const GENERATORS: Map<Handler, InlineForm> = buildGenerators();

/** A handler name's size suffix for operand size index s ("", "16", "32"). */
export function sized(s: number): string {
  return s === 2 ? "32" : s === 1 ? "16" : "";
}

function aluBody(op: number, bit: number, g: Emitter): string {
  const lz = (kind: number) => g.lazy(kind, "a", "b", "v", bit, op === 0 || op === 5 || op === 7);
  if (op === 2 || op === 3) g.flagRead = true;
  switch (op) {
    case 0: return `v = (a + b) | 0; ${lz(LZ_ADD)}`;
    case 1: return `v = a | b; ${lz(LZ_LOGIC)}`;
    case 2: return `v = (a + b + getCF(c)) | 0; ${lz(LZ_ADD)}`;
    case 3: return `v = (a - b - getCF(c)) | 0; ${lz(LZ_SUB)}`;
    case 4: return `v = a & b; ${lz(LZ_LOGIC)}`;
    case 6: return `v = a ^ b; ${lz(LZ_LOGIC)}`;
    default: return `v = (a - b) | 0; ${lz(LZ_SUB)}`;
  }
}

/** Condition code cc as an expression. */
function cond(g: Emitter, cc: number): string {
  g.flagRead = true;
  // A memory access earlier in this instruction may have exited to a VMM that changed EFLAGS.
  return (g.known !== null && !g.touched && knownCondition(cc, g.known)) || `condition(c, ${cc})`;
}

function buildGenerators(): Map<Handler, InlineForm> {
  const m = new Map<Handler, InlineForm>();
  let keepsFlags = false;
  const add = (name: string, gen: Gen, ends = false) => {
    const h = HANDLERS[name];
    if (!h) throw new Error(`translate: no handler ${name}`);
    if (!m.has(h)) m.set(h, { gen, ends, keepsFlags });
  };
  const BITS = [7, 15, 31];

  // ALU group.
  for (let op = 0; op < 8; op++) {
    const name = ALU_NAMES[op];
    const write = op !== 7;
    for (const s of [0, 1, 2]) {
      const bit = BITS[s];
      const e = s === 0 ? "Eb" : "Ev", gr = s === 0 ? "Gb" : "Gv", sz = sized(s);
      add(`${name}_${e}${gr}${sz}`, (g, i) => {
        g.emit(`b = ${g.get(s, g.c.dec.reg[i])};`);
        g.modifyE(s, aluBody(op, bit, g), write);
        return true;
      });
      add(`${name}_${e}I${sz}`, (g, i) => {
        g.emit(`b = ${g.c.dec.imm[i]};`);
        g.modifyE(s, aluBody(op, bit, g), write);
        return true;
      });
      add(`${name}_${gr}${e}${sz}`, (g, i) => {
        const n = g.c.dec.reg[i];
        g.emit(`a = ${g.get(s, n)};`);
        g.readE(s, "b");
        g.emit(aluBody(op, bit, g));
        if (write) g.emit(g.set(s, n, "v"));
        return true;
      });
      add(`${name}_${s === 0 ? "ALIb" : "eAXIz" + sz}`, (g, i) => {
        g.emit(`a = ${g.get(s, 0)}; b = ${g.c.dec.imm[i]}; ${aluBody(op, bit, g)}`);
        if (write) g.emit(g.set(s, 0, "v"));
        return true;
      });
    }
  }

  for (const s of [0, 1, 2]) {
    const bit = BITS[s];
    const sz = s === 0 ? "b" : "v" + sized(s);
    add(`inc_E${sz}`, (g) => {
      g.modifyE(s, `v = (a + 1) | 0; ${g.lazyKeepCF(LZ_ADD, "a", "1", "v", bit)}`, true);
      return true;
    });
    add(`dec_E${sz}`, (g) => {
      g.modifyE(s, `v = (a - 1) | 0; ${g.lazyKeepCF(LZ_SUB, "a", "1", "v", bit)}`, true);
      return true;
    });
    add(`not_E${sz}`, (g) => {
      g.modifyE(s, "v = ~a;", true);
      return true;
    });
    add(`neg_E${sz}`, (g) => {
      g.modifyE(s, `v = -a | 0; ${g.lazy(LZ_SUB, "0", "a", "v", bit, true)}`, true);
      return true;
    });
    add(s === 0 ? "test_EbI" : `test_EvI${sized(s)}`, (g, i) => {
      g.readE(s, "a");
      g.emit(`v = a & ${g.c.dec.imm[i]}; ${g.lazy(LZ_LOGIC, "v", "0", "v", bit)}`);
      return true;
    });
    add(s === 0 ? "test_ALIb" : `test_eAXIz${sized(s)}`, (g, i) => {
      g.emit(`v = ${g.get(s, 0)} & ${g.c.dec.imm[i]}; ${g.lazy(LZ_LOGIC, "v", "0", "v", bit)}`);
      return true;
    });
    add(s === 0 ? "test_EbGb" : `test_EvGv${sized(s)}`, (g, i) => {
      g.readE(s, "a");
      g.emit(`v = a & ${g.get(s, g.c.dec.reg[i])}; ${g.lazy(LZ_LOGIC, "v", "0", "v", bit)}`);
      return true;
    });
    for (let op = 0; op < 8; op++) {
      add(`${SHIFT_NAMES[op]}_E${sz}`, (g, i) => genShift(g, i, op, s));
    }
  }
  for (const s of [1, 2]) {
    const bit = BITS[s];
    const sz = sized(s);
    add(`inc_r${sz}`, (g, i) => {
      const n = g.c.dec.opc[i] & 7;
      g.emit(`a = ${g.get(s, n)}; v = (a + 1) | 0; ${g.lazyKeepCF(LZ_ADD, "a", "1", "v", bit)} ${g.set(s, n, "v")}`);
      return true;
    });
    add(`dec_r${sz}`, (g, i) => {
      const n = g.c.dec.opc[i] & 7;
      g.emit(`a = ${g.get(s, n)}; v = (a - 1) | 0; ${g.lazyKeepCF(LZ_SUB, "a", "1", "v", bit)} ${g.set(s, n, "v")}`);
      return true;
    });
  }

  // Moves and the rest leave the flags alone.
  keepsFlags = true;
  for (const s of [0, 1, 2]) {
    const e = s === 0 ? "Eb" : "Ev", gr = s === 0 ? "Gb" : "Gv", sz = sized(s);
    add(`mov_${e}${gr}${sz}`, (g, i) => {
      g.writeE(s, g.get(s, g.c.dec.reg[i]));
      return true;
    });
    add(`mov_${gr}${e}${sz}`, (g, i) => {
      g.readE(s, "v");
      g.emit(g.set(s, g.c.dec.reg[i], "v"));
      return true;
    });
    add(s === 0 ? "mov_EbIb" : `mov_EvIz${sz}`, (g, i) => {
      g.writeE(s, String(g.c.dec.imm[i]));
      return true;
    });
    add(s === 0 ? "mov_r8Ib" : `mov_rIv${sz}`, (g, i) => {
      g.emit(g.set(s, g.c.dec.opc[i] & 7, String(g.c.dec.imm[i])));
      return true;
    });
    const moff = (g: Emitter, i: number) => String(g.c.dec.disp[i] & g.c.dec.amask[i]);
    add(s === 0 ? "mov_ALOb" : `mov_eAXOv${sz}`, (g, i) => {
      g.read(s, g.c.dec.seg[i], moff(g, i), "v");
      g.emit(g.set(s, 0, "v"));
      return true;
    });
    add(s === 0 ? "mov_ObAL" : `mov_OveAX${sz}`, (g, i) => {
      g.write(s, g.c.dec.seg[i], moff(g, i), g.get(s, 0));
      return true;
    });
  }
  for (const s of [1, 2]) {
    const sz = sized(s);
    add(`lea${sz}`, (g, i) => {
      if (g.c.dec.mod3[i]) return false;
      g.emit(g.set(s, g.c.dec.reg[i], g.ea()));
      return true;
    });
    add(`movzx_GvEb${sz}`, (g, i) => {
      g.readE(0, "v");
      g.emit(g.set(s, g.c.dec.reg[i], "v"));
      return true;
    });
    add(`movzx_GvEw${sz}`, (g, i) => {
      g.readE(1, "v");
      g.emit(g.set(s, g.c.dec.reg[i], "v"));
      return true;
    });
    add(`movsx_GvEb${sz}`, (g, i) => {
      g.readE(0, "v");
      g.emit(g.set(s, g.c.dec.reg[i], "(v << 24) >> 24"));
      return true;
    });
    add(`movsx_GvEw${sz}`, (g, i) => {
      g.readE(1, "v");
      g.emit(g.set(s, g.c.dec.reg[i], "(v << 16) >> 16"));
      return true;
    });
    add(`xchg_rAX${sz}`, (g, i) => {
      const n = g.c.dec.opc[i] & 7;
      g.emit(`v = ${g.get(s, n)}; ${g.set(s, n, g.get(s, 0))} ${g.set(s, 0, "v")}`);
      return true;
    });
    add(`cmov${sz}`, (g, i) => {
      g.readE(s, "v");
      g.emit(`if (${cond(g, g.c.dec.opc[i] & 15)}) ${g.set(s, g.c.dec.reg[i], "v")}`);
      return true;
    });
  }
  add("setcc", (g, i) => {
    const v = `(${cond(g, g.c.dec.opc[i] & 15)} ? 1 : 0)`;
    const d = g.c.dec;
    if (d.mod3[i]) {
      g.emit(g.set(0, d.rm[i], v));
    } else {
      g.emit(`v = ${v};`);
      g.write(0, d.seg[i], g.ea(), "v");
    }
    return true;
  });
  add("nop", () => true);
  add("nop_Ev", () => true);
  add("cbw16", (g) => (g.emit(g.set(1, 0, `(${g.get(0, 0)} << 24) >> 24`)), true));
  add("cbw32", (g) => (g.emit(g.set(2, 0, `(${g.get(1, 0)} << 16) >> 16`)), true));
  add("cwd16", (g) => (g.emit(g.set(1, 2, `${g.get(1, 0)} & 32768 ? 65535 : 0`)), true));
  add("cwd32", (g) => (g.emit(g.set(2, 2, `${g.get(2, 0)} >> 31`)), true));
  add("cld", (g) => (g.emit("c.flags &= -1025;"), true));
  add("std", (g) => (g.emit("c.flags |= 1024;"), true));

  // Multiply.
  keepsFlags = false;
  add("imul_GvEv32", (g, i) => genImul32(g, i, g.get(2, g.c.dec.reg[i])));
  add("imul_GvEvIz32", (g, i) => genImul32(g, i, String(g.c.dec.imm[i])));
  add("imul_GvEv16", (g, i) => genImul16(g, i, g.get(1, g.c.dec.reg[i])));
  add("imul_GvEvIz16", (g, i) => genImul16(g, i, String(g.c.dec.imm[i])));

  // Stack.
  keepsFlags = true;
  add("push_r32", (g, i) => (push(g, 2, g.get(2, g.c.dec.opc[i] & 7)), true));
  add("push_r16", (g, i) => (push(g, 1, g.get(1, g.c.dec.opc[i] & 7)), true));
  add("push_Iz32", (g, i) => (push(g, 2, String(g.c.dec.imm[i])), true));
  add("push_Iz16", (g, i) => (push(g, 1, String(g.c.dec.imm[i])), true));
  add("pop_r32", (g, i) => {
    g.emit(`sp = ${stackPointer(g)};`);
    g.read(2, SEG_SS, "sp", "v");
    g.emit(`${setStackPointer(g, "sp + 4")} ${g.set(2, g.c.dec.opc[i] & 7, "v")}`);
    return true;
  });
  add("pop_r16", (g, i) => {
    g.emit(`sp = ${stackPointer(g)};`);
    g.read(1, SEG_SS, "sp", "v");
    g.emit(`${setStackPointer(g, "sp + 2")} ${g.set(1, g.c.dec.opc[i] & 7, "v")}`);
    return true;
  });
  add("leave32", (g) => {
    g.emit(`sp = c.stack32 ? ${g.get(2, 5)} : ${g.get(1, 5)};`);
    g.read(2, SEG_SS, "sp", "v");
    g.emit(`${setStackPointer(g, "sp + 4")} ${g.set(2, 5, "v")}`);
    return true;
  });

  // Control transfer (block enders and conditional exits).
  add("jcc_Jb", (g, i) => {
    const d = g.c.dec;
    jcc(g, d.opc[i] & 15, d.imm[i], (d.pfx[i] & Pfx.O32) !== 0);
    return true;
  });
  add("jcc_Jz16", (g, i) => (jcc(g, g.c.dec.opc[i] & 15, g.c.dec.imm[i], false), true));
  add("jcc_Jz32", (g, i) => (jcc(g, g.c.dec.opc[i] & 15, g.c.dec.imm[i], true), true));
  for (const o32 of [false, true]) {
    const sz = o32 ? "32" : "16";
    add(`jmp_Jb${sz}`, (g, i) => {
      g.branch(g.c.dec.imm[i], o32);
      return true;
    }, true);
    add(`call_Jz${sz}`, (g, i) => {
      g.jump(`${g.fall} + ${g.c.dec.imm[i]}`, o32);
      push(g, o32 ? 2 : 1, g.fall, "t");
      g.leave("t");
      return true;
    }, true);
    add(`ret${sz}`, (g) => {
      g.emit(`sp = ${stackPointer(g)};`);
      g.read(o32 ? 2 : 1, SEG_SS, "sp", "v");
      g.jump("v", o32);
      g.emit(setStackPointer(g, `sp + ${o32 ? 4 : 2}`));
      g.leave("t");
      return true;
    }, true);
  }
  return m;
}

/** ESP or SP, as the stack size says. */
function stackPointer(g: Emitter): string {
  return `c.stack32 ? ${g.get(2, 4)} : ${g.get(1, 4)}`;
}

/** The statement setting ESP or SP (as the stack size says) to `val`. */
function setStackPointer(g: Emitter, val: string): string {
  return `if (c.stack32) ${g.set(2, 4, val)} else ${g.set(1, 4, val)}`;
}

/** PUSH; `next` is the next EIP a CALL has already set (a fault leaves it in c.nextEip). */
function push(g: Emitter, s: number, val: string, next: string | null = null): void {
  const n = s === 2 ? 4 : 2;
  g.emit(`w = ${val}; sp = c.stack32 ? (${g.get(2, 4)} - ${n}) | 0 : (${g.get(1, 4)} - ${n}) & 65535;`);
  g.nextOverride = next;
  g.write(s, SEG_SS, "sp", "w");
  g.nextOverride = null;
  g.emit(setStackPointer(g, "sp"));
}

function jcc(g: Emitter, cc: number, imm: number, o32: boolean): void {
  const k = g.forwardTarget(imm, o32);
  if (k >= 0) {
    g.skipTo(k, cond(g, cc));
    return;
  }
  g.emit(`if (${cond(g, cc)}) {`);
  g.branch(imm, o32);
  g.emit("}");
}

function genImul32(g: Emitter, i: number, b: string): boolean {
  g.readE(2, "a");
  g.emit(`b = ${b}; v = Math.imul(a, b); ${g.set(2, g.c.dec.reg[i], "v")}`);
  g.emit(g.setArith("(a * b !== v ? 2049 : 0) | (v < 0 ? 128 : 0) | (v === 0 ? 64 : 0) | PARITY[v & 255]"));
  return true;
}

function genImul16(g: Emitter, i: number, b: string): boolean {
  g.readE(1, "a");
  g.emit(`v = ((a << 16) >> 16) * ((${b} << 16) >> 16); ${g.set(1, g.c.dec.reg[i], "v")}`);
  g.emit("mulFlags(c, v !== (v << 16) >> 16, v, 15);");
  g.flagWrite = true;
  return true;
}

/** Shifts and rotates; 32-bit SHL/SHR/SAR get flag code inline, the rest call the shared helper. */
function genShift(g: Emitter, i: number, op: number, s: number): boolean {
  const d = g.c.dec;
  const o = d.opc[i] & 0xfe;
  const bit = [7, 15, 31][s];
  if (o === 0xc0 || o === 0xd0) {
    const count = o === 0xc0 ? d.imm[i] & 0xff : 1;
    if ((count & 31) === 0) return false;
    const n = count & 31;
    if (s === 2 && (op === 4 || op === 6 || op === 5 || op === 7)) {
      g.modifyE(2, shift32(g, op, String(n), String(n - 1), String(32 - n)), true);
    } else {
      g.modifyE(s, `v = shift(c, ${op}, a, ${count}, ${bit});`, true);
      g.flagRead = true;
    }
    return true;
  }
  // Count in CL: a zero count only reads the operand.
  g.emit(`b = ${g.get(0, 1)} & 31; if (b === 0) {`);
  g.readE(s, "a");
  g.emit("} else {");
  if (s === 2 && (op === 4 || op === 6 || op === 5 || op === 7)) {
    g.modifyE(2, shift32(g, op, "b", "(b - 1)", "(32 - b)"), true);
  } else {
    g.modifyE(s, `v = shift(c, ${op}, a, b, ${bit});`, true);
    g.flagRead = true;
  }
  g.emit("}");
  g.flagWrite = false; // not when the count is 0
  return true;
}

/** Body of a 32-bit SHL/SHR/SAR by a count of 1-31 (a -> v, eager flags as alu.ts computes them). */
function shift32(g: Emitter, op: number, n: string, n1: string, rest: string): string {
  const szp = "(v < 0 ? 128 : 0) | (v === 0 ? 64 : 0) | PARITY[v & 255]";
  if (op === 5) {
    return `v = (a >>> ${n}) | 0; ${g.setArith(`${szp} | ((a >>> ${n1}) & 1) | (a < 0 ? 2048 : 0)`)}`;
  }
  if (op === 7) {
    return `v = a >> ${n}; ${g.setArith(`${szp} | ((a >> ${n1}) & 1)`)}`;
  }
  return `v = a << ${n}; f = (a >>> ${rest}) & 1; ${g.setArith(`${szp} | f | (((v >>> 31) ^ f) ? 2048 : 0)`)}`;
}
