// Helpers for the snapshot tests: scratch folders, sample contents, and a re-assembler that builds
// files with valid checksums around hostile section contents.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { decode, encode } from "@msgpack/msgpack";
import { compressSection } from "./codec.js";
import { PREAMBLE_BYTES, SECTION_ORDER, type SectionEntry, type SectionName, encodePreamble } from "./layout.js";
import { PAGE_SIZE } from "./schema.js";
import type { SnapshotContents } from "./writer.js";

/** A fresh scratch folder, on /dev/shm when it exists (fast), else the OS temp folder. */
export function scratchDir(prefix = "hv-snap-test-"): string {
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  return fs.mkdtempSync(path.join(base, prefix));
}

/** Deterministic xorshift32 generator in [0, 1). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Fills `buf` with deterministic random bytes. */
export function fillRandom(buf: Uint8Array, seed: number): void {
  const next = rng(seed);
  for (let i = 0; i < buf.length; i++) buf[i] = (next() * 256) | 0;
}

/** A page of text-like bytes (compressible, never all zero). */
export function fillText(buf: Uint8Array, seed: number): void {
  const words = ["mov", "eax,", "[ebp-8]", "kernel", "page", "table", "the", "interrupt", "0x1000", "ret", "\n"];
  const next = rng(seed);
  let at = 0;
  while (at < buf.length) {
    const w = words[(next() * words.length) | 0]!;
    for (let i = 0; i < w.length && at < buf.length; i++) buf[at++] = w.charCodeAt(i);
    if (at < buf.length) buf[at++] = 0x20;
  }
}

/** A small VM: `pages` pages of RAM (every third zero, the rest text, random or one byte), two ROMs, two drives. */
export function sampleContents(pages = 45, seed = 1): SnapshotContents & { ram: Uint8Array } {
  const memoryBytes = pages * PAGE_SIZE;
  const ram = new Uint8Array(memoryBytes);
  for (let n = 0; n < pages; n++) {
    const page = ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE);
    if (n % 3 === 0) continue;
    if (n % 3 === 1) fillText(page, seed + n);
    else if (n % 5 === 2) page[PAGE_SIZE - 1] = 1;
    else fillRandom(page, seed + n);
  }
  const bios = new Uint8Array(2 * PAGE_SIZE);
  fillRandom(bios, seed);
  return {
    header: {
      name: "sample",
      createdAt: "2025-01-02T03:04:05.000Z",
      hvVersion: "0.1.0",
      memoryBytes,
      vmTimeNs: 1_234_567_890,
      vcpuCount: 2,
      boot: { kernel: "vmlinuz", cmdline: "console=ttyS0", smp: 2, apic: true },
    },
    vcpus: [
      { regs: new Uint8Array([1, 2, 3, 4]), eip: 0x100000, halted: false, fpu: [1.5, Number.NaN, -1e300] },
      { regs: new Uint8Array([5, 6, 7, 8]), eip: 0xfff0, halted: true, fpu: [] },
    ],
    devices: { pic: { imr: 0xff, irr: 0 }, uart0: { lcr: 3, fifo: "hello", pending: [1, 2, 3] }, pit: { channels: [{ count: 65536 }, { count: 18 }] } },
    memoryMap: { ramBytes: memoryBytes, roms: [{ gpa: 0xfffe0000, bytes: bios }, { gpa: 0xc0000, bytes: new Uint8Array(100).fill(0x55) }] },
    drives: [
      { path: "/images/root.qcow2", format: "qcow2", sizeBytes: 1 << 30, readOnly: false, identity: "size=1073741824,mtime=1700000000", overlay: "/images/root.snap-overlay.qcow2" },
      { path: "/images/data.raw", format: "raw", sizeBytes: 65536, readOnly: true, identity: "" },
    ],
    ram,
  };
}

/** A snapshot taken apart: the table rows and each section's decoded payload (ram: its stored bytes). */
export interface SnapshotParts {
  entries: SectionEntry[];
  payloads: Record<SectionName, Uint8Array>;
}

/** Takes a valid snapshot file apart (trusting it: these are files our writer made). */
export function splitSnapshot(file: Uint8Array): SnapshotParts {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const tableBytes = view.getUint32(12, true);
  const tableOffset = Number(view.getBigUint64(16, true));
  const entries = decode(file.subarray(tableOffset, tableOffset + tableBytes)) as SectionEntry[];
  const payloads = {} as Record<SectionName, Uint8Array>;
  for (const e of entries) {
    const stored = file.slice(e.offset, e.offset + e.bytes);
    payloads[e.name] = e.name === "ram" || e.compression === "none" ? stored : new Uint8Array(zlib.brotliDecompressSync(stored));
  }
  return { entries, payloads };
}

export interface AssembleOptions {
  /** Compress the metadata sections (ram keeps its own chunks). */
  compress?: boolean;
  /** Tamper with the table rows (already filled in with honest values) before they are encoded. */
  table?: (rows: Record<string, unknown>[]) => unknown;
  /** Replace the encoded table outright. */
  tableBytes?: Uint8Array;
  /** Override the preamble's format version. */
  version?: number;
  /** Store a metadata section's bytes some other way (a decompression bomb, garbage marked compressed). */
  store?: Partial<Record<SectionName, { stored: Uint8Array; compression: "none" | "brotli"; decodedBytes: number }>>;
}

/** Builds a file from parts with valid checksums everywhere: the hostile part is only the content. */
export function assembleSnapshot(parts: SnapshotParts, options: AssembleOptions = {}): Uint8Array {
  const chunks: Uint8Array[] = [new Uint8Array(PREAMBLE_BYTES)];
  const rows: Record<string, unknown>[] = [];
  let position = PREAMBLE_BYTES;
  for (const name of SECTION_ORDER) {
    const payload = parts.payloads[name];
    const original = parts.entries.find((e) => e.name === name)!;
    let stored = payload;
    let compression = original.compression;
    let decodedBytes = name === "ram" ? original.decodedBytes : payload.length;
    const special = options.store?.[name];
    if (special) ({ stored, compression, decodedBytes } = special);
    else if (name !== "ram") {
      const packed = options.compress ? compressSection(payload) : payload;
      stored = packed.length < payload.length ? packed : payload;
      compression = stored === payload ? "none" : "brotli";
    }
    rows.push({
      name,
      offset: position,
      bytes: stored.length,
      decodedBytes,
      compression,
      crc32: name === "ram" ? null : zlib.crc32(stored),
    });
    chunks.push(stored);
    position += stored.length;
  }
  const table = options.tableBytes ?? encode(options.table ? options.table(rows) : rows);
  chunks.push(table);
  const preamble = encodePreamble(position, table.length, zlib.crc32(table));
  if (options.version !== undefined) {
    new DataView(preamble.buffer).setUint32(8, options.version, true);
    new DataView(preamble.buffer).setUint32(28, zlib.crc32(preamble.subarray(0, 28)), true);
  }
  chunks[0] = preamble;
  return Buffer.concat(chunks);
}

/** The decoded value of a metadata section of `parts`. */
export function sectionValue(parts: SnapshotParts, name: SectionName): Record<string, unknown> {
  return decode(parts.payloads[name]) as Record<string, unknown>;
}

/** `parts` with one section's payload replaced by the msgpack of `value` (or by raw bytes). */
export function withSection(parts: SnapshotParts, name: SectionName, value: unknown, raw = false): SnapshotParts {
  return { entries: parts.entries, payloads: { ...parts.payloads, [name]: raw ? (value as Uint8Array) : encode(value) } };
}
