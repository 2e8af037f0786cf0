// qcow2 images: cluster mapping through L1/L2 tables, reads (incl. compressed clusters) and writes.
import zlib from "node:zlib";
import { viewOf } from "../bytes.js";
import { ImageAccessError, ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import type { HostFile } from "../host-file.js";
import {
  checkRange, checkWritable, readBacking,
  type BackingRef, type BlockImage, type CheckReport, type Extent, type Opener,
} from "../image.js";
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY, l2Entries, parseHeader, serializeHeader, type Qcow2Header } from "./header.js";
import { checkQcow2 } from "./check.js";
import { Refcounts } from "./refcounts.js";

/** Kinds of an L2 entry. */
export const enum Kind {
  Unallocated = 0,
  Normal = 1,
  Zero = 2,
  Compressed = 3,
}

const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
const L2_CACHE_LIMIT = 512;

export class Qcow2Image implements BlockImage {
  readonly format = "qcow2" as const;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly backingRef: BackingRef | null;
  /** Cluster index → what metadata lives there (for overlap checks). */
  readonly metadata = new Map<number, string>();
  readonly l1: Uint8Array;
  private readonly l1View: DataView;
  private l1Dirty = false;
  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly l2Dirty = new Set<number>();
  private refs: Refcounts | null = null;
  private headerDirty = false;
  private compressedCache: { host: number; data: Uint8Array } | null = null;
  private closed = false;

  /** Set by lookup(): host offset (normal/zero/compressed), compressed length, COPIED flag. */
  private mHost = 0;
  private mLength = 0;
  private mCopied = false;

  private constructor(
    readonly file: HostFile,
    readonly header: Qcow2Header,
    readonly backing: BlockImage | null,
  ) {
    this.clusterSize = 2 ** header.clusterBits;
    this.virtualSize = header.size;
    this.backingRef = header.backingFile === null ? null : { file: header.backingFile, format: header.backingFormat ?? undefined };
    this.l1 = header.l1Size > 0 ? file.readBytes(header.l1TableOffset, header.l1Size * 8, "L1 table") : new Uint8Array(0);
    this.l1View = viewOf(this.l1);
    this.metadata.set(0, "header");
    const l1First = header.l1TableOffset / this.clusterSize;
    for (let c = 0; c < Math.ceil((header.l1Size * 8) / this.clusterSize); c++) this.metadata.set(l1First + c, "L1 table");
    if (header.nbSnapshots > 0) this.metadata.set(header.snapshotsOffset / this.clusterSize, "snapshot table");
  }

  static open(file: HostFile, opener: Opener): Qcow2Image {
    const head = new Uint8Array(Math.min(file.size, 2 ** 21));
    file.readSome(0, head);
    const clusterBits = head.length >= 24 ? viewOf(head).getUint32(20) : 0;
    const header = parseHeader(head.subarray(0, clusterBits >= 9 && clusterBits <= 21 ? 2 ** clusterBits : head.length), file.size, file.path);
    if (file.writable) {
      if (header.incompatible & INCOMPAT_CORRUPT) {
        throw new ImageAccessError("READ_ONLY", "image is marked corrupt; it can only be opened read-only", file.path);
      }
      if (header.nbSnapshots > 0) {
        throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "writing images with internal snapshots is not supported", file.path);
      }
    }
    const backing = header.backingFile === null ? null : opener.openBacking(
      { file: header.backingFile, format: header.backingFormat ?? undefined }, file.path);
    try {
      const image = new Qcow2Image(file, header, backing);
      if (file.writable) image.prepareForWriting();
      return image;
    } catch (err) {
      backing?.close();
      throw err;
    }
  }

  get path(): string {
    return this.file.path;
  }
  get writable(): boolean {
    return this.file.writable;
  }

  /** Load refcounts; a dirty image (lazy refcounts) gets its refcounts rebuilt first. */
  private prepareForWriting(): void {
    this.refs = new Refcounts(this.file, this.clusterSize, this.header.refcountOrder,
      this.header.refcountTableOffset, this.header.refcountTableClusters, this.metadata);
    if (this.header.incompatible & INCOMPAT_DIRTY) {
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE",
        "image is dirty (lazy refcounts); repair it with `qemu-img check -r all` first", this.file.path);
    }
    if (this.header.autoclear !== 0) {
      this.header.autoclear = 0;
      this.headerDirty = true;
    }
  }

  get refcounts(): Refcounts {
    if (!this.refs) {
      this.refs = new Refcounts(this.file, this.clusterSize, this.header.refcountOrder,
        this.header.refcountTableOffset, this.header.refcountTableClusters, this.metadata);
    }
    return this.refs;
  }

  // ---- mapping ----

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
    this.mCopied = (hi & COPIED_HI) !== 0;
    if (hi & COMPRESSED_HI) {
      this.decodeCompressed(hi, lo);
      return Kind.Compressed;
    }
    this.mHost = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
    if (lo & 1) {
      if (this.header.version < 3) throw new ImageFormatError("CORRUPT_IMAGE", `zero cluster flag in a version 2 image (cluster ${ci})`, this.path);
      return Kind.Zero;
    }
    if (this.mHost === 0) return Kind.Unallocated;
    if (this.mHost % this.clusterSize !== 0) {
      throw new ImageLayoutError("CORRUPT_IMAGE", `data cluster ${ci} at unaligned offset ${this.mHost}`, this.path);
    }
    return Kind.Normal;
  }

  private decodeCompressed(hi: number, lo: number): void {
    const value = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
    const x = BigInt(62 - (this.header.clusterBits - 8));
    const host = value & ((1n << x) - 1n);
    const sectors = (value >> x) + 1n;
    if (host > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageLayoutError("SIZE_OVERFLOW", "compressed cluster offset too large", this.path);
    this.mHost = Number(host);
    this.mLength = Number(sectors) * 512 - (this.mHost % 512);
  }

  private readCompressed(host: number, length: number): Uint8Array {
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

  // ---- reads ----

  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    const cs = this.clusterSize;
    let pos = 0;
    while (pos < into.length) {
      const vo = offset + pos;
      const ci = Math.floor(vo / cs);
      const within = vo - ci * cs;
      const kind = this.lookup(ci);
      const host = this.mHost;
      let run = Math.min(cs - within, into.length - pos);
      if (kind !== Kind.Compressed) {
        for (let next = ci + 1; pos + run < into.length; next++) {
          if (this.lookup(next) !== kind || (kind === Kind.Normal && this.mHost !== host + (next - ci) * cs)) break;
          run += Math.min(cs, into.length - pos - run);
        }
      }
      const part = into.subarray(pos, pos + run);
      switch (kind) {
        case Kind.Normal:
          this.file.readExact(host + within, part, "data cluster");
          break;
        case Kind.Zero:
          part.fill(0);
          break;
        case Kind.Unallocated:
          readBacking(this.backing, vo, part);
          break;
        case Kind.Compressed:
          part.set(this.readCompressed(host, this.mLength).subarray(within, within + run));
          break;
      }
      pos += run;
    }
  }

  status(offset: number, length: number): Extent {
    checkRange(this, offset, length);
    const cs = this.clusterSize;
    const per = l2Entries(this.header.clusterBits);
    const ci = Math.floor(offset / cs);
    const first = this.lookup(ci);
    const kind = first === Kind.Unallocated ? "unallocated" : first === Kind.Zero ? "zero" : "data";
    let end = Math.min(offset + length, (ci + 1) * cs);
    while (end < offset + length) {
      const next = end / cs;
      const i = Math.floor(next / per);
      if (kind === "unallocated" && (i >= this.header.l1Size || this.l2Offset(i) === 0)) {
        end = Math.min(offset + length, (i + 1) * per * cs);
        continue;
      }
      const k = this.lookup(next);
      const nk = k === Kind.Unallocated ? "unallocated" : k === Kind.Zero ? "zero" : "data";
      if (nk !== kind) break;
      end = Math.min(offset + length, end + cs);
    }
    return { kind, length: end - offset };
  }

  // ---- writes ----

  write(offset: number, data: Uint8Array): void {
    checkWritable(this);
    checkRange(this, offset, data.length);
    const cs = this.clusterSize;
    const per = l2Entries(this.header.clusterBits);
    if (data.length === 0) return;
    const firstCluster = Math.floor(offset / cs);
    const lastCluster = Math.floor((offset + data.length - 1) / cs);
    for (let i = Math.floor(firstCluster / per); i <= Math.floor(lastCluster / per); i++) this.ensureL2(i);
    let ci = firstCluster;
    while (ci <= lastCluster) {
      const kind = this.lookup(ci);
      if (kind === Kind.Normal && this.mCopied) {
        // In place, coalescing clusters that are contiguous on the host.
        const host = this.mHost;
        let n = 1;
        while (ci + n <= lastCluster && this.lookup(ci + n) === Kind.Normal && this.mCopied && this.mHost === host + n * cs) n++;
        this.writeInPlace(ci, n, host, offset, data);
        ci += n;
        continue;
      }
      let n = 1;
      while (ci + n <= lastCluster) {
        const k = this.lookup(ci + n);
        if (k === Kind.Normal && this.mCopied) break;
        n++;
      }
      this.writeAllocating(ci, n, offset, data);
      ci += n;
    }
  }

  private guardData(host: number, n: number): void {
    for (let c = host / this.clusterSize; c < host / this.clusterSize + n; c++) {
      const owner = this.metadata.get(c);
      if (owner !== undefined) {
        throw new ImageLayoutError("OVERLAPPING_TABLES", `data cluster at ${c * this.clusterSize} overlaps the ${owner}`, this.path);
      }
    }
  }

  private writeInPlace(ci: number, n: number, host: number, offset: number, data: Uint8Array): void {
    const cs = this.clusterSize;
    this.guardData(host, n);
    const start = Math.max(offset, ci * cs);
    const end = Math.min(offset + data.length, (ci + n) * cs);
    this.file.write(host + (start - ci * cs), data.subarray(start - offset, end - offset));
  }

  /** Give clusters ci..ci+n-1 fresh host clusters, merging old content into partly written ones. */
  private writeAllocating(ci: number, n: number, offset: number, data: Uint8Array): void {
    const cs = this.clusterSize;
    const olds: { kind: Kind; host: number; length: number; copied: boolean }[] = [];
    for (let k = 0; k < n; k++) {
      const kind = this.lookup(ci + k);
      olds.push({ kind, host: this.mHost, length: this.mLength, copied: this.mCopied });
    }
    const start = ci * cs;
    const end = (ci + n) * cs;
    const headPartial = offset > start;
    const tailPartial = offset + data.length < end;
    const merged = (c: number): Uint8Array => {
      const buf = new Uint8Array(cs);
      const cstart = c * cs;
      const visible = Math.max(0, Math.min(cs, this.virtualSize - cstart));
      if (visible > 0) this.read(cstart, buf.subarray(0, visible));
      const from = Math.max(offset, cstart);
      const to = Math.min(offset + data.length, cstart + cs);
      buf.set(data.subarray(from - offset, to - offset), from - cstart);
      return buf;
    };
    const headBuf = headPartial ? merged(ci) : null;
    const tailBuf = tailPartial && (n > 1 || !headPartial) ? merged(ci + n - 1) : null;
    const host = this.refcounts.allocate(n);
    if (n === 1 && headBuf) {
      this.file.write(host, headBuf);
    } else {
      let from = 0;
      let to = n;
      if (headBuf) {
        this.file.write(host, headBuf);
        from = 1;
      }
      if (tailBuf) {
        this.file.write(host + (n - 1) * cs, tailBuf);
        to = n - 1;
      }
      if (to > from) this.file.write(host + from * cs, data.subarray(start + from * cs - offset, start + to * cs - offset));
    }
    for (let k = 0; k < n; k++) {
      this.setL2(ci + k, host + k * cs, false);
      this.releaseOld(olds[k]!);
    }
  }

  private releaseOld(old: { kind: Kind; host: number; length: number; copied: boolean }): void {
    if (old.kind === Kind.Compressed) this.refcounts.release(old.host, old.length);
    else if ((old.kind === Kind.Normal || old.kind === Kind.Zero) && old.host !== 0) this.refcounts.release(old.host, this.clusterSize);
    if (old.kind === Kind.Compressed) this.compressedCache = null;
  }

  /** Allocate an empty L2 table for L1 index `i` if it has none. */
  private ensureL2(i: number): void {
    const off = this.l2Offset(i);
    if (off !== 0) {
      if (!(this.l1View.getUint32(i * 8) & COPIED_HI)) {
        throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `L2 table ${i} is shared (no COPIED flag)`, this.path);
      }
      this.l2Table(i);
      return;
    }
    const host = this.refcounts.allocate(1);
    this.metadata.set(host / this.clusterSize, "L2 table");
    this.l1View.setUint32(i * 8, (Math.floor(host / 2 ** 32) | COPIED_HI) >>> 0);
    this.l1View.setUint32(i * 8 + 4, host % 2 ** 32);
    this.l1Dirty = true;
    this.remember(i, new Uint8Array(this.clusterSize));
    this.l2Dirty.add(i);
  }

  /** Point guest cluster `ci` at `host` (COPIED), or mark it zero. */
  private setL2(ci: number, host: number, zero: boolean): void {
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

  writeZeroes(offset: number, length: number): void {
    checkWritable(this);
    checkRange(this, offset, length);
    const cs = this.clusterSize;
    const per = l2Entries(this.header.clusterBits);
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const ci = Math.floor(pos / cs);
      const cend = Math.min(end, (ci + 1) * cs);
      const whole = pos === ci * cs && (cend === (ci + 1) * cs || cend === this.virtualSize);
      if (whole && this.header.version === 3) {
        this.ensureL2(Math.floor(ci / per));
        const kind = this.lookup(ci);
        const old = { kind, host: this.mHost, length: this.mLength, copied: this.mCopied };
        this.setL2(ci, 0, true);
        this.releaseOld(old);
      } else if (!(whole && this.backing === null && this.lookup(ci) === Kind.Unallocated)) {
        this.write(pos, new Uint8Array(cend - pos));
      }
      pos = cend;
    }
  }

  // ---- housekeeping ----

  allocatedBytes(): number {
    return this.file.allocatedBytes();
  }

  details(): Record<string, string | number | boolean> {
    const h = this.header;
    return {
      compat: h.version === 3 ? "1.1" : "0.10",
      cluster_size: this.clusterSize,
      refcount_bits: 2 ** h.refcountOrder,
      lazy_refcounts: (h.compatible & 1) !== 0,
      corrupt: (h.incompatible & INCOMPAT_CORRUPT) !== 0,
      dirty: (h.incompatible & INCOMPAT_DIRTY) !== 0,
      snapshots: h.nbSnapshots,
    };
  }

  check(): CheckReport {
    return checkQcow2(this);
  }

  /** Write the header with the current table locations (used by flush and rebase). */
  writeHeader(): void {
    if (this.refs) {
      this.header.refcountTableOffset = this.refs.tableOffset;
      this.header.refcountTableClusters = this.refs.tableClusters;
    }
    this.file.write(0, serializeHeader(this.header));
    this.headerDirty = false;
  }

  /** Record a new backing file (or none) in the header; written on flush. Content is not touched. */
  setBackingRef(ref: BackingRef | null): void {
    checkWritable(this);
    this.header.backingFile = ref?.file ?? null;
    this.header.backingFormat = ref?.format ?? null;
    this.header.backingFormatRaw = ref?.format ?? null;
    serializeHeader(this.header); // throws now if the name does not fit
    (this as { backingRef: BackingRef | null }).backingRef = ref;
    this.headerDirty = true;
  }

  /** Write cached metadata and fsync: after flush, everything written so far survives a crash. */
  flush(): void {
    if (!this.writable || this.closed) return;
    this.writeMetadata();
    this.file.sync();
  }

  /** Write dirty refcounts, then L2 tables, then L1, then the header (so a crash leaks, never corrupts). */
  private writeMetadata(): void {
    this.refs?.flush();
    for (const i of [...this.l2Dirty].sort((a, b) => a - b)) {
      this.file.write(this.l2Offset(i), this.l2Cache.get(i)!);
    }
    this.l2Dirty.clear();
    if (this.l1Dirty) {
      this.file.write(this.header.l1TableOffset, this.l1);
      this.l1Dirty = false;
    }
    if (this.headerDirty || this.refs?.tableMoved) {
      this.writeHeader();
      if (this.refs) this.refs.tableMoved = false;
    }
    if (this.refs && this.file.size < this.refs.nextFree) this.file.truncate(this.refs.nextFree);
  }

  close(): void {
    if (this.closed) return;
    try {
      if (this.writable) this.writeMetadata();
    } finally {
      this.closed = true;
      this.file.close();
      this.backing?.close();
    }
  }
}
