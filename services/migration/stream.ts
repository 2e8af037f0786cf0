// Live migration stream: what a source hv sends a destination hv over TCP, and the destination's
// answer. Framed, versioned, checksummed; the destination reads it as untrusted input.
//
//   stream    = magic "HVMIGRT1" (8 bytes), then frames
//   frame     = type (u8), payload length (u32 LE), CRC-32 of the payload (u32 LE), payload
//   PAGES     = count (u32 LE), then per page: page number (u32 LE), kind (u8: 0 zero, 1 data),
//               and for data its 4096 bytes. Pre-copy sends a page again when it was written since.
//   META      = msgpack: first {hello: {memoryBytes, name, setup}}, setup the VM's header, memoryMap
//               and drives (so that the destination builds the VM while the pages come); last
//               {vm: the VM's snapshot sections but RAM ({header, vcpus, devices, memoryMap,
//               drives}, checked like a snapshot file's, and against the hello's setup)}, after
//               the last PAGES
//   BLOCKS    = (block migration, `inc`) drive (u8), count (u32 LE), then per chunk: chunk number
//               (u32 LE), kind (u8: 0 zero, 1 data), and for data its bytes: BLOCK_CHUNK_BYTES, or
//               what is left of the disk for its last chunk. Only drives the hello's `blocks` named;
//               a chunk is the guest's view of the disk there (the overlay's data over the backing
//               file's), sent again when the guest wrote it since.
//   END       = empty: the source stopped the VM and sent everything
//   ACK       = (destination → source) empty: the VM runs here now; the source may end
//   ABORT     = (either way) UTF-8 reason: the migration is off; the source keeps its VM (before the
//               post-copy switch's ACK; after it, the VM is lost: see postcopy.ts)
//   POSTCOPY, REQUEST: post-copy's records (services/migration/postcopy.ts). With post-copy, the
//               last META is followed by POSTCOPY instead of END; END then ends the pages pushed
//               after the switch.

import zlib from "node:zlib";
import type { PageMap } from "./page-store.js";

export const MIGRATION_MAGIC = new TextEncoder().encode("HVMIGRT1");
export const FrameType = { PAGES: 1, META: 2, END: 3, ACK: 4, ABORT: 5, BLOCKS: 6, POSTCOPY: 7, REQUEST: 8 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const PAGE = 4096;
const HEADER_BYTES = 9;
/** Largest payload: a PAGES frame of 1,024 pages, with room to spare. */
export const MAX_FRAME_BYTES = 8 << 20;
/** Pages one PAGES frame carries at most (a sender's batch). */
export const PAGES_PER_FRAME = 1024;

/** The stream broke its format: `part` names where (magic, frame, PAGES, META), `problem` what. */
export class MigrationError extends Error {
  constructor(
    readonly part: string,
    readonly problem: string,
  ) {
    super(`migration stream: ${part}: ${problem}`);
    this.name = "MigrationError";
  }
}

export interface Frame {
  type: FrameType;
  payload: Uint8Array;
}

export function encodeFrame(type: FrameType, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, type);
  v.setUint32(1, payload.length, true);
  v.setUint32(5, zlib.crc32(payload), true);
  out.set(payload, HEADER_BYTES);
  return out;
}

/** Whether a page (or any bytes) is all zero: a word at a time when aligned (a byte at a time with a closure was 5 ms of a stop's 216 pages). */
export function isZeroPage(bytes: Uint8Array): boolean {
  if (bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A PAGES payload: each page's bytes, or null for a page that is all zero. */
export function encodePages(pages: ReadonlyArray<{ page: number; bytes: Uint8Array | null }>): Uint8Array {
  const size = 4 + pages.reduce((n, p) => n + 5 + (p.bytes ? PAGE : 0), 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, pages.length, true);
  let at = 4;
  for (const p of pages) {
    v.setUint32(at, p.page, true);
    const zero = p.bytes === null || isZeroPage(p.bytes.subarray(0, PAGE));
    v.setUint8(at + 4, zero ? 0 : 1);
    at += 5;
    if (!zero) {
      out.set(p.bytes!.subarray(0, PAGE), at);
      at += PAGE;
    }
  }
  return out.subarray(0, at);
}

/**
 * Apply a PAGES payload to `ram` (page → bytes, a view into `payload`: a PageStore copies it; a
 * zero page is deleted). Pages must lie below `ramPages`.
 */
export function decodePages(payload: Uint8Array, ramPages: number, ram: Pick<PageMap, "set" | "delete">): number {
  if (payload.length < 4) throw new MigrationError("PAGES", `${payload.length} bytes, too short for its count`);
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const count = v.getUint32(0, true);
  if (count > PAGES_PER_FRAME) throw new MigrationError("PAGES", `count ${count} is more than ${PAGES_PER_FRAME}`);
  let at = 4;
  for (let i = 0; i < count; i++) {
    if (at + 5 > payload.length) throw new MigrationError("PAGES", `entry ${i} of ${count} runs past the frame`);
    const page = v.getUint32(at, true);
    const kind = v.getUint8(at + 4);
    at += 5;
    if (page >= ramPages) throw new MigrationError("PAGES", `entry ${i}: page ${page} lies outside RAM (${ramPages} pages)`);
    if (kind === 0) ram.delete(page);
    else if (kind === 1) {
      if (at + PAGE > payload.length) throw new MigrationError("PAGES", `entry ${i}: page ${page}'s bytes run past the frame`);
      ram.set(page, payload.subarray(at, at + PAGE));
      at += PAGE;
    } else throw new MigrationError("PAGES", `entry ${i}: kind ${kind} is neither 0 (zero) nor 1 (data)`);
  }
  if (at !== payload.length) throw new MigrationError("PAGES", `${payload.length - at} bytes after the last entry`);
  return count;
}

/** A block-migrated disk travels in chunks of 64 KiB (qcow2's default cluster). */
export const BLOCK_CHUNK_BYTES = 64 * 1024;
/** Chunks one BLOCKS frame carries at most (4 MiB of data, below MAX_FRAME_BYTES). */
export const CHUNKS_PER_FRAME = 64;
/** Drives a BLOCKS frame can name (its u8). */
export const MAX_BLOCK_DRIVES = 256;

/** One chunk of a block-migrated disk: its bytes (the guest's view), or null when they are all zero. */
export interface BlockChunk {
  chunk: number;
  bytes: Uint8Array | null;
}

/** The bytes chunk `chunk` of a disk of `diskBytes` covers (the last one may be short). */
export function chunkLength(chunk: number, diskBytes: number): number {
  return Math.min(BLOCK_CHUNK_BYTES, diskBytes - chunk * BLOCK_CHUNK_BYTES);
}

/** A BLOCKS payload for drive `drive` of a disk of `diskBytes`: each chunk's bytes, or a zero flag. */
export function encodeBlocks(drive: number, diskBytes: number, chunks: readonly BlockChunk[]): Uint8Array {
  const size = 5 + chunks.reduce((n, c) => n + 5 + (c.bytes ? chunkLength(c.chunk, diskBytes) : 0), 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint8(0, drive);
  v.setUint32(1, chunks.length, true);
  let at = 5;
  for (const c of chunks) {
    const length = chunkLength(c.chunk, diskBytes);
    const zero = c.bytes === null || isZeroPage(c.bytes.subarray(0, length));
    v.setUint32(at, c.chunk, true);
    v.setUint8(at + 4, zero ? 0 : 1);
    at += 5;
    if (!zero) {
      out.set(c.bytes!.subarray(0, length), at);
      at += length;
    }
  }
  return out.subarray(0, at);
}

/**
 * A BLOCKS payload, checked whole against the drives the hello announced (`diskBytes[drive]`, the
 * disk's size; undefined: not block-migrated) before anything is given out: the drive and its
 * chunks, each a copy (or null: zeros).
 */
export function decodeBlocks(payload: Uint8Array, diskBytes: ReadonlyArray<number | undefined>): { drive: number; chunks: BlockChunk[] } {
  if (payload.length < 5) throw new MigrationError("BLOCKS", `${payload.length} bytes, too short for the drive and the count`);
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const drive = v.getUint8(0);
  const size = diskBytes[drive];
  if (size === undefined) throw new MigrationError("BLOCKS", `drive ${drive} is not one the hello said would be block-migrated`);
  const count = v.getUint32(1, true);
  if (count > CHUNKS_PER_FRAME) throw new MigrationError("BLOCKS", `count ${count} is more than ${CHUNKS_PER_FRAME}`);
  const chunksInDisk = Math.ceil(size / BLOCK_CHUNK_BYTES);
  const chunks: BlockChunk[] = [];
  let at = 5;
  for (let i = 0; i < count; i++) {
    if (at + 5 > payload.length) throw new MigrationError("BLOCKS", `entry ${i} of ${count} runs past the frame`);
    const chunk = v.getUint32(at, true);
    const kind = v.getUint8(at + 4);
    at += 5;
    if (chunk >= chunksInDisk) throw new MigrationError("BLOCKS", `entry ${i}: chunk ${chunk} lies outside drive ${drive} (${size} bytes, ${chunksInDisk} chunks)`);
    if (kind === 0) chunks.push({ chunk, bytes: null });
    else if (kind === 1) {
      const length = chunkLength(chunk, size);
      if (at + length > payload.length) throw new MigrationError("BLOCKS", `entry ${i}: chunk ${chunk}'s ${length} bytes run past the frame`);
      chunks.push({ chunk, bytes: payload.slice(at, at + length) });
      at += length;
    } else throw new MigrationError("BLOCKS", `entry ${i}: kind ${kind} is neither 0 (zero) nor 1 (data)`);
  }
  if (at !== payload.length) throw new MigrationError("BLOCKS", `${payload.length - at} bytes after the last entry`);
  return { drive, chunks };
}

/** Takes the stream as it arrives (in pieces of any size) and hands out whole, checked frames. */
export class FrameReader {
  /** Bytes received and not taken yet: buf[start, end). */
  private buf = new Uint8Array(64 * 1024);
  private start = 0;
  private end = 0;
  private magicSeen: boolean;

  /** `magic`: the stream starts with MIGRATION_MAGIC (the source's does; the destination's answers do not). */
  constructor(magic = true) {
    this.magicSeen = !magic;
  }

  push(chunk: Uint8Array): Frame[] {
    this.append(chunk);
    const frames: Frame[] = [];
    if (!this.magicSeen) {
      if (this.end - this.start < MIGRATION_MAGIC.length) return frames;
      for (let i = 0; i < MIGRATION_MAGIC.length; i++)
        if (this.buf[this.start + i] !== MIGRATION_MAGIC[i]) throw new MigrationError("magic", "the stream does not start with HVMIGRT1 (not an hv migration, or another version)");
      this.magicSeen = true;
      this.start += MIGRATION_MAGIC.length;
    }
    for (;;) {
      if (this.end - this.start < HEADER_BYTES) return frames;
      const v = new DataView(this.buf.buffer, this.start, HEADER_BYTES);
      const type = v.getUint8(0);
      const length = v.getUint32(1, true);
      if (!Object.values(FrameType).includes(type as FrameType)) throw new MigrationError("frame", `type ${type} is unknown`);
      if (length > MAX_FRAME_BYTES) throw new MigrationError("frame", `a payload of ${length} bytes is more than ${MAX_FRAME_BYTES}`);
      if (this.end - this.start < HEADER_BYTES + length) return frames;
      const payload = this.buf.slice(this.start + HEADER_BYTES, this.start + HEADER_BYTES + length);
      if (zlib.crc32(payload) !== v.getUint32(5, true)) throw new MigrationError("frame", `the checksum of a ${length}-byte frame of type ${type} is wrong`);
      frames.push({ type: type as FrameType, payload });
      this.start += HEADER_BYTES + length;
    }
  }

  /** Bytes received and not yet a whole frame (a stream cut short leaves some). */
  get pending(): number {
    return this.end - this.start;
  }

  private append(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      const grown = new Uint8Array(Math.max(this.buf.length, 2 * (live + chunk.length)));
      grown.set(this.buf.subarray(this.start, this.end));
      this.buf = grown;
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }
}
