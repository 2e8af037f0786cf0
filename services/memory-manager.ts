// Memory manager: owns the host's frames and backs its clients' (the VMMs') memory on demand.
// Every client calls its own portal (the portal id names it); frames arrive as delegations into
// the client's memory window at the offsets it names, so revoking them later takes them from the
// VM as well. A client's guest RAM starts with no frames at all: the VMM asks for a page when its
// guest first touches it (BACK), and a page that is only read gets the one shared zero frame,
// read-only, until it is written. So a VM holds what its guest has written, not what it was given,
// and the clients together may be given more RAM than the host holds (overcommit).
//
// Frame 0 of the memory manager's space is the zero frame. Single frames come from the bottom of
// the pool (and from frames given back, most recent first), contiguous runs (ROMs, state and bounce
// regions) from the top, so the host's resident memory grows with what is handed out.

import { MemRights, SpaceKind, alignedRuns, crd, type LocalEntry, type Utcb } from "../kernel/index.js";
import { MAX_BACK_PAGES, MemoryOp, MemoryStatus, RESERVE_PAGES } from "./memory-protocol.js";

/** Pages of a client's window: offsets are guest-physical page numbers below 4 GiB. */
const WINDOW_PAGES = 2 ** 20;
/** A window page backed by the zero frame (PageTable value). */
const ZERO = -2;
const NONE = -1;
const CHUNK = 1024;

/** Window offset → frame (NONE, ZERO or a frame number), in chunks so a sparse window costs little. */
class PageTable {
  private readonly chunks: Array<Int32Array | undefined> = [];

  get(page: number): number {
    const c = this.chunks[page >>> 10];
    return c === undefined ? NONE : c[page & (CHUNK - 1)];
  }

  set(page: number, frame: number): void {
    let c = this.chunks[page >>> 10];
    if (c === undefined) c = this.chunks[page >>> 10] = new Int32Array(CHUNK).fill(NONE);
    c[page & (CHUNK - 1)] = frame;
  }
}

/** What one client holds. */
export interface ClientAccount {
  /** Most private frames it may hold. */
  readonly limit: number;
  /** Private frames it holds. */
  private: number;
  /** Window pages backed by the shared zero frame. */
  zero: number;
  /** Pages taken from the reserve since host memory reached its limit. */
  reserveUsed: number;
  /** Its window: offset → frame. */
  readonly table: PageTable;
}

/** The memory manager's state, for tests and accounting views. */
export interface MemoryManagerState {
  /** Frames of the pool, as page numbers of the manager's own space [0, total); frame 0 is the zero frame. */
  readonly total: number;
  /** Frames no client holds. */
  free: number;
  readonly clients: Map<number, ClientAccount>;
}

/**
 * The memory manager's portal handler over `total` frames delegated to it at pages [0, total).
 * `limits` gives each client id its most private frames; unknown clients are refused.
 */
export function memoryManager(total: number, limits: ReadonlyMap<number, number>, state?: { current?: MemoryManagerState }): LocalEntry {
  return (sys) => {
    const pool = new FramePool(total);
    /** The frames as this component sees them (its own pages [0, total)), to zero-fill what comes back. */
    let frames: Uint8Array | null = null;
    const zeroFill = (frame: number) => (frames ??= sys.memory(0, total))?.fill(0, frame * 4096, (frame + 1) * 4096);
    const clients = new Map<number, ClientAccount>();
    for (const [id, limit] of limits) clients.set(id, { limit, private: 0, zero: 0, reserveUsed: 0, table: new PageTable() });
    const s: MemoryManagerState = {
      total,
      get free() {
        return pool.free;
      },
      clients,
    };
    if (state) state.current = s;
    /** Frames kept back for the clients' reserves (but `except`'s own). */
    const reserve = (except?: ClientAccount) => {
      let n = 0;
      for (const c of clients.values()) if (c !== except) n += RESERVE_PAGES - c.reserveUsed;
      return n;
    };

    return (utcb: Utcb, client: number) => {
      const account = clients.get(client);
      const w = utcb.words;
      const op = utcb.untyped >= 1 ? w[0] : 0;
      if (!account) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
      if (op === MemoryOp.HELD) return void utcb.set(MemoryStatus.OK, account.private, account.zero, account.limit);
      if (op === MemoryOp.HOST) return void utcb.set(MemoryStatus.OK, total, pool.free, clients.size);
      if (op === MemoryOp.ALLOC && utcb.untyped >= 3) {
        const first = w[1], pages = w[2];
        if (!inWindow(first, pages)) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
        for (let p = first; p < first + pages; p++) if (account.table.get(p) !== NONE) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
        if (account.private + pages > account.limit) return void utcb.set(MemoryStatus.OVER_LIMIT, 0);
        if (pool.free - pages < reserve()) return void utcb.set(MemoryStatus.NO_MEMORY, 0);
        const run = pool.takeRun(pages, first);
        if (run < 0) return void utcb.set(MemoryStatus.NO_MEMORY, 0);
        for (const [offset, order] of alignedRuns(pages, [run, first]))
          utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, run + offset, order, MemRights.ALL), offset: first + offset });
        for (let i = 0; i < pages; i++) account.table.set(first + i, run + i);
        account.private += pages;
        return void utcb.set(MemoryStatus.OK, pages);
      }
      if (op === MemoryOp.FREE && utcb.untyped >= 3) {
        const first = w[1], count = w[2];
        if (!inWindow(first, count) || count > MAX_BACK_PAGES) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
        let freed = 0;
        for (let p = first; p < first + count; p++) {
          const f = account.table.get(p);
          if (f === NONE) continue;
          if (f === ZERO) account.zero--;
          else {
            // Revoke keeps this component's own mapping and takes the client's (and its VM's).
            sys.revoke(crd(SpaceKind.MEMORY, f, 0), true);
            zeroFill(f);
            pool.give(f);
            account.private--;
          }
          account.table.set(p, NONE);
          freed++;
        }
        return void utcb.set(MemoryStatus.OK, freed);
      }
      if (op === MemoryOp.BACK && utcb.untyped >= 4) {
        const first = w[1], count = w[2], write = w[3] === 1;
        if (!inWindow(first, count) || count > MAX_BACK_PAGES || (w[3] !== 0 && w[3] !== 1)) return void utcb.set(MemoryStatus.BAD_REQUEST, 0);
        // Plan: which pages get what, and whether the host can pay for them.
        let wanted = 0;
        for (let p = first; p < first + count; p++) {
          const f = account.table.get(p);
          if (f === NONE || (write && f === ZERO)) wanted++;
        }
        let status: MemoryStatus = MemoryStatus.OK;
        if (write) {
          if (account.private + wanted > account.limit) return void utcb.set(MemoryStatus.OVER_LIMIT, 0);
          if (pool.free - wanted < reserve()) {
            // Host memory is at its limit: its own reserve lets this client finish what it is doing.
            if (account.reserveUsed + wanted > RESERVE_PAGES || pool.free - wanted < reserve(account)) return void utcb.set(MemoryStatus.NO_MEMORY, 0);
            account.reserveUsed += wanted;
            status = MemoryStatus.LOW;
          } else account.reserveUsed = 0;
        }
        let backed = 0;
        for (let p = first; p < first + count; p++) {
          const f = account.table.get(p);
          if (f >= 0 || (!write && f === ZERO)) continue;
          if (write) {
            const frame = pool.take();
            utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, frame, 0, MemRights.ALL), offset: p });
            account.table.set(p, frame);
            account.private++;
            if (f === ZERO) account.zero--;
          } else {
            utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, 0, 0, MemRights.R | MemRights.X), offset: p });
            account.table.set(p, ZERO);
            account.zero++;
          }
          backed++;
        }
        return void utcb.set(status, backed);
      }
      utcb.set(MemoryStatus.BAD_REQUEST, 0);
    };
  };
}

function inWindow(first: number, pages: number): boolean {
  return Number.isInteger(first) && Number.isInteger(pages) && first >= 0 && pages > 0 && first + pages <= WINDOW_PAGES;
}

/** The manager's frames: singles from the bottom (and given-back frames first), runs from the top. */
class FramePool {
  /** Next never-used frame from the bottom (frame 0 is the zero frame). */
  private next = 1;
  /** First frame of the runs handed out from the top. */
  private top: number;
  private readonly returned: number[] = [];

  constructor(readonly total: number) {
    this.top = total;
  }

  get free(): number {
    return this.top - this.next + this.returned.length;
  }

  /** A frame back into the pool (zero-filled). */
  give(frame: number): void {
    this.returned.push(frame);
  }

  /** One frame; the caller checked `free`. */
  take(): number {
    const f = this.returned.pop();
    if (f !== undefined) return f;
    if (this.next >= this.top) throw new RangeError("the frame pool is empty");
    return this.next++;
  }

  /**
   * `pages` contiguous frames, or -1 when the untouched middle of the pool is too small. The run
   * starts as aligned as `offset` (where it goes) allows, so it travels as few delegate items:
   * the frames skipped for that are given back.
   */
  takeRun(pages: number, offset: number): number {
    const align = 2 ** Math.min(Math.floor(Math.log2(pages)), offset === 0 ? 20 : Math.log2(offset & -offset));
    let run = this.top - pages;
    run -= (((run - offset) % align) + align) % align;
    if (run < this.next) return -1;
    for (let f = run + pages; f < this.top; f++) this.returned.push(f);
    this.top = run;
    return run;
  }
}
