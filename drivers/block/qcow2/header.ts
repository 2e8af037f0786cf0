// qcow2 header: parsing with every field validated against the file, and serialising back.
import { overlaps, u64, viewOf } from "../bytes.js";
import { ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";
import type { FormatName } from "../image.js";

export const QCOW2_MAGIC = 0x514649fb;
export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;

/** Incompatible feature bits (header byte 72). */
export const INCOMPAT_DIRTY = 1;
export const INCOMPAT_CORRUPT = 2;
const INCOMPAT_EXTERNAL_DATA = 4;
const INCOMPAT_COMPRESSION_TYPE = 8;
const INCOMPAT_EXTENDED_L2 = 16;
/** Compatible feature bit 0: lazy refcounts. */
export const COMPAT_LAZY_REFCOUNTS = 1;

/** A header extension we do not interpret; kept so rewriting the header preserves it. */
export interface RawExtension {
  type: number;
  data: Uint8Array;
}

/** The decoded header. Offsets and sizes are bytes unless named otherwise. */
export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: number;
  compatible: number;
  autoclear: number;
  refcountOrder: number;
  headerLength: number;
  backingFile: string | null;
  backingFormat: FormatName | null;
  /** Backing format string exactly as stored (may name a format we do not know). */
  backingFormatRaw: string | null;
  extensions: RawExtension[];
}

/** Entries of an L2 table for a given cluster size (8 bytes each). */
export const l2Entries = (clusterBits: number): number => 2 ** (clusterBits - 3);

const FORMAT_NAMES: Record<string, FormatName> = { raw: "raw", qcow2: "qcow2", vpc: "vpc", vmdk: "vmdk", vhd: "vpc" };

export function formatFromName(name: string): FormatName | null {
  return FORMAT_NAMES[name] ?? null;
}

/** Parse and validate the header in `head` (the first cluster, or as much of the file as exists). */
export function parseHeader(head: Uint8Array, fileSize: number, path: string): Qcow2Header {
  if (head.length < 72) throw new ImageFormatError("TRUNCATED", "file too short for a qcow2 header", path);
  const v = viewOf(head);
  if (v.getUint32(0) !== QCOW2_MAGIC) throw new ImageFormatError("BAD_MAGIC", "not a qcow2 image", path);
  const version = v.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `qcow2 version ${version} is not supported`, path);
  }
  const clusterBits = v.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21) {
    throw new ImageLayoutError("BAD_CLUSTER_SIZE", `cluster_bits ${clusterBits} outside 9..21`, path);
  }
  const cs = 2 ** clusterBits;
  const field = (at: number, what: string): number => {
    try {
      return u64(v, at, false, what);
    } catch (err) {
      throw new ImageLayoutError("SIZE_OVERFLOW", `${what} is too large`, path);
    }
  };
  const h: Qcow2Header = {
    version,
    clusterBits,
    size: field(24, "virtual size"),
    l1Size: v.getUint32(36),
    l1TableOffset: field(40, "L1 table offset"),
    refcountTableOffset: field(48, "refcount table offset"),
    refcountTableClusters: v.getUint32(56),
    nbSnapshots: v.getUint32(60),
    snapshotsOffset: field(64, "snapshot table offset"),
    incompatible: 0,
    compatible: 0,
    autoclear: 0,
    refcountOrder: 4,
    headerLength: 72,
    backingFile: null,
    backingFormat: null,
    backingFormatRaw: null,
    extensions: [],
  };
  if (v.getUint32(32) !== 0) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "encrypted qcow2 images are not supported", path);
  if (version === 3) {
    if (head.length < 104) throw new ImageFormatError("TRUNCATED", "file too short for a qcow2 v3 header", path);
    if (v.getUint32(72) !== 0) {
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "unknown incompatible feature bits", path);
    }
    h.incompatible = v.getUint32(76);
    h.compatible = v.getUint32(84);
    h.autoclear = v.getUint32(92);
    h.refcountOrder = v.getUint32(96);
    h.headerLength = v.getUint32(100);
    if (h.headerLength < 104 || h.headerLength > cs || h.headerLength > head.length || h.headerLength % 8 !== 0) {
      throw new ImageFormatError("BAD_HEADER", `header_length ${h.headerLength} is invalid`, path);
    }
    if (h.refcountOrder > 6) throw new ImageFormatError("BAD_HEADER", `refcount_order ${h.refcountOrder} > 6`, path);
    const known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION_TYPE;
    if (h.incompatible & INCOMPAT_EXTERNAL_DATA) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "external data files are not supported", path);
    if (h.incompatible & INCOMPAT_EXTENDED_L2) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "extended L2 entries (subclusters) are not supported", path);
    if (h.incompatible & ~known) {
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `unknown incompatible features 0x${(h.incompatible & ~known).toString(16)}`, path);
    }
    const compression = h.headerLength > 104 ? v.getUint8(104) : 0;
    if (compression !== 0) {
      throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `compression type ${compression} (only zlib) is not supported`, path);
    }
  }
  validateLayout(h, fileSize, path);
  readExtensions(h, head, v, path);
  readBackingName(h, head, v, path);
  return h;
}

function validateLayout(h: Qcow2Header, fileSize: number, path: string): void {
  const cs = 2 ** h.clusterBits;
  const coverage = cs * l2Entries(h.clusterBits);
  const needL1 = Math.ceil(h.size / coverage);
  if (h.size > 2 ** 53 - cs) throw new ImageLayoutError("SIZE_OVERFLOW", "virtual size too large", path);
  if (h.l1Size < needL1) throw new ImageLayoutError("BAD_HEADER", `L1 table has ${h.l1Size} entries, the disk needs ${needL1}`, path);
  const inFile = (off: number, len: number, what: string): void => {
    if (off % cs !== 0) throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `${what} offset ${off} is not cluster aligned`, path);
    if (off + len > fileSize || len > fileSize) {
      throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `${what} (${off}+${len}) lies outside the file (${fileSize} bytes)`, path);
    }
  };
  if (h.l1Size > 0) inFile(h.l1TableOffset, h.l1Size * 8, "L1 table");
  if (h.refcountTableClusters === 0) throw new ImageLayoutError("BAD_HEADER", "no refcount table", path);
  inFile(h.refcountTableOffset, h.refcountTableClusters * cs, "refcount table");
  const regions: [string, number, number][] = [
    ["header", 0, cs],
    ["L1 table", h.l1TableOffset, h.l1Size * 8],
    ["refcount table", h.refcountTableOffset, h.refcountTableClusters * cs],
  ];
  if (h.nbSnapshots > 0) {
    if (h.nbSnapshots > 65536) throw new ImageLayoutError("BAD_HEADER", `${h.nbSnapshots} snapshots is too many`, path);
    inFile(h.snapshotsOffset, h.nbSnapshots * 40, "snapshot table");
    regions.push(["snapshot table", h.snapshotsOffset, h.nbSnapshots * 40]);
  }
  for (let i = 0; i < regions.length; i++) {
    for (let j = i + 1; j < regions.length; j++) {
      const [an, ao, al] = regions[i]!;
      const [bn, bo, bl] = regions[j]!;
      if (al > 0 && bl > 0 && overlaps(ao, al, bo, bl)) {
        throw new ImageLayoutError("OVERLAPPING_TABLES", `${an} overlaps ${bn}`, path);
      }
    }
  }
}

function readExtensions(h: Qcow2Header, head: Uint8Array, v: DataView, path: string): void {
  const cs = 2 ** h.clusterBits;
  const backingOffset = v.getBigUint64(8);
  let end = Math.min(cs, head.length);
  if (backingOffset > 0n && backingOffset < BigInt(end)) end = Number(backingOffset);
  let at = h.headerLength;
  while (at + 8 <= end) {
    const type = v.getUint32(at);
    const len = v.getUint32(at + 4);
    if (type === EXT_END) return;
    if (at + 8 + len > end) throw new ImageFormatError("BAD_HEADER", `header extension 0x${type.toString(16)} runs past the header`, path);
    const data = head.slice(at + 8, at + 8 + len);
    if (type === EXT_BACKING_FORMAT) {
      h.backingFormatRaw = new TextDecoder().decode(data).replace(/\0+$/, "");
      h.backingFormat = formatFromName(h.backingFormatRaw);
    } else if (type !== EXT_FEATURE_NAMES) {
      h.extensions.push({ type, data });
    }
    at += 8 + Math.ceil(len / 8) * 8;
  }
}

function readBackingName(h: Qcow2Header, head: Uint8Array, v: DataView, path: string): void {
  const cs = 2 ** h.clusterBits;
  const offset = v.getBigUint64(8);
  if (offset === 0n) return;
  const len = v.getUint32(16);
  if (len === 0) return;
  if (len > 1023) throw new ImageFormatError("BAD_HEADER", `backing file name of ${len} bytes is too long`, path);
  if (offset + BigInt(len) > BigInt(Math.min(cs, head.length))) {
    throw new ImageFormatError("BAD_HEADER", "backing file name lies outside the header cluster", path);
  }
  const at = Number(offset);
  h.backingFile = new TextDecoder().decode(head.subarray(at, at + len));
}

/**
 * Serialise the header, its extensions and the backing file name into one cluster.
 * Throws BAD_ARGUMENT-style errors if they do not fit.
 */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  const cs = 2 ** h.clusterBits;
  const out = new Uint8Array(cs);
  const v = viewOf(out);
  v.setUint32(0, QCOW2_MAGIC);
  v.setUint32(4, h.version);
  v.setUint32(20, h.clusterBits);
  v.setBigUint64(24, BigInt(h.size));
  v.setUint32(36, h.l1Size);
  v.setBigUint64(40, BigInt(h.l1TableOffset));
  v.setBigUint64(48, BigInt(h.refcountTableOffset));
  v.setUint32(56, h.refcountTableClusters);
  v.setUint32(60, h.nbSnapshots);
  v.setBigUint64(64, BigInt(h.snapshotsOffset));
  let at = 72;
  if (h.version === 3) {
    v.setUint32(76, h.incompatible);
    v.setUint32(84, h.compatible);
    v.setUint32(92, h.autoclear);
    v.setUint32(96, h.refcountOrder);
    v.setUint32(100, 104);
    at = 104;
  }
  const enc = new TextEncoder();
  const put = (type: number, data: Uint8Array): void => {
    if (at + 8 + data.length + 8 > cs) throw new ImageLayoutError("BAD_HEADER", "header extensions do not fit in one cluster");
    v.setUint32(at, type);
    v.setUint32(at + 4, data.length);
    out.set(data, at + 8);
    at += 8 + Math.ceil(data.length / 8) * 8;
  };
  if (h.backingFile !== null && h.backingFormat !== null) put(EXT_BACKING_FORMAT, enc.encode(h.backingFormat));
  for (const ext of h.extensions) put(ext.type, ext.data);
  at += 8; // end-of-extensions marker (zeros)
  if (h.backingFile !== null) {
    const name = enc.encode(h.backingFile);
    if (name.length > 1023 || at + name.length > cs) {
      throw new ImageLayoutError("BAD_HEADER", "backing file name does not fit in the header cluster");
    }
    out.set(name, at);
    v.setBigUint64(8, BigInt(at));
    v.setUint32(16, name.length);
  }
  return out;
}
