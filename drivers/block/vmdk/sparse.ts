// VMDK hosted sparse extents (KDMV): grain directory and tables, redundant tables, stream-optimized grains.
import zlib from "node:zlib";
import { viewOf } from "../bytes.js";
import { ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import type { HostFile } from "../host-file.js";
import type { Extent } from "../image.js";
import { FLAG_COMPRESSED, FLAG_MARKERS, FLAG_REDUNDANT, FLAG_ZERO_GRAIN, MAX_GRAIN_TABLES, parseSparseHeader, type SparseHeader } from "./header.js";

/** One sparse extent. Offsets are bytes from the start of the extent. */
export class SparseExtent {
  readonly header: SparseHeader;
  readonly grainBytes: number;
  readonly size: number;
  private readonly gd: Uint32Array;
  private readonly rgd: Uint32Array | null;
  private gdDirty = false;
  private readonly gts = new Map<number, Uint32Array>();
  private readonly dirtyGts = new Set<number>();
  private readonly compressed: boolean;
  private inflated: { sector: number; data: Uint8Array } | null = null;
  private end: number;

  constructor(readonly file: HostFile) {
    const path = file.path;
    let h = parseSparseHeader(file.readBytes(0, 512, "sparse header"), path);
    if (h.gdAtEnd) {
      // Stream-optimized: the real header is the footer, 1024 bytes before the end of the file.
      if (file.size < 1536) throw new ImageFormatError("TRUNCATED", "stream-optimized VMDK without a footer", path);
      const footer = parseSparseHeader(file.readBytes(file.size - 1024, 512, "footer"), path);
      if (footer.gdAtEnd) throw new ImageFormatError("BAD_HEADER", "VMDK footer does not give the grain directory", path);
      h = footer;
    }
    this.header = h;
    this.grainBytes = h.grainSize * 512;
    this.size = h.capacity * 512;
    this.compressed = (h.flags & FLAG_COMPRESSED) !== 0;
    const gtCoverage = h.numGTEsPerGT * h.grainSize;
    const entries = Math.ceil(h.capacity / gtCoverage);
    if (entries > MAX_GRAIN_TABLES) {
      throw new ImageLayoutError("SIZE_OVERFLOW", `grain directory of ${entries} entries (the limit is ${MAX_GRAIN_TABLES})`, path);
    }
    if (entries * 4 > file.size) throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", "grain directory larger than the file", path);
    this.gd = this.readDirectory(h.gdOffset, entries, "grain directory");
    this.rgd = (h.flags & FLAG_REDUNDANT) && h.rgdOffset > 0 && !this.compressed
      ? this.readDirectory(h.rgdOffset, entries, "redundant grain directory")
      : null;
    this.end = file.size;
  }

  private readDirectory(sector: number, entries: number, what: string): Uint32Array {
    const off = sector * 512;
    if (off + entries * 4 > this.file.size) throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `${what} lies outside the file`, this.file.path);
    const raw = this.file.readBytes(off, entries * 4, what);
    const v = viewOf(raw);
    const out = new Uint32Array(entries);
    for (let i = 0; i < entries; i++) out[i] = v.getUint32(i * 4, true);
    return out;
  }

  private gt(i: number): Uint32Array | null {
    const cached = this.gts.get(i);
    if (cached) return cached;
    const sector = this.gd[i]!;
    if (sector === 0) return null;
    const t = this.readTable(sector, "grain table");
    this.gts.set(i, t);
    return t;
  }

  private readTable(sector: number, what: string): Uint32Array {
    const n = this.header.numGTEsPerGT;
    const off = sector * 512;
    if (off + n * 4 > this.file.size || sector === 0) throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `${what} at sector ${sector} lies outside the file`, this.file.path);
    const raw = this.file.readBytes(off, n * 4, what);
    const v = viewOf(raw);
    const out = new Uint32Array(n);
    for (let k = 0; k < n; k++) out[k] = v.getUint32(k * 4, true);
    return out;
  }

  /** Grain table entry of grain `g`: 0 unallocated, 1 zero grain (if enabled), else a sector. */
  entry(g: number): number {
    const per = this.header.numGTEsPerGT;
    const t = this.gt(Math.floor(g / per));
    return t ? t[g % per]! : 0;
  }

  private kindOf(e: number): Extent["kind"] {
    if (e === 0) return "unallocated";
    if (e === 1 && (this.header.flags & FLAG_ZERO_GRAIN)) return "zero";
    return "data";
  }

  /** Read `into` at extent offset `offset`; unallocated parts go to `fallback`. */
  read(offset: number, into: Uint8Array, fallback: (offset: number, part: Uint8Array) => void): void {
    const gb = this.grainBytes;
    let pos = 0;
    while (pos < into.length) {
      const vo = offset + pos;
      const g = Math.floor(vo / gb);
      const within = vo - g * gb;
      const e = this.entry(g);
      const kind = this.kindOf(e);
      let n = Math.min(gb - within, into.length - pos);
      if (kind === "data" && !this.compressed) {
        // Extend over following grains that are contiguous in the file.
        for (let next = g + 1; pos + n < into.length; next++) {
          const en = this.entry(next);
          if (this.kindOf(en) !== "data" || en !== e + (next - g) * this.header.grainSize) break;
          n += Math.min(gb, into.length - pos - n);
        }
      }
      const part = into.subarray(pos, pos + n);
      if (kind === "unallocated") fallback(vo, part);
      else if (kind === "zero") part.fill(0);
      else if (this.compressed) part.set(this.inflate(g, e).subarray(within, within + n));
      else this.file.readExact(e * 512 + within, part, "grain");
      pos += n;
    }
  }

  private inflate(g: number, sector: number): Uint8Array {
    if (this.inflated?.sector === sector) return this.inflated.data;
    const off = sector * 512;
    if (off >= this.file.size) throw new ImageFormatError("TRUNCATED", `compressed grain ${g} lies beyond the end of the file`, this.file.path);
    let input: Uint8Array;
    if (this.header.flags & FLAG_MARKERS) {
      const marker = viewOf(this.file.readBytes(off, 12, "grain marker"));
      const size = marker.getUint32(8, true);
      if (size === 0 || size > 2 * this.grainBytes + 1024 || off + 12 + size > this.file.size) {
        throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `compressed grain ${g} has a bad size ${size}`, this.file.path);
      }
      input = this.file.readBytes(off + 12, size, "compressed grain");
    } else {
      input = new Uint8Array(Math.min(2 * this.grainBytes + 1024, this.file.size - off));
      this.file.readSome(off, input);
    }
    let data: Uint8Array;
    try {
      data = zlib.inflateSync(input, { maxOutputLength: this.grainBytes });
    } catch (err) {
      throw new ImageFormatError("BAD_COMPRESSED_DATA", `compressed grain ${g}: ${(err as Error).message}`, this.file.path);
    }
    // The last grain may be stored short: only the part inside the capacity.
    const needed = Math.min(this.grainBytes, this.size - g * this.grainBytes);
    if (data.length < needed) {
      throw new ImageFormatError("BAD_COMPRESSED_DATA", `compressed grain ${g} inflates to ${data.length} bytes, needs ${needed}`, this.file.path);
    }
    const full = new Uint8Array(this.grainBytes);
    full.set(data);
    this.inflated = { sector, data: full };
    return full;
  }

  status(offset: number, length: number): Extent {
    const gb = this.grainBytes;
    const per = this.header.numGTEsPerGT;
    const g0 = Math.floor(offset / gb);
    const kind = this.kindOf(this.entry(g0));
    let end = Math.min(offset + length, (g0 + 1) * gb);
    while (end < offset + length) {
      const g = end / gb;
      if (kind === "unallocated" && this.gd[Math.floor(g / per)] === 0) {
        end = Math.min(offset + length, (Math.floor(g / per) + 1) * per * gb);
        continue;
      }
      if (this.kindOf(this.entry(g)) !== kind) break;
      end = Math.min(offset + length, end + gb);
    }
    return { kind, length: end - offset };
  }

  get writableFormat(): boolean {
    return !this.compressed;
  }

  /**
   * Write at extent offset `offset`. Grains not yet allocated are appended at the end of the file;
   * partly written new grains get their other bytes from `fill` (backing content or zeros).
   */
  write(offset: number, data: Uint8Array, fill: (offset: number, part: Uint8Array) => void): void {
    if (this.compressed) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "writing stream-optimized VMDK is not supported", this.file.path);
    const gb = this.grainBytes;
    let pos = 0;
    while (pos < data.length) {
      const vo = offset + pos;
      const g = Math.floor(vo / gb);
      const within = vo - g * gb;
      const e = this.entry(g);
      if (this.kindOf(e) === "data") {
        const n = Math.min(gb - within, data.length - pos);
        this.file.write(e * 512 + within, data.subarray(pos, pos + n));
        pos += n;
        continue;
      }
      // A run of unallocated (or zero) grains: one contiguous append.
      let grains = 1;
      while (pos + grains * gb - within < data.length && this.kindOf(this.entry(g + grains)) !== "data") grains++;
      const runEnd = Math.min(data.length, pos + grains * gb - within);
      const sector = Math.ceil(this.end / 512);
      const host = sector * 512;
      const tailWithin = (within + (runEnd - pos)) % gb;
      if (within === 0 && tailWithin === 0) {
        this.file.write(host, data.subarray(pos, runEnd));
      } else {
        const buf = new Uint8Array(grains * gb);
        for (const k of new Set([within > 0 ? 0 : -1, tailWithin > 0 ? grains - 1 : -1])) {
          if (k < 0) continue;
          const piece = buf.subarray(k * gb, (k + 1) * gb);
          if (this.kindOf(this.entry(g + k)) !== "zero") fill((g + k) * gb, piece);
        }
        buf.set(data.subarray(pos, runEnd), within);
        this.file.write(host, buf);
      }
      this.end = host + grains * gb;
      for (let k = 0; k < grains; k++) this.setEntry(g + k, sector + k * this.header.grainSize);
      pos = runEnd;
    }
  }

  private setEntry(g: number, sector: number): void {
    const per = this.header.numGTEsPerGT;
    const i = Math.floor(g / per);
    let t = this.gt(i);
    if (!t) {
      // Allocate a grain table (and its redundant copy) at the end of the file.
      const bytes = Math.ceil((per * 4) / 512) * 512;
      const at = Math.ceil(this.end / 512);
      this.gd[i] = at;
      this.end = at * 512 + bytes;
      this.file.write(at * 512, new Uint8Array(bytes));
      if (this.rgd) {
        const rat = Math.ceil(this.end / 512);
        this.rgd[i] = rat;
        this.end = rat * 512 + bytes;
        this.file.write(rat * 512, new Uint8Array(bytes));
      }
      this.gdDirty = true;
      t = new Uint32Array(per);
      this.gts.set(i, t);
    }
    t[g % per] = sector;
    this.dirtyGts.add(i);
  }

  flush(): void {
    const per = this.header.numGTEsPerGT;
    for (const i of this.dirtyGts) {
      const raw = new Uint8Array(per * 4);
      const v = viewOf(raw);
      const t = this.gts.get(i)!;
      for (let k = 0; k < per; k++) v.setUint32(k * 4, t[k]!, true);
      this.file.write(this.gd[i]! * 512, raw);
      if (this.rgd && this.rgd[i]) this.file.write(this.rgd[i]! * 512, raw);
    }
    this.dirtyGts.clear();
    if (this.gdDirty) {
      const write = (dir: Uint32Array, sector: number): void => {
        const raw = new Uint8Array(dir.length * 4);
        const v = viewOf(raw);
        for (let k = 0; k < dir.length; k++) v.setUint32(k * 4, dir[k]!, true);
        this.file.write(sector * 512, raw);
      };
      write(this.gd, this.header.gdOffset);
      if (this.rgd) write(this.rgd, this.header.rgdOffset);
      this.gdDirty = false;
    }
  }

  /** Grains that lie outside the file, and grain tables that disagree with their redundant copies. */
  check(): { corruptions: number; messages: string[]; allocated: number; total: number } {
    let corruptions = 0;
    let allocated = 0;
    const messages: string[] = [];
    const per = this.header.numGTEsPerGT;
    const total = Math.ceil(this.size / this.grainBytes);
    for (let i = 0; i < this.gd.length; i++) {
      let t: Uint32Array | null;
      try {
        t = this.gt(i);
      } catch (err) {
        corruptions++;
        messages.push(`ERROR grain table ${i}: ${(err as Error).message}`);
        continue;
      }
      if (!t) continue;
      for (let k = 0; k < per && i * per + k < total; k++) {
        const e = t[k]!;
        if (this.kindOf(e) !== "data") continue;
        allocated++;
        if (!this.compressed && e * 512 + this.grainBytes > this.file.size) {
          corruptions++;
          if (messages.length < 100) messages.push(`ERROR grain ${i * per + k} at sector ${e} lies beyond the end of the file`);
        }
      }
      if (this.rgd && this.rgd[i]) {
        try {
          const r = this.readTable(this.rgd[i]!, "redundant grain table");
          if (!this.dirtyGts.has(i) && r.some((x, k) => x !== t![k])) {
            corruptions++;
            messages.push(`ERROR grain table ${i} differs from its redundant copy`);
          }
        } catch (err) {
          corruptions++;
          messages.push(`ERROR redundant grain table ${i}: ${(err as Error).message}`);
        }
      }
    }
    return { corruptions, messages, allocated, total };
  }
}
