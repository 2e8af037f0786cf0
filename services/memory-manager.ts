// Memory manager: owns the host's frames and backs its clients' (the VMMs') memory on demand.
// Every client calls its own portal (the portal id names it); frames arrive as delegations into
// the client's memory window at the offsets it names, so revoking them later takes them from the
// VM as well. A client's guest RAM starts with no frames at all: the VMM asks for a page when its
// guest first touches it (BACK), and a page that is only read gets the one shared zero frame,
// read-only, until it is written. So a VM holds what its guest has written, not what it was given,
// and the clients together may be given more RAM than the host holds (overcommit).
//
// A scanner (like Linux's KSM) looks at a bounded number of private pages per second of virtual
// time: a page that stayed the same for two looks and is all zero goes back to the pool (the page
// becomes a zero page), one equal to another client's page (same trust group, compared in full)
// is merged with it into one shared read-only frame. The scanner takes the private frames away
// (revoke), and the client gets the shared frame read-only when it asks for the page again; a
// write to it is copy-on-write (BACK with write). No guest sees the sharing.
//
// The frames come from the root task a piece at a time (ParentOp.FRAMES), when the pool first hands
// out a frame of that piece: what the memory manager holds grows with what its clients took, so
// starting a VM does not cost a mapping per frame of the machine. Frame n of the pool is page n of
// its memory space, given or not yet. Frame 0 is the zero frame. Single frames come from the bottom of
// the pool, contiguous runs (ROMs, state and bounce regions, each inside one of the kernel's chunks
// of frames) from the top. A frame that comes back is discarded (the kernel gives a chunk's
// storage back to the JS heap once all its frames are), and frames are handed out again from
// chunks that are in use first, so the host's resident memory follows what the clients hold.

import { CHUNK_FRAMES, MemRights, frameChunk, SpaceKind, Status, alignedRuns, crd, type GlobalEntry, type LocalEntry, type Sys, type Utcb } from "../kernel/index.js";
import { MAX_BACK_PAGES, MemoryOp, MemoryStatus, RESERVE_PAGES } from "./memory-protocol.js";
import { FRAME_PIECE, ParentOp } from "./root-protocol.js";

/** Selectors of the memory manager's object space that its boot description fills. */
export const MemoryManagerSel = {
  /** Its parent portal (the root task), which gives it frames (ParentOp.FRAMES). */
  PARENT: 1,
} as const;

/** Pages of a client's window: offsets are guest-physical page numbers below 4 GiB. */
const WINDOW_PAGES = 2 ** 20;
const PAGE = 4096;
/** PageTable values: no frame; the zero frame; a shared frame f is stored as SHARED_BASE - f; a private frame as itself. */
const NONE = -1;
const ZERO = -2;
const SHARED_BASE = -3;
const CHUNK = 1024;

const isShared = (v: number) => v <= SHARED_BASE;
const sharedFrame = (v: number) => SHARED_BASE - v;

/** Window offset → what backs it, in chunks so a sparse window costs little. */
class PageTable {
  private readonly chunks: Array<Int32Array | undefined> = [];

  get(page: number): number {
    const c = this.chunks[page >>> 10];
    return c === undefined ? NONE : c[page & (CHUNK - 1)];
  }

  set(page: number, value: number): void {
    let c = this.chunks[page >>> 10];
    if (c === undefined) c = this.chunks[page >>> 10] = new Int32Array(CHUNK).fill(NONE);
    c[page & (CHUNK - 1)] = value;
  }

  /** The first offset at or after `from` that holds a private frame, or -1. */
  nextPrivate(from: number): number {
    for (let ci = from >>> 10; ci < this.chunks.length; ci++) {
      const c = this.chunks[ci];
      if (c === undefined) continue;
      for (let i = ci === from >>> 10 ? from & (CHUNK - 1) : 0; i < CHUNK; i++) if (c[i] >= 0) return ci * CHUNK + i;
    }
    return -1;
  }
}

/** What one client holds. */
export interface ClientAccount {
  readonly id: number;
  /** Most private frames it may hold. */
  readonly limit: number;
  /** Clients share pages only within their trust group (shared pages leak timing). */
  readonly group: number;
  /** Private frames it holds. */
  private: number;
  /** Window pages backed by the shared zero frame. */
  zero: number;
  /** Window pages backed by a shared frame. */
  shared: number;
  /** Pages taken from the reserve since host memory reached its limit. */
  reserveUsed: number;
  /** Its window: offset → what backs it. */
  readonly table: PageTable;
}

/** The scanner's work so far. */
export interface ScannerStats {
  /** Pages hashed. */
  scanned: number;
  /** Pages merged into a shared frame, and private pages found all zero (given back). */
  merged: number;
  zeroed: number;
  /** Copy-on-write breaks of shared pages. */
  broken: number;
  /** Shared frames now. */
  sharedFrames: number;
  /** Host time the scanner took (ns), when the memory manager has a host clock. */
  hostNs: number;
  /** Frames given back by reclaims at the host's limit. */
  reclaimed: number;
}

export interface MemoryManagerOptions {
  /** Each client id's most private frames; unknown clients are refused. */
  limits: ReadonlyMap<number, number>;
  /** Each client's trust group (default 0: all share). */
  groups?: ReadonlyMap<number, number>;
  /** Pages the scanner looks at per second of virtual time (0: no scanner). */
  scanRate?: number;
  /** A host clock (ns) to measure the scanner's own time with (ScannerStats.hostNs); none: not measured. */
  hostClock?: () => number;
}

/** Pages one reclaim at the host's limit looks at, at most. */
const RECLAIM_PAGES = 4096;
/** How often the scanner wakes, ns of virtual time. */
const SCAN_TICK_NS = 100_000_000;

export class MemoryManager {
  readonly clients = new Map<number, ClientAccount>();
  readonly scanner: ScannerStats = { scanned: 0, merged: 0, zeroed: 0, broken: 0, sharedFrames: 0, hostNs: 0, reclaimed: 0 };
  private readonly pool: FramePool;
  /** References to each shared frame (clients' pages backed by it). */
  private readonly refs = new Map<number, number>();
  /** Shared frames by trust group and content hash. */
  private readonly stable = new Map<string, number[]>();
  /** Pages seen once this pass, by trust group and hash: candidates to merge with. */
  private unstable = new Map<string, { client: ClientAccount; page: number; frame: number }>();
  /** Each frame's hash at its last look (the scanner merges only pages that did not change since). */
  private readonly lastHash: Int32Array;
  private readonly hashed: Uint8Array;
  /** 1 for each piece of FRAME_PIECE frames the root has given this component. */
  private readonly held: Uint8Array;
  /** Where the scanner goes on: client index and offset. */
  private cursor = { client: 0, page: 0 };
  private sys: Sys | null = null;
  /** A reclaim at the limit is running (merge on the first look); the last one found nothing. */
  private pressure = false;
  private reclaimFruitless = false;

  constructor(
    readonly total: number,
    private readonly options: MemoryManagerOptions,
  ) {
    this.pool = new FramePool(total);
    this.lastHash = new Int32Array(total);
    this.hashed = new Uint8Array(total);
    this.held = new Uint8Array(Math.ceil(total / FRAME_PIECE));
    for (const [id, limit] of options.limits)
      this.clients.set(id, { id, limit, group: options.groups?.get(id) ?? 0, private: 0, zero: 0, shared: 0, reserveUsed: 0, table: new PageTable() });
  }

  /** Frames no client holds. */
  get free(): number {
    return this.pool.free;
  }

  /** The portal handler (one portal per client; the portal id names it). */
  handler(): LocalEntry {
    return (sys) => {
      this.sys ??= sys;
      return (utcb, client) => this.serve(utcb, client);
    };
  }

  /** The scanner's thread (none when the scan rate is 0). */
  scannerThread(): GlobalEntry | null {
    const rate = this.options.scanRate ?? 0;
    if (rate <= 0) return null;
    const perTick = Math.max(1, Math.round((rate * SCAN_TICK_NS) / 1e9));
    return (sys) => {
      const self = this;
      this.sys ??= sys;
      return (function* () {
        for (;;) {
          yield sys.wait.sleep(SCAN_TICK_NS);
          const clock = self.options.hostClock;
          const start = clock?.() ?? 0;
          self.scan(perTick);
          if (clock) self.scanner.hostNs += clock() - start;
          const s = self.scanner;
          sys.traceCount("merged", s.merged);
          sys.traceCount("zeroed", s.zeroed);
          sys.traceCount("broken", s.broken);
          sys.traceCount("shared frames", s.sharedFrames);
        }
      })();
    };
  }

  private serve(utcb: Utcb, client: number): void {
    const account = this.clients.get(client);
    const w = utcb.words;
    const op = utcb.untyped >= 1 ? w[0] : 0;
    if (!account) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
    switch (op) {
      case MemoryOp.HELD:
        return void utcb.set(MemoryStatus.OK, account.private, account.zero, account.limit, account.shared);
      case MemoryOp.HOST: {
        const s = this.scanner;
        return void utcb.set(MemoryStatus.OK, this.total, this.pool.free, this.clients.size, s.sharedFrames, s.scanned, s.merged, s.zeroed, s.broken);
      }
      case MemoryOp.ALLOC:
        if (utcb.untyped >= 3) return this.alloc(utcb, account, w[1], w[2]);
        break;
      case MemoryOp.FREE:
        if (utcb.untyped >= 3) return this.release(utcb, account, w[1], w[2]);
        break;
      case MemoryOp.BACK:
        if (utcb.untyped >= 4) return this.back(utcb, account, w[1], w[2], w[3]);
        break;
      case MemoryOp.SHARE:
        if (utcb.untyped >= 3) return this.share(utcb, account, w[1], w[2]);
        break;
    }
    utcb.set(MemoryStatus.BAD_REQUEST, 0);
  }

  /**
   * Make sure this component holds `frames` (frames of the pool it is about to hand out or use):
   * each piece it was not given yet it asks the root for. Overwrites the UTCB of the EC that runs.
   */
  private hold(frames: readonly number[]): boolean {
    for (const f of frames) {
      const piece = Math.floor(f / FRAME_PIECE);
      if (this.held[piece]) continue;
      const sys = this.sys!;
      const u = sys.utcb;
      u.items.length = 0;
      u.set(ParentOp.FRAMES, piece * FRAME_PIECE);
      if (sys.call(MemoryManagerSel.PARENT) !== Status.SUCCESS || u.untyped < 1 || u.words[0] !== Status.SUCCESS) return false;
      this.held[piece] = 1;
    }
    return true;
  }

  /** Frames kept back for the clients' reserves (but `except`'s own). */
  private reserve(except?: ClientAccount): number {
    let n = 0;
    for (const c of this.clients.values()) if (c !== except) n += RESERVE_PAGES - c.reserveUsed;
    return n;
  }

  private alloc(utcb: Utcb, account: ClientAccount, first: number, pages: number): void {
    if (!inWindow(first, pages) || pages > CHUNK_FRAMES) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
    for (let p = first; p < first + pages; p++) if (account.table.get(p) !== NONE) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
    if (account.private + pages > account.limit) return void utcb.set(MemoryStatus.OVER_LIMIT, 0);
    if (this.pool.free - pages < this.reserve()) return void utcb.set(MemoryStatus.NO_MEMORY, 0);
    const run = this.pool.takeRun(pages, first);
    if (run < 0) return void utcb.set(MemoryStatus.NO_MEMORY, 0);
    if (!this.hold([run, run + pages - 1])) {
      for (let f = run; f < run + pages; f++) this.pool.give(f);
      return void utcb.set(MemoryStatus.NO_MEMORY, 0);
    }
    for (const [offset, order] of alignedRuns(pages, [run, first]))
      utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, run + offset, order, MemRights.ALL), offset: first + offset });
    for (let i = 0; i < pages; i++) {
      account.table.set(first + i, run + i);
      // Contiguous regions (ROMs, state, bounce buffers) are the VMM's own: never scanned.
      this.hashed[run + i] = 2;
    }
    account.private += pages;
    utcb.set(MemoryStatus.OK, pages);
  }

  /**
   * BACK: write 1 makes each page private (a copy of what backs it now: nothing, the zero frame or
   * a shared frame); write 0 backs each page that has nothing with the zero frame and hands out
   * again what the page has (the zero or a shared frame, read-only) when the client lost it.
   */
  private back(utcb: Utcb, account: ClientAccount, first: number, count: number, writeWord: number): void {
    if (!inWindow(first, count) || count > MAX_BACK_PAGES || (writeWord !== 0 && writeWord !== 1)) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
    const write = writeWord === 1;
    // Plan: how many private frames this takes, and whether the host can pay for them.
    let wanted = 0;
    for (let p = first; p < first + count; p++) if (write && account.table.get(p) < 0) wanted++;
    let status: MemoryStatus = MemoryStatus.OK;
    if (wanted > 0) {
      if (account.private + wanted > account.limit) return void utcb.set(MemoryStatus.OVER_LIMIT, 0);
      // At the host's limit, first take back what can be shared or is all zero; then the reserve.
      if (this.pool.free - wanted < this.reserve()) this.reclaim();
      if (this.pool.free - wanted < this.reserve()) {
        // Host memory is at its limit: its own reserve lets this client finish what it is doing.
        if (account.reserveUsed + wanted > RESERVE_PAGES || this.pool.free - wanted < this.reserve(account)) return void utcb.set(MemoryStatus.NO_MEMORY, 0);
        account.reserveUsed += wanted;
        status = MemoryStatus.LOW;
      } else account.reserveUsed = 0;
    }
    // The frames, taken and held before the reply is written (asking the root uses this UTCB).
    const fresh: number[] = [];
    for (let i = 0; i < wanted; i++) fresh.push(this.pool.take());
    if (!this.hold(write ? fresh : [0])) {
      for (const f of fresh) this.pool.give(f);
      if (status === MemoryStatus.LOW) account.reserveUsed -= wanted;
      return void utcb.set(MemoryStatus.NO_MEMORY, 0);
    }
    let backed = 0;
    for (let p = first; p < first + count; p++) {
      const v = account.table.get(p);
      if (v >= 0) continue;
      if (write) {
        const frame = fresh[backed];
        if (isShared(v)) {
          this.bytesOf(frame).set(this.bytesOf(sharedFrame(v)));
          this.unshare(account, v);
          this.scanner.broken++;
        } else if (v === ZERO) account.zero--;
        utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, frame, 0, MemRights.ALL), offset: p });
        account.table.set(p, frame);
        this.hashed[frame] = 0;
        account.private++;
      } else {
        // The zero frame, or a shared frame, read-only; again if the client lost it (a delegation
        // onto a page it still holds changes nothing).
        const frame = isShared(v) ? sharedFrame(v) : 0;
        utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, frame, 0, MemRights.R | MemRights.X), offset: p });
        if (v === NONE) {
          account.table.set(p, ZERO);
          account.zero++;
        }
      }
      backed++;
    }
    utcb.set(status, backed);
  }

  /**
   * SHARE: each private page in the range (not a contiguous region's) joins an equal shared frame
   * of its trust group, or becomes one; the client gets it back read-only at once.
   */
  private share(utcb: Utcb, account: ClientAccount, first: number, count: number): void {
    if (!inWindow(first, count) || count > MAX_BACK_PAGES) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
    let shared = 0;
    for (let p = first; p < first + count; p++) {
      const frame = account.table.get(p);
      if (frame < 0 || this.hashed[frame] === 2) continue;
      const words = this.wordsOf(frame);
      const h = hashWords(words);
      const key = `${account.group}:${h}`;
      const equal = (this.stable.get(key) ?? []).find((s) => sameWords(this.wordsOf(s), words));
      if (equal !== undefined) this.merge(account, p, frame, equal);
      else {
        // Its own frame becomes the shared one (the scanner's first candidate, at once).
        this.sys!.revoke(crd(SpaceKind.MEMORY, frame, 0), true);
        this.lastHash[frame] = h;
        this.hashed[frame] = 1;
        account.table.set(p, SHARED_BASE - frame);
        account.private--;
        account.shared++;
        this.refs.set(frame, 1);
        this.stable.set(key, [...(this.stable.get(key) ?? []), frame]);
        this.scanner.sharedFrames++;
      }
      const s = sharedFrame(account.table.get(p));
      utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, s, 0, MemRights.R | MemRights.X), offset: p });
      shared++;
    }
    utcb.set(MemoryStatus.OK, shared);
  }

  private release(utcb: Utcb, account: ClientAccount, first: number, count: number): void {
    if (!inWindow(first, count) || count > MAX_BACK_PAGES) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
    let freed = 0;
    for (let p = first; p < first + count; p++) {
      const v = account.table.get(p);
      if (v === NONE) continue;
      if (v === ZERO) account.zero--;
      else if (isShared(v)) this.unshare(account, v);
      else {
        // Revoke keeps this component's own mapping and takes the client's (and its VM's).
        this.sys!.revoke(crd(SpaceKind.MEMORY, v, 0), true);
        this.giveBack(v);
        account.private--;
      }
      account.table.set(p, NONE);
      freed++;
    }
    utcb.set(MemoryStatus.OK, freed);
  }

  /** One page of `account` no longer uses shared frame (table value) `v`. */
  private unshare(account: ClientAccount, v: number): void {
    const frame = sharedFrame(v);
    account.shared--;
    const left = (this.refs.get(frame) ?? 1) - 1;
    if (left > 0) return void this.refs.set(frame, left);
    this.refs.delete(frame);
    const key = `${account.group}:${this.lastHash[frame]}`;
    const list = this.stable.get(key)?.filter((f) => f !== frame) ?? [];
    if (list.length > 0) this.stable.set(key, list);
    else this.stable.delete(key);
    this.scanner.sharedFrames--;
    this.giveBack(frame);
  }

  /**
   * A frame back into the pool. Whoever still had it loses it; the kernel discards it (its storage
   * goes when its chunk's does), and it reads as zero when it is handed out again.
   */
  private giveBack(frame: number): void {
    if (!this.pressure) this.reclaimFruitless = false;
    const sys = this.sys!;
    sys.revoke(crd(SpaceKind.MEMORY, frame, 0), true);
    // Not discarded (an ancestor of this component handed the frame out elsewhere too): zero it here.
    if (sys.discard(frame, 1) === 0) this.bytesOf(frame).fill(0);
    this.hashed[frame] = 0;
    this.pool.give(frame);
  }

  /** Frame `frame`'s bytes (a view for now: a discarded frame's storage may go). */
  private bytesOf(frame: number): Uint8Array {
    return this.sys!.memory(frame, 1)!.bytes;
  }

  private wordsOf(frame: number): Int32Array {
    const b = this.bytesOf(frame);
    return new Int32Array(b.buffer, b.byteOffset, PAGE / 4);
  }

  // ---- the scanner ----

  /** Look at up to `budget` private pages, from where the last look stopped. */
  scan(budget: number): void {
    const clients = [...this.clients.values()];
    if (clients.length === 0) return;
    // At most one whole pass (the cursor moves on to each client once more than there are clients).
    let switches = 0;
    for (let n = 0; n < budget && switches <= clients.length; ) {
      const c = clients[this.cursor.client];
      const page = c.table.nextPrivate(this.cursor.page);
      if (page < 0) {
        // This client is done: the next one; after the last, a new pass forgets the candidates.
        switches++;
        this.cursor = { client: (this.cursor.client + 1) % clients.length, page: 0 };
        if (this.cursor.client === 0) {
          this.unstable = new Map();
          // A pass over nothing at all ends the tick.
          if (clients.every((x) => x.table.nextPrivate(0) < 0)) return;
        }
        continue;
      }
      this.cursor.page = page + 1;
      this.look(c, page, c.table.get(page));
      n++;
    }
  }

  /**
   * Host memory is at its limit: scan up to RECLAIM_PAGES pages now, merging and giving back on the
   * first look (no time to see whether a page stays the same). After a reclaim that found nothing,
   * the next waits until some frame came back by other means.
   */
  private reclaim(): void {
    if (this.reclaimFruitless) return;
    const before = this.pool.free;
    this.pressure = true;
    try {
      this.scan(RECLAIM_PAGES);
    } finally {
      this.pressure = false;
    }
    this.scanner.reclaimed += this.pool.free - before;
    this.reclaimFruitless = this.pool.free === before;
  }

  private look(c: ClientAccount, page: number, frame: number): void {
    if (this.hashed[frame] === 2) return;
    this.scanner.scanned++;
    const words = this.wordsOf(frame);
    const h = hashWords(words);
    // Only a page that stayed the same since the last look (one that changes often is not worth
    // it), unless host memory is at its limit.
    const stable = this.pressure || (this.hashed[frame] === 1 && this.lastHash[frame] === h);
    this.lastHash[frame] = h;
    this.hashed[frame] = 1;
    if (!stable) return;
    if (h === ZERO_HASH && words.every((x) => x === 0)) return this.zeroPage(c, page, frame);
    const key = `${c.group}:${h}`;
    for (const s of this.stable.get(key) ?? []) if (sameWords(this.wordsOf(s), words)) return this.merge(c, page, frame, s);
    const candidate = this.unstable.get(key);
    if (candidate && candidate.client.table.get(candidate.page) === candidate.frame && candidate.frame !== frame && sameWords(this.wordsOf(candidate.frame), words)) {
      // The candidate's frame becomes the shared one: its client now gets it read-only.
      const s = candidate.frame;
      this.sys!.revoke(crd(SpaceKind.MEMORY, s, 0), true);
      candidate.client.table.set(candidate.page, SHARED_BASE - s);
      candidate.client.private--;
      candidate.client.shared++;
      this.refs.set(s, 1);
      this.stable.set(key, [...(this.stable.get(key) ?? []), s]);
      this.scanner.sharedFrames++;
      this.scanner.merged++;
      this.unstable.delete(key);
      return this.merge(c, page, frame, s);
    }
    this.unstable.set(key, { client: c, page, frame });
  }

  /** Page `page` of `c` (private `frame`) becomes shared frame `s`: its frame goes back. */
  private merge(c: ClientAccount, page: number, frame: number, s: number): void {
    this.sys!.revoke(crd(SpaceKind.MEMORY, frame, 0), true);
    this.giveBack(frame);
    c.table.set(page, SHARED_BASE - s);
    c.private--;
    c.shared++;
    this.refs.set(s, (this.refs.get(s) ?? 0) + 1);
    this.scanner.merged++;
  }

  /** Page `page` of `c` (private `frame`) is all zero: it becomes a zero page, its frame goes back. */
  private zeroPage(c: ClientAccount, page: number, frame: number): void {
    this.sys!.revoke(crd(SpaceKind.MEMORY, frame, 0), true);
    this.giveBack(frame);
    c.table.set(page, ZERO);
    c.private--;
    c.zero++;
    this.scanner.zeroed++;
  }
}

/** FNV-1a over 32-bit words: cheap, and only a filter (a merge compares the pages in full). */
function hashWords(words: Int32Array): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return h;
}
const ZERO_HASH = hashWords(new Int32Array(PAGE / 4));

function sameWords(a: Int32Array, b: Int32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function inWindow(first: number, pages: number): boolean {
  return Number.isInteger(first) && Number.isInteger(pages) && first >= 0 && pages > 0 && first + pages <= WINDOW_PAGES;
}

/**
 * The manager's frames: singles from the bottom, runs from the top, each inside one chunk of
 * CHUNK_FRAMES. Frames given back are handed out again before new ones, those of chunks with
 * frames in use first, so that chunks empty out and their storage goes back to the host.
 */
class FramePool {
  /** Next never-used frame from the bottom (frame 0 is the zero frame). */
  private next = 1;
  /** First frame of the runs handed out from the top. */
  private top: number;
  /** Frames handed out, per chunk. */
  private readonly used: Uint16Array;
  /** Frames given back (or skipped for a run's alignment), per chunk. */
  private readonly spare: number[][];
  /** Chunks with spare frames: with frames in use, and without. */
  private readonly partial = new Set<number>();
  private readonly empty = new Set<number>();
  private spares = 0;

  constructor(readonly total: number) {
    this.top = total;
    const chunks = Math.ceil(total / CHUNK_FRAMES);
    this.used = new Uint16Array(chunks);
    this.spare = Array.from({ length: chunks }, () => []);
    this.used[0] = 1; // the zero frame
  }

  get free(): number {
    return this.top - this.next + this.spares;
  }

  /** A frame back into the pool. */
  give(frame: number): void {
    const c = frameChunk(frame);
    this.used[c]--;
    this.spare[c].push(frame);
    this.spares++;
    this.place(c);
  }

  /** One frame; the caller checked `free`. */
  take(): number {
    // A spare frame of a chunk in use, then the next new one of the chunk begun at the bottom,
    // then a spare of an empty chunk, and only then a new chunk.
    const c = first(this.partial) ?? (this.next % CHUNK_FRAMES !== 0 && this.next < this.top ? undefined : first(this.empty));
    if (c === undefined) {
      if (this.next >= this.top) throw new RangeError("the frame pool is empty");
      this.used[frameChunk(this.next)]++;
      return this.next++;
    }
    const frame = this.spare[c].pop()!;
    this.spares--;
    this.used[c]++;
    this.place(c);
    return frame;
  }

  /**
   * `pages` (at most CHUNK_FRAMES) contiguous frames in one chunk, or -1 when the untouched middle
   * of the pool is too small. The run starts as aligned as `offset` (where it goes) allows, so it
   * travels as few delegate items: the frames skipped for that are spare.
   */
  takeRun(pages: number, offset: number): number {
    const align = 2 ** Math.min(Math.floor(Math.log2(pages)), offset === 0 ? 20 : Math.log2(offset & -offset));
    let run = this.top - pages;
    for (;;) {
      run -= (((run - offset) % align) + align) % align;
      const last = frameChunk(run + pages - 1);
      if (frameChunk(run) === last) break;
      run = last * CHUNK_FRAMES - pages;
    }
    if (run < this.next) return -1;
    for (let f = run; f < run + pages; f++) this.used[frameChunk(f)]++;
    for (let f = run + pages; f < this.top; f++) {
      this.spare[frameChunk(f)].push(f);
      this.spares++;
    }
    for (let c = frameChunk(run); c <= frameChunk(this.top - 1); c++) this.place(c);
    this.top = run;
    return run;
  }

  /** Put chunk `c` into the set its spare and used frames say. */
  private place(c: number): void {
    const spare = this.spare[c].length > 0;
    if (spare && this.used[c] > 0) this.partial.add(c);
    else this.partial.delete(c);
    if (spare && this.used[c] === 0) this.empty.add(c);
    else this.empty.delete(c);
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const x of set) return x;
  return undefined;
}
