// The WebAssembly tier of the block translator (issue 15): a hot block of 32-bit code compiles to
// one wasm function, a module of its own (V8 compiles it with Liftoff at once and tiers it up with
// TurboFan in the background: no JS function for TurboFan to wait on). It works on the CPU's state
// where the Cpu keeps it in the guest memory's WebAssembly arena (Cpu.area): registers, segment
// bases and limits, the TLB with the arena address of each page's bytes. Instructions with a form
// in forms.ts are inline; the others call their handler through an import, as the JS tier does.
//
// Semantics are the JS tier's (../translate.ts): the same exits, links, retired counts, loops and
// forward skips, the same sync before anything that can fault or exit. The differences:
// - the lazy flag record lives in wasm locals, loaded from and stored to the state words
//   (runtime.ts W_*) only where the block needs it; every call to JS (slow memory paths, handlers,
//   #GP on a jump beyond the CS limit) stores it there first and loads it again after, and the
//   JS side copies it to and from the Cpu, where handlers, faults and the VMM see it;
// - a block follows its exit's link in wasm (the link records and the block cache's translation
//   indices have copies in the arena): a chain of linked wasm blocks runs in the dispatcher
//   without returning to JS, and JS copies the Cpu's fields in and out once per chain.

import type { Cpu } from "../cpu.js";
import { STATE_LAYOUT } from "../cpu.js";
import type { BlockFn } from "../block-links.js";
import { Pfx, slotHandler } from "../decoder.js";
import { WASM } from "./api.js";
import { Body, encodeModule, I32, Op } from "./encoder.js";
import { ADDR, AT, F, J, LAZY_LOCALS, LOCALS, N, P_END, P_R0, REG0, SLOW, STATE_LOCALS, T, WasmEmitter } from "./emitter.js";
import { FORMS } from "./forms.js";
import {
  BLOCK_TYPE, IMPORT_HANDLER, IMPORT_TYPES, LINK_BYTES, linkMemory, W_A, W_AT, W_B, W_BIT, W_EPOCH, W_FLAGS, W_MASK, W_OP, W_R,
  W_RETIRED, W_RM, W_STACK32, W_T, W_WM, WasmLinks, wasmBlock, wasmRuntime,
} from "./runtime.js";

export { attachWasm } from "./runtime.js";

/**
 * Whether the wasm tier takes the block: 32-bit code whose instructions all have a wasm form, or
 * with `mixed`, at most one in four (or a single one) calling its handler instead, none of them
 * with a repeat prefix.
 */
export function wasmCanTranslate(c: Cpu, first: number, count: number, wide: boolean, mixed: boolean): boolean {
  if (!wide || c.areaAddress === 0) return false;
  const d = c.dec;
  let handlers = 0;
  for (let k = 0; k < count; k++) {
    if (FORMS.has(slotHandler(d, first + k))) continue;
    // A repeated string instruction retires one instruction per element, which the block's own
    // count (a constant after the handler call) would not see: such blocks stay in the JS tier.
    if (d.pfx[first + k] & (Pfx.REP | Pfx.REPNE)) return false;
    handlers++;
  }
  return handlers === 0 || (mixed && (handlers <= 1 || handlers * 4 <= count));
}

/** The block as a wasm function behind a BlockFn, or null when the wasm tier does not take it (wasmCanTranslate). */
export function translateWasm(
  c: Cpu, first: number, count: number, wide: boolean, code: readonly (BlockFn | null)[], mixed: boolean,
): BlockFn | null {
  const rt = wasmRuntime(c);
  if (rt === null || !wasmCanTranslate(c, first, count, wide, mixed)) return null;
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
      imports: IMPORT_TYPES,
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
