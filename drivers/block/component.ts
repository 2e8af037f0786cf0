// Block driver component: serves disk images to VMMs through portals, with data in shared memory.
//
// The root task decides which image each client gets (a DriveConfig per client id) and creates,
// in the driver's PD, one local EC per client from `entry(id)` and a portal to it with id = the
// client id. A client ATTACHes by delegating memory pages into that EC's window; from then on a
// request names a sector range and a byte offset into those pages, and the driver reads or writes
// the image straight from/into them (`sys.memory()` views: no copy through IPC; in a worker,
// `--isolate`, copies that the main side makes: ./worker.ts). The words are described in
// ./protocol.ts. The image is opened at ATTACH, so a second writer of the same image (another
// client, or another process) is refused there with LOCKED.

import { MemoryRevokedError, SpaceKind, crd, packBytes, type Crd, type LocalEntry, type MemoryView, type PortalHandler, type Status, type Sys, type Utcb } from "../../kernel/index.js";
import { ImageError } from "./errors.js";
import type { BlockImage, FormatName } from "./image.js";
import { AttachFlags, BLOCK_SECTOR_SIZE, BlockFlags, BlockOp, BlockReply } from "./protocol.js";
import { BlockService, BlockStatus } from "./service.js";

/** The image a client gets. */
export interface DriveConfig {
  path: string;
  /** Probed when omitted. */
  format?: FormatName;
  readOnly?: boolean;
}

export interface BlockDriverOptions {
  /**
   * Each client's memory window is 2^windowOrder pages (default 16: 256 MiB); client `id` gets
   * pages [id, id + 1) * 2^windowOrder of the driver's space (2^20 pages), so ids must fit.
   */
  windowOrder?: number;
  /** Write each image's metadata after every write (BlockServiceOptions.persistWrites): for a driver in a worker. */
  persistWrites?: boolean;
}

/** Pages of the driver's memory space (2^20) that windows may use. */
const MEMORY_SPACE_PAGES = 2 ** 20;
/** Longest failure reason sent back with ATTACH, in bytes. */
const REASON_BYTES = 512;

/**
 * A client's shared pages as the driver reaches them: in-process, views of the pages themselves
 * (no copy); in a worker, copies made by the main side. Both throw MemoryRevokedError once the
 * client has taken the pages back.
 */
export interface ClientRegion {
  readonly length: number;
  /** Bytes [offset, offset + length) to write to the disk. */
  source(offset: number, length: number): Uint8Array;
  /** Where to read [offset, offset + length) from the disk into, and `commit` to put it there. */
  sink(offset: number, length: number): { buffer: Uint8Array; commit(): void };
}

/** What the driver uses of a syscall handle: a worker gets a stand-in that asks the main side. */
export interface DriverSys {
  readonly utcb: Utcb;
  revoke(range: Crd, keepSelf?: boolean): Status;
  /** Pages [page, page + pages) of the driver's space as one region, or null if they are not one readable and writable range. */
  region(page: number, pages: number): ClientRegion | null;
}

/** A view's bytes as a region: no copy. */
export function viewRegion(view: MemoryView): ClientRegion {
  return {
    length: view.length,
    source: (offset, length) => view.bytes.subarray(offset, offset + length),
    sink: (offset, length) => ({ buffer: view.bytes.subarray(offset, offset + length), commit: () => {} }),
  };
}

/** The driver's view of an in-process syscall handle. */
function inProcess(sys: Sys): DriverSys {
  return {
    get utcb() {
      return sys.utcb;
    },
    revoke: (range, keepSelf) => sys.revoke(range, keepSelf),
    region: (page, pages) => {
      const view = sys.memory(page, pages);
      return view && viewRegion(view);
    },
  };
}

/** What one attached client has: its opened image (null while inactive) and the shared region. */
interface Attachment {
  service: BlockService | null;
  /** The disk as it was at ATTACH: an inactive drive answers INFO with it, and ACTIVATE must find it so. */
  readonly sectors: number;
  readonly readOnly: boolean;
  /** The client's pages: they fail once the client revokes them. */
  readonly region: ClientRegion;
  readonly pages: number;
  /** While the host logs writes (block migration): one bit per chunk of `logChunkBytes` written since the last collect; null (the default) costs one test per write. */
  dirty: Uint8Array | null;
}

/**
 * Client `id`'s image as the host reaches it between the driver's requests (block migration: the
 * host loop runs between kernel slices, so no request is half done). Each call finds the client's
 * attachment then; null when it is not attached (yet, or any more).
 */
export interface HostDrive {
  /** The opened image (its backing chain included), or null when the client is not attached. */
  image(): BlockImage | null;
  /** Log writes from now on in chunks of `chunkBytes`; false when the client is not attached. */
  startLog(chunkBytes: number): boolean;
  /** The chunks written since the start or the last collect (a bitmap, bit c of byte c >> 3), and a fresh log; null when not logging. */
  collectLog(): Uint8Array | null;
  stopLog(): void;
}

/** A refusal: the reply status and why. */
interface Refusal {
  status: BlockReply;
  reason: string;
}

/**
 * The driver's state: drive configuration and, per client id, what is attached. One instance per
 * driver component; its ECs share it (they run in one PD).
 */
export class BlockDriver {
  private readonly attached = new Map<number, Attachment>();
  /** Clients whose writes the host logs: the chunk size. */
  private readonly logChunk = new Map<number, number>();
  private readonly windowOrder: number;
  private readonly persistWrites: boolean;

  constructor(
    private readonly drives: ReadonlyMap<number, DriveConfig>,
    options: BlockDriverOptions = {},
  ) {
    this.windowOrder = options.windowOrder ?? 16;
    this.persistWrites = options.persistWrites === true;
    if (!Number.isInteger(this.windowOrder) || this.windowOrder < 0 || this.windowOrder > 20) {
      throw new RangeError(`block driver: window order ${this.windowOrder} outside 0-20`);
    }
  }

  /** The memory window client `id`'s pages land in: page id << windowOrder of the driver's space. */
  windowOf(id: number): Crd {
    const size = 2 ** this.windowOrder;
    const base = id * size;
    if (!Number.isInteger(id) || id < 0 || base + size > MEMORY_SPACE_PAGES) {
      throw new RangeError(`block driver: client id ${id} has no window (window order ${this.windowOrder})`);
    }
    return crd(SpaceKind.MEMORY, base, this.windowOrder);
  }

  /** The entry of the local EC that serves client `id`. Bind exactly one portal to it, with portal id `id`. */
  entry(id: number): LocalEntry {
    const serve = this.server(id);
    return (sys) => serve(inProcess(sys));
  }

  /** Client `id`'s portal handler on a driver syscall handle (in-process, or a worker's stand-in). */
  server(id: number): (sys: DriverSys) => PortalHandler {
    const window = this.windowOf(id);
    return (sys) => {
      sys.utcb.receiveWindow[SpaceKind.MEMORY] = window;
      return (utcb, portalId) => {
        // A portal bound to the wrong EC would mix two clients' windows: refuse it.
        const kept = portalId === id ? this.serve(sys, utcb, id, window) : void utcb.set(BlockReply.BAD_REQUEST);
        if (!kept) dropReceived(sys, utcb);
      };
    };
  }

  /** Client `id`'s image for the host (block migration): in-process only (a worker's driver has none). */
  hostDrive(id: number): HostDrive {
    const bitmapFor = (a: Attachment) => new Uint8Array(Math.ceil(Math.ceil((a.sectors * BLOCK_SECTOR_SIZE) / this.logChunk.get(id)!) / 8));
    return {
      image: () => this.attached.get(id)?.service?.opened ?? null,
      startLog: (bytes) => {
        const a = this.attached.get(id);
        if (!a) return false;
        this.logChunk.set(id, bytes);
        a.dirty = bitmapFor(a);
        return true;
      },
      collectLog: () => {
        const a = this.attached.get(id);
        if (!a?.dirty) return null;
        const log = a.dirty;
        a.dirty = bitmapFor(a);
        return log;
      },
      stopLog: () => {
        const a = this.attached.get(id);
        if (a) a.dirty = null;
        this.logChunk.delete(id);
      },
    };
  }

  /** Whether client `id` is attached (for tests and diagnostics). */
  isAttached(id: number): boolean {
    return this.attached.has(id);
  }

  /** Write metadata and release every image (the end of a run). */
  close(): void {
    for (const a of this.attached.values()) {
      a.service?.handle({ op: "flush", sector: 0, count: 0 });
      a.service?.close();
    }
    this.attached.clear();
  }

  /** Handle one request of client `id`; says whether memory that arrived with it was kept. */
  private serve(sys: DriverSys, utcb: Utcb, id: number, window: Crd): boolean {
    const op = utcb.untyped > 0 ? utcb.words[0] : 0;
    const a = this.attached.get(id);
    switch (op) {
      case BlockOp.ATTACH:
        return this.attach(sys, utcb, id, window);
      case BlockOp.READ:
      case BlockOp.WRITE:
        utcb.set(!a ? BlockReply.NOT_ATTACHED : !a.service ? BlockReply.INACTIVE : transfer(a, a.service, utcb, op, this.logChunk.get(id) ?? 0));
        return false;
      case BlockOp.FLUSH:
        utcb.set(!a ? BlockReply.NOT_ATTACHED : !a.service ? BlockReply.INACTIVE : statusOf(a.service.handle({ op: "flush", sector: 0, count: 0 }).status));
        return false;
      case BlockOp.INACTIVATE:
        utcb.set(a ? this.inactivate(a) : BlockReply.NOT_ATTACHED);
        return false;
      case BlockOp.ACTIVATE:
        if (!a) utcb.set(BlockReply.NOT_ATTACHED);
        else this.activate(utcb, a, id, window);
        return false;
      case BlockOp.INFO:
        if (a) replyInfo(utcb, a, window);
        else utcb.set(BlockReply.NOT_ATTACHED);
        return false;
      case BlockOp.DETACH: {
        if (!a) {
          utcb.set(BlockReply.NOT_ATTACHED);
          return false;
        }
        const flushed = a.service ? statusOf(a.service.handle({ op: "flush", sector: 0, count: 0 }).status) : BlockReply.OK;
        a.service?.close();
        this.attached.delete(id);
        sys.revoke(window);
        utcb.set(flushed);
        return false;
      }
      default:
        utcb.set(utcb.untyped === 0 ? BlockReply.BAD_REQUEST : BlockReply.UNSUPP);
        return false;
    }
  }

  /** ATTACH: check the message and the delegated region completely, then open the image. */
  private attach(sys: DriverSys, utcb: Utcb, id: number, window: Crd): boolean {
    const checked = this.checkAttach(sys, utcb, id, window);
    if ("status" in checked) {
      refuse(utcb, checked);
      return false;
    }
    const inactive = utcb.untyped >= 3 && (utcb.words[2] & AttachFlags.INACTIVE) !== 0;
    // Inactive: only a look at the image (no write lock), closed again; ACTIVATE opens it.
    const service = this.open(utcb, checked.drive, inactive);
    if (!service) return false;
    const a: Attachment = { service, sectors: service.sectors, readOnly: checked.drive.readOnly === true, region: checked.region, pages: checked.pages, dirty: null };
    if (inactive) {
      service.close();
      a.service = null;
    }
    // Attached again while the host logs writes: what happened in between is unknown, so all of it counts as written.
    const logging = this.logChunk.get(id);
    if (logging) a.dirty = new Uint8Array(Math.ceil(Math.ceil((a.sectors * BLOCK_SECTOR_SIZE) / logging) / 8)).fill(0xff);
    this.attached.set(id, a);
    replyInfo(utcb, a, window);
    return true;
  }

  /** Open `drive`'s image (`look`: read-only, whatever the drive is); on failure, refuse with why and return null. */
  private open(utcb: Utcb, drive: DriveConfig, look = false): BlockService | null {
    try {
      return BlockService.open(drive.path, { format: drive.format, readOnly: look || drive.readOnly, persistWrites: this.persistWrites });
    } catch (err) {
      const locked = err instanceof ImageError && err.code === "LOCKED";
      refuse(utcb, { status: locked ? BlockReply.LOCKED : BlockReply.BAD_IMAGE, reason: err instanceof Error ? err.message : String(err) });
      return null;
    }
  }

  /** INACTIVATE: the image goes to disk and is closed (its write lock with it); the region stays. */
  private inactivate(a: Attachment): BlockReply {
    if (!a.service) return BlockReply.OK;
    const flushed = statusOf(a.service.handle({ op: "flush", sector: 0, count: 0 }).status);
    a.service.close();
    a.service = null;
    return flushed;
  }

  /** ACTIVATE: open the image again, as it is on disk now (another process may have written it), the size it was. */
  private activate(utcb: Utcb, a: Attachment, id: number, window: Crd): void {
    if (!a.service) {
      const service = this.open(utcb, this.drives.get(id)!);
      if (!service) return;
      if (service.sectors !== a.sectors) {
        service.close();
        return refuse(utcb, { status: BlockReply.BAD_IMAGE, reason: `the disk has ${service.sectors} sectors now, ${a.sectors} when it was attached` });
      }
      a.service = service;
    }
    replyInfo(utcb, a, window);
  }

  private checkAttach(sys: DriverSys, utcb: Utcb, id: number, window: Crd): Refusal | { drive: DriveConfig; region: ClientRegion; pages: number } {
    if (this.attached.has(id)) return { status: BlockReply.BAD_REQUEST, reason: "already attached (DETACH first)" };
    if (utcb.untyped < 2) return { status: BlockReply.BAD_REQUEST, reason: "ATTACH needs the page count" };
    const pages = utcb.words[1];
    const windowPages = 2 ** window.order;
    if (pages < 1 || pages > windowPages) return { status: BlockReply.BAD_BUFFER, reason: `${pages} pages do not fit the window of ${windowPages}` };
    const drive = this.drives.get(id);
    if (!drive) return { status: BlockReply.NO_DISK, reason: `no drive for client ${id}` };
    // The delegated ranges must tile [window.base, window.base + pages) exactly.
    const got = utcb.received.flatMap((r) => (r.kind === "delegated" && r.crd.kind === SpaceKind.MEMORY ? [r.crd] : [])).sort((x, y) => x.base - y.base);
    let end = window.base;
    for (const c of got) {
      if (c.base !== end) return { status: BlockReply.BAD_BUFFER, reason: "delegated pages are not contiguous from offset 0" };
      end += 2 ** c.order;
    }
    if (end - window.base !== pages) return { status: BlockReply.BAD_BUFFER, reason: `${end - window.base} pages arrived, ${pages} announced` };
    const region = sys.region(window.base, pages);
    if (!region) return { status: BlockReply.BAD_BUFFER, reason: "delegated pages are not one readable and writable range" };
    return { drive, region, pages };
  }
}

/** READ or WRITE against an attached client's region: validated here so each refusal has its own status. */
function transfer(a: Attachment, service: BlockService, utcb: Utcb, op: number, logChunkBytes: number): BlockReply {
  if (utcb.untyped < 5) return BlockReply.BAD_REQUEST;
  const w = utcb.words;
  const sector = w[1] + w[2] * 2 ** 32;
  const count = w[3];
  const offset = w[4];
  const bytes = count * BLOCK_SECTOR_SIZE;
  if (offset + bytes > a.region.length) return BlockReply.BAD_BUFFER;
  if (sector + count > a.sectors) return BlockReply.OUT_OF_RANGE;
  if (op === BlockOp.WRITE && a.readOnly) return BlockReply.READ_ONLY;
  try {
    if (op === BlockOp.WRITE) {
      // Logged before the write: a write that fails half way may have changed some of the range.
      if (a.dirty && count > 0) markChunks(a.dirty, sector * BLOCK_SECTOR_SIZE, bytes, logChunkBytes);
      return statusOf(service.handle({ op: "write", sector, count, buffer: a.region.source(offset, bytes) }).status);
    }
    const into = a.region.sink(offset, bytes);
    const status = statusOf(service.handle({ op: "read", sector, count, buffer: into.buffer }).status);
    if (status === BlockReply.OK) into.commit();
    return status;
  } catch (error) {
    // The client took its pages back: nothing to read from or write into.
    if (error instanceof MemoryRevokedError) return BlockReply.BAD_BUFFER;
    throw error;
  }
}

/** Set the bits of the chunks that bytes [offset, offset + length) touch. */
function markChunks(bitmap: Uint8Array, offset: number, length: number, chunkBytes: number): void {
  const last = Math.floor((offset + length - 1) / chunkBytes);
  for (let c = Math.floor(offset / chunkBytes); c <= last; c++) bitmap[c >> 3] |= 1 << (c & 7);
}

function replyInfo(utcb: Utcb, a: Attachment, window: Crd): void {
  const sectors = a.sectors;
  const hi = Math.floor(sectors / 2 ** 32);
  utcb.set(BlockReply.OK, sectors - hi * 2 ** 32, hi, a.readOnly ? BlockFlags.READ_ONLY : 0, 2 ** window.order);
}

function refuse(utcb: Utcb, r: Refusal): void {
  const bytes = new TextEncoder().encode(r.reason).subarray(0, REASON_BYTES);
  utcb.words[0] = r.status;
  utcb.words[1] = bytes.length;
  utcb.untyped = 2 + packBytes(bytes, utcb.words, 2);
}

function statusOf(s: BlockStatus): BlockReply {
  return s === BlockStatus.OK ? BlockReply.OK : s === BlockStatus.UNSUPPORTED ? BlockReply.UNSUPP : BlockReply.IOERR;
}

/** Memory delegated with a message that did not keep it is unmapped again at once. */
function dropReceived(sys: DriverSys, utcb: Utcb): void {
  for (const r of utcb.received) {
    if (r.kind === "delegated" && r.crd.kind === SpaceKind.MEMORY) sys.revoke(crd(SpaceKind.MEMORY, r.crd.base, r.crd.order));
  }
}
