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

/** Storage before the first look (no chunk's). */
const NOT_TAKEN = new Uint8Array(0);

/**
 * `pages` consecutive frames of one chunk as one byte array (no copy), held by the mappings they
 * were taken through. `bytes` is checked on every use: after one of those mappings is revoked (or
 * a writable view's mapping is made read-only), it throws MemoryRevokedError. The check is one
 * comparison until something in the space is revoked; then the mappings are looked at again.
 *
 * Keep the view, not an array read from it: an array is only as good as the moment it was read.
 * Within one JS heap nothing can take back an array a component keeps (detaching a buffer would
 * slow every typed-array access of the process, the x86 core's included: V8's detach protector).
 * A component that must not keep anything runs in a worker (`--isolate`), which gets copies.
 */
export class MemoryView {
  #bytes: Uint8Array;
  readonly #space: Space;
  readonly #mappings: readonly Mapping[];
  readonly #frames: FrameStore;
  /** The frames' chunk, and its storage and the space's revocation count when the mappings were last checked. */
  readonly #chunk: number;
  #storage: Uint8Array = NOT_TAKEN;
  #seen: number;

  /** Only the kernel makes views (`sys.memory`), from mappings it has checked. */
  constructor(
    space: Space,
    readonly page: number,
    mappings: readonly Mapping[],
    readonly writable: boolean,
  ) {
    this.#space = space;
    this.#mappings = mappings;
    this.#frames = mappings[0].cap.object as FrameStore;
    this.#chunk = frameChunk(mappings[0].offset);
    this.#seen = space.revocations;
    this.#bytes = this.#take();
  }

  /** Bytes in the view. */
  get length(): number {
    return this.#mappings.length * FRAME_SIZE;
  }

  /** The bytes; throws MemoryRevokedError when the view's capabilities went. */
  get bytes(): Uint8Array {
    if (this.#space.revocations === this.#seen && this.#frames.chunks[this.#chunk] === this.#storage) return this.#bytes;
    this.#check();
    this.#seen = this.#space.revocations;
    return (this.#bytes = this.#take());
  }

  /** Every mapping is still there, with the view's rights. */
  #check(): void {
    const need = this.writable ? MemRights.R | MemRights.W : MemRights.R;
    const maps = this.#mappings;
    for (let i = 0; i < maps.length; i++) {
      const m = maps[i];
      if (this.#space.get(this.page + i) !== m) throw new MemoryRevokedError(this.page + i, "revoked");
      if ((m.cap.rights & need) !== need) throw new MemoryRevokedError(this.page + i, (m.cap.rights & MemRights.R) !== 0 ? "read-only" : "revoked");
    }
  }

  /** The frames' bytes (their chunk gets storage if it had none: a discarded chunk comes back blank). */
  #take(): Uint8Array {
    const maps = this.#mappings;
    const first = maps[0].offset;
    let storage = this.#frames.use(first);
    for (let i = 1; i < maps.length; i++) storage = this.#frames.use(first + i);
    this.#storage = storage;
    const at = frameOffset(first);
    return storage.subarray(at, at + maps.length * FRAME_SIZE);
  }
}

Object.freeze(MemoryView.prototype);
