// The container: a fixed preamble, the sections one after another, and the section table last.
//
//   offset 0   preamble (32 bytes, little-endian)
//                0  magic "HVSNAP\r\n" (8 bytes; the CR LF catches text-mode mangling)
//                8  u32 format version (FORMAT_VERSION)
//               12  u32 byte length of the section table
//               16  u64 offset of the section table
//               24  u32 crc32 of the section table
//               28  u32 crc32 of bytes 0..27
//   32          the sections, in SECTION_ORDER, each starting where the previous one ends
//   ...         the section table (msgpack: one record per section), ending at the end of the file
//
// The reader trusts nothing: the table must tile the file exactly (no gaps, no overlap, no
// trailing bytes), every section is where its predecessor ends, and every size is bounded before
// anything is allocated.
import { encode } from "@msgpack/msgpack";
import zlib from "node:zlib";
import { COMPRESSIONS, type Compression } from "./codec.js";
import { refuse } from "./errors.js";
import { decodeMsgpack } from "./msgpack-check.js";
import { MAX_MEMORY_BYTES, array, fields, integer, kindOf } from "./schema.js";

export const MAGIC = new Uint8Array([0x48, 0x56, 0x53, 0x4e, 0x41, 0x50, 0x0d, 0x0a]); // "HVSNAP\r\n"
export const FORMAT_VERSION = 1;
export const PREAMBLE_BYTES = 32;
export const MAX_TABLE_BYTES = 4096;

/** The sections of format version 1, in file order. RAM comes before its index so both stream. */
export const SECTION_ORDER = ["header", "vcpus", "devices", "memoryMap", "drives", "ram", "ramIndex"] as const;
export type SectionName = (typeof SECTION_ORDER)[number];

/**
 * Largest decoded size of each metadata section. Together with "stored bytes <= file size" they
 * bound every allocation the reader makes; ramIndex's bound follows from header.memoryBytes and
 * ram's is the RAM itself (it is read chunk by chunk, never whole).
 */
export const SECTION_LIMITS: Record<Exclude<SectionName, "ram" | "ramIndex">, number> = {
  header: 1024 ** 2,
  vcpus: 16 * 1024 ** 2,
  devices: 64 * 1024 ** 2,
  memoryMap: 64 * 1024 ** 2,
  drives: 1024 ** 2,
};

/** One row of the section table. `crc32` covers the stored bytes; ram has none (each chunk has one). */
export interface SectionEntry {
  name: SectionName;
  offset: number;
  /** Bytes in the file. */
  bytes: number;
  /** Bytes after decompression (= bytes when not compressed; for ram, stored pages x 4096). */
  decodedBytes: number;
  compression: Compression;
  crc32: number | null;
}

export function encodePreamble(tableOffset: number, tableBytes: number, tableCrc: number): Uint8Array {
  const out = new Uint8Array(PREAMBLE_BYTES);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, tableBytes, true);
  view.setBigUint64(16, BigInt(tableOffset), true);
  view.setUint32(24, tableCrc, true);
  view.setUint32(28, zlib.crc32(out.subarray(0, 28)), true);
  return out;
}

export interface Preamble {
  tableOffset: number;
  tableBytes: number;
  tableCrc: number;
}

/** Checks the preamble against the file's size; `bytes` are the file's first bytes (up to 32). */
export function parsePreamble(bytes: Uint8Array, fileSize: number): Preamble {
  const s = "file";
  if (fileSize < MAGIC.length || !MAGIC.every((b, i) => bytes[i] === b)) refuse(s, "magic", "this is not an hv snapshot file (no HVSNAP magic)");
  if (fileSize < PREAMBLE_BYTES) refuse(s, "size", `${fileSize} bytes is too short for the ${PREAMBLE_BYTES}-byte preamble`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, PREAMBLE_BYTES);
  const version = view.getUint32(8, true);
  if (version !== FORMAT_VERSION) refuse(s, "formatVersion", `version ${version} is not supported (this hv reads version ${FORMAT_VERSION})`);
  const crc = zlib.crc32(bytes.subarray(0, 28));
  if (crc !== view.getUint32(28, true)) refuse(s, "preamble crc32", "the preamble is corrupt (checksum mismatch)");
  const tableBytes = view.getUint32(12, true);
  const tableOffset = Number(view.getBigUint64(16, true));
  if (tableBytes === 0 || tableBytes > MAX_TABLE_BYTES) refuse(s, "tableBytes", `${tableBytes} is outside 1..${MAX_TABLE_BYTES}`);
  if (tableOffset < PREAMBLE_BYTES || tableOffset > fileSize) refuse(s, "tableOffset", `${tableOffset} is outside the file (${fileSize} bytes)`);
  if (tableOffset + tableBytes > fileSize) refuse(s, "size", `the file is ${fileSize} bytes; it ends inside the section table (truncated?)`);
  if (tableOffset + tableBytes < fileSize) refuse(s, "size", `${fileSize - tableOffset - tableBytes} bytes follow the section table`);
  return { tableOffset, tableBytes, tableCrc: view.getUint32(24, true) };
}

export function encodeTable(entries: readonly SectionEntry[]): Uint8Array {
  return encode(entries);
}

/** Checks the table's bytes (crc, shape, order, tiling of the file between preamble and table). */
export function parseTable(bytes: Uint8Array, preamble: Preamble): SectionEntry[] {
  const s = "table";
  if (zlib.crc32(bytes) !== preamble.tableCrc) refuse(s, "crc32", "the section table is corrupt (checksum mismatch)");
  const rows = array(decodeMsgpack(bytes, s), s, "(the table)", SECTION_ORDER.length);
  if (rows.length !== SECTION_ORDER.length) refuse(s, "(the table)", `has ${rows.length} sections; format version ${FORMAT_VERSION} has ${SECTION_ORDER.length}`);
  let end = PREAMBLE_BYTES;
  return rows.map((row, i): SectionEntry => {
    const name = SECTION_ORDER[i]!;
    const r = fields(row, s, `[${i}]`, ["name", "offset", "bytes", "decodedBytes", "compression", "crc32"]);
    if (r.name !== name) refuse(s, `[${i}].name`, `is ${typeof r.name === "string" ? JSON.stringify(r.name.slice(0, 40)) : kindOf(r.name)}; section ${i} must be ${name}`);
    const offset = integer(r.offset, s, `${name}.offset`, 0, preamble.tableOffset);
    if (offset !== end) refuse(s, `${name}.offset`, `is ${offset}; the section must start at ${end}, where the previous one ends`);
    const bytesOnDisk = integer(r.bytes, s, `${name}.bytes`, name === "ram" ? 0 : 1, preamble.tableOffset - offset);
    end = offset + bytesOnDisk;
    if (i === SECTION_ORDER.length - 1 && end !== preamble.tableOffset) refuse(s, `${name}.bytes`, `the sections end at ${end}, the table starts at ${preamble.tableOffset}`);
    const limit = name === "ram" || name === "ramIndex" ? MAX_MEMORY_BYTES : SECTION_LIMITS[name];
    const decodedBytes = integer(r.decodedBytes, s, `${name}.decodedBytes`, name === "ram" ? 0 : 1, limit);
    if (!COMPRESSIONS.includes(r.compression as Compression)) refuse(s, `${name}.compression`, `is ${kindOf(r.compression)}, not one of ${COMPRESSIONS.join(", ")}`);
    const compression = r.compression as Compression;
    if (name !== "ram" && compression === "none" && decodedBytes !== bytesOnDisk) refuse(s, `${name}.decodedBytes`, `is ${decodedBytes}; an uncompressed section decodes to its ${bytesOnDisk} bytes`);
    if (name !== "ram" && compression !== "none" && bytesOnDisk >= decodedBytes) refuse(s, `${name}.bytes`, `${bytesOnDisk} compressed bytes for ${decodedBytes} decoded (the writer compresses only what shrinks)`);
    const crc32 = name === "ram" ? (r.crc32 === null ? null : refuse(s, "ram.crc32", "is not null (RAM chunks carry their own checksums)")) : integer(r.crc32, s, `${name}.crc32`, 0, 0xffffffff);
    return { name, offset, bytes: bytesOnDisk, decodedBytes, compression, crc32 };
  });
}
