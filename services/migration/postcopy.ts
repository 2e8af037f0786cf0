// Post-copy live migration: the pages a VM still has at the source once it runs at the
// destination. Each end's bookkeeping, and the two records post-copy adds to the stream:
//
//   POSTCOPY = (source → destination, after the last META) a bitmap of the RAM's pages, one bit per
//              page, ceil(pages / 8) bytes: these pages stay at the source and come later, each
//              once (pushed in the background, or first when the destination asks for them); the
//              others are what the stream brought. The destination runs the VM, says so (ACK),
//              and the source pushes them; END: all were sent; ACK: all arrived.
//   REQUEST  = (destination → source) count (u32 LE, 1 to MAX_REQUEST_PAGES), then page numbers
//              (u32 LE each): the destination needs these now.
//
// The destination's page table lives in a SharedArrayBuffer: a worker thread that owns the
// connection writes arriving pages there, and the vCPU's fault path (on the main thread) waits on
// it with Atomics.wait, so a first touch of a page that is still remote is a synchronous read.

import { FrameReader, FrameType, MigrationError, PAGES_PER_FRAME, decodePages } from "./stream.js";

const PAGE = 4096;
/** Pages one REQUEST asks for at most. */
export const MAX_REQUEST_PAGES = 1024;

/** The POSTCOPY payload for `remote` (one bit per page, page p at bit p & 7 of byte p >> 3). */
export function encodeRemote(remote: Uint8Array): Uint8Array {
  return remote.slice();
}

/** A POSTCOPY payload for RAM of `ramPages` pages: exactly its bitmap, no bit past the last page. */
export function decodeRemote(payload: Uint8Array, ramPages: number): Uint8Array {
  const bytes = Math.ceil(ramPages / 8);
  if (payload.length !== bytes) throw new MigrationError("POSTCOPY", `${payload.length} bytes, not the ${bytes} of a bitmap of ${ramPages} pages`);
  if (ramPages % 8 !== 0 && payload[bytes - 1] >> (ramPages % 8) !== 0) throw new MigrationError("POSTCOPY", `a page past the last of the ${ramPages} pages of RAM is marked remote`);
  return payload.slice();
}

export function encodeRequest(pages: readonly number[]): Uint8Array {
  const out = new Uint8Array(4 + 4 * pages.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, pages.length, true);
  pages.forEach((p, i) => v.setUint32(4 + 4 * i, p, true));
  return out;
}

/** A REQUEST payload, checked whole: its pages, each inside RAM of `ramPages` pages. */
export function decodeRequest(payload: Uint8Array, ramPages: number): number[] {
  if (payload.length < 4) throw new MigrationError("REQUEST", `${payload.length} bytes, too short for its count`);
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const count = v.getUint32(0, true);
  if (count === 0 || count > MAX_REQUEST_PAGES) throw new MigrationError("REQUEST", `count ${count} is not 1 to ${MAX_REQUEST_PAGES}`);
  if (payload.length !== 4 + 4 * count) throw new MigrationError("REQUEST", `${payload.length} bytes for ${count} pages (want ${4 + 4 * count})`);
  const pages: number[] = [];
  for (let i = 0; i < count; i++) {
    const page = v.getUint32(4 + 4 * i, true);
    if (page >= ramPages) throw new MigrationError("REQUEST", `page ${page} lies outside RAM (${ramPages} pages)`);
    pages.push(page);
  }
  return pages;
}

/** Bits set in `bitmap`. */
export function countBits(bitmap: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bitmap.length; i++) for (let b = bitmap[i]; b !== 0; b &= b - 1) n++;
  return n;
}

const bit = (bitmap: Uint8Array, p: number) => ((bitmap[p >> 3] >> (p & 7)) & 1) === 1;

/**
 * The source's side after the switch: which of the remote pages went (each goes once), and the
 * pages the destination asked for, which go before the rest.
 */
export class PostcopyOutbox {
  readonly pages: number;
  /** Remote pages in all, and those sent. */
  readonly total: number;
  sent = 0;
  /** Pages the destination asked for that went first, and requests for pages that were not remote or had gone already (not sent again). */
  requested = 0;
  refused = 0;
  private readonly remote: Uint8Array;
  private readonly queue: number[] = [];
  /** The pages in `queue`, one bit each: a request is checked in constant time per page, whatever the destination sends. */
  private readonly queued: Uint8Array;
  /** The background push goes up from here. */
  private cursor = 0;

  constructor(remote: Uint8Array, pages: number) {
    this.pages = pages;
    this.remote = remote.slice();
    this.queued = new Uint8Array(remote.length);
    this.total = countBits(this.remote);
  }

  /** The destination asks for `pages` (inside RAM: decodeRequest checked): each remote one not sent yet goes next; the others are refused. */
  request(pages: readonly number[]): void {
    for (const p of pages) {
      if (!bit(this.remote, p) || bit(this.queued, p)) this.refused++;
      else {
        this.queued[p >> 3] |= 1 << (p & 7);
        this.queue.push(p);
      }
    }
  }

  /**
   * Up to `max` pages to send now: those asked for when there are (they go at once, past the push's
   * pace), else the next ones of the push. Each is sent (not remote any more) from here on.
   */
  take(max: number): number[] {
    const out: number[] = [];
    while (out.length < max && this.queue.length > 0) this.mark(this.queue.shift()!, out);
    this.requested += out.length;
    if (out.length > 0) return out;
    for (; out.length < max && this.cursor < this.pages; this.cursor++) if (bit(this.remote, this.cursor)) this.mark(this.cursor, out);
    return out;
  }

  get asking(): boolean {
    return this.queue.length > 0;
  }

  get remaining(): number {
    return this.total - this.sent;
  }

  private mark(p: number, out: number[]): void {
    this.remote[p >> 3] &= ~(1 << (p & 7));
    this.sent++;
    out.push(p);
  }
}

/** A remote page's state in the destination's table. */
export const PageState = { LOCAL: 0, REMOTE: 1, REQUESTED: 2, ARRIVED: 3 } as const;
const FAILED = 0, ARRIVED_COUNT = 1, REMOTE_COUNT = 2, HEADER_WORDS = 4;

/**
 * The destination's table of remote pages, in one SharedArrayBuffer that the main thread and the
 * connection's worker both map: a header (failed, pages arrived, pages remote), each page's state
 * (Int32, for Atomics.wait), each page's slot, and the slots' bytes (one per remote page).
 */
export class RemotePages {
  readonly pages: number;
  readonly total: number;
  private readonly header: Int32Array;
  private readonly states: Int32Array;
  private readonly slots: Int32Array;
  private readonly data: Uint8Array;

  /** The table for `remote` (a POSTCOPY bitmap) in a new SharedArrayBuffer. */
  static create(remote: Uint8Array, pages: number): RemotePages {
    const total = countBits(remote);
    const words = HEADER_WORDS + 2 * pages;
    const sab = new SharedArrayBuffer(words * 4 + total * PAGE);
    const table = new RemotePages(sab, pages);
    table.header[REMOTE_COUNT] = total;
    let slot = 0;
    for (let p = 0; p < pages; p++) {
      table.slots[p] = -1;
      if (!bit(remote, p)) continue;
      table.states[p] = PageState.REMOTE;
      table.slots[p] = slot++;
    }
    return table;
  }

  /** The table another thread made (create), over its buffer. */
  constructor(readonly buffer: SharedArrayBuffer, pages: number) {
    this.pages = pages;
    this.header = new Int32Array(buffer, 0, HEADER_WORDS);
    this.states = new Int32Array(buffer, HEADER_WORDS * 4, pages);
    this.slots = new Int32Array(buffer, (HEADER_WORDS + pages) * 4, pages);
    this.data = new Uint8Array(buffer, (HEADER_WORDS + 2 * pages) * 4);
    this.total = this.data.length / PAGE;
  }

  /** Page `p` was remote at the switch (whether or not it arrived since). */
  isRemote(p: number): boolean {
    return this.slots[p] >= 0;
  }

  state(p: number): number {
    return Atomics.load(this.states, p);
  }

  get arrived(): number {
    return Atomics.load(this.header, ARRIVED_COUNT);
  }

  get remaining(): number {
    return this.total - this.arrived;
  }

  /** The connection broke (or the stream was refused): no page will come any more. */
  get failed(): boolean {
    return Atomics.load(this.header, FAILED) !== 0;
  }

  /** Say that no page will come, and wake whoever waits for one. */
  fail(): void {
    Atomics.store(this.header, FAILED, 1);
    for (let p = 0; p < this.pages; p++) if (this.slots[p] >= 0) Atomics.notify(this.states, p);
  }

  /** Mark the pages not yet arrived among `pages` as asked for: those to put in a REQUEST. */
  ask(pages: readonly number[]): number[] {
    return pages.filter((p) => this.slots[p] >= 0 && Atomics.compareExchange(this.states, p, PageState.REMOTE, PageState.REQUESTED) === PageState.REMOTE);
  }

  /** Wait (at most `ms`) until page `p` arrived or the connection failed: whether it arrived. */
  wait(p: number, ms: number): boolean {
    const s = Atomics.load(this.states, p);
    if (s === PageState.ARRIVED) return true;
    if (!this.failed) Atomics.wait(this.states, p, s, ms);
    return Atomics.load(this.states, p) === PageState.ARRIVED;
  }

  /** Page `p`'s bytes (it arrived) into `into`. */
  copy(p: number, into: Uint8Array): void {
    const at = this.slots[p] * PAGE;
    into.set(this.data.subarray(at, at + PAGE));
  }

  /**
   * A PAGES payload after the switch (the worker's side): every page in it must be remote and not
   * arrived yet (each comes once); checked whole before any page is taken. Returns the pages taken.
   */
  apply(payload: Uint8Array): number {
    const entries: Array<{ page: number; bytes: Uint8Array | null }> = [];
    decodePages(payload, this.pages, { set: (page, bytes) => entries.push({ page, bytes }), delete: (page) => entries.push({ page, bytes: null }) });
    const seen = new Set<number>();
    for (const { page } of entries) {
      if (this.slots[page] < 0) throw new MigrationError("PAGES", `page ${page} came after the switch, but it was not remote`);
      if (Atomics.load(this.states, page) === PageState.ARRIVED || seen.has(page)) throw new MigrationError("PAGES", `page ${page} came a second time`);
      seen.add(page);
    }
    for (const { page, bytes } of entries) {
      const at = this.slots[page] * PAGE;
      if (bytes) this.data.set(bytes, at);
      else this.data.fill(0, at, at + PAGE);
      Atomics.store(this.states, page, PageState.ARRIVED);
      Atomics.add(this.header, ARRIVED_COUNT, 1);
      Atomics.notify(this.states, page);
    }
    return entries.length;
  }
}

/** Pages a post-copy PAGES frame carries at most: small, so that a page asked for does not wait behind a long frame. */
export const POSTCOPY_FRAME_PAGES = Math.min(64, PAGES_PER_FRAME);

/**
 * The source's frames after the switch, as the destination's worker reads them: PAGES into `table`
 * (each remote page once), then END once every page came; anything else is a MigrationError (an
 * ABORT's too, with the source's reason).
 */
export class PostcopyReceiver {
  private readonly reader = new FrameReader(false);
  private complete = false;

  constructor(private readonly table: RemotePages) {}

  /** Take `chunk` of the connection: whether the END came (every page is there; nothing may follow). */
  push(chunk: Uint8Array): boolean {
    for (const f of this.reader.push(chunk)) {
      if (this.complete) throw new MigrationError("frame", `a frame of type ${f.type} after the post-copy END`);
      if (f.type === FrameType.PAGES) this.table.apply(f.payload);
      else if (f.type === FrameType.END) {
        if (this.table.remaining > 0) throw new MigrationError("END", `the source ended with ${this.table.remaining} pages still not sent`);
        this.complete = true;
      } else if (f.type === FrameType.ABORT) throw new MigrationError("ABORT", `the source gave up: ${new TextDecoder().decode(f.payload).slice(0, 500)}`);
      else throw new MigrationError("frame", `a frame of type ${f.type} has no place after the post-copy switch`);
    }
    return this.complete;
  }
}
