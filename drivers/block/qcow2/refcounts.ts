// qcow2 refcounts: the refcount table and blocks, cluster allocation at the end of the file, table growth.
import { alignUp, u64, viewOf } from "../bytes.js";
import { ImageLayoutError } from "../errors.js";
import type { HostFile } from "../host-file.js";

/**
 * Refcount state of one image. Blocks are loaded lazily and written back on flush.
 * Allocation only appends: `nextFree` is the cluster-aligned end of everything allocated.
 */
export class Refcounts {
  /** Byte offset of each refcount block (0 = none); grows when the table is replaced. */
  table: number[];
  tableOffset: number;
  tableClusters: number;
  /** True when the table moved and the header must be rewritten. */
  tableMoved = false;
  private tableDirty = false;
  private readonly blocks = new Map<number, Uint8Array>();
  private readonly dirtyBlocks = new Set<number>();
  readonly bits: number;
  /** Refcount entries per block. */
  readonly perBlock: number;
  nextFree: number;

  constructor(
    private readonly file: HostFile,
    private readonly clusterSize: number,
    refcountOrder: number,
    tableOffset: number,
    tableClusters: number,
    /** Cluster indexes holding metadata; refcount clusters are added here. */
    private readonly metadata: Map<number, string>,
  ) {
    this.bits = 2 ** refcountOrder;
    this.perBlock = (clusterSize * 8) / this.bits;
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    const raw = file.readBytes(tableOffset, tableClusters * clusterSize, "refcount table");
    const v = viewOf(raw);
    this.table = new Array<number>(raw.length / 8);
    for (let i = 0; i < this.table.length; i++) {
      const off = u64(v, i * 8, false, "refcount block offset");
      this.table[i] = off - (off % 512);
    }
    for (let c = 0; c < tableClusters; c++) metadata.set(tableOffset / clusterSize + c, "refcount table");
    // Never hand out a cluster that is still counted, even if the file was cut short.
    this.nextFree = Math.max(alignUp(file.size, clusterSize), (this.highestUsed() + 1) * clusterSize);
  }

  /** Highest cluster with a non-zero refcount (-1 if none). */
  private highestUsed(): number {
    for (let i = this.table.length - 1; i >= 0; i--) {
      if (this.table[i] === 0) continue;
      const b = this.block(i)!;
      for (let k = this.perBlock - 1; k >= 0; k--) if (readEntry(b, k, this.bits) !== 0) return i * this.perBlock + k;
    }
    return -1;
  }

  private block(index: number): Uint8Array | null {
    const cached = this.blocks.get(index);
    if (cached) return cached;
    if (index >= this.table.length) return null;
    const off = this.table[index]!;
    if (off === 0) return null;
    if (off % this.clusterSize !== 0 || off + this.clusterSize > this.file.size) {
      throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `refcount block ${index} at ${off} lies outside the file`, this.file.path);
    }
    if (this.metadata.has(off / this.clusterSize)) {
      throw new ImageLayoutError("OVERLAPPING_TABLES", `refcount block ${index} overlaps other metadata`, this.file.path);
    }
    const data = this.file.readBytes(off, this.clusterSize, "refcount block");
    this.blocks.set(index, data);
    this.metadata.set(off / this.clusterSize, "refcount block");
    return data;
  }

  /** Refcount of a cluster; clusters no block covers have refcount 0. */
  get(cluster: number): number {
    const b = this.block(Math.floor(cluster / this.perBlock));
    if (!b) return 0;
    return readEntry(b, cluster % this.perBlock, this.bits);
  }

  /** Set a cluster's refcount; its refcount block must exist (allocate() guarantees it). */
  set(cluster: number, value: number): void {
    const index = Math.floor(cluster / this.perBlock);
    const b = this.block(index);
    if (!b) throw new ImageLayoutError("CORRUPT_IMAGE", `no refcount block for cluster ${cluster}`, this.file.path);
    if (value >= 2 ** Math.min(this.bits, 53)) {
      throw new ImageLayoutError("CORRUPT_IMAGE", `refcount of cluster ${cluster} overflows ${this.bits} bits`, this.file.path);
    }
    writeEntry(b, cluster % this.perBlock, this.bits, value);
    this.dirtyBlocks.add(index);
  }

  /** Set a refcount, creating the refcount block that covers the cluster if there is none. */
  force(cluster: number, value: number): void {
    const index = Math.floor(cluster / this.perBlock);
    if (index >= this.table.length) this.growTable(index + 1);
    if (this.table[index] === 0) {
      if (value === 0) return;
      this.newBlockAt(index, this.nextFree / this.clusterSize);
    }
    this.set(cluster, value);
  }

  /** Drop one reference to each cluster of [offset, offset+length). */
  release(offset: number, length: number): void {
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    for (let c = first; c <= last; c++) {
      const r = this.get(c);
      if (r > 0) this.set(c, r - 1);
    }
  }

  /** Allocate `n` contiguous new clusters (refcount 1) at the end of the file; returns the byte offset. */
  allocate(n: number): number {
    for (;;) {
      const first = this.nextFree / this.clusterSize;
      const lastBlock = Math.floor((first + n - 1) / this.perBlock);
      let missing = -1;
      for (let b = Math.floor(first / this.perBlock); b <= lastBlock; b++) {
        if (b >= this.table.length || this.table[b] === 0) {
          missing = b;
          break;
        }
      }
      if (missing < 0) break;
      if (missing >= this.table.length) {
        this.growTable(lastBlock + 1);
        continue;
      }
      this.newBlockAt(missing, first);
    }
    const first = this.nextFree / this.clusterSize;
    this.nextFree += n * this.clusterSize;
    for (let c = first; c < first + n; c++) this.set(c, 1);
    return first * this.clusterSize;
  }

  /** Place a new, empty refcount block `index` at cluster `cluster` (the current end). */
  private newBlockAt(index: number, cluster: number): void {
    this.table[index] = cluster * this.clusterSize;
    this.blocks.set(index, new Uint8Array(this.clusterSize));
    this.dirtyBlocks.add(index);
    this.tableDirty = true;
    this.metadata.set(cluster, "refcount block");
    this.nextFree = (cluster + 1) * this.clusterSize;
    const owner = Math.floor(cluster / this.perBlock);
    if (owner < this.table.length && this.table[owner] !== 0) this.set(cluster, 1);
  }

  /** Replace the refcount table by a larger one at the end of the file, covering `minEntries` blocks. */
  private growTable(minEntries: number): void {
    const perCluster = this.clusterSize / 8;
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    let clusters = Math.max(oldClusters * 2, Math.ceil((minEntries + 2) / perCluster));
    const start = this.nextFree / this.clusterSize;
    // The new table and the blocks describing it must themselves be covered: iterate to a fixed point.
    for (;;) {
      const newBlocks = Math.ceil((clusters + 2) / this.perBlock) + 1;
      const need = Math.max(minEntries, Math.ceil((start + clusters + newBlocks + 1) / this.perBlock));
      if (need <= clusters * perCluster) break;
      clusters = Math.ceil(need / perCluster);
    }
    const grown = this.table.slice();
    while (grown.length < clusters * perCluster) grown.push(0);
    this.table = grown;
    this.tableOffset = start * this.clusterSize;
    this.tableClusters = clusters;
    this.nextFree = (start + clusters) * this.clusterSize;
    for (let c = start; c < start + clusters; c++) this.metadata.set(c, "refcount table");
    // Refcount blocks for the table clusters (placed after the table), then the table's own refcounts.
    for (let c = start; c < start + clusters; c++) {
      const b = Math.floor(c / this.perBlock);
      if (this.table[b] === 0) this.newBlockAt(b, this.nextFree / this.clusterSize);
    }
    for (let c = start; c < start + clusters; c++) this.set(c, 1);
    for (let c = 0; c < oldClusters; c++) {
      const old = oldOffset / this.clusterSize + c;
      this.release(old * this.clusterSize, this.clusterSize);
      this.metadata.delete(old);
    }
    this.tableDirty = true;
    this.tableMoved = true;
  }

  /** Write dirty blocks, then the table if it changed. The caller rewrites the header if tableMoved. */
  flush(): void {
    for (const index of [...this.dirtyBlocks].sort((a, b) => a - b)) {
      this.file.write(this.table[index]!, this.blocks.get(index)!);
    }
    this.dirtyBlocks.clear();
    if (this.tableDirty) {
      const raw = new Uint8Array(this.tableClusters * this.clusterSize);
      const v = viewOf(raw);
      for (let i = 0; i < this.table.length; i++) v.setBigUint64(i * 8, BigInt(this.table[i]!));
      this.file.write(this.tableOffset, raw);
      this.tableDirty = false;
    }
  }
}

/** Read refcount entry `i` of `bits` width (sub-byte widths are packed LSB first, wider ones big-endian). */
export function readEntry(block: Uint8Array, i: number, bits: number): number {
  if (bits < 8) {
    const per = 8 / bits;
    return (block[Math.floor(i / per)]! >> ((i % per) * bits)) & ((1 << bits) - 1);
  }
  const bytes = bits / 8;
  let value = 0;
  for (let k = 0; k < bytes; k++) value = value * 256 + block[i * bytes + k]!;
  return value;
}

export function writeEntry(block: Uint8Array, i: number, bits: number, value: number): void {
  if (bits < 8) {
    const per = 8 / bits;
    const at = Math.floor(i / per);
    const shift = (i % per) * bits;
    const mask = ((1 << bits) - 1) << shift;
    block[at] = (block[at]! & ~mask) | ((value << shift) & mask);
    return;
  }
  const bytes = bits / 8;
  let rest = value;
  for (let k = bytes - 1; k >= 0; k--) {
    block[i * bytes + k] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}
