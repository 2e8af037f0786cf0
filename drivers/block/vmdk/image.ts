// VMDK images: a descriptor plus extents (hosted sparse, flat, zero), with an optional parent.
import path from "node:path";
import { ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import { HostFile } from "../host-file.js";
import {
  checkRange, checkWritable, readBacking,
  type BackingRef, type BlockImage, type CheckReport, type Extent, type Opener,
} from "../image.js";
import { MAX_DESCRIPTOR_BYTES, NO_PARENT_CID, parseDescriptor, serializeDescriptor, type Descriptor } from "./descriptor.js";
import { SPARSE_MAGIC } from "./header.js";
import { SparseExtent } from "./sparse.js";

type Part =
  | { kind: "sparse"; start: number; size: number; extent: SparseExtent; file: HostFile }
  | { kind: "flat"; start: number; size: number; file: HostFile; base: number }
  | { kind: "zero"; start: number; size: number };

export class VmdkImage implements BlockImage {
  readonly format = "vmdk" as const;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly backingRef: BackingRef | null;
  backing: BlockImage | null = null;
  private closed = false;

  private constructor(
    readonly file: HostFile,
    readonly descriptor: Descriptor,
    private readonly parts: Part[],
  ) {
    this.virtualSize = parts.reduce((sum, p) => sum + p.size, 0);
    const sparse = parts.find((p) => p.kind === "sparse");
    this.clusterSize = sparse && sparse.kind === "sparse" ? sparse.extent.grainBytes : 512;
    this.backingRef = descriptor.parentCid !== NO_PARENT_CID && descriptor.parentFileNameHint
      ? { file: descriptor.parentFileNameHint } : null;
  }

  static open(file: HostFile, opener: Opener): VmdkImage {
    const opened: HostFile[] = [];
    try {
      const image = VmdkImage.build(file, opened);
      if (image.backingRef) image.backing = opener.openBacking(image.backingRef, file.path);
      return image;
    } catch (err) {
      for (const f of opened) f.close();
      throw err;
    }
  }

  private static build(file: HostFile, opened: HostFile[]): VmdkImage {
    const magic = new Uint8Array(4);
    file.readSome(0, magic);
    if (new DataView(magic.buffer).getUint32(0, true) === SPARSE_MAGIC) {
      const extent = new SparseExtent(file);
      const h = extent.header;
      let descriptor: Descriptor = {
        createType: h.flags & (1 << 16) ? "streamOptimized" : "monolithicSparse",
        cid: NO_PARENT_CID, parentCid: NO_PARENT_CID, parentFileNameHint: null, extents: [], ddb: [],
      };
      if (h.descriptorOffset > 0 && h.descriptorSize > 0) {
        const len = h.descriptorSize * 512;
        if (len > MAX_DESCRIPTOR_BYTES) throw new ImageLayoutError("BAD_DESCRIPTOR", "embedded descriptor too large", file.path);
        const bytes = file.readBytes(h.descriptorOffset * 512, len, "embedded descriptor");
        const end = bytes.indexOf(0);
        descriptor = parseDescriptor(new TextDecoder().decode(end >= 0 ? bytes.subarray(0, end) : bytes), file.path);
      }
      return new VmdkImage(file, descriptor, [{ kind: "sparse", start: 0, size: extent.size, extent, file }]);
    }
    if (file.size > MAX_DESCRIPTOR_BYTES) throw new ImageFormatError("BAD_MAGIC", "not a VMDK (no sparse magic, too large for a descriptor)", file.path);
    const text = new TextDecoder().decode(file.readBytes(0, file.size));
    const descriptor = parseDescriptor(text, file.path);
    if (descriptor.extents.length === 0) throw new ImageFormatError("BAD_DESCRIPTOR", "descriptor lists no extents", file.path);
    const parts: Part[] = [];
    let start = 0;
    const dir = path.dirname(file.path);
    for (const line of descriptor.extents) {
      const size = line.sectors * 512;
      if (line.type === "ZERO") {
        parts.push({ kind: "zero", start, size });
      } else {
        const target = path.resolve(dir, line.file);
        if (target === path.resolve(file.path)) throw new ImageFormatError("BAD_DESCRIPTOR", "extent names the descriptor itself", file.path);
        const ef = HostFile.open(target, file.writable && line.access === "RW");
        opened.push(ef);
        if (line.type === "SPARSE") {
          const extent = new SparseExtent(ef);
          if (extent.size < size) throw new ImageLayoutError("BAD_DESCRIPTOR", `sparse extent ${line.file} is smaller than the descriptor says`, file.path);
          parts.push({ kind: "sparse", start, size, extent, file: ef });
        } else {
          parts.push({ kind: "flat", start, size, file: ef, base: line.offset * 512 });
        }
      }
      start += size;
      if (!Number.isSafeInteger(start)) throw new ImageLayoutError("SIZE_OVERFLOW", "VMDK too large", file.path);
    }
    return new VmdkImage(file, descriptor, parts);
  }

  get path(): string {
    return this.file.path;
  }
  get writable(): boolean {
    return this.file.writable;
  }

  /** Visit the parts covering [offset, offset+length): (part, offset inside it, position in request, length). */
  private each(offset: number, length: number, fn: (p: Part, inner: number, pos: number, n: number) => void): void {
    let pos = 0;
    for (const p of this.parts) {
      if (pos >= length) break;
      const vo = offset + pos;
      if (vo >= p.start + p.size) continue;
      const n = Math.min(length - pos, p.start + p.size - vo);
      fn(p, vo - p.start, pos, n);
      pos += n;
    }
  }

  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    this.each(offset, into.length, (p, inner, pos, n) => {
      const part = into.subarray(pos, pos + n);
      if (p.kind === "zero") part.fill(0);
      else if (p.kind === "flat") p.file.readBulk(p.base + inner, part);
      else p.extent.read(inner, part, (o, piece) => readBacking(this.backing, p.start + o, piece));
    });
  }

  status(offset: number, length: number): Extent {
    checkRange(this, offset, length);
    let result: Extent | null = null;
    this.each(offset, length, (p, inner, _pos, n) => {
      if (result) return;
      if (p.kind === "zero") result = { kind: "zero", length: n };
      else if (p.kind === "flat") result = { kind: "data", length: n };
      else result = p.extent.status(inner, n);
    });
    return result ?? { kind: "zero", length };
  }

  write(offset: number, data: Uint8Array): void {
    checkWritable(this);
    checkRange(this, offset, data.length);
    this.each(offset, data.length, (p) => {
      if (p.kind === "zero") throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "cannot write to a ZERO extent", this.path);
      if (!p.file.writable) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "extent is read-only", this.path);
      if (p.kind === "sparse" && !p.extent.writableFormat) {
        throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "writing stream-optimized VMDK is not supported", this.path);
      }
    });
    this.each(offset, data.length, (p, inner, pos, n) => {
      const piece = data.subarray(pos, pos + n);
      if (p.kind === "flat") p.file.write(p.base + inner, piece);
      else if (p.kind === "sparse") p.extent.write(inner, piece, (o, part) => readBacking(this.backing, p.start + o, part));
    });
  }

  writeZeroes(offset: number, length: number): void {
    checkWritable(this);
    checkRange(this, offset, length);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += chunk.length) {
      const n = Math.min(chunk.length, length - done);
      const st = this.status(offset + done, n);
      if (!this.backing && st.length === n && st.kind !== "data") continue;
      this.write(offset + done, chunk.subarray(0, n));
    }
  }

  setBackingRef(ref: BackingRef | null, parent: BlockImage | null): void {
    checkWritable(this);
    if (ref && !(parent instanceof VmdkImage)) {
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "the parent of a VMDK must be an opened VMDK", this.path);
    }
    const next: Descriptor = {
      ...this.descriptor,
      parentCid: ref && parent instanceof VmdkImage ? parent.descriptor.cid : NO_PARENT_CID,
      parentFileNameHint: ref ? ref.file : null,
    };
    const text = new TextEncoder().encode(serializeDescriptor(next));
    const first = this.parts[0];
    if (first?.kind === "sparse" && first.file === this.file) {
      const h = first.extent.header;
      if (h.descriptorOffset === 0 || text.length > h.descriptorSize * 512) {
        throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "the embedded descriptor has no room for a parent", this.path);
      }
      const padded = new Uint8Array(h.descriptorSize * 512);
      padded.set(text);
      this.file.write(h.descriptorOffset * 512, padded);
    } else {
      this.file.write(0, text);
      this.file.truncate(text.length);
    }
    Object.assign(this.descriptor, next);
    (this as { backingRef: BackingRef | null }).backingRef = ref;
  }

  private files(): HostFile[] {
    const out = new Set<HostFile>([this.file]);
    for (const p of this.parts) if (p.kind !== "zero") out.add(p.file);
    return [...out];
  }

  allocatedBytes(): number {
    return this.files().reduce((sum, f) => sum + f.allocatedBytes(), 0);
  }

  details(): Record<string, string | number | boolean> {
    return { create_type: this.descriptor.createType, extents: this.parts.length, cid: this.descriptor.cid.toString(16) };
  }

  check(): CheckReport {
    const report: CheckReport = { corruptions: 0, leaks: 0, messages: [], allocatedClusters: 0, totalClusters: 0 };
    for (const p of this.parts) {
      if (p.kind !== "sparse") continue;
      const r = p.extent.check();
      report.corruptions += r.corruptions;
      report.messages.push(...r.messages);
      report.allocatedClusters! += r.allocated;
      report.totalClusters! += r.total;
    }
    return report;
  }

  /** Write cached metadata (no fsync). */
  persist(): void {
    if (this.writable && !this.closed) this.writeMetadata();
  }

  /** Write cached grain tables and fsync every file. */
  flush(): void {
    if (!this.writable || this.closed) return;
    this.writeMetadata();
    for (const f of this.files()) f.sync();
  }

  private writeMetadata(): void {
    for (const p of this.parts) if (p.kind === "sparse" && p.file.writable) p.extent.flush();
  }

  close(): void {
    if (this.closed) return;
    try {
      if (this.writable) this.writeMetadata();
    } finally {
      this.closed = true;
      for (const f of this.files()) f.close();
      this.backing?.close();
    }
  }
}
