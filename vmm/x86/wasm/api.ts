// The WebAssembly JS API as used here (lib ES2022 declares none of it; lib DOM would declare the
// browser too).

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

export interface WasmTable {
  readonly length: number;
  grow(n: number): number;
  set(index: number, fn: unknown): void;
}

export type WasmImports = Record<string, Record<string, unknown>>;

export interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared?: boolean }) => WasmMemory;
  Table: new (d: { element: "anyfunc"; initial: number }) => WasmTable;
  Module: new (binary: Uint8Array) => object;
  Instance: new (module: object, imports: WasmImports) => { readonly exports: Record<string, unknown> };
}

export const WASM = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
