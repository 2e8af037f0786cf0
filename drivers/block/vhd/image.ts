// VHD images (Virtual PC / Hyper-V): fixed, dynamic (BAT + blocks) and differencing (sector bitmaps).
import fs from "node:fs";
import path from "node:path";
import { alignUp } from "../bytes.js";
import { ImageBackingError, ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import type { HostFile } from "../host-file.js";
import {
  checkRange, checkWritable, readBacking,
  type BackingRef, type BlockImage, type CheckReport, type Extent, type Opener,
} from "../image.js";
import { parentFromLocators, parentLocators } from "./parent.js";
import {
  DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, DYN_HEADER_SIZE, FOOTER_SIZE, VHD_EPOCH,
  parseDynamicHeader, parseFooter, serializeDynamicHeader, serializeFooter, type DynamicHeader, type VhdFooter,
} from "./footer.js";

const UNALLOCATED = 0xffffffff;

export class VhdImage implements BlockImage {
  readonly format = "vpc" as const;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly backingRef: BackingRef | null;
  backing: BlockImage | null = null;
  private readonly bat: Uint32Array | null;
  private batDirty = false;
  private readonly bitmapSize: number;
  private readonly bitmaps = new Map<number, Uint8Array>();
  private readonly dirtyBitmaps = new Set<number>();
  /** Where the footer lives; new blocks are placed here and the footer moves behind them. */
  private dataEnd: number;
  private closed = false;

  private constructor(
    readonly file: HostFile,
    readonly footer: VhdFooter,
    readonly dynamic: DynamicHeader | null,
    footerAtEnd: boolean,
  ) {
    this.virtualSize = footer.virtualSize;
    this.dataEnd = footerAtEnd ? file.size - FOOTER_SIZE : file.size;
    if (!dynamic) {
      this.clusterSize = 512;
      this.bat = null;
      this.bitmapSize = 0;
      this.backingRef = null;
      return;
    }
    this.clusterSize = dynamic.blockSize;
    this.bitmapSize = alignUp(dynamic.blockSize / 512 / 8, 512);
    const needed = Math.ceil(this.virtualSize / dynamic.blockSize);
    if (dynamic.maxTableEntries < needed) {
      throw new ImageLayoutError("BAD_HEADER", `BAT has ${dynamic.maxTableEntries} entries, the disk needs ${needed}`, file.path);
    }
    if (dynamic.tableOffset + needed * 4 > file.size) {
      throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", "BAT lies outside the file", file.path);
    }
    const headerEnd = (footer.dataOffset ?? 0) + DYN_HEADER_SIZE;
    if (dynamic.tableOffset < headerEnd && dynamic.tableOffset + needed * 4 > (footer.dataOffset ?? 0)) {
      throw new ImageLayoutError("OVERLAPPING_TABLES", "BAT overlaps the dynamic header", file.path);
    }
    const raw = file.readBytes(dynamic.tableOffset, needed * 4, "BAT");
    this.bat = new Uint32Array(needed);
    const v = new DataView(raw.buffer);
    for (let i = 0; i < needed; i++) this.bat[i] = v.getUint32(i * 4);
    this.validateBlocks(headerEnd, dynamic.tableOffset + needed * 4);
    this.backingRef = footer.diskType === DISK_DIFFERENCING ? parentFromLocators(file, dynamic) : null;
  }

  static open(file: HostFile, opener: Opener): VhdImage {
    if (file.size < FOOTER_SIZE) throw new ImageFormatError("TRUNCATED", "file too short for a VHD footer", file.path);
    const tail = file.readBytes(file.size - FOOTER_SIZE, FOOTER_SIZE);
    let footerAtEnd = true;
    let footerBytes = tail;
    if (String.fromCharCode(...tail.subarray(0, 8)) !== "conectix") {
      footerAtEnd = false; // a dynamic disk whose trailing footer was lost: use the copy at offset 0
      footerBytes = file.readBytes(0, FOOTER_SIZE);
    }
    const footer = parseFooter(footerBytes, file.path);
    let dynamic: DynamicHeader | null = null;
    if (footer.diskType !== DISK_FIXED) {
      if (footer.dataOffset === null || footer.dataOffset + DYN_HEADER_SIZE > file.size) {
        throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", "dynamic header lies outside the file", file.path);
      }
      dynamic = parseDynamicHeader(file.readBytes(footer.dataOffset, DYN_HEADER_SIZE), file.size, file.path);
    } else if (!footerAtEnd) {
      throw new ImageFormatError("BAD_MAGIC", "fixed VHD without a footer at the end", file.path);
    } else if (footer.virtualSize > file.size - FOOTER_SIZE) {
      throw new ImageFormatError("TRUNCATED", `fixed VHD of ${footer.virtualSize} bytes in a file of ${file.size}`, file.path);
    }
    const image = new VhdImage(file, footer, dynamic, footerAtEnd);
    if (image.backingRef) {
      image.backing = opener.openBacking(image.backingRef, file.path);
      try {
        image.checkParent();
      } catch (err) {
        image.backing.close();
        throw err;
      }
    }
    return image;
  }

  get path(): string {
    return this.file.path;
  }
  get writable(): boolean {
    return this.file.writable;
  }

  private blockStart(b: number): number {
    return this.bat![b]! * 512;
  }

  /** Every allocated block lies inside the data area and no two overlap. */
  private validateBlocks(headerEnd: number, batEnd: number): void {
    const span = this.bitmapSize + this.clusterSize;
    const starts: number[] = [];
    for (let b = 0; b < this.bat!.length; b++) {
      if (this.bat![b] === UNALLOCATED) continue;
      const start = this.blockStart(b);
      if (start + span > this.dataEnd) {
        throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `block ${b} at ${start} lies outside the file`, this.path);
      }
      if (start < Math.max(headerEnd, batEnd) && start + span > FOOTER_SIZE) {
        throw new ImageLayoutError("OVERLAPPING_TABLES", `block ${b} overlaps the VHD headers or BAT`, this.path);
      }
      starts.push(start);
    }
    starts.sort((a, b) => a - b);
    for (let i = 1; i < starts.length; i++) {
      if (starts[i]! < starts[i - 1]! + span) throw new ImageLayoutError("OVERLAPPING_TABLES", `two blocks overlap at ${starts[i]}`, this.path);
    }
  }

  private checkParent(): void {
    const parent = this.backing;
    if (!(parent instanceof VhdImage)) return;
    const expected = Buffer.from(this.dynamic!.parentUniqueId);
    if (!expected.equals(Buffer.from(parent.footer.uniqueId))) {
      throw new ImageBackingError("BACKING_MISMATCH", `parent ${parent.path} is not the disk this differencing VHD was made from (unique id differs)`, this.path);
    }
  }

  private bitmap(b: number): Uint8Array {
    let bm = this.bitmaps.get(b);
    if (!bm) {
      bm = this.file.readBytes(this.blockStart(b), this.bitmapSize, "sector bitmap");
      this.bitmaps.set(b, bm);
    }
    return bm;
  }

  private get differencing(): boolean {
    return this.footer.diskType === DISK_DIFFERENCING;
  }

  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    if (!this.bat) {
      this.file.readBulk(offset, into);
      return;
    }
    const bs = this.clusterSize;
    let pos = 0;
    while (pos < into.length) {
      const vo = offset + pos;
      const b = Math.floor(vo / bs);
      const within = vo - b * bs;
      const n = Math.min(bs - within, into.length - pos);
      const part = into.subarray(pos, pos + n);
      if (this.bat[b] === UNALLOCATED) {
        if (this.differencing) readBacking(this.backing, vo, part);
        else part.fill(0);
      } else if (!this.differencing) {
        this.file.readExact(this.blockStart(b) + this.bitmapSize + within, part, "data block");
      } else {
        this.readDifferencing(b, within, part, vo);
      }
      pos += n;
    }
  }

  /** Read a part of an allocated differencing block: sectors with their bitmap bit set are ours. */
  private readDifferencing(b: number, within: number, part: Uint8Array, vo: number): void {
    const bm = this.bitmap(b);
    let at = 0;
    while (at < part.length) {
      const sector = Math.floor((within + at) / 512);
      const mine = (bm[sector >> 3]! & (0x80 >> (sector & 7))) !== 0;
      let end = Math.min(part.length, (sector + 1) * 512 - within);
      while (end < part.length) {
        const s = Math.floor((within + end) / 512);
        if (((bm[s >> 3]! & (0x80 >> (s & 7))) !== 0) !== mine) break;
        end = Math.min(part.length, (s + 1) * 512 - within);
      }
      const piece = part.subarray(at, end);
      if (mine) this.file.readExact(this.blockStart(b) + this.bitmapSize + within + at, piece, "data block");
      else readBacking(this.backing, vo + at, piece);
      at = end;
    }
  }

  status(offset: number, length: number): Extent {
    checkRange(this, offset, length);
    if (!this.bat) return { kind: "data", length };
    const bs = this.clusterSize;
    const kindAt = (vo: number): Extent["kind"] => {
      const b = Math.floor(vo / bs);
      if (this.bat![b] === UNALLOCATED) return "unallocated";
      if (!this.differencing) return "data";
      const s = Math.floor((vo - b * bs) / 512);
      return (this.bitmap(b)[s >> 3]! & (0x80 >> (s & 7))) !== 0 ? "data" : "unallocated";
    };
    // Unallocated blocks and dynamic blocks are uniform; allocated differencing blocks go by sector.
    const stepAt = (vo: number): number => (this.differencing && this.bat![Math.floor(vo / bs)] !== UNALLOCATED ? 512 : bs);
    const kind = kindAt(offset);
    let end = Math.min(offset + length, Math.floor(offset / stepAt(offset)) * stepAt(offset) + stepAt(offset));
    while (end < offset + length && kindAt(end) === kind) end = Math.min(offset + length, end + stepAt(end));
    return { kind, length: end - offset };
  }

  write(offset: number, data: Uint8Array): void {
    checkWritable(this);
    checkRange(this, offset, data.length);
    if (!this.bat) {
      this.file.write(offset, data);
      return;
    }
    if (this.differencing && (offset % 512 !== 0 || data.length % 512 !== 0)) {
      // Widen to whole sectors so every sector we mark as ours holds its full content.
      const start = Math.floor(offset / 512) * 512;
      const end = Math.min(this.virtualSize, alignUp(offset + data.length, 512));
      const buf = new Uint8Array(end - start);
      this.read(start, buf);
      buf.set(data, offset - start);
      data = buf;
      offset = start;
    }
    const bs = this.clusterSize;
    let pos = 0;
    while (pos < data.length) {
      const vo = offset + pos;
      const b = Math.floor(vo / bs);
      const within = vo - b * bs;
      const n = Math.min(bs - within, data.length - pos);
      if (this.bat[b] === UNALLOCATED) this.allocateBlock(b);
      this.file.write(this.blockStart(b) + this.bitmapSize + within, data.subarray(pos, pos + n));
      if (this.differencing) this.markSectors(b, within, n);
      pos += n;
    }
  }

  private markSectors(b: number, within: number, n: number): void {
    const bm = this.bitmap(b);
    for (let s = Math.floor(within / 512); s < Math.ceil((within + n) / 512); s++) bm[s >> 3]! |= 0x80 >> (s & 7);
    this.dirtyBitmaps.add(b);
  }

  /** Place block `b` where the footer is, and move the footer behind it. */
  private allocateBlock(b: number): void {
    const start = this.dataEnd;
    const bm = new Uint8Array(this.bitmapSize);
    if (!this.differencing) bm.fill(0xff);
    this.file.write(start, bm);
    this.bitmaps.set(b, bm);
    this.bat![b] = start / 512;
    this.batDirty = true;
    this.dataEnd = start + this.bitmapSize + this.clusterSize;
    this.file.write(this.dataEnd, serializeFooter(this.footer));
  }

  writeZeroes(offset: number, length: number): void {
    checkWritable(this);
    checkRange(this, offset, length);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += chunk.length) {
      const n = Math.min(chunk.length, length - done);
      const vo = offset + done;
      // Unallocated blocks of a dynamic disk already read as zeros.
      if (this.bat && !this.differencing && this.status(vo, n).kind === "unallocated" &&
          this.status(vo, n).length === n) continue;
      this.write(vo, chunk.subarray(0, n));
    }
  }

  /** Point a differencing disk at another VHD parent: new locators (appended), unique id, name, time. */
  setBackingRef(ref: BackingRef | null, parent: BlockImage | null): void {
    checkWritable(this);
    if (!this.differencing || !this.dynamic) {
      if (!ref) return;
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "only differencing VHDs have a parent", this.path);
    }
    if (!ref || !(parent instanceof VhdImage)) {
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "a differencing VHD needs a VHD parent", this.path);
    }
    const loc = parentLocators(ref.file, this.path, this.dataEnd);
    for (const d of loc.data) this.file.write(d.offset, d.bytes);
    this.dataEnd = loc.locators.reduce((m, l) => Math.max(m, l.dataOffset + l.dataSpace), this.dataEnd);
    this.file.truncate(this.dataEnd);
    this.file.write(this.dataEnd, serializeFooter(this.footer));
    Object.assign(this.dynamic, {
      parentUniqueId: parent.footer.uniqueId,
      parentTimestamp: Math.max(0, Math.floor(fs.statSync(parent.path).mtimeMs / 1000) - VHD_EPOCH) >>> 0,
      parentName: path.basename(ref.file),
      locators: loc.locators,
    });
    this.file.write(this.footer.dataOffset!, serializeDynamicHeader(this.dynamic));
    (this as { backingRef: BackingRef | null }).backingRef = ref;
  }

  allocatedBytes(): number {
    return this.file.allocatedBytes();
  }

  details(): Record<string, string | number | boolean> {
    const type = { [DISK_FIXED]: "fixed", [DISK_DYNAMIC]: "dynamic", [DISK_DIFFERENCING]: "differencing" }[this.footer.diskType]!;
    return { subformat: type, creator: this.footer.creatorApp.trim(), block_size: this.dynamic?.blockSize ?? 0 };
  }

  check(): CheckReport {
    const report: CheckReport = { corruptions: 0, leaks: 0, messages: [] };
    if (this.bat) {
      report.totalClusters = this.bat.length;
      report.allocatedClusters = this.bat.filter((e) => e !== UNALLOCATED).length;
      const copy = new Uint8Array(FOOTER_SIZE);
      this.file.readSome(0, copy);
      try {
        const head = parseFooter(copy, this.path);
        if (!Buffer.from(head.uniqueId).equals(Buffer.from(this.footer.uniqueId))) {
          report.corruptions++;
          report.messages.push("ERROR footer copy at offset 0 differs from the footer at the end");
        }
      } catch (err) {
        report.corruptions++;
        report.messages.push(`ERROR footer copy at offset 0: ${(err as Error).message}`);
      }
    }
    return report;
  }

  /** Write cached metadata (no fsync). */
  persist(): void {
    if (this.writable && !this.closed) this.writeMetadata();
  }

  /** Write cached metadata and fsync. */
  flush(): void {
    if (!this.writable || this.closed) return;
    this.writeMetadata();
    this.file.sync();
  }

  private writeMetadata(): void {
    for (const b of this.dirtyBitmaps) this.file.write(this.blockStart(b), this.bitmaps.get(b)!);
    this.dirtyBitmaps.clear();
    if (this.batDirty && this.bat) {
      const raw = new Uint8Array(this.bat.length * 4);
      const v = new DataView(raw.buffer);
      for (let i = 0; i < this.bat.length; i++) v.setUint32(i * 4, this.bat[i]!);
      this.file.write(this.dynamic!.tableOffset, raw);
      this.batDirty = false;
    }
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
