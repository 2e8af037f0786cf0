// A capability space: slots (selectors, pages or ports) of one protection domain holding mappings.

import { SPACE_ORDER, SpaceKind } from "./crd.js";
import type { Mapping } from "./mapping.js";

const CHUNK_SHIFT = 10;
const CHUNK_SIZE = 1 << CHUNK_SHIFT;
/** Revocations a space remembers the slot of (a power of two). */
export const REVOCATION_LOG = 4096;

/** Called whenever a slot changes (set, downgrade, or remove); the kernel mirrors memory spaces with it. */
export type SlotListener = (index: number, mapping: Mapping | undefined) => void;

/**
 * Sparse table of slots in chunks of 1024, so that lookups are two array loads and iterating a
 * range skips empty chunks. `owner` is whatever the kernel hangs the space on (its PD).
 */
export class Space {
  private readonly chunks: Array<Array<Mapping | undefined> | undefined> = [];
  private readonly chunkCounts: number[] = [];
  /** Number of occupied slots. */
  size = 0;
  /** Counts removals and downgrades: a holder of views into the slots' objects sees that they may be stale. */
  revocations = 0;
  /** The slot of each of the last REVOCATION_LOG revocations, at its number modulo the log's size (made on the first). */
  private log: Int32Array | null = null;
  listener: SlotListener | null = null;
  /**
   * Slots [0, bootSlots) were filled at boot with `bootMapping(index)` (boot capabilities with no
   * parent): each chunk of them is made the first time it is looked at (get, mappingsIn, all), so
   * a kernel with many frames does not build a mapping per frame before anyone needs one.
   */
  private bootSlots = 0;
  private bootMapping: ((index: number) => Mapping) | null = null;
  /** 1 for each chunk of the boot range that was made. */
  private bootMade: Uint8Array | null = null;

  /** Number of slots: indices are integers in [0, slots). */
  readonly slots: number;

  constructor(
    readonly kind: SpaceKind,
    readonly owner: unknown,
  ) {
    this.slots = 2 ** SPACE_ORDER[kind];
  }

  /**
   * Fill slots [0, count) (all empty) with `make(index)`, the mappings of boot capabilities: as if
   * each were `set` now (they count in `size` at once), but each is made only when its chunk is
   * first looked at, and without telling the listener.
   */
  fillAtBoot(count: number, make: (index: number) => Mapping): void {
    if (this.size !== 0 || this.bootMapping !== null || count < 0 || count > this.slots) throw new RangeError("fillAtBoot: only once, into an empty space, within its slots");
    this.bootSlots = count;
    this.bootMapping = make;
    this.bootMade = new Uint8Array(Math.ceil(count / CHUNK_SIZE));
    this.size = count;
  }

  /** The mapping in slot `index`; undefined when it is empty or `index` names no slot (no wrap-around). */
  get(index: number): Mapping | undefined {
    if ((index | 0) !== index || index < 0 || index >= this.slots) return undefined;
    const chunk = this.chunks[index >>> CHUNK_SHIFT] ?? this.madeAtBoot(index >>> CHUNK_SHIFT);
    return chunk === undefined ? undefined : chunk[index & (CHUNK_SIZE - 1)];
  }

  /** Chunk `ci` of the boot range, made now if it was not yet; undefined when there is none. */
  private madeAtBoot(ci: number): Array<Mapping | undefined> | undefined {
    const made = this.bootMade;
    if (made === null || ci >= made.length || made[ci] === 1) return undefined;
    made[ci] = 1;
    const chunk = (this.chunks[ci] = new Array<Mapping | undefined>(CHUNK_SIZE).fill(undefined));
    const end = Math.min(this.bootSlots, (ci + 1) * CHUNK_SIZE);
    for (let i = ci * CHUNK_SIZE; i < end; i++) chunk[i & (CHUNK_SIZE - 1)] = this.bootMapping!(i);
    this.chunkCounts[ci] = end - ci * CHUNK_SIZE;
    return chunk;
  }

  /** Put `m` into its (empty) slot. */
  set(m: Mapping): void {
    const ci = m.index >>> CHUNK_SHIFT;
    let chunk = this.chunks[ci] ?? this.madeAtBoot(ci);
    if (chunk === undefined) {
      chunk = this.chunks[ci] = new Array<Mapping | undefined>(CHUNK_SIZE).fill(undefined);
      this.chunkCounts[ci] = 0;
    }
    chunk[m.index & (CHUNK_SIZE - 1)] = m;
    this.chunkCounts[ci]++;
    this.size++;
    this.listener?.(m.index, m);
  }

  /** Empty the slot of `m` (it must be there). */
  clear(m: Mapping): void {
    const ci = m.index >>> CHUNK_SHIFT;
    const chunk = this.chunks[ci]!;
    chunk[m.index & (CHUNK_SIZE - 1)] = undefined;
    this.size--;
    if (--this.chunkCounts[ci] === 0) this.chunks[ci] = undefined;
    this.noteRevocation(m.index);
    this.listener?.(m.index, undefined);
  }

  /** Tell the listener that the rights of the mapping in `index` changed. */
  changed(m: Mapping): void {
    this.noteRevocation(m.index);
    this.listener?.(m.index, m);
  }

  /**
   * The slots revoked since the count was `since`, oldest first (a slot may come more than once),
   * or null when the log does not reach back that far.
   */
  revokedSince(since: number): number[] | null {
    if (!Number.isInteger(since) || since < 0 || since > this.revocations || this.revocations - since > REVOCATION_LOG) return null;
    const out: number[] = [];
    for (let n = since; n < this.revocations; n++) out.push(this.log![n & (REVOCATION_LOG - 1)]);
    return out;
  }

  private noteRevocation(index: number): void {
    (this.log ??= new Int32Array(REVOCATION_LOG))[this.revocations & (REVOCATION_LOG - 1)] = index;
    this.revocations++;
  }

  /** The occupied slots in [base, base + count), in index order. Skips empty chunks. */
  mappingsIn(base: number, count: number): Mapping[] {
    const out: Mapping[] = [];
    const end = base + count;
    let i = base;
    while (i < end) {
      const ci = i >>> CHUNK_SHIFT;
      const chunk = this.chunks[ci] ?? this.madeAtBoot(ci);
      const chunkEnd = Math.min(end, (ci + 1) * CHUNK_SIZE);
      if (chunk !== undefined) {
        for (; i < chunkEnd; i++) {
          const m = chunk[i & (CHUNK_SIZE - 1)];
          if (m !== undefined) out.push(m);
        }
      }
      i = chunkEnd;
    }
    return out;
  }

  /** Every occupied slot. */
  all(): Mapping[] {
    const out: Mapping[] = [];
    for (let ci = 0; ci < (this.bootMade?.length ?? 0); ci++) if (this.chunks[ci] === undefined) this.madeAtBoot(ci);
    for (const chunk of this.chunks) {
      if (chunk === undefined) continue;
      for (const m of chunk) if (m !== undefined) out.push(m);
    }
    return out;
  }
}

export { SpaceKind };
