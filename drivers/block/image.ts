// The block image abstraction: one interface for raw, qcow2, VHD and VMDK, plus shared helpers.
import { ImageAccessError } from "./errors.js";

/** Format names as qemu-img spells them. */
export type FormatName = "raw" | "qcow2" | "vpc" | "vmdk";

/** What a range of one layer holds: its own data, explicit zeros, or nothing (read from backing). */
export type ExtentKind = "data" | "zero" | "unallocated";

/** A run of `length` bytes with the same kind, starting at the queried offset. */
export interface Extent {
  kind: ExtentKind;
  length: number;
}

/** The backing file as recorded inside an image (not yet resolved). */
export interface BackingRef {
  file: string;
  format?: FormatName;
}

/** Result of a consistency check (like qemu-img check). */
export interface CheckReport {
  corruptions: number;
  leaks: number;
  messages: string[];
  /** Allocated clusters / total clusters, when the format has clusters. */
  allocatedClusters?: number;
  totalClusters?: number;
}

/**
 * An opened disk image. Offsets and lengths are bytes of the virtual disk.
 * `read` returns what a guest sees (the whole backing chain); `status` describes this layer only.
 */
export interface BlockImage {
  readonly format: FormatName;
  readonly path: string;
  /** Virtual disk size in bytes. */
  readonly virtualSize: number;
  /** Allocation granularity in bytes (cluster, grain or block; 512 for raw). */
  readonly clusterSize: number;
  readonly writable: boolean;
  /** The backing file named by this image, as written in it. */
  readonly backingRef: BackingRef | null;
  /** The opened backing image, if any. */
  readonly backing: BlockImage | null;
  read(offset: number, into: Uint8Array): void;
  write(offset: number, data: Uint8Array): void;
  /** Make a range read as zeros (may deallocate whole clusters). */
  writeZeroes(offset: number, length: number): void;
  /** Kind of this layer at `offset`, covering up to `length` bytes. */
  status(offset: number, length: number): Extent;
  /**
   * Record a new backing file (null: none) without touching the content. `parent` is the opened new
   * backing, for formats that store its identity (VHD unique id, VMDK CID). Throws UNSUPPORTED_FEATURE
   * where the format cannot name that parent.
   */
  setBackingRef(ref: BackingRef | null, parent: BlockImage | null): void;
  /** Host bytes used by this image's files. */
  allocatedBytes(): number;
  /** Format-specific facts for `info`. */
  details(): Record<string, string | number | boolean>;
  check(): CheckReport;
  /** Write cached metadata and fsync the files. */
  flush(): void;
  /**
   * Write cached metadata to the files, without fsync: what was written survives the thread that
   * wrote it (a block driver worker that dies), not a host crash.
   */
  persist(): void;
  /**
   * Write cached metadata (no fsync, like qemu-img's default for convert) and close this image and
   * its backing chain. Call flush() first when the data must survive a host crash.
   */
  close(): void;
}

/** Refuse a request outside the virtual disk. */
export function checkRange(image: { path: string; virtualSize: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset + length > image.virtualSize) {
    throw new ImageAccessError(
      "OUT_OF_RANGE",
      `request ${offset}+${length} outside the virtual disk (${image.virtualSize} bytes)`,
      image.path,
    );
  }
}

export function checkWritable(image: { path: string; writable: boolean }): void {
  if (!image.writable) throw new ImageAccessError("READ_ONLY", "image is opened read-only", image.path);
}

/** Read from a backing image; bytes past its end (or with no backing at all) read as zeros. */
export function readBacking(backing: BlockImage | null, offset: number, into: Uint8Array): void {
  if (!backing) {
    into.fill(0);
    return;
  }
  const inside = Math.max(0, Math.min(into.length, backing.virtualSize - offset));
  if (inside > 0) backing.read(offset, into.subarray(0, inside));
  if (inside < into.length) into.fill(0, inside);
}

/** Status of the whole chain: `unallocated` in a layer falls through to its backing. */
export function chainStatus(image: BlockImage, offset: number, length: number): Extent {
  let layer: BlockImage | null = image;
  let len = length;
  while (layer) {
    if (offset >= layer.virtualSize) return { kind: "zero", length: len };
    const ext = layer.status(offset, Math.min(len, layer.virtualSize - offset));
    if (ext.kind !== "unallocated") return ext;
    len = ext.length;
    layer = layer.backing;
  }
  return { kind: "zero", length: len };
}

/** Names of the whole chain, top first. */
export function chainOf(image: BlockImage): BlockImage[] {
  const out: BlockImage[] = [];
  for (let layer: BlockImage | null = image; layer; layer = layer.backing) out.push(layer);
  return out;
}

/** Given to format drivers while opening: opens the backing file an image names (loop-checked). */
export interface Opener {
  openBacking(ref: BackingRef, childPath: string): BlockImage;
}
