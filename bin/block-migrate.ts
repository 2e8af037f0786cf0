// Block migration of qcow2 overlays (QMP `migrate` with `"inc": true`, QEMU's incremental form):
// the backing file is shared storage, both sides open it; what moves is each overlay's content.
//
// Source: the chunks (BLOCK_CHUNK_BYTES) where the overlay holds anything (data or zeros) go in
// pass 1, read as the guest sees them; the block driver logs the guest's writes meanwhile (a chunk
// bitmap, like RAM's dirty log) and each later pass sends the chunks written since; at the stop the
// last ones go with the VM's state, after the overlay was flushed.
//
// Destination: the hello names the drives (`blocks`), their size and backing file. For each it
// makes a new qcow2 overlay over that backing file (`--drive file=PATH` on the incoming side, in the
// order of the block-migrated drives; else the source's path), and the VM opens that one. Chunks are
// written into it through the destination's block driver once the VM attached its drives, kept in
// memory until then (and at most until the END).

import { existsSync, rmSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import type { HostDrive } from "../drivers/block/component.js";
import type { BlockImage, FormatName } from "../drivers/block/image.js";
import { openImage, resolveBacking } from "../drivers/block/open.js";
import { createImage } from "../drivers/block/ops/create.js";
import { BLOCK_CHUNK_BYTES, CHUNKS_PER_FRAME, MAX_BLOCK_DRIVES, MigrationError, chunkLength, encodeBlocks, encodeFrame, FrameType, type BlockChunk } from "../services/migration/stream.js";

/** A drive the source block-migrates: its index among the VM's drives and the driver's handle on it. */
export interface BlockSource {
  index: number;
  drive: HostDrive;
}

/** What the hello says of a block-migrated drive. */
export interface BlockAnnouncement {
  drive: number;
  /** Virtual size, bytes. */
  bytes: number;
  /** The overlay's backing file, an absolute path (shared storage: the destination opens the same). */
  backing: string;
  backingFormat?: FormatName;
}

const FORMATS: readonly string[] = ["raw", "qcow2", "vpc", "vmdk"];

/** The opened overlay of `source`, checked: attached, writable, qcow2 over a backing file; RangeError naming the drive otherwise. */
function overlayOf(source: BlockSource): BlockImage {
  const image = source.drive.image();
  const name = `drive ${source.index}`;
  if (!image) throw new RangeError(`block migration: ${name} is not attached to the VM (yet)`);
  if (!image.writable) throw new RangeError(`block migration: ${name} ('${image.path}') is read-only: it is shared storage, nothing to migrate`);
  if (image.format !== "qcow2" || !image.backingRef) throw new RangeError(`block migration: ${name} ('${image.path}') is not a qcow2 overlay with a backing file (inc migrates only overlays)`);
  return image;
}

/** The hello's `blocks`: each source drive's size and backing file (checked first: a drive that is not an overlay refuses the migration). */
export function announceBlocks(sources: readonly BlockSource[]): BlockAnnouncement[] {
  return sources.map((s) => {
    const image = overlayOf(s);
    const ref = image.backingRef!;
    return { drive: s.index, bytes: image.virtualSize, backing: resolvePath(resolveBacking(ref, image.path)), ...(ref.format ? { backingFormat: ref.format } : {}) };
  });
}

/** The chunks where the overlay itself holds something (data or zeros): pass 1 sends those, as a bitmap. */
export function allocatedChunks(image: BlockImage): Uint8Array {
  const chunks = Math.ceil(image.virtualSize / BLOCK_CHUNK_BYTES);
  const bitmap = new Uint8Array(Math.ceil(chunks / 8));
  for (let offset = 0; offset < image.virtualSize; ) {
    const extent = image.status(offset, image.virtualSize - offset);
    const length = Math.max(1, extent.length);
    if (extent.kind !== "unallocated") {
      const last = Math.floor((offset + length - 1) / BLOCK_CHUNK_BYTES);
      for (let c = Math.floor(offset / BLOCK_CHUNK_BYTES); c <= last; c++) bitmap[c >> 3] |= 1 << (c & 7);
    }
    offset += length;
  }
  return bitmap;
}

/** BLOCKS frames of the chunks `wanted` marks, each read as the guest sees it (zeros as a flag) when it is taken; `counted` hears how many chunks each held. */
export function* blockFrames(source: BlockSource, wanted: Uint8Array, counted: (chunks: number) => void): Generator<Uint8Array> {
  const image = overlayOf(source);
  const size = image.virtualSize;
  const chunks = Math.ceil(size / BLOCK_CHUNK_BYTES);
  let batch: BlockChunk[] = [];
  const frame = () => {
    const f = encodeFrame(FrameType.BLOCKS, encodeBlocks(source.index, size, batch));
    counted(batch.length);
    batch = [];
    return f;
  };
  for (let c = 0; c < chunks; c++) {
    if (!((wanted[c >> 3] >> (c & 7)) & 1)) continue;
    const bytes = new Uint8Array(chunkLength(c, size));
    image.read(c * BLOCK_CHUNK_BYTES, bytes);
    batch.push({ chunk: c, bytes });
    if (batch.length === CHUNKS_PER_FRAME) yield frame();
  }
  if (batch.length > 0) yield frame();
}

/** Bits set in a bitmap. */
export function bitsSet(bitmap: Uint8Array): number {
  let n = 0;
  for (const byte of bitmap) for (let b = byte; b; b &= b - 1) n++;
  return n;
}

/** The hello's `blocks` as the destination reads it (untrusted): MigrationError naming the field. */
export function checkAnnouncements(value: unknown, drives: number): BlockAnnouncement[] {
  if (value === undefined) return [];
  const where = (i: number, field: string) => `hello.blocks[${i}].${field}`;
  if (!Array.isArray(value)) throw new MigrationError("META", "hello.blocks is not a list");
  if (value.length > Math.min(drives, MAX_BLOCK_DRIVES)) throw new MigrationError("META", `hello.blocks names ${value.length} drives, the VM has ${drives}`);
  const seen = new Set<number>();
  return value.map((v: unknown, i) => {
    if (typeof v !== "object" || v === null) throw new MigrationError("META", `hello.blocks[${i}] is not a record`);
    const r = v as Record<string, unknown>;
    const drive = r.drive;
    if (typeof drive !== "number" || !Number.isInteger(drive) || drive < 0 || drive >= drives) throw new MigrationError("META", `${where(i, "drive")} ${String(drive)} is not one of the VM's ${drives} drives`);
    if (seen.has(drive)) throw new MigrationError("META", `${where(i, "drive")} ${drive} comes twice`);
    seen.add(drive);
    const bytes = r.bytes;
    if (typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 512 !== 0 || bytes / BLOCK_CHUNK_BYTES >= 2 ** 32) throw new MigrationError("META", `${where(i, "bytes")} ${String(bytes)} is not a disk size`);
    const backing = r.backing;
    if (typeof backing !== "string" || backing.length === 0 || backing.length > 4096 || backing.includes("\0")) throw new MigrationError("META", `${where(i, "backing")} is not a file name`);
    const format = r.backingFormat;
    if (format !== undefined && (typeof format !== "string" || !FORMATS.includes(format))) throw new MigrationError("META", `${where(i, "backingFormat")} ${String(format)} is not one of ${FORMATS.join(", ")}`);
    return { drive, bytes, backing, ...(format ? { backingFormat: format as FormatName } : {}) };
  });
}

/**
 * The destination's overlays: made at the hello, written as chunks come (or kept until the VM's
 * drives are attached), removed again when the migration fails.
 */
export class BlockTargets {
  /** Disk size of each drive that is block-migrated (by drive index), undefined for the others. */
  readonly sizes: Array<number | undefined> = [];
  /** Drive index → the overlay made here. */
  readonly paths = new Map<number, string>();
  private readonly pending = new Map<number, Map<number, Uint8Array | null>>();
  private made: string[] = [];
  /** The VM's drive `index` once its block driver attached it (set by whoever runs the VM). */
  attach: ((index: number) => HostDrive | null) | null = null;

  /**
   * Make an overlay for each announced drive over its backing file: `targets[k]` for the k-th, else
   * `sourcePaths[drive]`. A file that exists is not replaced. MigrationError naming the drive.
   */
  constructor(announced: readonly BlockAnnouncement[], sourcePaths: ReadonlyArray<string | undefined>, targets: readonly string[]) {
    if (targets.length > announced.length) throw new MigrationError("META", `--drive names ${targets.length} overlays here, the source block-migrates ${announced.length} drives`);
    try {
      announced.forEach((a, k) => {
        const path = targets[k] ?? sourcePaths[a.drive];
        if (path === undefined) throw new MigrationError("META", `drive ${a.drive} has no path`);
        if (existsSync(path)) throw new MigrationError("blocks", `drive ${a.drive}'s overlay '${path}' exists already (hv makes it: name another with --drive file=PATH)`);
        try {
          createImage(path, "qcow2", a.bytes, { backing: { file: a.backing, format: a.backingFormat } });
        } catch (error) {
          throw new MigrationError("blocks", `drive ${a.drive}'s overlay '${path}' over '${a.backing}' cannot be made: ${error instanceof Error ? error.message : String(error)}`);
        }
        this.made.push(path);
        const image = openImage(path, { format: "qcow2" });
        const size = image.virtualSize;
        image.close();
        if (size !== a.bytes) throw new MigrationError("blocks", `drive ${a.drive}: the overlay over '${a.backing}' is ${size} bytes, the source's ${a.bytes}`);
        this.sizes[a.drive] = a.bytes;
        this.paths.set(a.drive, path);
        this.pending.set(a.drive, new Map());
      });
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  /** Write `chunks` of drive `drive` (checked by decodeBlocks) into its overlay, or keep them until it is attached. */
  take(drive: number, chunks: readonly BlockChunk[]): void {
    const pending = this.pending.get(drive)!;
    for (const c of chunks) pending.set(c.chunk, c.bytes);
    this.flush(false);
  }

  /** Write what is kept into the attached overlays; `all`: every drive must be attached now (the END). */
  flush(all: boolean): void {
    for (const [drive, chunks] of this.pending) {
      if (chunks.size === 0) continue;
      const image = this.attach?.(drive)?.image() ?? null;
      if (!image) {
        if (all) throw new MigrationError("blocks", `drive ${drive}'s overlay is not attached to the VM here`);
        continue;
      }
      const size = this.sizes[drive]!;
      for (const [chunk, bytes] of chunks) {
        const offset = chunk * BLOCK_CHUNK_BYTES;
        if (bytes) image.write(offset, bytes);
        else image.writeZeroes(offset, chunkLength(chunk, size));
      }
      chunks.clear();
    }
  }

  /** The overlays made here are the migration's: when it fails they go. */
  remove(): void {
    for (const path of this.made) rmSync(path, { force: true });
    this.made = [];
  }
}
