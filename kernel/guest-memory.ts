// Guest-physical memory of a VM as a vCPU engine sees it: a page table from guest page numbers
// to bytes of delegated frames. The kernel keeps it in step with the VM PD's memory space.

import { MemRights } from "../capabilities/index.js";
import type { WasmArena } from "./wasm-arena.js";

/** The rights of a guest page are those of the memory capability it is mapped from. */
export { MemRights };

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** 32-bit guest-physical space: 2^20 pages of 4 KiB. */
export const GUEST_PAGES = 1 << 20;
/** A VM's page tables (offsetOf, storeOf, rightsOf): 7 MiB. */
export const TABLE_BYTES = 7 * GUEST_PAGES;

/**
 * Page-granular view of guest-physical memory. Engines read the arrays directly on their
 * hot path: `rightsOf[gpn]` is the MemRights of the page, 0 when it is not mapped (MMIO exit);
 * only for a mapped page, `storeOf[gpn]` is an index into `stores` (and `views`, a DataView of
 * each store) and `offsetOf[gpn]` the byte offset of the page in that store. (So a new VM's
 * table is all zero: nothing to fill, and untouched parts cost no host memory.) A VM's stores are the kernel's frame chunks, shared with the
 * frame store: a chunk's entry changes when its storage comes or goes, never while a page of it is
 * mapped. `generation` changes whenever any mapping is added, removed or changed, so engines can
 * drop cached translations.
 */
export class GuestMemory {
  readonly offsetOf: Int32Array;
  readonly storeOf: Int16Array;
  readonly rightsOf: Uint8Array;
  generation = 0;
  /** Listeners told about every unmap or downgrade (engines flush their TLBs). */
  private readonly invalidated: Array<(gpn: number) => void> = [];

  constructor(
    readonly stores: Uint8Array[] = [],
    readonly views: DataView[] = [],
    /** The arena the stores come from when they are in one (a vCPU may put its state there too). */
    readonly arena: WasmArena | null = null,
    /**
     * Put the tables in the arena (when it has room) rather than in an ArrayBuffer of their own.
     * V8 counts an ArrayBuffer's 7 MiB as external memory and collects garbage when that grows,
     * WebAssembly memory it does not count: a process that restores VM after VM collected most of
     * its garbage for these tables (20 restores: 7 full collections, 4 with the tables in the arena).
     */
    tablesInArena = false,
  ) {
    const inArena = tablesInArena ? (arena?.alloc(TABLE_BYTES) ?? null) : null;
    // One buffer for the three tables: one allocation for a VM, not three.
    const buffer = inArena?.buffer ?? new ArrayBuffer(TABLE_BYTES);
    const at = inArena?.byteOffset ?? 0;
    this.offsetOf = new Int32Array(buffer, at, GUEST_PAGES);
    this.storeOf = new Int16Array(buffer, at + 4 * GUEST_PAGES, GUEST_PAGES);
    this.rightsOf = new Uint8Array(buffer, at + 6 * GUEST_PAGES, GUEST_PAGES);
    this.storeAddress = new Int32Array(arena !== null ? 1 << 15 : 0);
  }

  /**
   * With an arena: the arena address of each store that is in it, else 0 (a store index is an
   * Int16; an arena store keeps its place, so the address is taken when a page of it is mapped).
   */
  readonly storeAddress: Int32Array;

  /** Map guest page `gpn` to `PAGE_SIZE` bytes of `store` at `offset` (a store of its own, added on first use). */
  map(gpn: number, store: Uint8Array, offset: number, rights: number): void {
    let index = this.stores.indexOf(store);
    if (index < 0) {
      index = this.stores.length;
      this.stores.push(store);
      this.views.push(new DataView(store.buffer, store.byteOffset, store.byteLength));
    }
    this.mapStore(gpn, index, offset, rights);
  }

  /** Map guest page `gpn` to `PAGE_SIZE` bytes of store `index` at `offset`. */
  mapStore(gpn: number, index: number, offset: number, rights: number): void {
    if (this.arena !== null) this.storeAddress[index] = this.arena.addressOf(this.stores[index]);
    const wasMapped = this.rightsOf[gpn] !== 0;
    const changed = !wasMapped || this.rightsOf[gpn] !== rights || this.storeOf[gpn] !== index || this.offsetOf[gpn] !== offset;
    this.storeOf[gpn] = index;
    this.offsetOf[gpn] = offset;
    this.rightsOf[gpn] = rights;
    // Engines cache translations of pages that were not RAM too (as MMIO): any change is news.
    if (changed) this.invalidate(gpn);
  }

  unmap(gpn: number): void {
    if (this.rightsOf[gpn] === 0) return;
    this.rightsOf[gpn] = 0;
    this.invalidate(gpn);
  }

  /** The bytes of page `gpn`, or undefined when it is not mapped. A view, not a copy. */
  page(gpn: number): Uint8Array | undefined {
    if (this.rightsOf[gpn] === 0) return undefined;
    const s = this.storeOf[gpn];
    const off = this.offsetOf[gpn];
    return this.stores[s].subarray(off, off + PAGE_SIZE);
  }

  onInvalidate(listener: (gpn: number) => void): void {
    this.invalidated.push(listener);
  }

  private invalidate(gpn: number): void {
    this.generation++;
    for (const l of this.invalidated) l(gpn);
  }
}
