// The costs that decide the design of a WebAssembly tier for hot guest code (issue 15), each
// measured in CPU time on a loop shaped like the XZ decompressor's range decoder (a 16-bit
// probability read, updated and written back, at a data-dependent address in a 256 KiB chunk):
// - JS typed-array access to guest RAM in an ArrayBuffer vs in a shared WebAssembly.Memory
//   (option 1 keeps guest RAM in such a memory so that wasm code can reach it);
// - the same loop in wasm with the TLB lookup inline over its own memory (option 1), and with
//   every guest memory access an imported JS function (option 2);
// - a JS-to-wasm call per block (a wasm block entered from the run loop's trampoline).
// Usage: npx tsx test/bench/wasm-costs.ts --case js-ab|js-sab|wasm-tlb-shared|wasm-tlb|wasm-import|js-to-wasm [--n 20000000]

import { parseArgs } from "node:util";
import { WASM, type WasmImports, type WasmMemory } from "../../vmm/x86/wasm/api.js";
import { Body, encodeModule, I32, Op } from "../../vmm/x86/wasm/encoder.js";

const CHUNK = 256 << 10;
const PAGES = CHUNK >> 12;

function cpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** ns per iteration of f(n), best of `rounds` after a warm-up. */
function measure(name: string, n: number, f: (n: number) => number, rounds = 5): number {
  f(n >> 4);
  let best = Infinity;
  let sink = 0;
  for (let k = 0; k < rounds; k++) {
    const t = cpu();
    sink ^= f(n);
    best = Math.min(best, cpu() - t);
  }
  const ns = (best / n) * 1e9;
  console.log(`${name.padEnd(48)} ${ns.toFixed(2)} ns/iteration (${sink & 1})`);
  return ns;
}

/** The JS tier's access path: linear page -> store index and offset, through DataViews. */
function jsLoop(views: DataView[], ts: Int16Array, to: Int32Array, tf: Uint8Array) {
  return (n: number): number => {
    let x = 12345, acc = 0;
    for (let k = 0; k < n; k++) {
      x = (Math.imul(x, 1103515245) + 12345) | 0;
      const l = (x >>> 8) & (CHUNK - 2);
      const p = l >>> 12;
      if (tf[p] & 1 && (l & 4095) !== 4095) {
        const v = views[ts[p]].getUint16(to[p] + (l & 4095), true);
        const u = v + ((2048 - v) >> 5);
        if (tf[p] & 2) views[ts[p]].setUint16(to[p] + (l & 4095), u, true);
        acc = (acc + u) | 0;
      }
    }
    return acc;
  };
}

function tlbFor(views: DataView[]): { ts: Int16Array; to: Int32Array; tf: Uint8Array } {
  const ts = new Int16Array(PAGES), to = new Int32Array(PAGES), tf = new Uint8Array(PAGES);
  for (let p = 0; p < PAGES; p++) {
    ts[p] = 0;
    to[p] = p << 12;
    tf[p] = 3;
  }
  void views;
  return { ts, to, tf };
}

/**
 * The wasm loop. Memory layout: TLB flags at 0 (PAGES bytes), the page's address in memory at
 * 4096 (PAGES words), guest RAM at 65536. With `imported`, reads and writes call f0 / f1.
 */
function wasmLoop(memory: WasmMemory, shared: boolean, imported: [(a: number) => number, (a: number, x: number) => number] | null) {
  const b = new Body(5); // params: n (0); locals: k 1, x 2, acc 3, l 4, v 5
  const L_N = 0, K = 1, X = 2, ACC = 3, L = 4, V = 5;
  b.i32(12345).set(X);
  b.op(Op.block, 0x40, Op.loop, 0x40);
  b.get(K).get(L_N).op(Op.i32GeS).idx(Op.brIf, 1);
  b.get(X).i32(1103515245).op(Op.i32Mul).i32(12345).op(Op.i32Add).tee(X);
  b.i32(8).op(Op.i32ShrU).i32(CHUNK - 2).op(Op.i32And).set(L);
  if (imported) {
    b.get(L).idx(Op.call, 0).set(V);
    b.get(L).get(V).i32(2048).get(V).op(Op.i32Sub).i32(5).op(Op.i32ShrS).op(Op.i32Add).tee(V).idx(Op.call, 1).op(Op.drop);
    b.get(ACC).get(V).op(Op.i32Add).set(ACC);
  } else {
    // if (tf[p] & 1 && (l & 4095) != 4095) { v = load16(addr[p] + (l & 4095)); ... }
    b.get(L).i32(12).op(Op.i32ShrU).mem(Op.i32Load8u, 0, 0).i32(1).op(Op.i32And);
    b.get(L).i32(4095).op(Op.i32And).i32(4095).op(Op.i32Ne).op(Op.i32And);
    b.op(Op.if, 0x40);
    b.get(L).i32(12).op(Op.i32ShrU).i32(2).op(Op.i32Shl).mem(Op.i32Load, 2, 4096).get(L).i32(4095).op(Op.i32And).op(Op.i32Add).tee(L);
    b.get(L).mem(Op.i32Load16u, 0, 0);
    b.tee(V).i32(2048).get(V).op(Op.i32Sub).i32(5).op(Op.i32ShrS).op(Op.i32Add).set(V);
    b.get(V).mem(Op.i32Store16, 0, 0);
    b.get(ACC).get(V).op(Op.i32Add).set(ACC);
    b.op(Op.end);
  }
  b.get(K).i32(1).op(Op.i32Add).set(K);
  b.idx(Op.br, 0);
  b.op(Op.end, Op.end);
  b.get(ACC);
  const binary = encodeModule({
    imports: imported ? [{ params: [I32], results: [I32] }, { params: [I32, I32], results: [I32] }] : [],
    memory: { minPages: memory.buffer.byteLength >> 16, maxPages: 1024, shared },
    funcs: [{ type: { params: [I32], results: [I32] }, body: b }],
  });
  const imports: WasmImports = { m: { memory } };
  if (imported) imports.f = { 0: imported[0], 1: imported[1] };
  const inst = new WASM.Instance(new WASM.Module(binary), imports);
  return inst.exports.f0 as (n: number) => number;
}

/** A wasm function doing almost nothing, called from JS once per "block". */
function wasmCall(memory: WasmMemory, shared: boolean) {
  const b = new Body(0);
  b.get(0).i32(1).op(Op.i32Add);
  const binary = encodeModule({
    imports: [],
    memory: { minPages: memory.buffer.byteLength >> 16, maxPages: 1024, shared },
    funcs: [{ type: { params: [I32], results: [I32] }, body: b }],
  });
  const f = new WASM.Instance(new WASM.Module(binary), { m: { memory } }).exports.f0 as (x: number) => number;
  return (n: number): number => {
    let x = 0;
    for (let k = 0; k < n; k++) x = f(x);
    return x;
  };
}

const CASES = ["js-ab", "js-sab", "wasm-tlb-shared", "wasm-tlb", "wasm-import", "js-to-wasm"] as const;

/** One case per process: typed-array access sites that saw two kinds of buffer stay polymorphic. */
function main(): void {
  const { values } = parseArgs({ options: { n: { type: "string", default: "20000000" }, case: { type: "string", default: "js-ab" } } });
  const n = Number(values.n);
  const which = values.case as (typeof CASES)[number];
  if (!CASES.includes(which)) throw new Error(`--case takes one of ${CASES.join(", ")}`);
  const mem = new WASM.Memory({ initial: 16, maximum: 1024, shared: true });
  const shared = [new DataView(mem.buffer, 65536, CHUNK)];
  const words = new Int32Array(mem.buffer);
  const flags = new Uint8Array(mem.buffer);
  for (let p = 0; p < PAGES; p++) {
    flags[p] = 3;
    words[1024 + p] = 65536 + (p << 12);
  }
  switch (which) {
    case "js-ab": {
      const plain = [new DataView(new ArrayBuffer(CHUNK))];
      const t = tlbFor(plain);
      measure("JS, guest RAM in an ArrayBuffer", n, jsLoop(plain, t.ts, t.to, t.tf));
      break;
    }
    case "js-sab": {
      const t = tlbFor(shared);
      measure("JS, guest RAM in a shared wasm memory", n, jsLoop(shared, t.ts, t.to, t.tf));
      break;
    }
    case "wasm-tlb-shared":
      measure("wasm, inline TLB over its memory (shared)", n, wasmLoop(mem, true, null));
      break;
    case "wasm-tlb": {
      const own = new WASM.Memory({ initial: 16, maximum: 1024 });
      new Uint8Array(own.buffer).set(new Uint8Array(mem.buffer, 0, 16 << 16));
      measure("wasm, inline TLB over its memory (not shared)", n, wasmLoop(own, false, null));
      break;
    }
    case "wasm-import": {
      const v = shared[0];
      const rd = (l: number) => v.getUint16(l, true);
      const wr = (l: number, x: number) => (v.setUint16(l, x, true), 0);
      measure("wasm, memory accesses as imported JS calls", n, wasmLoop(mem, true, [rd, wr]));
      break;
    }
    case "js-to-wasm":
      measure("JS -> wasm call (per block entry)", n, wasmCall(mem, true));
      break;
  }
}

main();
