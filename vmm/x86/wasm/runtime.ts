// The JS side of the wasm tier for one CPU: the state words through which wasm blocks and JS
// exchange the lazy flag record and a run's results, the imported slow paths, the function table
// with the dispatcher that runs chains of linked wasm blocks, and the BlockFn wrapping a chain.

import type { Cpu } from "../cpu.js";
import { STATE_LAYOUT } from "../cpu.js";
import { type BlockFn, BlockLinks } from "../block-links.js";
import { type BlockCache, BLOCK_BITS } from "../blocks.js";
import { WASM, type WasmMemory, type WasmTable } from "./api.js";
import { Body, encodeModule, I32, Op, typeIndexIn, VOID } from "./encoder.js";

/** State words (int32 index from Cpu.area's `words`): the lazy record, and the results of a run. */
export const W_FLAGS = 0, W_MASK = 1, W_OP = 2, W_A = 3, W_B = 4, W_R = 5, W_BIT = 6;
export const W_T = 7, W_RETIRED = 8, W_RM = 9, W_WM = 10, W_AT = 11, W_STACK32 = 12, W_LAST = 13;
/** The code epoch (float64 at int32 word 16). */
export const W_EPOCH = 16;
/**
 * The TSC offset (float64 at word 18), and at word 20 whether RDTSC takes its handler instead of
 * its inline form: it faults (CR4.TSD above CPL 0), or the offset is not an integer below 2^52
 * (then retired + offset is not surely exact in int64 arithmetic as the handler's float sum is).
 */
export const W_TSC = 18, W_RDTSC_SLOW = 20;

/** The TSC state words (W_TSC, W_RDTSC_SLOW) from the Cpu. */
function tscOut(c: Cpu, w: Int32Array, e: Float64Array): void {
  const offset = c.tscOffset;
  e[1] = offset;
  w[W_RDTSC_SLOW] = (c.cr4 & 4 && c.cr0 & 1 && c.cpl !== 0) || !(offset >= 0 && offset < 2 ** 52) ? 1 : 0;
}
/** A link record in the arena (wasm code follows links itself): eip, count, block, target index, code epoch (f64). */
export const LINK_BYTES = 24;
/** The type of a block function: (EIP, retired count at entry, budget end) -> next block's table index, or -1 - exit. */
export const BLOCK_TYPE = { params: [I32, I32, I32], results: [I32] };
/** Imported functions of every block module. */
export const IMPORT_RD = 0, IMPORT_WR = 1, IMPORT_GP = 2, IMPORT_HANDLER = 3;
/** Their types, in that order. */
export const IMPORT_TYPES = [
  { params: [I32, I32, I32, I32, I32, I32], results: [I32] },
  { params: [I32, I32, I32, I32, I32, I32, I32], results: [] },
  { params: [I32, I32, I32], results: [] },
  { params: [I32, I32, I32, I32], results: [I32] },
];

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
export class WasmLinks extends BlockLinks {
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
  tscOut(c, w, e);
}

export function wasmRuntime(c: Cpu): WasmRuntime | null {
  if (c.areaAddress === 0) return null;
  let rt = runtimes.get(c);
  if (rt !== undefined) return rt;
  const arena = c.memory.arena;
  if (arena === null) return null;
  const w = new Int32Array(c.area.buffer, c.area.byteOffset + STATE_LAYOUT.words, 32);
  const e = new Float64Array(c.area.buffer, c.area.byteOffset + STATE_LAYOUT.words + 4 * W_EPOCH, 2);
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
export function linkMemory(c: Cpu, rt: WasmRuntime, bytes: number): number {
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

/**
 * The BlockFn of a wasm block: the lazy record (and what the blocks read of the Cpu's fields) to
 * the state words, the dispatcher, the lazy record back, then the JS tier's link logic for the
 * last block's exit (its link may lead to a JS block).
 */
export function wasmBlock(index: number, rt: WasmRuntime, code: readonly (BlockFn | null)[]): BlockFn {
  const w = rt.words, e = rt.epoch, dispatch = rt.dispatch, all = rt.links;
  return function wasmBlock(c, end) {
    w[W_FLAGS] = c.flags; w[W_MASK] = c.lzMask; w[W_OP] = c.lzOp; w[W_A] = c.lzA; w[W_B] = c.lzB; w[W_R] = c.lzR; w[W_BIT] = c.lzBit;
    w[W_RM] = c.rdMask; w[W_WM] = c.wrMask; w[W_STACK32] = c.stack32;
    e[0] = c.codeEpoch;
    tscOut(c, w, e);
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
