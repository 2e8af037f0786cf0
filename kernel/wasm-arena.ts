// Host memory that WebAssembly code can reach: one shared WebAssembly.Memory from which frame
// chunks and vCPU state are allocated, so that code compiled to wasm (the x86 core's wasm tier)
// addresses guest RAM, registers and the TLB in its own memory. Shared, because growing a shared
// memory never detaches its buffer: detaching any ArrayBuffer trips V8's detach protector, which
// made every typed-array access of the process slower (the whole boot 14-23%).

interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const WASM_PAGE = 65536;
const wasm = (globalThis as unknown as {
  WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory };
}).WebAssembly;

/** Allocations are never given back (a frame chunk keeps its place for when it comes back). */
export class WasmArena {
  readonly memory: WasmMemory;
  /** Next free address; address 0 is never allocated (0 means "not in the arena" to its users). */
  private top = WASM_PAGE;
  /** Buffers of views handed out (the memory's buffer object changes when it grows). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  constructor(readonly maxBytes: number) {
    const pages = Math.min(65536, Math.ceil(maxBytes / WASM_PAGE));
    this.memory = new wasm.Memory({ initial: 1, maximum: pages, shared: true });
  }

  get pages(): number {
    return this.memory.buffer.byteLength / WASM_PAGE;
  }

  /** `bytes` zeroed bytes at an address aligned to 4096, or null when the arena is full. */
  alloc(bytes: number): Uint8Array | null {
    const at = this.top;
    const end = at + Math.ceil(bytes / 4096) * 4096;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const more = Math.ceil((end - have) / WASM_PAGE);
      if (have / WASM_PAGE + more > Math.ceil(this.maxBytes / WASM_PAGE)) return null;
      this.memory.grow(more);
    }
    this.top = end;
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return new Uint8Array(buffer, at, bytes);
  }

  /** The address of `bytes` in the memory, or 0 when they are not the arena's. */
  addressOf(bytes: Uint8Array): number {
    return this.buffers.has(bytes.buffer) ? bytes.byteOffset : 0;
  }
}
