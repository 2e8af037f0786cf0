// Writing a snapshot: metadata sections, then RAM streamed page by page (all-zero pages skipped,
// the rest in chunks of CHUNK_PAGES), then the RAM index and the section table; the preamble at
// offset 0 is written last. Everything goes to a temporary file beside the target, which is
// synced and renamed into place only when complete: a failed save leaves no file under the name.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import zlib from "node:zlib";
import { encode } from "@msgpack/msgpack";
import { compressChunk, compressSection } from "./codec.js";
import { SnapshotError, describeThrown, refuse } from "./errors.js";
import { PREAMBLE_BYTES, SECTION_LIMITS, type SectionEntry, type SectionName, encodePreamble, encodeTable } from "./layout.js";
import { decodeMsgpack } from "./msgpack-check.js";
import { CHUNK_PAGES, RamIndexBuilder } from "./ram-index.js";
import type { RamPages } from "../../vmm/protocol.js";
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

export interface SnapshotContents {
  header: SnapshotHeader;
  /** One opaque plain record per vCPU (msgpack-encodable); the VMM validates them. */
  vcpus: unknown[];
  /** Device name -> opaque plain record; the VMM validates them. */
  devices: Record<string, unknown>;
  memoryMap: MemoryMap;
  drives: DriveRecord[];
  /** All of guest RAM (header.memoryBytes long), flat or page by page; all-zero pages are not stored. */
  ram: Uint8Array | RamPages;
}

export interface WriteOptions {
  /** Brotli-compress the sections and each RAM chunk that shrinks. */
  compress?: boolean;
  /** Called as RAM is scanned: pages done, pages in all. */
  onProgress?: (done: number, total: number) => void;
}

export interface WriteResult {
  /** Size of the file. */
  bytes: number;
  /** Pages stored (the non-zero ones). */
  pages: number;
}

/** Staging buffer for RAM chunks: written out when the next chunk might not fit. */
const STAGING_BYTES = 4 * 1024 * 1024;
const PROGRESS_PAGES = 4096;

/**
 * Encodes the metadata sections and checks them with the reader's own parsers, so that nothing is
 * written that openSnapshot would refuse (a Date, a class instance or NaN in a record, a bad size).
 */
function encodeMetadata(contents: SnapshotContents): Map<SectionName, Uint8Array> {
  const sections = new Map<SectionName, Uint8Array>();
  const put = (name: Exclude<SectionName, "ram" | "ramIndex">, value: unknown): unknown => {
    let bytes: Uint8Array;
    try {
      bytes = encode(value, { ignoreUndefined: true });
    } catch (err) {
      return refuse(name, "(the section)", `cannot be encoded (${describeThrown(err)})`);
    }
    if (bytes.length > SECTION_LIMITS[name]) refuse(name, "(the section)", `is ${bytes.length} bytes, more than the ${SECTION_LIMITS[name]} a snapshot allows`);
    sections.set(name, bytes);
    return decodeMsgpack(bytes, name);
  };
  const header = parseHeader(put("header", contents.header));
  parseVcpus(put("vcpus", contents.vcpus), header);
  parseDevices(put("devices", contents.devices));
  parseMemoryMap(put("memoryMap", contents.memoryMap), header);
  parseDrives(put("drives", contents.drives));
  const pages = contents.ram instanceof Uint8Array ? contents.ram.length / PAGE_SIZE : contents.ram.pages;
  if (pages !== header.memoryBytes / PAGE_SIZE) refuse("ram", "(the section)", `the RAM has ${pages} pages, the header says ${header.memoryBytes} bytes`);
  return sections;
}

/** Writes `contents` to `path` (replacing it) through a temporary file; see the file comment. */
/** Flat RAM as pages (views, no copies). */
function pagesOf(ram: Uint8Array | RamPages): RamPages {
  if (!(ram instanceof Uint8Array)) return ram;
  return { pages: ram.length / PAGE_SIZE, read: (n) => ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE) };
}

export function writeSnapshot(path: string, contents: SnapshotContents, options: WriteOptions = {}): WriteResult {
  const sections = encodeMetadata(contents);
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  let fd: number | null = null;
  try {
    // Guest memory can hold secrets: the file is for its owner only.
    fd = openSync(temp, "wx", 0o600);
    const out = new SectionWriter(fd, options.compress === true);
    for (const [name, bytes] of sections) out.section(name, bytes);
    const { index, pages } = out.ram(pagesOf(contents.ram), options.onProgress);
    out.section("ramIndex", index.encode());
    const bytes = out.finish();
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(temp, path);
    return { bytes, pages };
  } catch (err) {
    if (fd !== null) closeSync(fd);
    try {
      unlinkSync(temp);
    } catch {
      // never created, or already gone
    }
    if (err instanceof SnapshotError) throw err.inFile(path);
    // Host failures (no folder, disk full, permissions) become SnapshotErrors; anything else (an
    // exception from onProgress, a bug) passes through as it is.
    if (typeof (err as NodeJS.ErrnoException)?.code === "string") throw new SnapshotError("file", "path", `cannot be written (${describeThrown(err)})`, path);
    throw err;
  }
}

/** Appends sections to the file and keeps the table. */
class SectionWriter {
  private position = PREAMBLE_BYTES;
  private readonly table: SectionEntry[] = [];

  constructor(
    private readonly fd: number,
    private readonly compress: boolean,
  ) {}

  private write(bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length; ) done += writeSync(this.fd, bytes, done, bytes.length - done, this.position + done);
    this.position += bytes.length;
  }

  section(name: SectionName, raw: Uint8Array): void {
    const packed = this.compress ? compressSection(raw) : raw;
    const stored = packed.length < raw.length ? packed : raw;
    const entry: SectionEntry = {
      name,
      offset: this.position,
      bytes: stored.length,
      decodedBytes: raw.length,
      compression: stored === raw ? "none" : "brotli",
      crc32: zlib.crc32(stored),
    };
    this.write(stored);
    this.table.push(entry);
  }

  /** Streams the non-zero pages of `ram` as the ram section; returns its index. */
  ram(ram: RamPages, onProgress?: (done: number, total: number) => void): { index: RamIndexBuilder; pages: number } {
    const total = ram.pages;
    const index = new RamIndexBuilder(total);
    const zero = Buffer.alloc(PAGE_SIZE);
    const staging = new Uint8Array(STAGING_BYTES);
    const chunkBytes = CHUNK_PAGES * PAGE_SIZE;
    const offset = this.position;
    let fill = 0; // bytes staged
    let chunkStart = 0; // where the open chunk begins in staging
    let stored = 0;
    const closeChunk = () => {
      let end = fill;
      if (this.compress) {
        const packed = compressChunk(staging.subarray(chunkStart, fill));
        if (packed.length < fill - chunkStart) {
          staging.set(packed, chunkStart);
          end = chunkStart + packed.length;
        }
      }
      index.addChunk(end - chunkStart, zlib.crc32(staging.subarray(chunkStart, end)));
      fill = end;
      if (fill + chunkBytes > staging.length) {
        this.write(staging.subarray(0, fill));
        fill = 0;
      }
      chunkStart = fill;
    };
    for (let n = 0; n < total; n++) {
      const page = ram.read(n);
      if (page !== null && zero.compare(page) !== 0) {
        index.markPage(n);
        staging.set(page, fill);
        fill += PAGE_SIZE;
        if (++stored % CHUNK_PAGES === 0) closeChunk();
      }
      if (onProgress && (n + 1) % PROGRESS_PAGES === 0) onProgress(n + 1, total);
    }
    if (fill > chunkStart) closeChunk();
    this.write(staging.subarray(0, fill));
    this.table.push({ name: "ram", offset, bytes: this.position - offset, decodedBytes: stored * PAGE_SIZE, compression: this.compress ? "brotli" : "none", crc32: null });
    onProgress?.(total, total);
    return { index, pages: stored };
  }

  /** Writes the table and then the preamble; returns the file size. */
  finish(): number {
    const table = encodeTable(this.table);
    const tableOffset = this.position;
    this.write(table);
    const preamble = encodePreamble(tableOffset, table.length, zlib.crc32(table));
    writeSync(this.fd, preamble, 0, preamble.length, 0);
    return this.position;
  }
}
