// qcow2 cluster map: the L1 table, cached L2 tables, entry decoding and compressed-cluster inflation.
import zlib from "node:zlib";
import { viewOf } from "../bytes.js";
import { ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import type { HostFile } from "../host-file.js";
import { l2Entries, type Qcow2Header } from "./header.js";

/** Kinds of an L2 entry. */
export const enum Kind {
  Unallocated = 0,
  Normal = 1,
  Zero = 2,
  Compressed = 3,
}

export const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
const L2_CACHE_LIMIT = 512;

/**
 * Guest cluster → host mapping of one image. lookup() decodes an entry into the `host`, `length`
 * and `copied` fields (no allocation per call); L2 tables are validated when first loaded.
 */
export class ClusterMap {
  readonly l1: Uint8Array;
  private readonly l1View: DataView;
  private l1Dirty = false;
  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly l2Dirty = new Set<number>();
  private compressedCache: { host: number; data: Uint8Array } | null = null;
  readonly clusterSize: number;

  /** Set by lookup(): host offset (normal, zero, compressed), compressed length in bytes, COPIED flag. */
  host = 0;
  length = 0;
  copied = false;

  constructor(
    private readonly file: HostFile,
    private readonly header: Qcow2Header,
    /** Cluster index → what metadata lives there (for overlap checks). */
    private readonly metadata: Map<number, string>,
  ) {
    this.clusterSize = 2 ** header.clusterBits;
    this.l1 = header.l1Size > 0 ? file.readBytes(header.l1TableOffset, header.l1Size * 8, "L1 table") : new Uint8Array(0);
    this.l1View = viewOf(this.l1);
  }

  private get path(): string {
    return this.file.path;
  }

  /** Offset of the L2 table for L1 index `i`, 0 if none. Validated against the file. */
  l2Offset(i: number): number {
    const hi = this.l1View.getUint32(i * 8);
    const lo = this.l1View.getUint32(i * 8 + 4);
    return (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
  }


  /** The L2 table for L1 index `i`, or null when unallocated. */
  l2Table(i: number): Uint8Array | null {
    const cached = this.l2Cache.get(i);
    if (cached) return cached;
    const off = this.l2Offset(i);
    if (off === 0) return null;
    if (off % this.clusterSize !== 0 || off + this.clusterSize > this.file.size) {
      throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `L2 table ${i} at ${off} lies outside the file or is unaligned`, this.path);
    }
    const owner = this.metadata.get(off / this.clusterSize);
    if (owner !== undefined && owner !== "L2 table") {
      throw new ImageLayoutError("OVERLAPPING_TABLES", `L2 table ${i} at ${off} overlaps the ${owner}`, this.path);
    }
    const table = this.file.readBytes(off, this.clusterSize, "L2 table");
    this.metadata.set(off / this.clusterSize, "L2 table");
    this.remember(i, table);
    return table;
  }


  private remember(i: number, table: Uint8Array): void {
    if (this.l2Cache.size >= L2_CACHE_LIMIT) {
      for (const key of this.l2Cache.keys()) {
        if (!this.l2Dirty.has(key)) {
          this.l2Cache.delete(key);
          break;
        }
      }
    }
    this.l2Cache.set(i, table);
  }


  /** Classify guest cluster `ci`; sets mHost/mLength/mCopied. */
  lookup(ci: number): Kind {
    const per = l2Entries(this.header.clusterBits);
    const i = Math.floor(ci / per);
    if (i >= this.header.l1Size) return Kind.Unallocated;
    const table = this.l2Table(i);
    if (!table) return Kind.Unallocated;
    const at = (ci % per) * 8;
    const hi = ((table[at]! << 24) | (table[at + 1]! << 16) | (table[at + 2]! << 8) | table[at + 3]!) >>> 0;
    const lo = ((table[at + 4]! << 24) | (table[at + 5]! << 16) | (table[at + 6]! << 8) | table[at + 7]!) >>> 0;
    this.copied = (hi & COPIED_HI) !== 0;
    if (hi & COMPRESSED_HI) {
      this.decodeCompressed(hi, lo);
      return Kind.Compressed;
    }
    this.host = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
    if (lo & 1) {
      if (this.header.version < 3) throw new ImageFormatError("CORRUPT_IMAGE", `zero cluster flag in a version 2 image (cluster ${ci})`, this.path);
      return Kind.Zero;
    }
    if (this.host === 0) return Kind.Unallocated;
    if (this.host % this.clusterSize !== 0) {
      throw new ImageLayoutError("CORRUPT_IMAGE", `data cluster ${ci} at unaligned offset ${this.host}`, this.path);
    }
    return Kind.Normal;
  }


  private decodeCompressed(hi: number, lo: number): void {
    const value = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
    const x = BigInt(62 - (this.header.clusterBits - 8));
    const host = value & ((1n << x) - 1n);
    const sectors = (value >> x) + 1n;
    if (host > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageLayoutError("SIZE_OVERFLOW", "compressed cluster offset too large", this.path);
    this.host = Number(host);
    this.length = Number(sectors) * 512 - (this.host % 512);
  }


  readCompressed(host: number, length: number): Uint8Array {
    if (this.compressedCache?.host === host) return this.compressedCache.data;
    if (host >= this.file.size) throw new ImageFormatError("TRUNCATED", `compressed cluster at ${host} lies beyond the end of the file`, this.path);
    const input = new Uint8Array(Math.min(length, this.file.size - host));
    this.file.readSome(host, input);
    let data: Uint8Array;
    try {
      data = zlib.inflateRawSync(input, { maxOutputLength: this.clusterSize, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch (err) {
      throw new ImageFormatError("BAD_COMPRESSED_DATA", `compressed cluster at ${host}: ${(err as Error).message}`, this.path);
    }
    if (data.length !== this.clusterSize) {
      throw new ImageFormatError("BAD_COMPRESSED_DATA", `compressed cluster at ${host} inflates to ${data.length} bytes, not ${this.clusterSize}`, this.path);
    }
    this.compressedCache = { host, data };
    return data;
  }


  /** Allocate an empty L2 table for L1 index `i` if it has none. */
  ensureL2(i: number, allocate: (clusters: number) => number): void {
    const off = this.l2Offset(i);
    if (off !== 0) {
      if (!(this.l1View.getUint32(i * 8) & COPIED_HI)) {
        throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `L2 table ${i} is shared (no COPIED flag)`, this.path);
      }
      this.l2Table(i);
      return;
    }
    const host = allocate(1);
    this.metadata.set(host / this.clusterSize, "L2 table");
    this.l1View.setUint32(i * 8, (Math.floor(host / 2 ** 32) | COPIED_HI) >>> 0);
    this.l1View.setUint32(i * 8 + 4, host % 2 ** 32);
    this.l1Dirty = true;
    this.remember(i, new Uint8Array(this.clusterSize));
    this.l2Dirty.add(i);
  }


  /** Point guest cluster `ci` at `host` (COPIED), or mark it zero. */
  setEntry(ci: number, host: number, zero: boolean): void {
    const per = l2Entries(this.header.clusterBits);
    const i = Math.floor(ci / per);
    const table = this.l2Table(i)!;
    const v = viewOf(table);
    const at = (ci % per) * 8;
    if (zero) {
      v.setUint32(at, 0);
      v.setUint32(at + 4, 1);
    } else {
      v.setUint32(at, (Math.floor(host / 2 ** 32) | COPIED_HI) >>> 0);
      v.setUint32(at + 4, host % 2 ** 32);
    }
    this.l2Dirty.add(i);
  }

  /** Forget the inflated cluster (its host clusters were freed). */
  dropCompressedCache(): void {
    this.compressedCache = null;
  }

  /** Write dirty L2 tables, then the L1 table. */
  flush(): void {
    for (const i of [...this.l2Dirty].sort((a, b) => a - b)) this.file.write(this.l2Offset(i), this.l2Cache.get(i)!);
    this.l2Dirty.clear();
    if (this.l1Dirty) {
      this.file.write(this.header.l1TableOffset, this.l1);
      this.l1Dirty = false;
    }
  }
}
