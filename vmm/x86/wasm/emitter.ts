// The wasm tier's emitter: per-instruction state (position, sync, what is known of the flags),
// operand and memory access code with the inline TLB fast path over the arena, the lazy flags in
// locals, conditions, exits and links (the JS tier's emitter.ts, in wasm).

import type { Cpu } from "../cpu.js";
import { STATE_LAYOUT } from "../cpu.js";
import { NO_REG } from "../decoder.js";
import { Body, I32, Op, VOID } from "./encoder.js";
import { IMPORT_GP, IMPORT_RD, IMPORT_WR, type WasmRuntime } from "./runtime.js";

export const I64_MUL = 0x7e, I64_EXTEND_S = 0xac, I64_NE = 0x52, I32_POPCNT = 0x69;
export const I64_ADD = 0x7c, I64_EXTEND_U = 0xad, I64_SHR_U = 0x88, I64_TRUNC_F64_S = 0xb0, I32_WRAP_I64 = 0xa7;
export const ARITH = 0x8d5;
export const LZ_ADD = 1, LZ_SUB = 2, LZ_LOGIC = 3;

// Parameters and locals of a block function.
export const P_E0 = 0, P_R0 = 1, P_END = 2;
export const REG0 = 3; // eax..edi: 3..10
export const A = 11, B = 12, V = 13, O = 14, L = 15, P = 16, T = 17, SP = 18, N = 19, J = 20, AT = 21, ADDR = 22, F = 23;
export const LOP = 24, LA = 25, LB = 26, LR = 27, LBIT = 28, LMASK = 29, LFLAGS = 30, RM = 31, WM = 32, S32 = 33, SLOW = 34;
/** A value to store (the JS tier's `w`). */
export const W_LOCAL = 35;
export const LOCALS = W_LOCAL + 1 - 3;

interface Known {
  op: number;
  bit: number;
  exact: boolean;
  keepCF: boolean;
}

/** Locals whose value comes from the state words (bit l - LOP): the lazy record, masks, stack size. */
export const STATE_LOCALS = [LOP, LA, LB, LR, LBIT, LMASK, LFLAGS, RM, WM, S32];
export const LAZY_LOCALS = (1 << 7) - 1;
const bitOf = (l: number): number => (l >= LOP && l <= S32 ? 1 << (l - LOP) : 0);

/**
 * A body that tracks which state locals the block reads before it assigns them (they are loaded
 * at entry: `needLoad`), which it assigns on every path so far (`def`) and on some path (`maybe`):
 * the exit and the spills before calls to JS store only the lazy locals assigned on some path,
 * and those not assigned on every path are loaded at entry too.
 */
export class TrackedBody extends Body {
  def = 0;
  maybe = 0;
  needLoad = 0;
  override get(l: number): this {
    this.needLoad |= bitOf(l) & ~this.def;
    return super.get(l);
  }
  override set(l: number): this {
    this.def |= bitOf(l);
    this.maybe |= bitOf(l);
    return super.set(l);
  }
  override tee(l: number): this {
    this.def |= bitOf(l);
    this.maybe |= bitOf(l);
    return super.tee(l);
  }
}

/** Emits one block function. */
export class WasmEmitter {
  readonly b = new TrackedBody(LOCALS);
  /** `def` at each spill and exit (the lazy locals stored there must hold their values). */
  readonly storeDefs: number[] = [];
  /** Open wasm blocks/ifs/loops inside the outermost block ($out). */
  depth = 0;
  k = 0;
  slot = 0;
  off = 0;
  len = 0;
  touched = false;
  nextOverride: number | null = null;
  known: Known | null = null;
  pending: Known | null = null;
  count = 0;
  loops = false;
  loopDepth = -1;
  used = 0;
  written = 0;
  exits = 0;
  readonly offsets: number[] = [];
  /** Open skips: [target instruction, state locals assigned on every path at the branch]. */
  readonly skips: [number, number][] = [];
  readonly area: number;
  readonly L = STATE_LAYOUT;
  /** Address of the block's link records (set once the number of exits is known). */
  linkAddress = 0;

  constructor(readonly c: Cpu, rt: WasmRuntime) {
    this.area = rt.area;
  }

  // ---- small helpers ----
  i32(n: number): this {
    this.b.i32(n);
    return this;
  }
  op(...x: number[]): this {
    this.b.op(...x);
    return this;
  }
  /** Push the EIP of byte offset o of the block (32-bit code). */
  eipAt(o: number): void {
    this.b.get(P_E0);
    if (o !== 0) this.b.i32(o).op(Op.i32Add);
  }
  pushFall(): void {
    this.eipAt(this.off + this.len);
  }
  /** Push the sync arguments: eip, next, retired. */
  syncArgs(): void {
    this.eipAt(this.off);
    if (this.nextOverride !== null) this.b.get(this.nextOverride);
    else this.pushFall();
    this.b.get(P_R0).i32(this.k).op(Op.i32Add);
  }
  word(k: number): number {
    return this.area + this.L.words + 4 * k;
  }
  loadWord(k: number): void {
    this.b.i32(0).mem(Op.i32Load, 2, this.word(k));
  }
  open(kind: number): void {
    this.b.op(kind, VOID);
    this.depth++;
  }
  close(): void {
    this.b.op(Op.end);
    this.depth--;
  }

  // ---- registers ----
  /** Push register n of size index s. */
  get(s: number, n: number): void {
    const q = s === 0 ? n & 3 : n;
    this.used |= 1 << q;
    this.b.get(REG0 + q);
    if (s === 1) this.b.i32(0xffff).op(Op.i32And);
    else if (s === 0) {
      if (n >= 4) this.b.i32(8).op(Op.i32ShrU);
      this.b.i32(255).op(Op.i32And);
    }
  }
  /** Set register n of size s to the value in local `from`. */
  set(s: number, n: number, from: number): void {
    const q = s === 0 ? n & 3 : n;
    this.used |= 1 << q;
    this.written |= 1 << q;
    const x = REG0 + q;
    if (s === 2) {
      this.b.get(from).set(x);
      return;
    }
    if (s === 1) {
      this.b.get(x).i32(-65536).op(Op.i32And).get(from).i32(0xffff).op(Op.i32And).op(Op.i32Or).set(x);
    } else if (n < 4) {
      this.b.get(x).i32(-256).op(Op.i32And).get(from).i32(255).op(Op.i32And).op(Op.i32Or).set(x);
    } else {
      this.b.get(x).i32(-65281).op(Op.i32And).get(from).i32(255).op(Op.i32And).i32(8).op(Op.i32Shl).op(Op.i32Or).set(x);
    }
  }
  /**
   * Positions in the code where the spill (store the written registers and the lazy record for
   * JS) or the reload (load them and what JS may have changed) goes, filled in by finish() once
   * the block's used and written registers are known.
   */
  readonly marks = new Map<number, "spill" | "reload">();
  spill(): void {
    this.marks.set(this.b.code.length, "spill");
    this.storeDefs.push(this.b.def);
  }
  reload(): void {
    this.marks.set(this.b.code.length, "reload");
  }

  // ---- operands ----
  /** Push the effective address of the slot's memory operand (32-bit addressing only). */
  ea(): boolean {
    const d = this.c.dec, i = this.slot;
    if (d.amask[i] !== -1) return false;
    const base = d.base[i], index = d.index[i], scale = d.scale[i], disp = d.disp[i];
    let terms = 0;
    if (base !== NO_REG) {
      this.get(2, base);
      terms++;
    }
    if (index !== NO_REG) {
      this.get(2, index);
      if (scale) this.b.i32(scale).op(Op.i32Shl);
      if (terms++) this.b.op(Op.i32Add);
    }
    if (terms === 0) this.b.i32(disp | 0);
    else if (disp !== 0) this.b.i32(disp | 0).op(Op.i32Add);
    return true;
  }

  /** o = (offset on the stack); l = base + o; p = l >>> 12. */
  linear(seg: number): void {
    this.b.set(O);
    this.b.i32(0).mem(Op.i32Load, 2, this.area + this.L.base + 4 * seg).get(O).op(Op.i32Add).tee(L);
    this.b.i32(12).op(Op.i32ShrU).set(P);
  }

  /** `dst = [seg:off]` (offset on the stack) of size s. */
  read(s: number, seg: number, dst: number): void {
    this.touched = true;
    this.linear(seg);
    const b = this.b;
    this.accessTest(s, seg, false);
    this.open(Op.if);
    b.get(ADDR).get(L).i32(4095).op(Op.i32And).op(Op.i32Add);
    b.mem(s === 2 ? Op.i32Load : s === 1 ? Op.i32Load16u : Op.i32Load8u, 0, 0).set(dst);
    b.op(Op.else);
    this.spill();
    b.i32(s).i32(seg).get(O);
    this.syncArgs();
    b.idx(Op.call, IMPORT_RD).set(dst);
    this.reload();
    this.close();
  }

  /** Push 1 when the fast path applies (segment, TLB rights, arena address, no page crossing). */
  accessTest(s: number, seg: number, write: boolean): void {
    const b = this.b;
    b.i32(0).mem(Op.i32Load8u, 0, this.area + this.L.segFast + seg).i32(write ? 2 : 1).op(Op.i32And).op(Op.i32Eqz, Op.i32Eqz);
    b.get(P).mem(Op.i32Load8u, 0, this.area + this.L.tlbFlags).get(write ? WM : RM).op(Op.i32And).op(Op.i32Eqz, Op.i32Eqz).op(Op.i32And);
    b.get(P).i32(2).op(Op.i32Shl).mem(Op.i32Load, 2, this.area + this.L.tlbAddr).tee(ADDR).op(Op.i32Eqz, Op.i32Eqz).op(Op.i32And);
    if (s === 2) b.get(L).i32(4095).op(Op.i32And).i32(4092).op(Op.i32LeU).op(Op.i32And);
    else if (s === 1) b.get(L).i32(4095).op(Op.i32And).i32(4095).op(Op.i32Ne).op(Op.i32And);
  }

  /** [seg:off] = local val (offset on the stack). */
  write(s: number, seg: number, val: number): void {
    this.linear(seg);
    this.writeBack(s, seg, val);
  }

  writeBack(s: number, seg: number, val: number): void {
    this.touched = true;
    const b = this.b;
    this.accessTest(s, seg, true);
    this.open(Op.if);
    b.get(ADDR).get(L).i32(4095).op(Op.i32And).op(Op.i32Add).get(val);
    b.mem(s === 2 ? Op.i32Store : s === 1 ? Op.i32Store16 : Op.i32Store8, 0, 0);
    b.op(Op.else);
    this.spill();
    b.i32(s).i32(seg).get(O).get(val);
    this.syncArgs();
    b.idx(Op.call, IMPORT_WR);
    this.reload();
    this.close();
  }

  readE(s: number, dst: number): boolean {
    const d = this.c.dec, i = this.slot;
    if (d.mod3[i]) {
      this.get(s, d.rm[i]);
      this.b.set(dst);
      return true;
    }
    if (!this.ea()) return false;
    this.read(s, d.seg[i], dst);
    return true;
  }

  writeE(s: number, val: number): boolean {
    const d = this.c.dec, i = this.slot;
    if (d.mod3[i]) {
      this.set(s, d.rm[i], val);
      return true;
    }
    if (!this.ea()) return false;
    this.write(s, d.seg[i], val);
    return true;
  }

  /** a = E; body (computes V); E = V when store. */
  modifyE(s: number, body: () => void, store: boolean): boolean {
    const d = this.c.dec, i = this.slot;
    if (d.mod3[i]) {
      this.get(s, d.rm[i]);
      this.b.set(A);
      body();
      if (store) this.set(s, d.rm[i], V);
      return true;
    }
    if (!this.ea()) return false;
    this.read(s, d.seg[i], A);
    body();
    if (store) this.writeBack(s, d.seg[i], V);
    return true;
  }

  // ---- flags ----
  /** The lazy record (op, a, b, r from locals, bit), all six flags lazy. */
  lazy(op: number, a: number, bLocal: number | null, bConst: number, r: number, bit: number, exact = false): void {
    this.pending = { op, bit, exact, keepCF: false };
    const b = this.b;
    b.i32(op).set(LOP).get(a).set(LA);
    if (bLocal !== null) b.get(bLocal).set(LB);
    else b.i32(bConst).set(LB);
    b.get(r).set(LR).i32(bit).set(LBIT).i32(ARITH).set(LMASK);
  }

  /** Like lazy, CF kept (INC, DEC): flags = (flags & ~1) | CF first. */
  lazyKeepCF(op: number, a: number, bConst: number, r: number, bit: number): void {
    this.b.get(LFLAGS).i32(-2).op(Op.i32And);
    this.pushCF();
    this.b.op(Op.i32Or).set(LFLAGS);
    this.pending = { op, bit, exact: true, keepCF: true };
    this.b.i32(op).set(LOP).get(a).set(LA).i32(bConst).set(LB).get(r).set(LR).i32(bit).set(LBIT).i32(ARITH & ~1).set(LMASK);
  }

  /** Eager arithmetic flags from the value on the stack. */
  setArith(): void {
    this.b.i32(ARITH).op(Op.i32And).get(LFLAGS).i32(~ARITH).op(Op.i32And).op(Op.i32Or).set(LFLAGS).i32(0).set(LMASK);
  }

  /** Push SF|ZF|PF of local v (32-bit result). */
  szp32(v: number): void {
    const b = this.b;
    b.get(v).i32(31).op(Op.i32ShrU).i32(7).op(Op.i32Shl);
    b.get(v).op(Op.i32Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
    this.parity(v);
    b.op(Op.i32Or);
  }
  /** Push PF of the low byte of local v. */
  parity(v: number): void {
    this.b.get(v).i32(255).op(Op.i32And).op(I32_POPCNT).i32(1).op(Op.i32And).i32(1).op(Op.i32Xor).i32(2).op(Op.i32Shl);
  }

  /** Push a flag (0/1) computed generically from the lazy locals: the flags.ts getters. */
  pushCF(): void {
    const b = this.b;
    // if lzMask & CF: by op; else flags & 1
    b.get(LMASK).i32(1).op(Op.i32And);
    b.op(Op.if, I32);
    b.get(LOP).i32(LZ_ADD).op(Op.i32Eq);
    b.op(Op.if, I32);
    b.get(LA).get(LB).op(Op.i32And).get(LA).get(LB).op(Op.i32Or).get(LR).i32(-1).op(Op.i32Xor).op(Op.i32And).op(Op.i32Or);
    b.get(LBIT).op(Op.i32ShrU).i32(1).op(Op.i32And);
    b.op(Op.else);
    b.get(LOP).i32(LZ_SUB).op(Op.i32Eq);
    b.op(Op.if, I32);
    b.get(LA).i32(-1).op(Op.i32Xor).get(LB).op(Op.i32And).get(LA).i32(-1).op(Op.i32Xor).get(LB).op(Op.i32Or).get(LR).op(Op.i32And).op(Op.i32Or);
    b.get(LBIT).op(Op.i32ShrU).i32(1).op(Op.i32And);
    b.op(Op.else).i32(0).op(Op.end);
    b.op(Op.end);
    b.op(Op.else).get(LFLAGS).i32(1).op(Op.i32And).op(Op.end);
  }
  pushOF(): void {
    const b = this.b;
    b.get(LMASK).i32(0x800).op(Op.i32And);
    b.op(Op.if, I32);
    b.get(LOP).i32(LZ_ADD).op(Op.i32Eq);
    b.op(Op.if, I32);
    b.get(LA).get(LR).op(Op.i32Xor).get(LB).get(LR).op(Op.i32Xor).op(Op.i32And).get(LBIT).op(Op.i32ShrU).i32(1).op(Op.i32And);
    b.op(Op.else);
    b.get(LOP).i32(LZ_SUB).op(Op.i32Eq);
    b.op(Op.if, I32);
    b.get(LA).get(LB).op(Op.i32Xor).get(LA).get(LR).op(Op.i32Xor).op(Op.i32And).get(LBIT).op(Op.i32ShrU).i32(1).op(Op.i32And);
    b.op(Op.else).i32(0).op(Op.end);
    b.op(Op.end);
    b.op(Op.else).get(LFLAGS).i32(11).op(Op.i32ShrU).i32(1).op(Op.i32And).op(Op.end);
  }
  pushZF(): void {
    const b = this.b;
    b.get(LMASK).i32(0x40).op(Op.i32And);
    b.op(Op.if, I32);
    b.get(LR).i32(31).get(LBIT).op(Op.i32Sub).op(Op.i32Shl).op(Op.i32Eqz);
    b.op(Op.else).get(LFLAGS).i32(6).op(Op.i32ShrU).i32(1).op(Op.i32And).op(Op.end);
  }
  pushSF(): void {
    const b = this.b;
    b.get(LMASK).i32(0x80).op(Op.i32And);
    b.op(Op.if, I32);
    b.get(LR).get(LBIT).op(Op.i32ShrU).i32(1).op(Op.i32And);
    b.op(Op.else).get(LFLAGS).i32(7).op(Op.i32ShrU).i32(1).op(Op.i32And).op(Op.end);
  }
  pushPF(): void {
    const b = this.b;
    b.get(LMASK).i32(4).op(Op.i32And);
    b.op(Op.if, I32);
    b.get(LR).i32(255).op(Op.i32And).op(I32_POPCNT).i32(1).op(Op.i32And).i32(1).op(Op.i32Xor);
    b.op(Op.else).get(LFLAGS).i32(2).op(Op.i32ShrU).i32(1).op(Op.i32And).op(Op.end);
  }

  /** Push condition cc (0/1). */
  cond(cc: number): void {
    const k = this.known !== null && !this.touched ? this.known : null;
    if (k !== null) this.knownCond(cc, k);
    else {
      const b = this.b;
      switch (cc >> 1) {
        case 0: this.pushOF(); break;
        case 1: this.pushCF(); break;
        case 2: this.pushZF(); break;
        case 3: this.pushCF(); this.pushZF(); b.op(Op.i32Or); break;
        case 4: this.pushSF(); break;
        case 5: this.pushPF(); break;
        case 6: this.pushSF(); this.pushOF(); b.op(Op.i32Xor); break;
        default: this.pushZF(); this.pushSF(); this.pushOF(); b.op(Op.i32Xor, Op.i32Or); break;
      }
    }
    if (cc & 1) this.b.op(Op.i32Eqz);
  }

  /** Condition from a lazy record of known kind (op and bit fixed at translation). */
  knownCond(cc: number, k: Known): void {
    const b = this.b;
    const sh = 31 - k.bit;
    const shl = (l: number) => {
      b.get(l);
      if (sh !== 0) b.i32(sh).op(Op.i32Shl);
    };
    const zf = () => (shl(LR), b.op(Op.i32Eqz));
    const sf = () => (shl(LR), b.i32(0).op(Op.i32LtS));
    const cf = () => {
      if (k.keepCF) return void b.get(LFLAGS).i32(1).op(Op.i32And);
      if (k.op === LZ_LOGIC) return void b.i32(0);
      if (k.op === LZ_ADD) b.get(LA).get(LB).op(Op.i32And).get(LA).get(LB).op(Op.i32Or).get(LR).i32(-1).op(Op.i32Xor).op(Op.i32And).op(Op.i32Or);
      else b.get(LA).i32(-1).op(Op.i32Xor).get(LB).op(Op.i32And).get(LA).i32(-1).op(Op.i32Xor).get(LB).op(Op.i32Or).get(LR).op(Op.i32And).op(Op.i32Or);
      b.i32(k.bit).op(Op.i32ShrU).i32(1).op(Op.i32And);
    };
    const of = () => {
      if (k.op === LZ_LOGIC) return void b.i32(0);
      if (k.op === LZ_ADD) b.get(LA).get(LR).op(Op.i32Xor).get(LB).get(LR).op(Op.i32Xor).op(Op.i32And);
      else b.get(LA).get(LB).op(Op.i32Xor).get(LA).get(LR).op(Op.i32Xor).op(Op.i32And);
      b.i32(k.bit).op(Op.i32ShrU).i32(1).op(Op.i32And);
    };
    const exactSub = k.op === LZ_SUB && k.exact && !k.keepCF;
    switch (cc >> 1) {
      case 0: of(); break;
      case 1: if (exactSub) { shl(LA); shl(LB); b.op(Op.i32LtU); } else cf(); break;
      case 2: zf(); break;
      case 3: if (exactSub) { shl(LA); shl(LB); b.op(Op.i32LeU); } else { cf(); zf(); b.op(Op.i32Or); } break;
      case 4: sf(); break;
      case 5: b.get(LR).i32(255).op(Op.i32And).op(I32_POPCNT).i32(1).op(Op.i32And).op(Op.i32Eqz); break;
      case 6: if (exactSub) { shl(LA); shl(LB); b.op(Op.i32LtS); } else { sf(); of(); b.op(Op.i32Xor); } break;
      default: if (exactSub) { shl(LA); shl(LB); b.op(Op.i32LeS); } else { zf(); sf(); of(); b.op(Op.i32Xor, Op.i32Or); } break;
    }
  }

  // ---- control transfer ----
  /** t = target (on the stack); #GP beyond the CS limit. */
  jump(): void {
    const b = this.b;
    b.set(T);
    b.get(T).i32(0).mem(Op.i32Load, 2, this.area + this.L.limit + 4).op(Op.i32GtU);
    this.open(Op.if);
    this.spill();
    this.syncArgs();
    b.idx(Op.call, IMPORT_GP);
    b.op(Op.unreachable);
    this.close();
  }

  /** Leave with n = retired through exit j (br to $out). */
  link(retired: number): void {
    this.storeDefs.push(this.b.def);
    const j = this.exits++;
    this.b.i32(retired).set(N).i32(j).set(J).idx(Op.br, this.depth);
  }

  leaveFall(): void {
    this.pushFall();
    this.b.set(T);
    this.link(this.k + 1);
  }

  forwardTarget(imm: number): number {
    if (imm < 0) return -1;
    const k = this.offsets.indexOf(this.off + this.len + imm);
    if (k <= this.k) return -1;
    const inner = this.skips.length > 0 ? this.skips[this.skips.length - 1][0] : Infinity;
    return k <= inner ? k : -1;
  }

  /** Relative branch with displacement imm (32-bit operand size). */
  branch(imm: number): void {
    this.pushFall();
    this.b.i32(imm).op(Op.i32Add);
    this.jump();
    const to = this.off + this.len + imm;
    if ((to | 0) === 0) {
      // Loop when no call to JS happened in this pass (nothing can have changed the code epoch or
      // attention) and the budget holds a whole pass.
      const k1 = this.k + 1;
      const b = this.b;
      b.get(SLOW).op(Op.i32Eqz).get(P_R0).i32(k1 + this.count).op(Op.i32Add).get(P_END).op(Op.i32LeS).op(Op.i32And);
      this.open(Op.if);
      b.get(P_R0).i32(k1).op(Op.i32Add).set(P_R0);
      b.idx(Op.br, this.depth - 1 - this.loopDepth);
      this.close();
      this.loops = true;
    }
    this.link(this.k + 1);
  }

  jcc(cc: number, imm: number, o32: boolean): boolean {
    if (!o32) return false;
    const k = this.forwardTarget(imm);
    if (k >= 0) {
      this.open(Op.block);
      this.skips.push([k, this.b.def]);
      this.cond(cc);
      this.open(Op.if);
      this.b.get(P_R0).i32(this.k + 1 - k).op(Op.i32Add).set(P_R0);
      this.b.idx(Op.br, 1);
      this.close();
      return true;
    }
    this.cond(cc);
    this.open(Op.if);
    this.branch(imm);
    this.close();
    return true;
  }

  // ---- stack ----
  /** Push ESP or SP. */
  stackPointer(): void {
    this.b.get(S32);
    this.b.op(Op.if, I32);
    this.get(2, 4);
    this.b.op(Op.else);
    this.get(1, 4);
    this.b.op(Op.end);
  }
  /** ESP or SP = local. */
  setStackPointer(from: number): void {
    this.b.get(S32);
    this.open(Op.if);
    this.set(2, 4, from);
    this.b.op(Op.else);
    this.set(1, 4, from);
    this.close();
  }
}
