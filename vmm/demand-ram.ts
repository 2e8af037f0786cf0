// Guest RAM backed on first touch. A VM starts with no frames: the first access of the guest to a
// page is an MMIO exit (the page is not mapped), and the VMM backs the page then: a read gets the
// memory manager's shared zero frame read-only, a write (or a read of a page a snapshot holds) a
// private frame, which is mapped into the VM. A write to a read-only page (the zero frame, or a
// frame the memory manager's scanner shares between VMs) exits too and makes it private: copy-on-
// write. Device models reach guest RAM through the same object (it is their GuestRam), so DMA
// backs pages the same way.
//
// The memory manager may take a page away at any time (its scanner merges equal pages, gives all-
// zero ones back): the VMM sees it in its memory space's revocation count and looks again at what
// it holds before it trusts a view it kept (a page it lost is backed again on its next touch).
//
// A resumed VM's pages come from its snapshot on first touch in the same way: restore costs the
// index of the file, not its RAM. A linked clone's snapshot is a template other VMs read too: a
// page it reads from there is shared at once (MemoryOp.SHARE), so clones of one template hold each
// page they only read once between them, and copy it on their first write.

import type { VcpuState } from "../kernel/index.js";
import { MemoryStatus, memoryStatusName } from "../services/memory-protocol.js";
import type { GuestRam } from "./devices/virtio/guest-ram.js";
import type { RamPages } from "./protocol.js";

/** Where a resumed VM's RAM comes from (a snapshot file). Pages it does not hold are zero. */
export interface GuestRamSource {
  hasPage(page: number): boolean;
  /** The pages it holds, in any order (what `hasPage` says yes to): faster than asking page by page. */
  storedPages?(): ArrayLike<number>;
  /**
   * The pages it holds that came since the last call (the first: all it holds), any order: a source
   * that grows (an incoming migration's RAM) is taken a part at a time, and what is left for the
   * stop is what came last. May also list pages that went since (they read as zero).
   */
  takeStored?(): ArrayLike<number>;
  /** Page `page` (4 KiB) into `into`. */
  readPage(page: number, into: Uint8Array): void;
  /** Pages first, first+1, ... into `into` (4 KiB each), as readPage one by one would: a fault's read-ahead in one read of the file. */
  readPages?(first: number, into: readonly Uint8Array[]): void;
}

/** A page of the VMM's memory as `sys.memory` gives it: read `bytes` at each use (they follow revocations). */
export interface PageView {
  readonly bytes: Uint8Array;
}

/** What backing a page takes: the VMM's calls to the memory manager and the kernel. */
export interface RamBacking {
  /** Ask the memory manager to back window pages [first, first+count) (MemoryOp.BACK): its status and pages backed. */
  back(first: number, count: number, write: boolean): { status: number; pages: number };
  /** Unmap window page `page` from the VMM (and so from the VM): it held the zero frame. */
  unmap(page: number): void;
  /** Share window pages [first, first+count), private and filled from a template, with equal ones (MemoryOp.SHARE): they come back read-only; pages shared. */
  share?(first: number, count: number): number;
  /** Give window pages [first, first+count) back to the memory manager (MemoryOp.FREE): pages freed. */
  free(first: number, count: number): number;
  /** Map window pages [first, first+count) into the VM at the same guest pages, read-only or not. */
  map(first: number, count: number, writable: boolean): void;
  /** The VMM's view of window page `page` (writable, or readable when `writable` is false), or null. */
  view(page: number, writable: boolean): PageView | null;
  /** The VMM's memory space's revocation count (sys.memoryRevocations). */
  revocations(): number;
  /** The window pages revoked since the count was `since` (sys.memoryRevokedSince, pages outside the window left out), or null when not known. */
  revokedSince?(since: number): number[] | null;
  /** Make the VM's mapping of page `page` read-only (dirty logging), or writable again. */
  protect(page: number, writable: boolean): void;
  /** Show a counter in the trace (sys.traceCount), if there is one. */
  traceCount?(name: string, value: number): void;
}

/** The memory manager refused a page the VM needs: the VM cannot go on. */
export class GuestMemoryError extends Error {
  constructor(readonly status: number, page: number) {
    super(`no host memory for guest page 0x${page.toString(16)}: the memory manager answered ${memoryStatusName(status)}`);
    this.name = "GuestMemoryError";
  }
}

const PAGE = 4096;
/**
 * Page states. READ_ONLY: the zero frame or a shared frame, mapped read-only. LOST: the memory
 * manager took the page away (it has it still, as a zero or shared page): like UNBACKED, but a
 * save must ask for it again first.
 */
const UNBACKED = 0, READ_ONLY = 1, PRIVATE = 2, FROM_SOURCE = 3, NOT_RAM = 4, LOST = 5;
/** DemandRam keeps the pages remapped since takeRemapped as a list up to this many (else a walk of RAM finds them). */
const REMAPPED_LIST_MAX = 4096;
/** pageWords' cache entries (a power of 2). */
const WORD_CACHE = 8;
/** Pages one FREE call covers (at most the protocol's MAX_BACK_PAGES). */
const RELEASE_RUN = 512;
/** Most pages one sequential fault backs ahead (fault-around), so a burst costs few calls. */
const MAX_BATCH = 16;
/**
 * Stored pages a snapshot page's fault backs (it and those after it), in the same call: a restored
 * guest's first touches cluster, but not far. An `echo` after a restore of the default guest: 1
 * page: 609 faults, 687 pages; 2: 476, 917; 4: 386, 1242; 8: 314, 1714; 16: 261, 2321. A page
 * backed costs about what a fault saves (new host memory, two mappings, its bytes read): with 4
 * the echo took 92.9 ms of CPU, with 8 117.2 (medians of 9 alternated rounds of 20 echoes).
 */
export const SOURCE_AHEAD = 4;

export class DemandRam implements GuestRam, RamPages {
  readonly pages: number;
  private readonly state: Uint8Array;
  /**
   * The VMM's view of each page it holds (read `bytes` at each use: a view renews itself after
   * revocations elsewhere). A map: a VM holds a few hundred of its 32,768 pages after a restore,
   * and an array of them all was 256 KiB of heap per VM.
   */
  private readonly views = new Map<number, PageView>();
  /** Pages still to come from the source. */
  private fromSource = 0;
  /**
   * Some page may be LOST (the memory manager took it away) since fillAll last ran: else fillAll
   * need not look at every page (a migration's stop calls it three times, each a loop over all RAM
   * in the downtime).
   */
  private maybeLost = true;
  /**
   * Counts every hand-out of a page's bytes for writing (every VMM and device write to guest RAM
   * goes through one; so do some reads): unchanged over a stretch, nothing wrote guest RAM there.
   */
  writes = 0;
  /** pageWords' arrays, direct-mapped by page number, each with the page bytes it was made over (kept only while page() gives those). */
  private readonly wordBytes: Array<Uint8Array | undefined> = new Array(WORD_CACHE);
  private readonly wordArrays: Array<Int32Array | undefined> = new Array(WORD_CACHE);
  /** The last page a fault made private, and how many the next sequential fault backs. */
  private lastFault = -2;
  private batch = 1;
  /** The memory manager granted pages from its reserve: the VM must stop (the VMM checks and clears). */
  low = false;
  /** Counters: pages backed by faults of the guest or by devices, calls to the memory manager, looks after a revocation. */
  readonly stats = { readFaults: 0, privateFaults: 0, copies: 0, calls: 0, released: 0, resyncs: 0, lost: 0, shared: 0 };
  /** The revocation count when this RAM last knew what it holds. */
  private seenRevocations: number;
  /**
   * Dirty logging (for live migration): 1 for each page written since the log was last collected,
   * or null when off. While it is on, a private page not yet dirty is mapped read-only in the VM,
   * so the guest's first write to it exits and is seen here; devices write through this object.
   */
  private dirty: Uint8Array | null = null;
  /** 1 for each private page mapped read-only in the VM for dirty logging. */
  private readonly writeProtected: Uint8Array;
  /**
   * 1 for each page whose frame changed (backed, copied, taken away, released), or that the VM may
   * write again (which takes every mapping derived from the VMM's), since the last takeRemapped():
   * what a component holding an earlier view of this RAM must take again.
   */
  private readonly remapped: Uint8Array;
  private remappedCount = 0;
  /**
   * Those pages as a list while they are at most REMAPPED_LIST_MAX (else null): takeRemapped then
   * need not walk all of RAM (a migration's stop takes the few the last round remapped).
   */
  private remappedList: number[] | null = [];

  constructor(
    readonly size: number,
    private readonly backing: RamBacking,
    private readonly source: GuestRamSource | null = null,
    /** The source is a template (a linked clone's): pages read from it are shared (RamBacking.share). */
    private readonly shareSource = false,
  ) {
    this.pages = Math.ceil(size / PAGE);
    this.seenRevocations = backing.revocations();
    this.state = new Uint8Array(this.pages);
    this.writeProtected = new Uint8Array(this.pages);
    this.remapped = new Uint8Array(this.pages);
    if (source?.takeStored) this.takeSource();
    else if (source?.storedPages) {
      const stored = source.storedPages();
      for (let i = 0; i < stored.length; i++) {
        const p = stored[i];
        if (p >= this.pages || this.state[p] === FROM_SOURCE) continue;
        this.state[p] = FROM_SOURCE;
        this.fromSource++;
      }
    } else if (source) {
      for (let p = 0; p < this.pages; p++) {
        if (!source.hasPage(p)) continue;
        this.state[p] = FROM_SOURCE;
        this.fromSource++;
      }
    }
  }

  /**
   * The source has more pages now (an incoming migration's, which came while the VM was built):
   * every page not yet backed that it holds comes from it on first touch.
   */
  takeSource(): void {
    if (!this.source) return;
    // The source's own list when it has one: a migration's stop asks once, not once per page of RAM;
    // a growing source's, only what came since it was last asked (the stop took 2 ms for 10,000 pages).
    const stored = this.source.takeStored?.() ?? this.source.storedPages?.();
    const take = (p: number) => {
      if (p >= this.pages || this.state[p] !== UNBACKED) return;
      this.state[p] = FROM_SOURCE;
      this.fromSource++;
    };
    if (stored) for (let i = 0; i < stored.length; i++) take(stored[i]);
    else for (let p = 0; p < this.pages; p++) if (this.source.hasPage(p)) take(p);
  }

  /**
   * The pages remapped since the last call (in order), and from now on none; or null
   * (and none from now on) when there were more than `max`: then take all of RAM again.
   */
  takeRemapped(max: number): number[] | null {
    const list = this.remappedList;
    let pages: number[] | null = null;
    if (this.remappedCount <= max && list) pages = list.sort((a, b) => a - b);
    else if (this.remappedCount <= max) {
      pages = [];
      for (let p = 0; p < this.pages; p++) if (this.remapped[p]) pages.push(p);
    }
    if (list) for (const p of list) this.remapped[p] = 0;
    else this.remapped.fill(0);
    this.remappedCount = 0;
    this.remappedList = [];
    return pages;
  }

  /**
   * Let the VM write page `p` again: its read-only mapping goes and a writable one comes, and with
   * it every other mapping derived from the VMM's (a control component's view): a remap for them.
   */
  private writable(p: number): void {
    this.backing.protect(p, true);
    this.markRemapped(p);
  }

  private markRemapped(p: number): void {
    if (this.remapped[p]) return;
    this.remapped[p] = 1;
    this.remappedCount++;
    if (this.remappedList && this.remappedList.length < REMAPPED_LIST_MAX) this.remappedList.push(p);
    else this.remappedList = null;
  }

  /** Page `p` has a frame in the VMM's window now (its own, the zero frame or a shared one). */
  mapped(p: number): boolean {
    return this.state[p] === PRIVATE || this.state[p] === READ_ONLY;
  }

  /** Page `p`'s view; a new view (of another frame, or none, or one where there was none) is a remap. */
  private setView(p: number, view: PageView | undefined): void {
    if (this.views.get(p) !== view) this.markRemapped(p);
    if (view) this.views.set(p, view);
    else this.views.delete(p);
  }

  /** Page `page` is not RAM (a ROM shadows it): never back it. */
  exclude(page: number): void {
    if (this.state[page] === FROM_SOURCE) this.fromSource--;
    if (this.state[page] === READ_ONLY || this.state[page] === PRIVATE) this.unmapOwn(page);
    this.state[page] = NOT_RAM;
    this.setView(page, undefined);
  }

  /**
   * The guest gave pages [first, first+count) back (a balloon inflated, free pages reported): their
   * frames go back to the host, and a later touch is a fresh zero page, whatever the guest said.
   * Returns the pages that held a frame or the zero frame.
   */
  release(first: number, count: number): number {
    this.sync();
    const end = Math.min(first + count, this.pages);
    let released = 0;
    for (let p = Math.max(0, first); p < end; p++) {
      const s = this.state[p];
      if (s === READ_ONLY) this.unmapOwn(p);
      if (s === FROM_SOURCE) this.fromSource--;
      if (s === READ_ONLY || s === PRIVATE || s === FROM_SOURCE || s === LOST) {
        this.state[p] = UNBACKED;
        this.setView(p, undefined);
        this.writeProtected[p] = 0;
        // Its bytes became zero: news for a migration.
        if (this.dirty) this.dirty[p] = 1;
        released++;
      }
    }
    // The memory manager takes the frames (from the VM too) in runs of what one call may cover.
    for (let p = Math.max(0, first); p < end; p += RELEASE_RUN) this.backing.free(p, Math.min(RELEASE_RUN, end - p));
    this.seenRevocations = this.backing.revocations();
    this.stats.released += released;
    this.backing.traceCount?.("released", this.stats.released);
    return released;
  }

  /** Whether an MMIO exit at `gpa` is this RAM's to answer (its page is not backed for this access). */
  handles(gpa: number, write: boolean): boolean {
    const page = Math.floor(gpa / PAGE);
    if (page >= this.pages) return false;
    this.sync();
    const s = this.state[page];
    return s === UNBACKED || s === LOST || s === FROM_SOURCE || (write && (s === READ_ONLY || this.writeProtected[page] === 1));
  }

  /** Answer an MMIO exit on a page that `handles`: back the page, then do the access on it. */
  access(q: VcpuState["qual"]): void {
    const at = q.address;
    const last = at + q.size - 1;
    this.touch(Math.floor(at / PAGE), q.write);
    if (Math.floor(last / PAGE) < this.pages) this.touch(Math.floor(last / PAGE), q.write);
    if (q.write) {
      for (let k = 0; k < q.size; k++) this.setU8(at + k, k < 4 ? (q.data >>> (8 * k)) & 0xff : (q.edx >>> (8 * (k - 4))) & 0xff);
      return;
    }
    let lo = 0, hi = 0;
    for (let k = 0; k < q.size; k++) {
      if (k < 4) lo |= this.u8(at + k) << (8 * k);
      else hi |= this.u8(at + k) << (8 * (k - 4));
    }
    q.data = lo >>> 0;
    if (q.size === 8) q.edx = hi >>> 0;
  }

  /**
   * Before a save reads RAM in place: every page the source still holds becomes real, and every
   * page the memory manager took away is asked for again (read-only).
   */
  fillAll(): void {
    this.sync();
    if (this.fromSource === 0 && !this.maybeLost) return;
    for (let p = 0; p < this.pages; p++) if (this.state[p] === FROM_SOURCE || this.state[p] === LOST) this.touch(p, false);
    this.maybeLost = false;
  }

  /** Copy `bytes` to guest-physical `gpa` (boot images). */
  write(gpa: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length; ) {
      const at = gpa + done;
      const n = Math.min(PAGE - (at % PAGE), bytes.length - done);
      const p = Math.floor(at / PAGE);
      if (this.state[p] !== NOT_RAM) this.page(p).set(bytes.subarray(done, done + n), at % PAGE);
      done += n;
    }
  }

  // ---- GuestRam: what device models see ----

  contains(gpa: number, length: number): boolean {
    return Number.isSafeInteger(gpa) && Number.isSafeInteger(length) && gpa >= 0 && length >= 0 && gpa + length <= this.size;
  }

  view(gpa: number, length: number): Uint8Array | null {
    if (!this.isRam(gpa, length) || (length > 0 && Math.floor(gpa / PAGE) !== Math.floor((gpa + length - 1) / PAGE))) return null;
    return this.page(Math.floor(gpa / PAGE)).subarray(gpa % PAGE, (gpa % PAGE) + length);
  }

  pageWords(page: number): Int32Array | null {
    if (!Number.isSafeInteger(page) || page < 0 || page >= this.pages || this.state[page] === NOT_RAM) return null;
    // page() checks the view (revocations) and takes the write; only the array built on top is kept.
    const bytes = this.page(page);
    const k = page & (WORD_CACHE - 1);
    if (this.wordBytes[k] !== bytes) {
      this.wordBytes[k] = bytes;
      this.wordArrays[k] = new Int32Array(bytes.buffer, bytes.byteOffset, PAGE >> 2);
    }
    return this.wordArrays[k]!;
  }

  segments(gpa: number, length: number): Uint8Array[] | null {
    if (!this.isRam(gpa, length)) return null;
    const out: Uint8Array[] = [];
    for (let done = 0; done < length; ) {
      const at = gpa + done;
      const n = Math.min(PAGE - (at % PAGE), length - done);
      const page = this.page(Math.floor(at / PAGE));
      out.push(page.subarray(at % PAGE, (at % PAGE) + n));
      done += n;
    }
    return out;
  }

  /** A byte; reading never makes a page private, nor backs one that has nothing. */
  u8(gpa: number): number {
    const p = Math.floor(gpa / PAGE);
    this.sync();
    // A page the memory manager took away still has its bytes there: ask for it again, read-only.
    if (this.state[p] === LOST || this.state[p] === FROM_SOURCE) this.touch(p, false);
    const s = this.state[p];
    return s === READ_ONLY || s === PRIVATE ? (this.views.get(p)?.bytes[gpa % PAGE] ?? 0) : 0;
  }

  u16(gpa: number): number {
    return this.u8(gpa) | (this.u8(gpa + 1) << 8);
  }

  u32(gpa: number): number {
    return (this.u16(gpa) | (this.u16(gpa + 2) << 16)) >>> 0;
  }

  /** A byte; a write to a page that is not RAM (under a ROM) goes nowhere. */
  setU8(gpa: number, value: number): void {
    const p = Math.floor(gpa / PAGE);
    if (this.state[p] !== NOT_RAM) this.page(p)[gpa % PAGE] = value;
  }

  setU16(gpa: number, value: number): void {
    this.setU8(gpa, value & 0xff);
    this.setU8(gpa + 1, (value >>> 8) & 0xff);
  }

  setU32(gpa: number, value: number): void {
    this.setU16(gpa, value & 0xffff);
    this.setU16(gpa + 2, (value >>> 16) & 0xffff);
  }

  /** Whether [gpa, gpa + length) is RAM, none of it under a ROM. */
  private isRam(gpa: number, length: number): boolean {
    if (!this.contains(gpa, length)) return false;
    for (let p = Math.floor(gpa / PAGE); p * PAGE < gpa + length; p++) if (this.state[p] === NOT_RAM) return false;
    return true;
  }

  // ---- RamPages: what a save reads ----

  /** Page `n`'s bytes, or null when it is all zero (never written, or zero-backed). */
  read(n: number): Uint8Array | null {
    this.sync();
    if (this.state[n] === LOST) this.touch(n, false);
    const s = this.state[n];
    if (s === PRIVATE) return this.page(n);
    if (s === READ_ONLY) return this.views.get(n)?.bytes ?? null;
    if (s === FROM_SOURCE) {
      const into = new Uint8Array(PAGE);
      this.source!.readPage(n, into);
      return into;
    }
    return null;
  }

  /** Host frames this RAM holds and zero-backed pages (for accounting views). */
  counts(): { private: number; zero: number; fromSource: number } {
    let priv = 0, zero = 0;
    for (let p = 0; p < this.pages; p++) {
      if (this.state[p] === PRIVATE) priv++;
      else if (this.state[p] === READ_ONLY) zero++;
    }
    return { private: priv, zero, fromSource: this.fromSource };
  }

  /** The writable bytes of page `n`, backing it privately first if it is not yet: the caller writes (it is dirty). */
  private page(n: number): Uint8Array {
    this.writes++;
    this.sync();
    if (this.state[n] !== PRIVATE) this.touch(n, true);
    const v = this.views.get(n);
    if (v === undefined) throw new GuestMemoryError(MemoryStatus.BAD_REQUEST, n);
    if (this.dirty) {
      this.dirty[n] = 1;
      // Written now: the guest's own writes to it need not exit again until the log is collected.
      if (this.writeProtected[n]) {
        this.writeProtected[n] = 0;
        this.writable(n);
      }
    }
    return v.bytes;
  }

  // ---- dirty logging ----

  /** Start logging writes: every private page becomes read-only in the VM until written. */
  startDirtyLog(): void {
    this.sync();
    this.dirty = new Uint8Array(this.pages);
    this.protectAll();
  }

  /**
   * The pages written since the log started or was last collected (1 each), and start again; with
   * `rearm` false the pages written stay writable, unlogged from now on: a paused VM's last look (a
   * migration's stop), where protecting them again was tens of kernel calls in the downtime, for a
   * VM that either goes or runs again only after stopDirtyLog.
   */
  collectDirty(rearm = true): Uint8Array {
    if (!this.dirty) throw new RangeError("dirty logging is off");
    this.sync();
    const written = this.dirty;
    this.dirty = new Uint8Array(this.pages);
    if (rearm) this.protectAll();
    return written;
  }

  /** Stop logging: the VM's private pages are writable again. */
  stopDirtyLog(): void {
    this.dirty = null;
    for (let p = 0; p < this.pages; p++) {
      if (!this.writeProtected[p]) continue;
      this.writeProtected[p] = 0;
      if (this.state[p] === PRIVATE) this.writable(p);
    }
  }

  get logging(): boolean {
    return this.dirty !== null;
  }

  private protectAll(): void {
    for (let p = 0; p < this.pages; p++) {
      if (this.state[p] !== PRIVATE || this.writeProtected[p]) continue;
      this.writeProtected[p] = 1;
      this.backing.protect(p, false);
    }
  }

  /** Back page `n` for a read or a write (and, after a sequential run of faults, the pages after it). */
  private touch(n: number, write: boolean): void {
    const s = this.state[n];
    if (s === PRIVATE || s === NOT_RAM || (s === READ_ONLY && !write)) return;
    if (s === READ_ONLY) {
      this.unmapOwn(n);
      this.state[n] = UNBACKED;
      this.setView(n, undefined);
      this.stats.copies++;
    }
    if (s === LOST) this.state[n] = UNBACKED;
    const fromSource = s === FROM_SOURCE;
    const private_ = write || fromSource;
    // A fault right after the page before it is a stream (a memset, a copy): back ahead of it.
    this.batch = n === this.lastFault + 1 ? Math.min(this.batch * 2, MAX_BATCH) : 1;
    const ahead = fromSource ? Math.max(this.batch, SOURCE_AHEAD) : this.batch;
    let count = 1;
    while (count < ahead && n + count < this.pages && this.state[n + count] === this.state[n]) count++;
    if (!private_) count = 1;
    // A template's pages that are only read (all but the one a write fault writes) are filled in
    // private frames, then shared read-only from `shareFrom` on (not while logging: a page read in
    // must then stay private and write-protected).
    const share = fromSource && this.shareSource && this.dirty === null && this.backing.share !== undefined;
    const shareFrom = share ? (write ? n + 1 : n) : n + count;
    const { status, pages } = this.call(n, count, private_);
    if (status !== MemoryStatus.OK && status !== MemoryStatus.LOW) throw new GuestMemoryError(status, n);
    if (status === MemoryStatus.LOW) this.low = true;
    if (pages !== count) throw new GuestMemoryError(MemoryStatus.BAD_REQUEST, n);
    if (shareFrom > n) this.backing.map(n, shareFrom - n, private_);
    // Pages [readFirst, readFirst + reads.length) come from the source, read once the loop has their frames.
    const reads: Uint8Array[] = [];
    let readFirst = n;
    for (let p = n; p < n + count; p++) {
      if (!private_) {
        this.state[p] = READ_ONLY;
        this.setView(p, this.backing.view(p, false) ?? undefined);
        this.stats.readFaults++;
        continue;
      }
      const view = this.backing.view(p, true) ?? undefined;
      this.setView(p, view);
      if (this.state[p] === FROM_SOURCE && view) {
        if (readFirst + reads.length !== p) {
          this.readSource(readFirst, reads);
          readFirst = p;
        }
        reads.push(view.bytes);
        this.fromSource--;
      }
      this.state[p] = PRIVATE;
      this.stats.privateFaults++;
      // Logging: a page backed ahead, or read in from a snapshot, is not written yet (a migration has
      // its bytes already): its first write must exit to be seen.
      if (this.dirty && (p !== n || !write)) {
        this.writeProtected[p] = 1;
        this.backing.protect(p, false);
      }
    }
    this.readSource(readFirst, reads);
    if (private_) this.lastFault = n + count - 1;
    if (shareFrom < n + count) this.shareFilled(shareFrom, n + count - shareFrom);
    const c = this.backing.traceCount;
    if (c) {
      c.call(this.backing, "read faults", this.stats.readFaults);
      c.call(this.backing, "private faults", this.stats.privateFaults);
      c.call(this.backing, "copies", this.stats.copies);
    }
  }

  /** Pages [first, first + into.length) from the source into `into` (emptied): one read when the source can. */
  private readSource(first: number, into: Uint8Array[]): void {
    const source = this.source!;
    if (into.length > 1 && source.readPages) source.readPages(first, into);
    else for (let i = 0; i < into.length; i++) source.readPage(first + i, into[i]);
    into.length = 0;
  }

  /** Pages [n, n+count), private and just filled from the source (not mapped in the VM yet): shared, and mapped read-only; a page the memory manager kept private is mapped writable. */
  private shareFilled(n: number, count: number): void {
    const shared = this.backing.share!(n, count);
    // Its revocations (of the private frames) are changes this RAM knows of.
    this.seenRevocations = this.backing.revocations();
    this.stats.shared += shared;
    // Runs of pages alike (kept private, shared, or lost) are mapped into the VM by one call each.
    let runStart = n, runState = -1;
    for (let p = n; p <= n + count; p++) {
      let state = -1;
      if (p < n + count) {
        if (this.backing.view(p, true) !== null) state = PRIVATE;
        else {
          const readable = this.backing.view(p, false) ?? undefined;
          // Shared but not handed back (none seen so far): the next touch asks for it again.
          state = this.state[p] = readable ? READ_ONLY : LOST;
          if (!readable) this.maybeLost = true;
          this.setView(p, readable);
        }
      }
      if (state === runState) continue;
      if (runState === PRIVATE || runState === READ_ONLY) this.backing.map(runStart, p - runStart, runState === PRIVATE);
      runStart = p;
      runState = state;
    }
  }

  /** Unmap a read-only page of this RAM's own: a change it knows of. */
  private unmapOwn(page: number): void {
    this.sync();
    this.backing.unmap(page);
    this.seenRevocations = this.backing.revocations();
  }

  /**
   * If anything in the VMM's memory was revoked since this RAM last looked (the memory manager took
   * pages away), look at every page it holds again: a page gone is unbacked (its next touch asks
   * for it again), one that became read-only is read-only.
   */
  private sync(): void {
    const now = this.backing.revocations();
    if (now === this.seenRevocations) return;
    // The pages revoked since the last look when the kernel knows them, else every page held.
    const revoked = this.backing.revokedSince?.(this.seenRevocations) ?? null;
    this.seenRevocations = now;
    this.stats.resyncs++;
    // A revoke may have taken mappings derived from the VMM's (a control component's view) even where
    // the VMM's own is as it was: recheck counts those pages as remapped for their holders.
    if (revoked) for (const p of revoked) this.recheck(p);
    else for (let p = 0; p < this.pages; p++) this.recheck(p);
    this.backing.traceCount?.("taken away", this.stats.lost);
  }

  /** Page `p` may have lost its frame, or its write right: look at what the VMM still holds. */
  private recheck(p: number): void {
    const s = this.state[p];
    if (p < 0 || p >= this.pages || (s !== PRIVATE && s !== READ_ONLY)) return;
    this.markRemapped(p);
    const writable = this.backing.view(p, true);
    if (writable) {
      this.setView(p, writable);
      return;
    }
    const readable = this.backing.view(p, false);
    this.setView(p, readable ?? undefined);
    this.state[p] = readable ? READ_ONLY : LOST;
    this.writeProtected[p] = 0;
    if (!readable) {
      this.stats.lost++;
      this.maybeLost = true;
    }
  }

  private call(first: number, count: number, write: boolean): { status: number; pages: number } {
    this.stats.calls++;
    return this.backing.back(first, count, write);
  }
}
