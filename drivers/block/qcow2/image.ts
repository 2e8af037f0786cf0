// qcow2 images: reads (incl. compressed clusters and backing files), writes with copy-on-write, metadata upkeep.
import { viewOf } from "../bytes.js";
import { ImageAccessError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import type { HostFile } from "../host-file.js";
import {
  checkRange, checkWritable, readBacking,
  type BackingRef, type BlockImage, type CheckReport, type Extent, type Opener,
} from "../image.js";
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY, l2Entries, parseHeader, serializeHeader, type Qcow2Header } from "./header.js";
import { checkQcow2, countReferences } from "./check.js";
import { ClusterMap, Kind } from "./map.js";
import { Refcounts } from "./refcounts.js";

export class Qcow2Image implements BlockImage {
  readonly format = "qcow2" as const;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly backingRef: BackingRef | null;
  /** Cluster index → what metadata lives there (for overlap checks). */
  readonly metadata = new Map<number, string>();
  readonly map: ClusterMap;
  private refs: Refcounts | null = null;
  private headerDirty = false;
  private closed = false;

  private constructor(
    readonly file: HostFile,
    readonly header: Qcow2Header,
    readonly backing: BlockImage | null,
  ) {
    this.clusterSize = 2 ** header.clusterBits;
    this.virtualSize = header.size;
    this.backingRef = header.backingFile === null ? null : { file: header.backingFile, format: header.backingFormat ?? undefined };
    this.map = new ClusterMap(file, header, this.metadata);
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
    if (this.header.incompatible & INCOMPAT_DIRTY) this.repairRefcounts();
    if (this.header.autoclear !== 0) {
      this.header.autoclear = 0;
      this.headerDirty = true;
    }
  }

  /**
   * A dirty image (lazy refcounts, not closed cleanly) may have stale refcounts: recount every
   * reference, store the counts, then clear the dirty bit.
   */
  private repairRefcounts(): void {
    const refs = countReferences(this);
    const r = this.refcounts;
    for (let c = 0; c < refs.length; c++) if (r.get(c) !== refs[c]) r.force(c, refs[c]!);
    r.flush();
    this.file.sync();
    this.header.incompatible &= ~INCOMPAT_DIRTY;
    this.writeHeader();
    this.file.sync();
  }

  get refcounts(): Refcounts {
    if (!this.refs) {
      this.refs = new Refcounts(this.file, this.clusterSize, this.header.refcountOrder,
        this.header.refcountTableOffset, this.header.refcountTableClusters, this.metadata);
    }
    return this.refs;
  }

  // ---- mapping ----

  // ---- reads ----

  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    const cs = this.clusterSize;
    let pos = 0;
    while (pos < into.length) {
      const vo = offset + pos;
      const ci = Math.floor(vo / cs);
      const within = vo - ci * cs;
      const kind = this.map.lookup(ci);
      const host = this.map.host;
      let run = Math.min(cs - within, into.length - pos);
      if (kind !== Kind.Compressed) {
        for (let next = ci + 1; pos + run < into.length; next++) {
          if (this.map.lookup(next) !== kind || (kind === Kind.Normal && this.map.host !== host + (next - ci) * cs)) break;
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
          part.set(this.map.readCompressed(host, this.map.length).subarray(within, within + run));
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
    const first = this.map.lookup(ci);
    const kind = first === Kind.Unallocated ? "unallocated" : first === Kind.Zero ? "zero" : "data";
    let end = Math.min(offset + length, (ci + 1) * cs);
    while (end < offset + length) {
      const next = end / cs;
      const i = Math.floor(next / per);
      if (kind === "unallocated" && (i >= this.header.l1Size || this.map.l2Offset(i) === 0)) {
        end = Math.min(offset + length, (i + 1) * per * cs);
        continue;
      }
      const k = this.map.lookup(next);
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
    for (let i = Math.floor(firstCluster / per); i <= Math.floor(lastCluster / per); i++) this.map.ensureL2(i, (n) => this.refcounts.allocate(n));
    let ci = firstCluster;
    while (ci <= lastCluster) {
      const kind = this.map.lookup(ci);
      if (kind === Kind.Normal && this.map.copied) {
        // In place, coalescing clusters that are contiguous on the host.
        const host = this.map.host;
        let n = 1;
        while (ci + n <= lastCluster && this.map.lookup(ci + n) === Kind.Normal && this.map.copied && this.map.host === host + n * cs) n++;
        this.writeInPlace(ci, n, host, offset, data);
        ci += n;
        continue;
      }
      let n = 1;
      while (ci + n <= lastCluster) {
        const k = this.map.lookup(ci + n);
        if (k === Kind.Normal && this.map.copied) break;
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
      const kind = this.map.lookup(ci + k);
      olds.push({ kind, host: this.map.host, length: this.map.length, copied: this.map.copied });
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
      this.map.setEntry(ci + k, host + k * cs, false);
      this.releaseOld(olds[k]!);
    }
  }

  private releaseOld(old: { kind: Kind; host: number; length: number; copied: boolean }): void {
    if (old.kind === Kind.Compressed) this.refcounts.release(old.host, old.length);
    else if ((old.kind === Kind.Normal || old.kind === Kind.Zero) && old.host !== 0) this.refcounts.release(old.host, this.clusterSize);
    if (old.kind === Kind.Compressed) this.map.dropCompressedCache();
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
        this.map.ensureL2(Math.floor(ci / per), (n) => this.refcounts.allocate(n));
        const kind = this.map.lookup(ci);
        const old = { kind, host: this.map.host, length: this.map.length, copied: this.map.copied };
        this.map.setEntry(ci, 0, true);
        this.releaseOld(old);
      } else if (!(whole && this.backing === null && this.map.lookup(ci) === Kind.Unallocated)) {
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
  setBackingRef(ref: BackingRef | null, _parent?: BlockImage | null): void {
    checkWritable(this);
    this.header.backingFile = ref?.file ?? null;
    this.header.backingFormat = ref?.format ?? null;
    this.header.backingFormatRaw = ref?.format ?? null;
    serializeHeader(this.header); // throws now if the name does not fit
    (this as { backingRef: BackingRef | null }).backingRef = ref;
    this.headerDirty = true;
  }

  /** Write cached metadata (no fsync). */
  persist(): void {
    if (this.writable && !this.closed) this.writeMetadata();
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
    this.map.flush();
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
