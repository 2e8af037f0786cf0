// The WebAssembly tier of the block translator: a hot block of 32-bit code whose instructions all
// have a form here compiles to one wasm function (a module of its own; V8 compiles it with
// Liftoff at once and tiers it up in the background) that works on the CPU's state where the
// CPU keeps it, in the guest memory's WebAssembly arena (Cpu.area): registers, segment bases,
// the TLB and its arena addresses of guest RAM. Blocks with other instructions stay in the JS tier.
//
// Semantics are the JS tier's (translate.ts): same exits, links, retired counts, loops and
// forward skips, and the same sync before anything that can fault or exit. The differences:
// - the lazy flag record lives in wasm locals; the JS wrapper passes it in and out through the
//   state words (layout W_*), and every call out to JS (slow memory paths, #GP on a jump beyond
//   the CS limit) stores it there first and loads it again after (the call copies it to and from
//   the Cpu, where handlers, faults and the VMM see it);
// - a slow memory path is an imported JS function; the registers are stored before it and loaded
//   after it like the JS tier's spill and reload.

import type { Cpu } from "../cpu.js";
import { STATE_LAYOUT } from "../cpu.js";
import { type BlockFn, BlockLinks } from "../block-links.js";
import { type BlockCache, BLOCK_BITS } from "../blocks.js";
import { NO_REG, Pfx, SEG_SS, slotHandler } from "../decoder.js";
import { HANDLERS } from "../handlers/index.js";
import { ALU_NAMES } from "../handlers/names.js";
import { WASM, type WasmMemory, type WasmTable } from "./api.js";
import { Body, encodeModule, I32, Op, typeIndexIn, VOID } from "./encoder.js";

const I64_MUL = 0x7e, I64_EXTEND_S = 0xac, I64_NE = 0x52, I32_POPCNT = 0x69;

/** State words (int32 index from Cpu.area's `words`): the lazy record, and the results of a run. */
export const W_FLAGS = 0, W_MASK = 1, W_OP = 2, W_A = 3, W_B = 4, W_R = 5, W_BIT = 6;
export const W_T = 7, W_RETIRED = 8, W_RM = 9, W_WM = 10, W_AT = 11, W_STACK32 = 12, W_LAST = 13;
/** The code epoch (float64 at int32 word 16). */
export const W_EPOCH = 16;
/** A link record in the arena (wasm code follows links itself): eip, count, block, target index, code epoch (f64). */
const LINK_BYTES = 24;
const BLOCK_TYPE = { params: [I32, I32, I32], results: [I32] };
const ARITH = 0x8d5;
const LZ_ADD = 1, LZ_SUB = 2, LZ_LOGIC = 3;

// Parameters and locals of a block function.
const P_E0 = 0, P_R0 = 1, P_END = 2;
const REG0 = 3; // eax..edi: 3..10
const A = 11, B = 12, V = 13, O = 14, L = 15, P = 16, T = 17, SP = 18, N = 19, J = 20, AT = 21, ADDR = 22, F = 23;
const LOP = 24, LA = 25, LB = 26, LR = 27, LBIT = 28, LMASK = 29, LFLAGS = 30, RM = 31, WM = 32, S32 = 33, SLOW = 34;
/** A value to store (the JS tier's `w`). */
const W_LOCAL = 35;
const LOCALS = W_LOCAL + 1 - 3;

/** Imported functions of every block module. */
const IMPORT_RD = 0, IMPORT_WR = 1, IMPORT_GP = 2, IMPORT_HANDLER = 3;

interface Known {
  op: number;
  bit: number;
  exact: boolean;
  keepCF: boolean;
}

/**
 * The JS side of a CPU's wasm blocks: the imports (slow paths) and the state words, made once
 * per Cpu (wasmRuntime).
 */
export interface WasmRuntime {
  readonly words: Int32Array;
  readonly epoch: Float64Array;
  readonly imports: Record<string, Record<string, unknown>>;
  /** Addresses of the state in the arena. */
  readonly area: number;
  /** The blocks' functions (index 0 is never one); the links of each by index. */
  readonly table: WasmTable;
  readonly links: WasmLinks[];
  readonly index: WeakMap<BlockFn, number>;
  /** Runs the block at a table index and the wasm blocks its links lead to; returns -1 - exit. */
  readonly dispatch: (index: number, e0: number, r0: number, end: number) => number;
  /** Link records are carved from slabs of the arena. */
  slab: { at: number; left: number };
}

/** A wasm block's links, with a copy of each in the arena where its code follows them. */
class WasmLinks extends BlockLinks {
  constructor(exits: number, private readonly rt: WasmRuntime, private readonly bytes: DataView, readonly address: number) {
    super(exits);
  }

  override set(j: number, fn: BlockFn, b: number, count: number, eip: number, c: Cpu): void {
    super.set(j, fn, b, count, eip, c);
    const v = this.bytes, at = this.address + j * LINK_BYTES;
    v.setInt32(at, eip, true);
    v.setInt32(at + 4, count, true);
    v.setInt32(at + 8, b, true);
    v.setInt32(at + 12, this.rt.index.get(fn) ?? 0, true);
    v.setFloat64(at + 16, c.codeEpoch, true);
  }
}

const runtimes = new WeakMap<Cpu, WasmRuntime>();

/** Copy the lazy record from the state words to the Cpu (before JS looks at it). */
function flagsIn(c: Cpu, w: Int32Array): void {
  c.flags = w[W_FLAGS]; c.lzMask = w[W_MASK]; c.lzOp = w[W_OP]; c.lzA = w[W_A]; c.lzB = w[W_B]; c.lzR = w[W_R]; c.lzBit = w[W_BIT];
}

/** Copy the lazy record and what a JS call may have changed (access masks, stack size, attention) to the state words. */
function flagsOut(c: Cpu, w: Int32Array, e: Float64Array): void {
  w[W_FLAGS] = c.flags; w[W_MASK] = c.lzMask; w[W_OP] = c.lzOp; w[W_A] = c.lzA; w[W_B] = c.lzB; w[W_R] = c.lzR; w[W_BIT] = c.lzBit;
  w[W_RM] = c.rdMask; w[W_WM] = c.wrMask; w[W_STACK32] = c.stack32; w[W_AT] = c.attention ? 1 : 0;
  e[0] = c.codeEpoch;
}

export function wasmRuntime(c: Cpu): WasmRuntime | null {
  if (c.areaAddress === 0) return null;
  let rt = runtimes.get(c);
  if (rt !== undefined) return rt;
  const arena = c.memory.arena;
  if (arena === null) return null;
  const w = new Int32Array(c.area.buffer, c.area.byteOffset + STATE_LAYOUT.words, 32);
  const e = new Float64Array(c.area.buffer, c.area.byteOffset + STATE_LAYOUT.words + 4 * W_EPOCH, 1);
  const rd = (size: number, seg: number, o: number, eip: number, next: number, retired: number): number => {
    flagsIn(c, w);
    c.eip = eip; c.nextEip = next; c.retired = retired;
    const v = size === 0 ? c.rd8(seg, o) : size === 1 ? c.rd16(seg, o) : c.rd32(seg, o);
    flagsOut(c, w, e);
    return v;
  };
  const wr = (size: number, seg: number, o: number, v: number, eip: number, next: number, retired: number): void => {
    flagsIn(c, w);
    c.eip = eip; c.nextEip = next; c.retired = retired;
    if (size === 0) c.wr8(seg, o, v);
    else if (size === 1) c.wr16(seg, o, v);
    else c.wr32(seg, o, v);
    flagsOut(c, w, e);
  };
  const gp = (eip: number, next: number, retired: number): void => {
    flagsIn(c, w);
    c.eip = eip; c.nextEip = next; c.retired = retired;
    c.fault(13, 0);
  };
  /** An instruction without a wasm form: its handler, as the JS tier calls it. Returns the next EIP. */
  const handler = (slot: number, eip: number, next: number, retired: number): number => {
    flagsIn(c, w);
    c.eip = eip; c.nextEip = next; c.retired = retired;
    const d = c.dec;
    d.table[d.handler[slot]](c, slot);
    flagsOut(c, w, e);
    return c.nextEip;
  };
  const table = new WASM.Table({ element: "anyfunc", initial: 256 });
  rt = {
    words: w, epoch: e, imports: { f: { 0: rd, 1: wr, 2: gp, 3: handler } }, area: c.areaAddress,
    table, links: [], index: new WeakMap(), dispatch: dispatcher(c.areaAddress, arena.memory, table), slab: { at: 0, left: 0 },
  };
  runtimes.set(c, rt);
  return rt;
}

/**
 * The dispatcher: runs the block function at a table index, and while its exit returns the next
 * block's index (its link holds, checked in wasm: exactly the JS tier's check), that one, with the
 * EIP and retired count it left; then the index of the last block goes to W_LAST.
 */
function dispatcher(area: number, memory: WasmMemory, table: WasmTable): (index: number, e0: number, r0: number, end: number) => number {
  const words = area + STATE_LAYOUT.words;
  const IDX = 0, E0 = 1, R0 = 2, END = 3, R = 4;
  const b = new Body(1);
  b.op(Op.loop, VOID);
  b.get(E0).get(R0).get(END).get(IDX);
  const spec = {
    imports: [], memory: { minPages: 1, maxPages: 65536, shared: true }, minTable: 1, indirectTypes: [BLOCK_TYPE],
    funcs: [{ type: { params: [I32, I32, I32, I32], results: [I32] }, body: b }],
  };
  b.idx(Op.callIndirect, typeIndexIn(spec, BLOCK_TYPE)).op(0x00).tee(R);
  b.i32(0).op(Op.i32GtS).op(Op.if, VOID);
  b.get(R).set(IDX);
  b.i32(0).mem(Op.i32Load, 2, words + 4 * W_T).set(E0);
  b.i32(0).mem(Op.i32Load, 2, words + 4 * W_RETIRED).set(R0);
  b.idx(Op.br, 1);
  b.op(Op.end, Op.end);
  b.i32(0).get(IDX).mem(Op.i32Store, 2, words + 4 * W_LAST);
  b.get(R);
  const module = new WASM.Module(encodeModule(spec));
  return new WASM.Instance(module, { m: { memory }, t: { table } }).exports.f0 as (index: number, e0: number, r0: number, end: number) => number;
}

/** Let the block cache keep its arena copy of the translations' table indices (wasm links check it). */
export function attachWasm(c: Cpu, blocks: BlockCache): void {
  const rt = wasmRuntime(c);
  if (rt === null) return;
  blocks.codeIndex = new Int32Array(c.area.buffer, c.area.byteOffset + STATE_LAYOUT.codeIndex, 1 << BLOCK_BITS);
  blocks.indexOf = (fn) => rt.index.get(fn) ?? 0;
}

/** `bytes` of zeroed arena memory for link records, 8-aligned. */
function linkMemory(c: Cpu, rt: WasmRuntime, bytes: number): number {
  const n = (bytes + 7) & ~7;
  if (rt.slab.left < n) {
    const size = Math.max(65536, n);
    const slab = c.memory.arena?.alloc(size) ?? null;
    if (slab === null) return 0;
    rt.slab = { at: c.memory.arena?.addressOf(slab) ?? 0, left: size };
  }
  const at = rt.slab.at;
  rt.slab.at += n;
  rt.slab.left -= n;
  return at;
}

/** Locals whose value comes from the state words (bit l - LOP): the lazy record, masks, stack size. */
const STATE_LOCALS = [LOP, LA, LB, LR, LBIT, LMASK, LFLAGS, RM, WM, S32];
const LAZY_LOCALS = (1 << 7) - 1;
const bitOf = (l: number): number => (l >= LOP && l <= S32 ? 1 << (l - LOP) : 0);

/**
 * A body that tracks which state locals the block reads before it assigns them (they are loaded
 * at entry: `needLoad`), which it assigns on every path so far (`def`) and on some path (`maybe`):
 * the exit and the spills before calls to JS store only the lazy locals assigned on some path,
 * and those not assigned on every path are loaded at entry too.
 */
class TrackedBody extends Body {
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
class WasmEmitter {
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

type WasmGen = (g: WasmEmitter, i: number) => boolean;
interface WasmForm {
  gen: WasmGen;
  ends: boolean;
  keepsFlags: boolean;
}

const FORMS: Map<unknown, WasmForm> = buildForms();

/** Whether the wasm tier takes the block: 32-bit code, and most of its instructions have a wasm form. */
export function wasmCanTranslate(c: Cpu, first: number, count: number, wide: boolean): boolean {
  if (!wide || c.areaAddress === 0) return false;
  const d = c.dec;
  let handlers = 0;
  for (let k = 0; k < count; k++) if (!FORMS.has(slotHandler(d, first + k))) handlers++;
  return handlers <= 1 || handlers * 4 <= count;
}

/** The block as a wasm function behind a BlockFn, or null when some instruction has no wasm form here. */
export function translateWasm(c: Cpu, first: number, count: number, wide: boolean, code: readonly (BlockFn | null)[]): BlockFn | null {
  const rt = wasmRuntime(c);
  if (rt === null || !wasmCanTranslate(c, first, count, wide)) return null;
  const g = new WasmEmitter(c, rt);
  const d = c.dec;
  g.count = count;
  for (let k = 0, o = 0; k < count; o += d.len[first + k], k++) g.offsets.push(o);
  const b = g.b;
  // Entry: the registers are loaded in finish(); the lazy record and masks from the state words.
  g.open(Op.block); // $out
  g.depth = 0;
  g.open(Op.loop); // $top (a loop costs nothing when no branch targets it)
  g.loopDepth = g.depth - 1;
  let off = 0;
  let ended = false;
  for (let k = 0; k < count; k++) {
    const slot = first + k;
    while (g.skips.length > 0 && g.skips[g.skips.length - 1][0] === k) {
      g.close();
      b.def &= (g.skips.pop() as [number, number])[1];
      g.known = null;
    }
    g.k = k;
    g.slot = slot;
    g.off = off;
    g.len = d.len[slot];
    g.touched = false;
    g.pending = null;
    const form = FORMS.get(slotHandler(d, slot));
    const mark = b.code.length, depth = g.depth, exits = g.exits, defs = g.storeDefs.length;
    const def = b.def, maybe = b.maybe, needLoad = b.needLoad;
    if (form !== undefined && form.gen(g, slot)) {
      if (g.pending !== null) g.known = g.pending;
      else if (!form.keepsFlags) g.known = null;
      if (form.ends) {
        ended = true;
        break;
      }
    } else {
      // The handler, called like the JS tier calls it (translate.ts).
      b.code.length = mark;
      for (const at of g.marks.keys()) if (at >= mark) g.marks.delete(at);
      g.depth = depth;
      g.exits = exits;
      g.storeDefs.length = defs;
      b.def = def;
      b.maybe = maybe;
      b.needLoad = needLoad;
      g.known = null;
      g.touched = false;
      g.spill();
      b.i32(slot);
      g.syncArgs();
      b.idx(Op.call, IMPORT_HANDLER).set(T);
      g.reload();
      if (k === count - 1) {
        g.link(k + 1);
        ended = true;
        break;
      }
      g.pushFall();
      b.get(T).op(Op.i32Ne).get(AT).op(Op.i32Or);
      g.open(Op.if);
      g.link(k + 1);
      g.close();
    }
    if (g.touched && k < count - 1) {
      b.get(AT);
      g.open(Op.if);
      g.leaveFall();
      g.close();
    }
    off += d.len[slot];
  }
  if (!ended) {
    g.k = count - 1;
    g.eipAt(off);
    b.set(T);
    g.link(count);
  }
  while (g.skips.length > 0) {
    g.close();
    g.skips.pop();
  }
  g.close(); // loop
  b.op(Op.end); // $out
  g.linkAddress = linkMemory(c, rt, g.exits * LINK_BYTES);
  if (g.linkAddress === 0) return null;
  const body = finish(g);
  let module: object;
  try {
    module = new WASM.Module(encodeModule({
      imports: [
        { params: [I32, I32, I32, I32, I32, I32], results: [I32] },
        { params: [I32, I32, I32, I32, I32, I32, I32], results: [] },
        { params: [I32, I32, I32], results: [] },
        { params: [I32, I32, I32, I32], results: [I32] },
      ],
      memory: { minPages: 1, maxPages: 65536, shared: true },
      funcs: [{ type: BLOCK_TYPE, body }],
    }));
  } catch (e) {
    throw new Error(`wasm tier: invalid module for the block at slot ${first}: ${String(e)}`);
  }
  const arena = c.memory.arena;
  if (arena === null) return null;
  const fn = new WASM.Instance(module, { ...rt.imports, m: { memory: arena.memory } }).exports.f0;
  const index = rt.links.length === 0 ? 1 : rt.links.length;
  if (index >= rt.table.length) rt.table.grow(rt.table.length);
  rt.table.set(index, fn);
  const links = new WasmLinks(g.exits, rt, new DataView(arena.memory.buffer), g.linkAddress);
  if (rt.links.length === 0) rt.links.push(links); // index 0 is never a block's
  rt.links.push(links);
  const block = wasmBlock(index, rt, code);
  rt.index.set(block, index);
  return block;
}

/**
 * The function body: entry (load the used registers, the lazy record and masks), the block, and
 * the exit (store the written registers, the lazy record, t and the retired count; return j),
 * with the spill and reload markers replaced.
 */
function finish(g: WasmEmitter): Body {
  const area = g.area;
  const regBase = area + STATE_LAYOUT.regs;
  const loadRegs = (mask: number, out: number[]) => {
    const x = new Body();
    for (let n = 0; n < 8; n++) if (mask & (1 << n)) x.i32(0).mem(Op.i32Load, 2, regBase + 4 * n).set(REG0 + n);
    out.push(...x.code);
  };
  const storeRegs = (mask: number, out: number[]) => {
    const x = new Body();
    for (let n = 0; n < 8; n++) if (mask & (1 << n)) x.i32(0).get(REG0 + n).mem(Op.i32Store, 2, regBase + 4 * n);
    out.push(...x.code);
  };
  const words = [W_OP, W_A, W_B, W_R, W_BIT, W_MASK, W_FLAGS, W_RM, W_WM, W_STACK32];
  const t = g.b;
  const stored = t.maybe & LAZY_LOCALS;
  let load = t.needLoad;
  for (const def of g.storeDefs) load |= stored & ~def;
  const loadState = (mask: number, out: number[]) => {
    const x = new Body();
    STATE_LOCALS.forEach((l, k) => {
      if (mask & (1 << k)) x.i32(0).mem(Op.i32Load, 2, g.word(words[k])).set(l);
    });
    out.push(...x.code);
  };
  const storeLazy = (out: number[]) => {
    const x = new Body();
    STATE_LOCALS.forEach((l, k) => {
      if (stored & (1 << k)) x.i32(0).get(l).mem(Op.i32Store, 2, g.word(words[k]));
    });
    out.push(...x.code);
  };
  const spill: number[] = [];
  storeRegs(g.written, spill);
  storeLazy(spill);
  const reload: number[] = [];
  loadRegs(g.used, reload);
  loadState(-1, reload);
  reload.push(...new Body().i32(0).mem(Op.i32Load, 2, g.word(W_AT)).set(AT).i32(1).set(SLOW).code);
  const out = new Body(LOCALS);
  loadRegs(g.used, out.code);
  loadState(load, out.code);
  const code = g.b.code;
  for (let k = 0; k <= code.length; k++) {
    const mark = g.marks.get(k);
    if (mark !== undefined) out.code.push(...(mark === "spill" ? spill : reload));
    if (k < code.length) out.code.push(code[k]);
  }
  storeRegs(g.written, out.code);
  storeLazy(out.code);
  out.i32(0).get(T).mem(Op.i32Store, 2, g.word(W_T));
  out.i32(0).get(P_R0).get(N).op(Op.i32Add).mem(Op.i32Store, 2, g.word(W_RETIRED));
  // Follow exit J's link when it holds (the JS tier's check, on the arena copy): return the next
  // block's table index; else -1 - J.
  const F64_LOAD = 0x2b;
  out.get(J).i32(LINK_BYTES).op(Op.i32Mul).i32(g.linkAddress).op(Op.i32Add).set(ADDR);
  out.get(AT).op(Op.i32Eqz);
  out.get(ADDR).mem(F64_LOAD, 3, 16).i32(0).mem(F64_LOAD, 3, g.word(W_EPOCH)).op(Op.f64Eq).op(Op.i32And);
  out.get(ADDR).mem(Op.i32Load, 2, 0).get(T).op(Op.i32Eq).op(Op.i32And);
  out.get(P_R0).get(N).op(Op.i32Add).get(ADDR).mem(Op.i32Load, 2, 4).op(Op.i32Add).get(P_END).op(Op.i32LeS).op(Op.i32And);
  out.get(ADDR).mem(Op.i32Load, 2, 12).tee(F).op(Op.i32Eqz, Op.i32Eqz).op(Op.i32And);
  out.get(ADDR).mem(Op.i32Load, 2, 8).i32(2).op(Op.i32Shl).mem(Op.i32Load, 2, area + STATE_LAYOUT.codeIndex).get(F).op(Op.i32Eq).op(Op.i32And);
  out.op(Op.if, I32).get(F).op(Op.else).i32(-1).get(J).op(Op.i32Sub).op(Op.end);
  return out;
}

/**
 * The BlockFn of a wasm block: the lazy record (and what the blocks read of the Cpu's fields) to
 * the state words, the dispatcher, the lazy record back, then the JS tier's link logic for the
 * last block's exit (its link may lead to a JS block).
 */
function wasmBlock(index: number, rt: WasmRuntime, code: readonly (BlockFn | null)[]): BlockFn {
  const w = rt.words, e = rt.epoch, dispatch = rt.dispatch, all = rt.links;
  return function wasmBlock(c, end) {
    w[W_FLAGS] = c.flags; w[W_MASK] = c.lzMask; w[W_OP] = c.lzOp; w[W_A] = c.lzA; w[W_B] = c.lzB; w[W_R] = c.lzR; w[W_BIT] = c.lzBit;
    w[W_RM] = c.rdMask; w[W_WM] = c.wrMask; w[W_STACK32] = c.stack32;
    e[0] = c.codeEpoch;
    const j = -1 - dispatch(index, c.eip, c.retired, end);
    c.flags = w[W_FLAGS]; c.lzMask = w[W_MASK]; c.lzOp = w[W_OP]; c.lzA = w[W_A]; c.lzB = w[W_B]; c.lzR = w[W_R]; c.lzBit = w[W_BIT];
    const t = w[W_T], retired = w[W_RETIRED];
    c.eip = c.nextEip = t;
    c.retired = retired;
    const links = all[w[W_LAST]];
    if (links.codeEpoch[j] === c.codeEpoch && links.eip[j] === t && !c.attention && retired + links.count[j] <= end) {
      const x = links.fn[j];
      if (code[links.block[j]] === x) return x;
    }
    c.linkFrom = links;
    c.linkExit = j;
    return null;
  };
}

// ---- the forms ----

function buildForms(): Map<unknown, WasmForm> {
  const m = new Map<unknown, WasmForm>();
  let keepsFlags = false;
  const add = (name: string, gen: WasmGen, ends = false) => {
    const h = HANDLERS[name];
    if (!h) throw new Error(`wasm tier: no handler ${name}`);
    if (!m.has(h)) m.set(h, { gen, ends, keepsFlags });
  };
  const BITS = [7, 15, 31];
  const sized = (s: number) => (s === 2 ? "32" : s === 1 ? "16" : "");

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
      const names = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];
      add(`${names[op]}_E${sz}`, (g, i) => shiftImm(g, i, op, s));
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

/** Debug: names of the block's instructions that have no wasm form. */
export function missingForms(c: Cpu, first: number, count: number): string[] {
  const names = new Map<unknown, string>();
  for (const [k, v] of Object.entries(HANDLERS)) if (!names.has(v)) names.set(v, k);
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const h = slotHandler(c.dec, first + k);
    if (!FORMS.has(h)) out.push(names.get(h) ?? "?");
  }
  return out;
}
