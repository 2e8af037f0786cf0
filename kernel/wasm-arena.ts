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

/** Allocations are never given back (a frame chunk has its place in the reserved part for good). */
export class WasmArena {
  readonly memory: WasmMemory;
  /** Next free address; address 0 is never allocated (0 means "not in the arena" to its users). */
  private top: number;
  /** Buffers of views handed out (the memory's buffer object changes when it grows). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  /**
   * The first `reservedBytes` after address 0's page are held for `reserved` (the frames: each
   * chunk has its fixed place there, so vCPU state allocated first cannot crowd them out); `alloc`
   * hands out the rest, up to `maxBytes` in all.
   */
  constructor(
    readonly maxBytes: number,
    readonly reservedBytes = 0,
  ) {
    const pages = Math.min(65536, Math.ceil(maxBytes / WASM_PAGE));
    this.memory = new wasm.Memory({ initial: 1, maximum: pages, shared: true });
    this.top = WASM_PAGE + Math.ceil(reservedBytes / WASM_PAGE) * WASM_PAGE;
  }

  get pages(): number {
    return this.memory.buffer.byteLength / WASM_PAGE;
  }

  /** `bytes` zeroed bytes at an address aligned to 4096, or null when the arena is full. */
  alloc(bytes: number): Uint8Array | null {
    const at = this.top;
    const end = at + Math.ceil(bytes / 4096) * 4096;
    if (!this.cover(end)) return null;
    this.top = end;
    return this.view(at, bytes);
  }

  /** `bytes` bytes at `offset` of the reserved part (zeroed until first written). */
  reserved(offset: number, bytes: number): Uint8Array {
    if (offset < 0 || offset + bytes > this.reservedBytes) throw new RangeError(`arena: ${bytes} bytes at ${offset} are not in the reserved ${this.reservedBytes}`);
    const at = WASM_PAGE + offset;
    if (!this.cover(at + bytes)) throw new RangeError("arena: the reserved part does not fit its maximum");
    return this.view(at, bytes);
  }

  /** Grow the memory to hold addresses below `end`; false when that is past the maximum. */
  private cover(end: number): boolean {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return true;
    const more = Math.ceil((end - have) / WASM_PAGE);
    if (have / WASM_PAGE + more > Math.ceil(this.maxBytes / WASM_PAGE)) return false;
    this.memory.grow(more);
    return true;
  }

  private view(at: number, bytes: number): Uint8Array {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return new Uint8Array(buffer, at, bytes);
  }

  /** The address of `bytes` in the memory, or 0 when they are not the arena's. */
  addressOf(bytes: Uint8Array): number {
    return this.buffers.has(bytes.buffer) ? bytes.byteOffset : 0;
  }
}
