// Host memory handed out as page frames: the backing object of memory-space capabilities.

import type { CapObject } from "../capabilities/index.js";
import type { Mapping } from "../capabilities/index.js";
import type { WasmArena } from "./wasm-arena.js";

export const FRAME_SIZE = 4096;
/**
 * Most frames a kernel can have (2 GiB): a VM's page table keeps byte offsets into the frame store
 * as 32-bit signed integers (GuestMemory.offsetOf).
 */
export const MAX_FRAMES = 2 ** 19;
/** Frames per chunk of host storage (256 KiB): the unit in which storage comes and goes back. */
export const CHUNK_FRAMES = 64;

const NO_BYTES = new Uint8Array(0);
const NO_VIEW = new DataView(new ArrayBuffer(0));

/**
 * The frames, stored in chunks of CHUNK_FRAMES: frame n is bytes [(n % 64) * 4096, ...) of chunk
 * n / 64. A chunk has storage only while one of its frames is in use: a frame is blank (reads as
 * zero) until it is first used, and again after its holder discards it; a chunk of blank frames
 * gives its storage back to the JS heap. `chunks` and `views` (both never replaced, so VMs' page
 * tables can index them) hold an empty array for a chunk without storage.
 */
export class FrameStore implements CapObject {
  readonly type = 0;
  readonly chunks: Uint8Array[];
  readonly views: DataView[];
  /** 1 for each blank frame. */
  private readonly blank: Uint8Array;
  /** Frames in use per chunk. */
  private readonly used: Uint16Array;
  /** Bytes of storage the frames have now. */
  residentBytes = 0;
  /** VMs whose page tables (GuestMemory) the arena still has room for, beside the vCPU states it keeps room for. */
  private tableRoom = 0;

  /** With an arena, chunks are in its reserved part (WebAssembly code can reach them); it must hold `frames`. */
  constructor(readonly frames: number, readonly arena: WasmArena | null = null, tablesInArena = 0) {
    this.tableRoom = arena !== null ? tablesInArena : 0;
    if (frames > MAX_FRAMES) throw new RangeError(`${frames} frames: a kernel has at most ${MAX_FRAMES} (2 GiB)`);
    const chunks = Math.ceil(frames / CHUNK_FRAMES);
    this.chunks = new Array<Uint8Array>(chunks).fill(NO_BYTES);
    this.views = new Array<DataView>(chunks).fill(NO_VIEW);
    this.blank = new Uint8Array(frames).fill(1);
    this.used = new Uint16Array(chunks);
  }

  /** Whether the next VM's page tables go in the arena (the first `tablesInArena` VMs' do): the others' must not crowd out vCPU states. */
  takeTableRoom(): boolean {
    if (this.tableRoom === 0) return false;
    this.tableRoom--;
    return true;
  }

  /** Frame `frame` is about to be read or written: its chunk (with storage), where it is bytes [offset, offset + 4096). */
  use(frame: number): Uint8Array {
    const c = Math.floor(frame / CHUNK_FRAMES);
    let bytes = this.chunks[c];
    if (bytes === NO_BYTES) {
      const size = Math.min(CHUNK_FRAMES, this.frames - c * CHUNK_FRAMES) * FRAME_SIZE;
      bytes = this.chunks[c] = this.arena !== null ? this.arenaChunk(c, size) : new Uint8Array(size);
      this.views[c] = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.residentBytes += bytes.byteLength;
    }
    if (this.blank[frame]) {
      this.blank[frame] = 0;
      this.used[c]++;
      const at = (frame % CHUNK_FRAMES) * FRAME_SIZE;
      bytes.fill(0, at, at + FRAME_SIZE);
    }
    return bytes;
  }

  /** Chunk c's storage in the arena: its fixed place in the reserved part (it comes back blank: use() zeroes blank frames). */
  private arenaChunk(c: number, size: number): Uint8Array {
    return (this.arena as WasmArena).reserved(c * CHUNK_FRAMES * FRAME_SIZE, size);
  }

  /** Nobody needs what frame `frame` holds: it is blank from now on, and its chunk's storage goes when all of its frames are. */
  discard(frame: number): void {
    if (this.blank[frame]) return;
    this.blank[frame] = 1;
    const c = Math.floor(frame / CHUNK_FRAMES);
    if (--this.used[c] > 0) return;
    this.residentBytes -= this.chunks[c].byteLength;
    this.chunks[c] = NO_BYTES;
    this.views[c] = NO_VIEW;
  }
}

/** Byte offset of frame `frame` in its chunk. */
export function frameOffset(frame: number): number {
  return (frame % CHUNK_FRAMES) * FRAME_SIZE;
}

/** Chunk index of frame `frame`. */
export function frameChunk(frame: number): number {
  return Math.floor(frame / CHUNK_FRAMES);
}

/**
 * Can the holder of `m` discard its frame? Only when no one else sees it: nothing is derived from
 * `m`, and each of its ancestors delegated the frame to the next one alone (an ancestor can
 * revoke it anyway).
 */
export function heldAlone(m: Mapping): boolean {
  if (m.firstChild) return false;
  for (let c = m; c.parent; c = c.parent) if (c.prevSibling || c.nextSibling) return false;
  return true;
}
