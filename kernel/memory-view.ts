// A component's view of its memory: bytes that last only as long as the capabilities they came from.

import { MemRights, type Mapping, type Space } from "../capabilities/index.js";
import { FRAME_SIZE, type FrameStore, frameChunk, frameOffset } from "./frames.js";

/** A view was used after a page it shows was revoked or lost the right it was taken with. */
export class MemoryRevokedError extends Error {
  constructor(
    /** The page of the component's memory space that is gone or changed. */
    readonly page: number,
    /** "revoked": no longer the mapping the view was taken from; "read-only": it lost the write right. */
    readonly why: "revoked" | "read-only",
  ) {
    super(`memory view: page ${page} was ${why === "revoked" ? "revoked" : "made read-only"} since the view was taken`);
    this.name = "MemoryRevokedError";
  }
}

/**
 * `pages` consecutive frames of one chunk as one byte array (no copy), held by the mappings they
 * were taken through. `bytes` is checked on every use: after one of those mappings is revoked (or
 * a writable view's mapping is made read-only), it throws MemoryRevokedError. An array read from
 * `bytes` and kept is detached at the next revocation in its chunk (it reads nothing and writes
 * nowhere, FrameStore.revoked): keep the view, and read `bytes` where the bytes are used.
 */
export class MemoryView {
  #bytes: Uint8Array;
  readonly #space: Space;
  readonly #mappings: readonly Mapping[];

  /** Only the kernel makes views (`sys.memory`), from mappings it has checked. */
  constructor(
    space: Space,
    readonly page: number,
    mappings: readonly Mapping[],
    readonly writable: boolean,
  ) {
    this.#space = space;
    this.#mappings = mappings;
    this.#bytes = this.#take();
  }

  /** Bytes in the view. */
  get length(): number {
    return this.#mappings.length * FRAME_SIZE;
  }

  /** The bytes (valid until the next revocation in their chunk); throws MemoryRevokedError when the view's capabilities went. */
  get bytes(): Uint8Array {
    const b = this.#bytes;
    return b.byteLength !== 0 ? b : (this.#bytes = this.#take());
  }

  /** The bytes, after checking that every mapping is still there with the view's rights. */
  #take(): Uint8Array {
    const need = this.writable ? MemRights.R | MemRights.W : MemRights.R;
    const maps = this.#mappings;
    for (let i = 0; i < maps.length; i++) {
      const m = maps[i];
      if (this.#space.get(this.page + i) !== m) throw new MemoryRevokedError(this.page + i, "revoked");
      if ((m.cap.rights & need) !== need) throw new MemoryRevokedError(this.page + i, (m.cap.rights & MemRights.R) !== 0 ? "read-only" : "revoked");
    }
    const first = maps[0].offset;
    const frames = maps[0].cap.object as FrameStore;
    let bytes = frames.use(first);
    for (let i = 1; i < maps.length; i++) bytes = frames.use(first + i);
    frames.expose(frameChunk(first));
    const at = frameOffset(first);
    return bytes.subarray(at, at + maps.length * FRAME_SIZE);
  }
}

Object.freeze(MemoryView.prototype);
