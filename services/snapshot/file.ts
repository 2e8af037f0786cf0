// The snapshot file: one self-describing file holding a saved VM, and its hostile-input reader.
//
// Layout (format version 1; layout.ts and ram-index.ts have the byte-level detail):
//   preamble   magic "HVSNAP\r\n", u32 format version, where the section table is, two crc32s
//   sections   header, vcpus, devices, memoryMap, drives   msgpack records, each with a crc32,
//              ram                                         the non-zero pages, in chunks of 16
//              ramIndex                                    page bitmap + per-chunk length and crc32
//   table      one msgpack row per section: name, offset, bytes, decodedBytes, compression, crc32
// With `compress`, every section and every RAM chunk that shrinks is Brotli-compressed.
//
// API:
//   writeSnapshot(path, contents, { compress?, onProgress? }) -> { bytes, pages }
//       temp file + fsync + rename; the contents are checked with the reader's parsers first.
//   openSnapshot(path) -> SnapshotReader
//       reads and checks everything but the page payloads: O(header + index), not O(RAM).
//   reader.readPage(n, into) / hasPage(n)   lazy, one chunk read and checked per miss
//   reader.readAll(ram) / verify()          every chunk, for eager restore or a full check
// Every refusal is a SnapshotError naming the section and the field.
export { PAGE_SIZE, MAX_MEMORY_BYTES, type SnapshotHeader, type MemoryMap, type RomRecord, type DriveRecord } from "./schema.js";
export { SnapshotError } from "./errors.js";
export { FORMAT_VERSION } from "./layout.js";
export { writeSnapshot, type SnapshotContents, type WriteOptions, type WriteResult } from "./writer.js";
export { openSnapshot, type SnapshotReader, type SectionInfo } from "./reader.js";
export { savedSetupInMemory, savedVmInMemory, type SavedSetupSource, type SavedVmSource } from "./memory-source.js";
