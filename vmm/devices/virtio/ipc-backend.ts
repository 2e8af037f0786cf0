// A virtio-blk backend that is the block driver component, reached through its portal
// (protocol: drivers/block/protocol.ts). At creation it ATTACHes: it delegates the pages of a
// shared region to the driver, which reads and writes disk data straight into them. A buffer
// that lies inside the region (for example when the region is all of guest RAM) costs one call
// and no copy; any other buffer goes through the region in chunks.

import { MemRights, SpaceKind, Status, alignedRuns, crd, unpackBytes, type MemoryView, type Sys, type Utcb } from "../../../kernel/index.js";
import { AttachFlags, BlockOp, BlockReply, BlockFlags, BLOCK_SECTOR_SIZE, blockReplyName } from "../../../drivers/block/protocol.js";
import { VirtioBlkStatus, gather, scatter, type BlockBackend } from "./blk.js";

const PAGE = 4096;

/** ATTACH was refused: `status` is the driver's reply (BlockReply), `reason` its words. */
export class BlockAttachError extends Error {
  constructor(readonly status: number, readonly reason: string) {
    super(`block driver refused the disk: ${blockReplyName(status)}${reason ? `: ${reason}` : ""}`);
    this.name = "BlockAttachError";
  }
}

/** Times a request is sent to a driver that keeps restarting under it. */
const RESTART_TRIES = 3;

export interface IpcBlockBackend extends BlockBackend {
  /** Flush, close the image on the driver's side and unmap the shared region there. */
  detach(): VirtioBlkStatus;
  /** Flush and close the image on the driver's side (its write lock with it), keeping the region: I/O fails until activate(). */
  inactivate(): VirtioBlkStatus;
  /** Open the image again as it is on disk now; throws BlockAttachError when the driver refuses (LOCKED: another process has it). */
  activate(): void;
}

/**
 * Attach to the block driver behind `portal`, sharing `shared` (a view of this PD's memory from
 * page `sharedPage` on, from `sys.memory(sharedPage, pages)`). Throws BlockAttachError when
 * the driver refuses (LOCKED: another writer has the image). `inactive`: the driver only looks at
 * the image (its size) and does not open it until activate(): another process may still write it
 * (a migration's source). Call from an EC of the PD `sys` is for.
 */
export function ipcBlockBackend(sys: Sys, portal: number, shared: MemoryView, sharedPage: number, inactive = false): IpcBlockBackend {
  const pages = shared.length / PAGE;
  if (!Number.isInteger(pages) || pages < 1) throw new RangeError(`shared region of ${shared.length} bytes is not whole pages`);
  const utcb = () => sys.utcb;
  const u = utcb();
  if (inactive) u.set(BlockOp.ATTACH, pages, AttachFlags.INACTIVE);
  else u.set(BlockOp.ATTACH, pages);
  for (const [offset, order] of alignedRuns(pages, [sharedPage, 0])) {
    u.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, sharedPage + offset, order, MemRights.R | MemRights.W), offset });
  }
  const called = sys.call(portal);
  u.items.length = 0;
  if (called !== Status.SUCCESS) throw new BlockAttachError(BlockReply.IOERR, `portal call failed: ${Status[called]}`);
  const w = u.words;
  if (w[0] !== BlockReply.OK) throw refusal(u);
  const sectors = w[1] + w[2] * 2 ** 32;
  const readOnly = (w[3] & BlockFlags.READ_ONLY) !== 0;
  const chunk = Math.floor(shared.length / BLOCK_SECTOR_SIZE) * BLOCK_SECTOR_SIZE;

  /** Send a request; one a restarted driver answered RESTARTED is sent again (reads, writes and flushes may simply happen again). */
  const send = (...words: number[]): VirtioBlkStatus => {
    const m = utcb();
    for (let tries = 0; ; tries++) {
      m.set(...words);
      if (sys.call(portal) !== Status.SUCCESS) return VirtioBlkStatus.IOERR;
      if (m.words[0] !== BlockReply.RESTARTED || tries + 1 >= RESTART_TRIES) return statusOf(m.words[0]);
    }
  };
  const call = (op: number, sector: number, count: number, offset: number): VirtioBlkStatus => {
    const hi = Math.floor(sector / 2 ** 32);
    return send(op, sector - hi * 2 ** 32, hi, count, offset);
  };
  /** Byte offset of `buf` inside the shared region, or -1. */
  const offsetOf = (buf: Uint8Array, region: Uint8Array): number =>
    buf.buffer === region.buffer && buf.byteOffset >= region.byteOffset && buf.byteOffset + buf.length <= region.byteOffset + region.length
      ? buf.byteOffset - region.byteOffset
      : -1;
  const move = (write: boolean, sector: number, buf: Uint8Array): VirtioBlkStatus => {
    if (buf.length % BLOCK_SECTOR_SIZE !== 0 || !Number.isSafeInteger(sector) || sector < 0) return VirtioBlkStatus.IOERR;
    const op = write ? BlockOp.WRITE : BlockOp.READ;
    const inside = offsetOf(buf, shared.bytes);
    if (inside >= 0) return call(op, sector, buf.length / BLOCK_SECTOR_SIZE, inside);
    for (let at = 0; at < buf.length; at += chunk) {
      const n = Math.min(chunk, buf.length - at);
      if (write) shared.bytes.set(buf.subarray(at, at + n));
      const st = call(op, sector + at / BLOCK_SECTOR_SIZE, n / BLOCK_SECTOR_SIZE, 0);
      if (st !== VirtioBlkStatus.OK) return st;
      if (!write) buf.set(shared.bytes.subarray(0, n), at);
    }
    return VirtioBlkStatus.OK;
  };
  /**
   * Consecutive `segments` (each a multiple of 512 bytes) from `sector` on, gathered through the
   * shared region: one request per region-full instead of one per segment (a guest's request is
   * a page per segment). A segment inside the region (or larger than it) goes alone, as `move` does.
   */
  const moveAll = (write: boolean, sector: number, segments: readonly Uint8Array[]): VirtioBlkStatus => {
    const op = write ? BlockOp.WRITE : BlockOp.READ;
    let batch: Uint8Array[] = [];
    let bytes = 0;
    const flushBatch = (): VirtioBlkStatus => {
      if (bytes === 0) return VirtioBlkStatus.OK;
      const region = shared.bytes;
      if (write) gather(batch, region.subarray(0, bytes));
      const st = call(op, sector, bytes / BLOCK_SECTOR_SIZE, 0);
      if (st === VirtioBlkStatus.OK && !write) scatter(region, batch);
      sector += bytes / BLOCK_SECTOR_SIZE;
      batch = [];
      bytes = 0;
      return st;
    };
    for (const s of segments) {
      if (s.length % BLOCK_SECTOR_SIZE !== 0 || !Number.isSafeInteger(sector) || sector < 0) return VirtioBlkStatus.IOERR;
      if (bytes + s.length > chunk) {
        const st = flushBatch();
        if (st !== VirtioBlkStatus.OK) return st;
      }
      if (s.length > chunk || offsetOf(s, shared.bytes) >= 0) {
        const pending = flushBatch();
        if (pending !== VirtioBlkStatus.OK) return pending;
        const st = move(write, sector, s);
        if (st !== VirtioBlkStatus.OK) return st;
        sector += s.length / BLOCK_SECTOR_SIZE;
        continue;
      }
      batch.push(s);
      bytes += s.length;
    }
    return flushBatch();
  };

  return {
    sectors,
    readOnly,
    read: (sector, buf) => move(false, sector, buf),
    write: (sector, buf) => move(true, sector, buf),
    readAll: (sector, segments) => moveAll(false, sector, segments),
    writeAll: (sector, segments) => moveAll(true, sector, segments),
    flush: () => send(BlockOp.FLUSH),
    detach: () => {
      utcb().set(BlockOp.DETACH);
      return sys.call(portal) === Status.SUCCESS ? statusOf(utcb().words[0]) : VirtioBlkStatus.IOERR;
    },
    inactivate: () => send(BlockOp.INACTIVATE),
    activate: () => {
      const m = utcb();
      m.set(BlockOp.ACTIVATE);
      const st = sys.call(portal);
      if (st !== Status.SUCCESS) throw new BlockAttachError(BlockReply.IOERR, `portal call failed: ${Status[st]}`);
      if (m.words[0] !== BlockReply.OK) throw refusal(m);
    },
  };
}

/** A refused ATTACH or ACTIVATE: its status and the reason the driver sent. */
function refusal(u: Utcb): BlockAttachError {
  const w = u.words;
  const reason = u.untyped >= 2 ? new TextDecoder().decode(unpackBytes(w, 2, Math.min(w[1], 4 * (u.untyped - 2)))) : "";
  return new BlockAttachError(w[0], reason);
}

function statusOf(reply: number): VirtioBlkStatus {
  return reply === BlockReply.OK ? VirtioBlkStatus.OK : reply === BlockReply.UNSUPP ? VirtioBlkStatus.UNSUPP : VirtioBlkStatus.IOERR;
}

