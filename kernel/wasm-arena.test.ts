import { describe, expect, it } from "vitest";
import { CHUNK_FRAMES, FRAME_SIZE, FrameStore } from "./frames.js";
import { WasmArena } from "./wasm-arena.js";

describe("WebAssembly arena", () => {
  it("hands out zeroed, page-aligned bytes of one growing memory, and refuses past its maximum", () => {
    const arena = new WasmArena(4 << 20);
    const a = arena.alloc(100)!;
    const b = arena.alloc(3 << 20)!;
    expect(arena.addressOf(a)).toBe(65536); // address 0 is never handed out
    expect(arena.addressOf(b)).toBe(65536 + 4096);
    expect(b.every((x) => x === 0)).toBe(true);
    a[0] = 7;
    // Views taken before the memory grew still show it (a shared memory is never detached).
    expect(new Uint8Array(arena.memory.buffer)[65536]).toBe(7);
    expect(arena.alloc(1 << 20)).toBeNull();
    expect(arena.addressOf(new Uint8Array(16))).toBe(0);
  });

  it("gives a frame store's chunks their storage, in the same place again after a discard", () => {
    const arena = new WasmArena(2 * CHUNK_FRAMES * FRAME_SIZE + 2 * 65536, 2 * CHUNK_FRAMES * FRAME_SIZE);
    const frames = new FrameStore(2 * CHUNK_FRAMES, arena);
    const first = frames.use(CHUNK_FRAMES + 1);
    const at = arena.addressOf(first);
    expect(at).toBeGreaterThan(0);
    first[FRAME_SIZE] = 0x55;
    frames.discard(CHUNK_FRAMES + 1);
    expect(frames.chunks[1].byteLength).toBe(0);
    const again = frames.use(CHUNK_FRAMES + 1);
    expect(arena.addressOf(again)).toBe(at);
    expect(again[FRAME_SIZE]).toBe(0);
    // Other allocations come after the frames, whichever is made first.
    expect(arena.addressOf(arena.alloc(4096)!)).toBe(65536 + 2 * CHUNK_FRAMES * FRAME_SIZE);
  });
});
