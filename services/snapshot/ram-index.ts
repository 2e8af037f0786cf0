// The RAM index: which pages are stored (a bitmap over guest RAM) and where each chunk of stored
// pages lies in the ram section (its stored length and crc32).
//
// Stored pages are taken in page order and grouped `chunkPages` at a time into chunks; a chunk is
// the unit of compression, checksum and lazy reading. The index holds:
//   chunkPages  pages per chunk (the last chunk may hold fewer)
//   bitmap      bit n (byte n >> 3, bit n & 7) set when page n is stored; exactly memoryBytes/4096 bits
//   chunks      per chunk, u32 LE stored bytes and u32 LE crc32 of those bytes
// A chunk is compressed exactly when its stored length is below its raw length (pages x 4096).
// A bitmap cannot hold duplicate or unsorted page numbers; pages outside RAM would be bits past
// the last page, which must be zero.
import { encode } from "@msgpack/msgpack";
import { refuse } from "./errors.js";
import type { SectionEntry } from "./layout.js";
import { PAGE_SIZE, type SnapshotHeader, fields, integer, kindOf } from "./schema.js";

/** The writer's chunk: 16 pages (64 KiB), small enough that a lazy page read costs little. */
export const CHUNK_PAGES = 16;
export const MAX_CHUNK_PAGES = 256;

/** Largest ramIndex a RAM of `memoryBytes` can need (one-page chunks), plus msgpack framing. */
export function ramIndexLimit(memoryBytes: number): number {
  const pages = memoryBytes / PAGE_SIZE;
  return Math.ceil(pages / 8) + pages * 8 + 64;
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Builds the index while the writer streams pages. */
export class RamIndexBuilder {
  readonly bitmap: Uint8Array;
  private readonly chunkWords: number[] = [];

  constructor(readonly pages: number, readonly chunkPages = CHUNK_PAGES) {
    this.bitmap = new Uint8Array(Math.ceil(pages / 8));
  }

  markPage(n: number): void {
    this.bitmap[n >> 3]! |= 1 << (n & 7);
  }

  addChunk(storedBytes: number, crc: number): void {
    this.chunkWords.push(storedBytes, crc);
  }

  encode(): Uint8Array {
    const chunks = new Uint8Array(this.chunkWords.length * 4);
    const view = new DataView(chunks.buffer);
    this.chunkWords.forEach((w, i) => view.setUint32(i * 4, w, true));
    return encode({ chunkPages: this.chunkPages, bitmap: this.bitmap, chunks });
  }
}

/** Where a chunk is: offset from the start of the ram section, stored length, crc32, pages. */
export interface ChunkLocation {
  index: number;
  offset: number;
  storedBytes: number;
  crc32: number;
  pages: number;
}

/** The checked index of an opened snapshot: page lookups in O(1) without touching the RAM. */
export class RamIndex {
  /** The bitmap as 32-bit words, and the number of stored pages before each word. */
  private readonly words: Uint32Array;
  private readonly rankBefore: Uint32Array;
  private readonly chunkOffsets: Float64Array;
  private readonly chunkStored: Uint32Array;
  private readonly chunkCrcs: Uint32Array;

  private constructor(
    readonly pages: number,
    readonly storedPages: number,
    readonly chunkPages: number,
    bitmap: Uint8Array,
    chunks: DataView,
  ) {
    const wordCount = Math.ceil(pages / 32);
    this.words = new Uint32Array(wordCount);
    this.rankBefore = new Uint32Array(wordCount + 1);
    for (let w = 0; w < wordCount; w++) {
      const b = w * 4;
      this.words[w] = ((bitmap[b] ?? 0) | ((bitmap[b + 1] ?? 0) << 8) | ((bitmap[b + 2] ?? 0) << 16) | ((bitmap[b + 3] ?? 0) << 24)) >>> 0;
      this.rankBefore[w + 1] = this.rankBefore[w]! + popcount32(this.words[w]!);
    }
    const chunkCount = chunks.byteLength / 8;
    this.chunkOffsets = new Float64Array(chunkCount + 1);
    this.chunkStored = new Uint32Array(chunkCount);
    this.chunkCrcs = new Uint32Array(chunkCount);
    for (let k = 0; k < chunkCount; k++) {
      this.chunkStored[k] = chunks.getUint32(k * 8, true);
      this.chunkCrcs[k] = chunks.getUint32(k * 8 + 4, true);
      this.chunkOffsets[k + 1] = this.chunkOffsets[k]! + this.chunkStored[k]!;
    }
  }

  get chunkCount(): number {
    return this.chunkStored.length;
  }

  /** The position of page n among the stored pages, or -1 when it is not stored. */
  storedIndex(n: number): number {
    const w = n >>> 5;
    const word = this.words[w]!;
    const bit = 1 << (n & 31);
    if ((word & bit) === 0) return -1;
    return this.rankBefore[w]! + popcount32(word & (bit - 1));
  }

  chunk(k: number): ChunkLocation {
    const pages = Math.min(this.chunkPages, this.storedPages - k * this.chunkPages);
    return { index: k, offset: this.chunkOffsets[k]!, storedBytes: this.chunkStored[k]!, crc32: this.chunkCrcs[k]!, pages };
  }

  /** The stored page numbers, in order (what each chunk holds, for eager reads). */
  storedPageNumbers(): Uint32Array {
    const out = new Uint32Array(this.storedPages);
    let i = 0;
    for (let w = 0; w < this.words.length; w++) {
      let word = this.words[w]!;
      while (word !== 0) {
        const low = word & -word;
        out[i++] = w * 32 + 31 - Math.clz32(low);
        word = (word ^ low) >>> 0;
      }
    }
    return out;
  }

  /** Checks a decoded ramIndex section against the header and the table's ram entry. */
  static parse(value: unknown, header: SnapshotHeader, ram: SectionEntry): RamIndex {
    const s = "ramIndex";
    const r = fields(value, s, "", ["chunkPages", "bitmap", "chunks"]);
    const chunkPages = integer(r.chunkPages, s, "chunkPages", 1, MAX_CHUNK_PAGES);
    const pages = header.memoryBytes / PAGE_SIZE;
    const bitmap = r.bitmap;
    if (!(bitmap instanceof Uint8Array)) return refuse(s, "bitmap", `is ${kindOf(bitmap)}, not binary data`);
    if (bitmap.length !== Math.ceil(pages / 8)) refuse(s, "bitmap", `is ${bitmap.length} bytes; ${pages} pages of RAM need ${Math.ceil(pages / 8)}`);
    if (pages % 8 !== 0 && bitmap[bitmap.length - 1]! >> pages % 8 !== 0) {
      refuse(s, "bitmap", `marks page ${pages - (pages % 8) + 31 - Math.clz32(bitmap[bitmap.length - 1]!)}, outside the ${pages} pages of RAM`);
    }
    let stored = 0;
    for (let i = 0; i < bitmap.length; i++) stored += popcount32(bitmap[i]!);
    if (ram.decodedBytes !== stored * PAGE_SIZE) refuse("table", "ram.decodedBytes", `is ${ram.decodedBytes}; the index stores ${stored} pages (${stored * PAGE_SIZE} bytes)`);
    const chunks = r.chunks;
    if (!(chunks instanceof Uint8Array)) return refuse(s, "chunks", `is ${kindOf(chunks)}, not binary data`);
    const chunkCount = Math.ceil(stored / chunkPages);
    if (chunks.length !== chunkCount * 8) refuse(s, "chunks", `is ${chunks.length} bytes; ${stored} pages in chunks of ${chunkPages} need ${chunkCount * 8}`);
    const view = new DataView(chunks.buffer, chunks.byteOffset, chunks.length);
    let total = 0;
    for (let k = 0; k < chunkCount; k++) {
      const storedBytes = view.getUint32(k * 8, true);
      const raw = Math.min(chunkPages, stored - k * chunkPages) * PAGE_SIZE;
      if (ram.compression === "none" ? storedBytes !== raw : storedBytes < 1 || storedBytes > raw) {
        refuse(s, `chunks[${k}].storedBytes`, `is ${storedBytes} for ${raw / PAGE_SIZE} pages (${raw} bytes, ${ram.compression === "none" ? "uncompressed" : "compressed or not"})`);
      }
      total += storedBytes;
    }
    if (total !== ram.bytes) refuse(s, "chunks", `add up to ${total} bytes; the ram section holds ${ram.bytes}`);
    return new RamIndex(pages, stored, chunkPages, bitmap, view);
  }
}
