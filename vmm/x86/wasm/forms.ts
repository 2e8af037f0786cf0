// The wasm tier's instruction forms: for each handler with one, a generator that emits the
// instruction's wasm with the handler's exact effects (the JS tier's inline-forms.ts, in wasm).

import { Pfx, SEG_SS } from "../decoder.js";
import { HANDLERS } from "../handlers/index.js";
import { ALU_NAMES, SHIFT_NAMES } from "../handlers/names.js";
import { sized, type InstructionForm } from "../inline-forms.js";
import { Op, I32 } from "./encoder.js";
import { IMPORT_HANDLER, W_RDTSC_SLOW, W_TSC } from "./runtime.js";
import {
  A, B, F, I64_ADD, I64_EXTEND_S, I64_EXTEND_U, I64_SHR_U, I64_TRUNC_F64_S, I32_WRAP_I64, P_R0, I64_MUL, I64_NE, LZ_ADD, LZ_LOGIC, LZ_SUB, S32, SP, T, V, W_LOCAL, type WasmEmitter,
} from "./emitter.js";

export type WasmGen = (g: WasmEmitter, i: number) => boolean;
export type WasmForm = InstructionForm<WasmGen>;

export const FORMS: Map<unknown, WasmForm> = buildForms();


function buildForms(): Map<unknown, WasmForm> {
  const m = new Map<unknown, WasmForm>();
  let keepsFlags = false;
  const add = (name: string, gen: WasmGen, ends = false) => {
    const h = HANDLERS[name];
    if (!h) throw new Error(`wasm tier: no handler ${name}`);
    if (!m.has(h)) m.set(h, { gen, ends, keepsFlags });
  };
  const BITS = [7, 15, 31];

  /** v = a op b (locals), with the lazy record. */
  const alu = (g: WasmEmitter, op: number, bit: number): void => {
    const b = g.b;
    const exact = op === 0 || op === 5 || op === 7;
    switch (op) {
      case 0: b.get(A).get(B).op(Op.i32Add).set(V); g.lazy(LZ_ADD, A, B, 0, V, bit, exact); break;
      case 1: b.get(A).get(B).op(Op.i32Or).set(V); g.lazy(LZ_LOGIC, A, B, 0, V, bit); break;
      case 2: b.get(A).get(B).op(Op.i32Add); g.pushCF(); b.op(Op.i32Add).set(V); g.lazy(LZ_ADD, A, B, 0, V, bit); break;
      case 3: b.get(A).get(B).op(Op.i32Sub); g.pushCF(); b.op(Op.i32Sub).set(V); g.lazy(LZ_SUB, A, B, 0, V, bit); break;
      case 4: b.get(A).get(B).op(Op.i32And).set(V); g.lazy(LZ_LOGIC, A, B, 0, V, bit); break;
      case 6: b.get(A).get(B).op(Op.i32Xor).set(V); g.lazy(LZ_LOGIC, A, B, 0, V, bit); break;
      default: b.get(A).get(B).op(Op.i32Sub).set(V); g.lazy(LZ_SUB, A, B, 0, V, bit, exact); break;
    }
  };

  for (let op = 0; op < 8; op++) {
    const name = ALU_NAMES[op];
    const write = op !== 7;
    for (const s of [0, 1, 2]) {
      const bit = BITS[s];
      const e = s === 0 ? "Eb" : "Ev", gr = s === 0 ? "Gb" : "Gv", sz = sized(s);
      add(`${name}_${e}${gr}${sz}`, (g, i) => {
        g.get(s, g.c.dec.reg[i]);
        g.b.set(B);
        return g.modifyE(s, () => alu(g, op, bit), write);
      });
      add(`${name}_${e}I${sz}`, (g, i) => {
        g.b.i32(g.c.dec.imm[i]).set(B);
        return g.modifyE(s, () => alu(g, op, bit), write);
      });
      add(`${name}_${gr}${e}${sz}`, (g, i) => {
        const n = g.c.dec.reg[i];
        g.get(s, n);
        g.b.set(A);
        if (!g.readE(s, B)) return false;
        alu(g, op, bit);
        if (write) g.set(s, n, V);
        return true;
      });
      add(`${name}_${s === 0 ? "ALIb" : "eAXIz" + sz}`, (g, i) => {
        g.get(s, 0);
        g.b.set(A).i32(g.c.dec.imm[i]).set(B);
        alu(g, op, bit);
        if (write) g.set(s, 0, V);
        return true;
      });
    }
  }
  for (const s of [0, 1, 2]) {
    const bit = BITS[s];
    const sz = s === 0 ? "b" : "v" + sized(s);
    add(`inc_E${sz}`, (g) => g.modifyE(s, () => {
      g.b.get(A).i32(1).op(Op.i32Add).set(V);
      g.lazyKeepCF(LZ_ADD, A, 1, V, bit);
    }, true));
    add(`dec_E${sz}`, (g) => g.modifyE(s, () => {
      g.b.get(A).i32(1).op(Op.i32Sub).set(V);
      g.lazyKeepCF(LZ_SUB, A, 1, V, bit);
    }, true));
    add(`not_E${sz}`, (g) => g.modifyE(s, () => void g.b.get(A).i32(-1).op(Op.i32Xor).set(V), true));
    add(`neg_E${sz}`, (g) => g.modifyE(s, () => {
      g.b.i32(0).get(A).op(Op.i32Sub).set(V).i32(0).set(F);
      g.lazy(LZ_SUB, F, A, 0, V, bit, true);
    }, true));
    const test = (g: WasmEmitter) => {
      g.b.i32(0).set(F);
      g.lazy(LZ_LOGIC, V, F, 0, V, bit);
    };
    add(s === 0 ? "test_EbI" : `test_EvI${sized(s)}`, (g, i) => {
      if (!g.readE(s, A)) return false;
      g.b.get(A).i32(g.c.dec.imm[i]).op(Op.i32And).set(V);
      test(g);
      return true;
    });
    add(s === 0 ? "test_ALIb" : `test_eAXIz${sized(s)}`, (g, i) => {
      g.get(s, 0);
      g.b.i32(g.c.dec.imm[i]).op(Op.i32And).set(V);
      test(g);
      return true;
    });
    add(s === 0 ? "test_EbGb" : `test_EvGv${sized(s)}`, (g, i) => {
      if (!g.readE(s, A)) return false;
      g.b.get(A);
      g.get(s, g.c.dec.reg[i]);
      g.b.op(Op.i32And).set(V);
      test(g);
      return true;
    });
    for (const op of [4, 5, 6, 7]) {
      add(`${SHIFT_NAMES[op]}_E${sz}`, (g, i) => shiftImm(g, i, op, s));
    }
  }
  for (const s of [1, 2]) {
    const bit = BITS[s];
    const sz = sized(s);
    add(`inc_r${sz}`, (g, i) => {
      const n = g.c.dec.opc[i] & 7;
      g.get(s, n);
      g.b.set(A).get(A).i32(1).op(Op.i32Add).set(V);
      g.lazyKeepCF(LZ_ADD, A, 1, V, bit);
      g.set(s, n, V);
      return true;
    });
    add(`dec_r${sz}`, (g, i) => {
      const n = g.c.dec.opc[i] & 7;
      g.get(s, n);
      g.b.set(A).get(A).i32(1).op(Op.i32Sub).set(V);
      g.lazyKeepCF(LZ_SUB, A, 1, V, bit);
      g.set(s, n, V);
      return true;
    });
  }

  keepsFlags = true;
  for (const s of [0, 1, 2]) {
    const e = s === 0 ? "Eb" : "Ev", gr = s === 0 ? "Gb" : "Gv", sz = sized(s);
    add(`mov_${e}${gr}${sz}`, (g, i) => {
      g.get(s, g.c.dec.reg[i]);
      g.b.set(W_LOCAL);
      return g.writeE(s, W_LOCAL);
    });
    add(`mov_${gr}${e}${sz}`, (g, i) => {
      if (!g.readE(s, V)) return false;
      g.set(s, g.c.dec.reg[i], V);
      return true;
    });
    add(s === 0 ? "mov_EbIb" : `mov_EvIz${sz}`, (g, i) => {
      g.b.i32(g.c.dec.imm[i]).set(W_LOCAL);
      return g.writeE(s, W_LOCAL);
    });
    add(s === 0 ? "mov_r8Ib" : `mov_rIv${sz}`, (g, i) => {
      g.b.i32(g.c.dec.imm[i]).set(V);
      g.set(s, g.c.dec.opc[i] & 7, V);
      return true;
    });
  }
  for (const s of [1, 2]) {
    const sz = sized(s);
    add(`lea${sz}`, (g, i) => {
      if (g.c.dec.mod3[i] || !g.ea()) return false;
      g.b.set(V);
      g.set(s, g.c.dec.reg[i], V);
      return true;
    });
    add(`movzx_GvEb${sz}`, (g, i) => {
      if (!g.readE(0, V)) return false;
      g.set(s, g.c.dec.reg[i], V);
      return true;
    });
    add(`movzx_GvEw${sz}`, (g, i) => {
      if (!g.readE(1, V)) return false;
      g.set(s, g.c.dec.reg[i], V);
      return true;
    });
    add(`movsx_GvEb${sz}`, (g, i) => {
      if (!g.readE(0, V)) return false;
      g.b.get(V).op(Op.i32Extend8s).set(V);
      g.set(s, g.c.dec.reg[i], V);
      return true;
    });
    add(`movsx_GvEw${sz}`, (g, i) => {
      if (!g.readE(1, V)) return false;
      g.b.get(V).op(Op.i32Extend16s).set(V);
      g.set(s, g.c.dec.reg[i], V);
      return true;
    });
  }
  add("nop", () => true);
  add("nop_Ev", () => true);
  // SETcc and CMOVcc keep the flags: conditions read the lazy locals (the record known here when
  // nothing touched memory before, as for Jcc).
  add("setcc", (g, i) => {
    g.cond(g.c.dec.opc[i] & 15);
    g.b.set(W_LOCAL);
    return g.writeE(0, W_LOCAL);
  });
  for (const s of [1, 2]) {
    add(`cmov${sized(s)}`, (g, i) => {
      // The source is read (and may fault) whatever the condition, as the handler does.
      if (!g.readE(s, V)) return false;
      g.cond(g.c.dec.opc[i] & 15);
      g.open(Op.if);
      g.set(s, g.c.dec.reg[i], V);
      g.close();
      return true;
    });
  }

  add("rdtsc", (g, i) => {
    const b = g.b;
    g.touched = true;
    b.i32(0).mem(Op.i32Load, 2, g.word(W_RDTSC_SLOW));
    g.open(Op.if);
    // The handler: #GP, or a TSC offset the int64 sum below might not match exactly.
    g.spill();
    b.i32(i);
    g.syncArgs();
    b.idx(Op.call, IMPORT_HANDLER).op(Op.drop);
    g.reload();
    b.op(Op.else);
    // EDX:EAX = retired + TSC offset, the retired count the interpreter has at this instruction.
    const tsc = () => {
      b.get(P_R0).i32(g.k).op(Op.i32Add).op(I64_EXTEND_U);
      b.i32(0).mem(Op.f64Load, 3, g.word(W_TSC)).op(I64_TRUNC_F64_S, I64_ADD);
    };
    tsc();
    b.op(I32_WRAP_I64).set(V);
    g.set(2, 0, V);
    tsc();
    b.op(Op.i64Const, 32, I64_SHR_U, I32_WRAP_I64).set(V);
    g.set(2, 2, V);
    g.close();
    return true;
  });

  keepsFlags = false;
  add("imul_GvEv32", (g, i) => imul32(g, i, false));
  add("imul_GvEvIz32", (g, i) => imul32(g, i, true));

  keepsFlags = true;
  add("push_r32", (g, i) => {
    g.get(2, g.c.dec.opc[i] & 7);
    g.b.set(W_LOCAL);
    return push32(g);
  });
  add("push_Iz32", (g, i) => {
    g.b.i32(g.c.dec.imm[i]).set(W_LOCAL);
    return push32(g);
  });
  add("pop_r32", (g, i) => {
    g.stackPointer();
    g.b.tee(SP);
    g.read(2, SEG_SS, V);
    g.b.get(SP).i32(4).op(Op.i32Add).set(F);
    g.setStackPointer(F);
    g.set(2, g.c.dec.opc[i] & 7, V);
    return true;
  });
  add("jcc_Jb", (g, i) => g.jcc(g.c.dec.opc[i] & 15, g.c.dec.imm[i], (g.c.dec.pfx[i] & Pfx.O32) !== 0));
  add("jcc_Jz32", (g, i) => g.jcc(g.c.dec.opc[i] & 15, g.c.dec.imm[i], true));
  add("jmp_Jb32", (g, i) => (g.branch(g.c.dec.imm[i]), true), true);
  add("call_Jz32", (g, i) => {
    g.pushFall();
    g.b.i32(g.c.dec.imm[i]).op(Op.i32Add);
    g.jump();
    g.pushFall();
    g.b.set(W_LOCAL);
    g.nextOverride = T;
    const ok = push32(g);
    g.nextOverride = null;
    g.link(g.k + 1);
    return ok;
  }, true);
  add("ret32", (g) => {
    g.stackPointer();
    g.b.tee(SP);
    g.read(2, SEG_SS, V);
    g.b.get(V);
    g.jump();
    g.b.get(SP).i32(4).op(Op.i32Add).set(F);
    g.setStackPointer(F);
    g.link(g.k + 1);
    return true;
  }, true);
  return m;
}

function push32(g: WasmEmitter): boolean {
  const b = g.b;
  b.get(S32);
  b.op(Op.if, I32);
  g.get(2, 4);
  b.i32(4).op(Op.i32Sub);
  b.op(Op.else);
  g.get(1, 4);
  b.i32(4).op(Op.i32Sub).i32(0xffff).op(Op.i32And);
  b.op(Op.end);
  b.tee(SP);
  g.write(2, SEG_SS, W_LOCAL);
  g.setStackPointer(SP);
  return true;
}

function imul32(g: WasmEmitter, i: number, immediate: boolean): boolean {
  const b = g.b;
  if (!g.readE(2, A)) return false;
  if (immediate) b.i32(g.c.dec.imm[i]).set(B);
  else {
    g.get(2, g.c.dec.reg[i]);
    b.set(B);
  }
  b.get(A).get(B).op(Op.i32Mul).set(V);
  g.set(2, g.c.dec.reg[i], V);
  // CF = OF = the full product differs from the truncated one.
  b.get(A).op(I64_EXTEND_S).get(B).op(I64_EXTEND_S).op(I64_MUL).get(V).op(I64_EXTEND_S).op(I64_NE).i32(2049).op(Op.i32Mul);
  g.szp32(V);
  b.op(Op.i32Or);
  g.setArith();
  return true;
}

/** SHL/SHR/SAR by a count in the instruction (alu.ts shift, with the JS tier's 32-bit formulas). */
function shiftImm(g: WasmEmitter, i: number, op: number, s: number): boolean {
  const d = g.c.dec;
  const o = d.opc[i] & 0xfe;
  if (o !== 0xc0 && o !== 0xd0) return false;
  const count = (o === 0xc0 ? d.imm[i] & 0xff : 1) & 31;
  if (count === 0) return false;
  const bit = [7, 15, 31][s], w = bit + 1, mask = bit === 31 ? -1 : (1 << w) - 1;
  const b = g.b;
  return g.modifyE(s, () => {
    // v, then the flags value on the stack.
    if (op === 4 || op === 6) {
      if (count < 32) b.get(A).i32(count).op(Op.i32Shl).i32(mask).op(Op.i32And).set(V);
      else b.i32(0).set(V);
      if (count <= w) b.get(A).i32(mask).op(Op.i32And).i32(w - count).op(Op.i32ShrU).i32(1).op(Op.i32And).set(F);
      else b.i32(0).set(F);
      szp(g, bit);
      b.get(F).op(Op.i32Or);
      b.get(V).i32(bit).op(Op.i32ShrU).i32(1).op(Op.i32And).get(F).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
    } else if (op === 5) {
      b.get(A).i32(mask).op(Op.i32And).set(A);
      if (count >= w) b.i32(0).set(V);
      else b.get(A).i32(count).op(Op.i32ShrU).set(V);
      szp(g, bit);
      if (count <= w) b.get(A).i32(count - 1).op(Op.i32ShrU).i32(1).op(Op.i32And).op(Op.i32Or);
      b.get(A).i32(bit).op(Op.i32ShrU).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
    } else {
      const up = 31 - bit;
      b.get(A).i32(up).op(Op.i32Shl).i32(up).op(Op.i32ShrS).set(F);
      b.get(F).i32(Math.min(count, 31)).op(Op.i32ShrS).i32(mask).op(Op.i32And).set(V);
      szp(g, bit);
      b.get(F).i32(Math.min(count - 1, 31)).op(Op.i32ShrS).i32(1).op(Op.i32And).op(Op.i32Or);
    }
    g.setArith();
  }, true);
}

/** Push SF|ZF|PF of local V with sign bit `bit` (flags.ts szp). */
function szp(g: WasmEmitter, bit: number): void {
  const b = g.b;
  b.get(V).i32(bit).op(Op.i32ShrU).i32(1).op(Op.i32And).i32(7).op(Op.i32Shl);
  b.get(V).i32(31 - bit).op(Op.i32Shl).op(Op.i32Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
  g.parity(V);
  b.op(Op.i32Or);
}
