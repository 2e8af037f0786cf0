// Opening a snapshot: the preamble, the table and every section but the RAM pages are read and
// checked at open, so a bad file is refused before a VM exists; pages are read on demand, one
// chunk at a time, and each chunk's checksum is checked when it is read.
//
// Opening costs O(header + index): a 128 MiB snapshot reads a few tens of KiB here, however much
// of its RAM is stored. Every read is positioned (readSync), nothing reads the whole file.
import { closeSync, fstatSync, openSync, readSync, readvSync } from "node:fs";
import zlib from "node:zlib";
import { decompress } from "./codec.js";
import { SnapshotError, describeThrown, refuse } from "./errors.js";
import { PREAMBLE_BYTES, SECTION_LIMITS, SECTION_ORDER, type SectionEntry, type SectionName, parsePreamble, parseTable } from "./layout.js";
import { decodeMsgpack } from "./msgpack-check.js";
import { RamIndex, ramIndexLimit } from "./ram-index.js";
import {
  PAGE_SIZE,
  type DriveRecord,
  type MemoryMap,
  type SnapshotHeader,
  parseDevices,
  parseDrives,
  parseHeader,
  parseMemoryMap,
  parseVcpus,
} from "./schema.js";

/** A row of the section table as `info` shows it. */
export interface SectionInfo {
  name: string;
  offset: number;
  /** Bytes in the file. */
  bytes: number;
  /** Bytes after decompression (for ram: stored pages x 4096). */
  decodedBytes: number;
  compressed: boolean;
  /** "crc32:xxxxxxxx", or for ram "crc32 per chunk". */
  checksum: string;
}

export interface SnapshotReader {
  readonly path: string;
  readonly fileBytes: number;
  readonly header: SnapshotHeader;
  readonly vcpus: unknown[];
  readonly devices: Record<string, unknown>;
  readonly memoryMap: MemoryMap;
  readonly drives: DriveRecord[];
  /** Stored (non-zero) pages. */
  readonly pageCount: number;
  /** Chunks the stored pages are grouped in, and pages per chunk. */
  readonly chunkCount: number;
  readonly chunkPages: number;
  readonly sections: ReadonlyArray<SectionInfo>;
  /** Whether page n (0 <= n < memoryBytes / 4096) is stored; unstored pages are zero. */
  hasPage(n: number): boolean;
  /** The stored pages' numbers, in order. */
  storedPages(): Uint32Array;
  /**
   * Reads page n into `into` (at least 4096 bytes); zero-fills when the page is not stored. Checks
   * the checksum of the page's chunk on its first read and throws a SnapshotError naming the ram
   * section and the page when it fails. The last chunk read is kept, so neighbouring pages cost no
   * second read; a page of an uncompressed chunk checked before is read alone.
   */
  readPage(n: number, into: Uint8Array): void;
  /**
   * Reads pages first, first+1, ... into `into` (one 4 KiB buffer each), as readPage would one by
   * one; pages stored side by side in a chunk checked before come in one system call.
   */
  readPages(first: number, into: readonly Uint8Array[]): void;
  /** Reads all of RAM into `ram` (memoryBytes long): stored pages, and zeros for the rest. */
  readAll(ram: Uint8Array): void;
  /** Reads and checks every chunk (checksums, decompression) without keeping the pages. */
  verify(): void;
  close(): void;
}

/** Positioned reads of the open file. */
class FileReads {
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  read(position: number, length: number, section: string, field: string, into?: Uint8Array): Uint8Array {
    if (position + length > this.size) refuse(section, field, `bytes ${position}..${position + length} lie past the end of the file (${this.size} bytes)`);
    const out = into ?? new Uint8Array(length);
    for (let done = 0; done < length; ) {
      let n: number;
      try {
        n = readSync(this.fd, out, done, length - done, position + done);
      } catch (err) {
        return refuse(section, field, `cannot be read (${describeThrown(err)})`);
      }
      if (n === 0) refuse(section, field, "the file ends early (truncated after it was opened?)");
      done += n;
    }
    return out;
  }

  /** `into`'s buffers filled in order from `position` on (one vectored read when the system gives all at once). */
  readInto(position: number, into: readonly Uint8Array[], section: string, field: string): void {
    const length = into.reduce((n, b) => n + b.length, 0);
    if (position + length > this.size) refuse(section, field, `bytes ${position}..${position + length} lie past the end of the file (${this.size} bytes)`);
    let got: number;
    try {
      got = readvSync(this.fd, into as Uint8Array[], position);
    } catch (err) {
      return refuse(section, field, `cannot be read (${describeThrown(err)})`);
    }
    // A short vectored read: the rest buffer by buffer.
    for (let i = 0, at = 0; got < length && i < into.length; at += into[i].length, i++) {
      const end = at + into[i].length;
      if (end <= got) continue;
      const from = Math.max(0, got - at);
      this.read(position + at + from, into[i].length - from, section, field, into[i].subarray(from));
      got = end;
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Opens and checks everything but the RAM page payloads; throws SnapshotError for a bad file. */
export function openSnapshot(path: string): SnapshotReader {
  let fd: number;
  let size: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new SnapshotError("file", "path", `cannot be opened (${describeThrown(err)})`, path);
  }
  try {
    try {
      size = fstatSync(fd).size;
    } catch (err) {
      return refuse("file", "path", `cannot be read (${describeThrown(err)})`);
    }
    const file = new FileReads(fd, size);
    const preamble = parsePreamble(file.read(0, Math.min(size, PREAMBLE_BYTES), "file", "preamble"), size);
    const table = parseTable(file.read(preamble.tableOffset, preamble.tableBytes, "table", "(the table)"), preamble);
    const entry = (name: SectionName) => table[SECTION_ORDER.indexOf(name)]!;
    const section = (name: SectionName, limit: number): unknown => {
      const e = entry(name);
      if (e.decodedBytes > limit) refuse("table", `${name}.decodedBytes`, `is ${e.decodedBytes}, more than the ${limit} a ${name} section may hold`);
      const stored = file.read(e.offset, e.bytes, name, "(the section)");
      if (zlib.crc32(stored) !== e.crc32) refuse(name, "crc32", "the section is corrupt (checksum mismatch)");
      return decodeMsgpack(e.compression === "none" ? stored : decompress(stored, e.decodedBytes, name, "(the section)"), name);
    };
    const header = parseHeader(section("header", SECTION_LIMITS.header));
    const vcpus = parseVcpus(section("vcpus", SECTION_LIMITS.vcpus), header);
    const devices = parseDevices(section("devices", SECTION_LIMITS.devices));
    const memoryMap = parseMemoryMap(section("memoryMap", SECTION_LIMITS.memoryMap), header);
    const drives = parseDrives(section("drives", SECTION_LIMITS.drives));
    const index = RamIndex.parse(section("ramIndex", ramIndexLimit(header.memoryBytes)), header, entry("ram"));
    return new SnapshotFileReader(path, file, { header, vcpus, devices, memoryMap, drives }, table, index);
  } catch (err) {
    closeSync(fd);
    throw err instanceof SnapshotError ? err.inFile(path) : err;
  }
}

interface Records {
  header: SnapshotHeader;
  vcpus: unknown[];
  devices: Record<string, unknown>;
  memoryMap: MemoryMap;
  drives: DriveRecord[];
}

/** Reads for readAll/verify are batched to about this many bytes per system call. */
const BATCH_BYTES = 4 * 1024 * 1024;

class SnapshotFileReader implements SnapshotReader {
  readonly header: SnapshotHeader;
  readonly vcpus: unknown[];
  readonly devices: Record<string, unknown>;
  readonly memoryMap: MemoryMap;
  readonly drives: DriveRecord[];
  readonly sections: ReadonlyArray<SectionInfo>;
  private readonly ram: SectionEntry;
  private cached: { chunk: number; data: Uint8Array } | null = null;
  /**
   * 1 for each chunk stored uncompressed whose checksum matched when it was read: a later read of
   * one of its pages reads that page alone (4 KiB, not the chunk and its checksum again). A restored
   * guest's faults come back to the same chunks many times (536 chunk reads for 166 chunks in an
   * `echo`). It trusts the file not to change while open: a save over it replaces it (a new file
   * renamed into place), which leaves the open one as it was.
   */
  private readonly checked: Uint8Array;
  /** Where readPage reads a chunk's stored bytes (made on the first read, used again by each). */
  private scratch: Uint8Array | null = null;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly file: FileReads,
    records: Records,
    table: readonly SectionEntry[],
    private readonly index: RamIndex,
  ) {
    ({ header: this.header, vcpus: this.vcpus, devices: this.devices, memoryMap: this.memoryMap, drives: this.drives } = records);
    this.checked = new Uint8Array(index.chunkCount);
    this.ram = table[SECTION_ORDER.indexOf("ram")]!;
    this.sections = table.map((e) => ({
      name: e.name,
      offset: e.offset,
      bytes: e.bytes,
      decodedBytes: e.decodedBytes,
      compressed: e.compression !== "none",
      checksum: e.crc32 === null ? "crc32 per chunk" : `crc32:${e.crc32.toString(16).padStart(8, "0")}`,
    }));
  }

  get fileBytes(): number {
    return this.file.size;
  }

  get pageCount(): number {
    return this.index.storedPages;
  }

  get chunkCount(): number {
    return this.index.chunkCount;
  }

  get chunkPages(): number {
    return this.index.chunkPages;
  }

  private checkPageNumber(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n >= this.index.pages) throw new RangeError(`page ${n} is outside the ${this.index.pages} pages of RAM`);
  }

  hasPage(n: number): boolean {
    this.checkPageNumber(n);
    return this.index.storedIndex(n) >= 0;
  }

  storedPages(): Uint32Array {
    return this.index.storedPageNumbers();
  }

  readPage(n: number, into: Uint8Array): void {
    this.checkPageNumber(n);
    if (into.length < PAGE_SIZE) throw new RangeError(`readPage needs ${PAGE_SIZE} bytes to read into, not ${into.length}`);
    const i = this.index.storedIndex(n);
    if (i < 0) {
      into.fill(0, 0, PAGE_SIZE);
      return;
    }
    const k = Math.floor(i / this.index.chunkPages);
    const at = (i - k * this.index.chunkPages) * PAGE_SIZE;
    if (this.cached?.chunk !== k) {
      const c = this.index.chunk(k);
      if (this.checked[k]) {
        this.readStored(this.ram.offset + c.offset + at, PAGE_SIZE, `page ${n} (chunk ${k})`, into.subarray(0, PAGE_SIZE));
        return;
      }
      this.cached = null;
      // A stored chunk is at most its raw size (one stored compressed is smaller), and the cached
      // chunk is the only thing the scratch holds: read into it rather than into new memory each time.
      this.scratch ??= new Uint8Array(this.index.chunkPages * PAGE_SIZE);
      const buffer = c.storedBytes <= this.scratch.length ? this.scratch.subarray(0, c.storedBytes) : undefined;
      const stored = this.readStored(this.ram.offset + c.offset, c.storedBytes, `page ${n} (chunk ${k})`, buffer);
      this.cached = { chunk: k, data: this.decodeChunk(k, stored, `page ${n} (chunk ${k})`) };
      if (c.storedBytes === c.pages * PAGE_SIZE) this.checked[k] = 1;
    }
    into.set(this.cached.data.subarray(at, at + PAGE_SIZE));
  }

  readPages(first: number, into: readonly Uint8Array[]): void {
    for (let j = 0; j < into.length; ) {
      const n = first + j;
      this.checkPageNumber(n);
      const i = this.index.storedIndex(n);
      const k = i < 0 ? -1 : Math.floor(i / this.index.chunkPages);
      if (k < 0 || !this.checked[k] || this.cached?.chunk === k || into[j].length < PAGE_SIZE) {
        this.readPage(n, into[j]);
        j++;
        continue;
      }
      // The run of pages stored one after the other in chunk k (checked already: read as they are).
      let end = j + 1;
      while (end < into.length && first + end < this.index.pages && into[end].length >= PAGE_SIZE && this.index.storedIndex(first + end) === i + end - j && Math.floor((i + end - j) / this.index.chunkPages) === k) end++;
      const c = this.index.chunk(k);
      const at = (i - k * this.index.chunkPages) * PAGE_SIZE;
      if (this.closed) throw new Error(`snapshot ${this.path} is closed`);
      try {
        this.file.readInto(this.ram.offset + c.offset + at, into.slice(j, end).map((b) => b.subarray(0, PAGE_SIZE)), "ram", `pages ${n}..${first + end - 1} (chunk ${k})`);
      } catch (err) {
        throw err instanceof SnapshotError ? err.inFile(this.path) : err;
      }
      j = end;
    }
  }

  readAll(ram: Uint8Array): void {
    if (ram.length !== this.header.memoryBytes) throw new RangeError(`readAll needs a RAM view of ${this.header.memoryBytes} bytes, not ${ram.length}`);
    const numbers = this.index.storedPageNumbers();
    let nextPage = 0; // pages below this one are written
    this.eachChunk((k, data) => {
      for (let j = 0; j < data.length / PAGE_SIZE; j++) {
        const n = numbers[k * this.index.chunkPages + j]!;
        if (n > nextPage) ram.fill(0, nextPage * PAGE_SIZE, n * PAGE_SIZE);
        ram.set(data.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE), n * PAGE_SIZE);
        nextPage = n + 1;
      }
    });
    ram.fill(0, nextPage * PAGE_SIZE);
  }

  verify(): void {
    this.eachChunk(() => {});
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cached = null;
    this.file.close();
  }

  /** Every chunk in order, checked and decoded; reads are batched to BATCH_BYTES. */
  private eachChunk(visit: (k: number, data: Uint8Array) => void): void {
    const count = this.index.chunkCount;
    for (let first = 0; first < count; ) {
      let last = first;
      const start = this.index.chunk(first).offset;
      while (last + 1 < count && this.index.chunk(last + 1).offset + this.index.chunk(last + 1).storedBytes - start <= BATCH_BYTES) last++;
      const end = this.index.chunk(last).offset + this.index.chunk(last).storedBytes;
      const batch = this.readStored(this.ram.offset + start, end - start, `chunks ${first}..${last}`);
      for (let k = first; k <= last; k++) {
        const c = this.index.chunk(k);
        visit(k, this.decodeChunk(k, batch.subarray(c.offset - start, c.offset - start + c.storedBytes), `chunk ${k}`));
      }
      first = last + 1;
    }
  }

  private readStored(position: number, length: number, field: string, into?: Uint8Array): Uint8Array {
    if (this.closed) throw new Error(`snapshot ${this.path} is closed`);
    try {
      return this.file.read(position, length, "ram", field, into);
    } catch (err) {
      throw err instanceof SnapshotError ? err.inFile(this.path) : err;
    }
  }

  /** A chunk's stored bytes checked against its crc32 and decompressed when they are compressed. */
  private decodeChunk(k: number, stored: Uint8Array, field: string): Uint8Array {
    const c = this.index.chunk(k);
    const raw = c.pages * PAGE_SIZE;
    if (zlib.crc32(stored) !== c.crc32) throw new SnapshotError("ram", field, "the page data is corrupt (checksum mismatch)", this.path);
    if (stored.length === raw) return stored;
    try {
      return decompress(stored, raw, "ram", field);
    } catch (err) {
      throw err instanceof SnapshotError ? err.inFile(this.path) : err;
    }
  }
}
