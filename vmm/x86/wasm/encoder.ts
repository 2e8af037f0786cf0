// A tiny WebAssembly binary encoder: one module of functions over one imported memory, with
// imported functions, i32 locals and the structured control flow the block translator needs.
// Only the opcodes used are named; see the WebAssembly core specification, section 5 (binary format).

/** Value types. */
export const I32 = 0x7f, F64 = 0x7c;
/** Block type "no result". */
export const VOID = 0x40;

/** Opcodes (core spec 5.4). */
export const Op = {
  unreachable: 0x00, block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d,
  return: 0x0f, call: 0x10, callIndirect: 0x11, drop: 0x1a, select: 0x1b,
  localGet: 0x20, localSet: 0x21, localTee: 0x22, globalGet: 0x23, globalSet: 0x24,
  i32Load: 0x28, f64Load: 0x2b, i32Load8u: 0x2d, i32Load16u: 0x2f, i32Store: 0x36, f64Store: 0x39,
  i32Store8: 0x3a, i32Store16: 0x3b,
  i32Const: 0x41, i64Const: 0x42, f64Eq: 0x61,
  i32Eqz: 0x45, i32Eq: 0x46, i32Ne: 0x47, i32LtS: 0x48, i32LtU: 0x49, i32GtS: 0x4a, i32GtU: 0x4b,
  i32LeS: 0x4c, i32LeU: 0x4d, i32GeS: 0x4e, i32GeU: 0x4f,
  i32Add: 0x6a, i32Sub: 0x6b, i32Mul: 0x6c, i32And: 0x71, i32Or: 0x72, i32Xor: 0x73,
  i32Shl: 0x74, i32ShrS: 0x75, i32ShrU: 0x76,
  i32Extend8s: 0xc0, i32Extend16s: 0xc1,
} as const;

/** Unsigned LEB128 of n (n < 2^32) appended to out. */
export function uleb(out: number[], n: number): void {
  n >>>= 0;
  do {
    const b = n & 0x7f;
    n >>>= 7;
    out.push(n !== 0 ? b | 0x80 : b);
  } while (n !== 0);
}

/** Signed LEB128 of the int32 n appended to out. */
export function sleb(out: number[], n: number): void {
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return;
  }
}

/** The code of one function body (locals are all i32 past the parameters). */
export class Body {
  readonly code: number[] = [];
  constructor(
    /** i32 locals beyond the parameters. */
    public locals = 0,
  ) {}

  op(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }
  i32(n: number): this {
    this.code.push(Op.i32Const);
    sleb(this.code, n);
    return this;
  }
  get(l: number): this {
    this.code.push(Op.localGet);
    uleb(this.code, l);
    return this;
  }
  set(l: number): this {
    this.code.push(Op.localSet);
    uleb(this.code, l);
    return this;
  }
  tee(l: number): this {
    this.code.push(Op.localTee);
    uleb(this.code, l);
    return this;
  }
  /** A memory access opcode with its alignment (log2) and constant offset. */
  mem(opcode: number, align: number, offset = 0): this {
    this.code.push(opcode, align);
    uleb(this.code, offset);
    return this;
  }
  /** br / br_if / call with an index immediate. */
  idx(opcode: number, n: number): this {
    this.code.push(opcode);
    uleb(this.code, n);
    return this;
  }
}

export interface FuncType {
  params: number[];
  results: number[];
}

export interface ModuleSpec {
  /** Imported functions "f"."<index>": their types. */
  imports: FuncType[];
  /** Memory imported as "m"."memory" (shared or not, at least `minPages` pages). */
  memory: { minPages: number; maxPages: number; shared: boolean } | null;
  /** A function table imported as "t"."table" (at least `minTable` entries), or null. */
  minTable?: number | null;
  /** Types for call_indirect (indices into the module's types follow the functions' own). */
  indirectTypes?: FuncType[];
  /** Defined functions, exported as "f<index>". */
  funcs: { type: FuncType; body: Body }[];
}

function vec(out: number[], items: number[][]): void {
  uleb(out, items.length);
  for (const it of items) out.push(...it);
}

function section(out: number[], id: number, content: number[]): void {
  out.push(id);
  uleb(out, content.length);
  for (const b of content) out.push(b);
}

function str(s: string): number[] {
  const out: number[] = [];
  uleb(out, s.length);
  for (let k = 0; k < s.length; k++) out.push(s.charCodeAt(k));
  return out;
}

/** The index of type t among a module's types (the order encodeModule gives them). */
export function typeIndexIn(spec: ModuleSpec, t: FuncType): number {
  const keys: string[] = [];
  const key = (f: FuncType) => `${f.params.join(",")}:${f.results.join(",")}`;
  for (const f of [...spec.imports, ...spec.funcs.map((x) => x.type), ...(spec.indirectTypes ?? [])]) if (!keys.includes(key(f))) keys.push(key(f));
  return keys.indexOf(key(t));
}

/** The binary of a module. */
export function encodeModule(spec: ModuleSpec): Uint8Array {
  const types: string[] = [];
  const typeIndex = (t: FuncType): number => {
    const key = `${t.params.join(",")}:${t.results.join(",")}`;
    let k = types.indexOf(key);
    if (k < 0) k = types.push(key) - 1;
    return k;
  };
  const importTypes = spec.imports.map(typeIndex);
  const funcTypes = spec.funcs.map((f) => typeIndex(f.type));
  for (const t of spec.indirectTypes ?? []) typeIndex(t);
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const typeSec: number[] = [];
  vec(typeSec, types.map((key) => {
    const [p, r] = key.split(":").map((s) => (s === "" ? [] : s.split(",").map(Number)));
    const t = [0x60];
    uleb(t, p.length);
    t.push(...p);
    uleb(t, r.length);
    t.push(...r);
    return t;
  }));
  section(out, 1, typeSec);
  const imports: number[][] = importTypes.map((t, k) => {
    const e = [...str("f"), ...str(String(k)), 0x00];
    uleb(e, t);
    return e;
  });
  if (spec.memory !== null) {
    const m = spec.memory;
    const e = [...str("m"), ...str("memory"), 0x02, m.shared ? 0x03 : 0x01];
    uleb(e, m.minPages);
    uleb(e, m.maxPages);
    imports.push(e);
  }
  if (spec.minTable !== undefined && spec.minTable !== null) {
    const e = [...str("t"), ...str("table"), 0x01, 0x70, 0x00];
    uleb(e, spec.minTable);
    imports.push(e);
  }
  const importSec: number[] = [];
  vec(importSec, imports);
  section(out, 2, importSec);
  const funcSec: number[] = [];
  uleb(funcSec, funcTypes.length);
  for (const t of funcTypes) uleb(funcSec, t);
  section(out, 3, funcSec);
  const exportSec: number[] = [];
  vec(exportSec, spec.funcs.map((_, k) => {
    const e = [...str(`f${k}`), 0x00];
    uleb(e, spec.imports.length + k);
    return e;
  }));
  section(out, 7, exportSec);
  const codeSec: number[] = [];
  vec(codeSec, spec.funcs.map((f) => {
    const body: number[] = [];
    if (f.body.locals > 0) {
      body.push(1);
      uleb(body, f.body.locals);
      body.push(I32);
    } else {
      body.push(0);
    }
    body.push(...f.body.code, Op.end);
    const sized: number[] = [];
    uleb(sized, body.length);
    return [...sized, ...body];
  }));
  section(out, 10, codeSec);
  return new Uint8Array(out);
}
