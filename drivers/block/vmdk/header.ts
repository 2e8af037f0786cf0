// VMDK hosted sparse extent header (KDMV): layout, validation and serialisation.
import { u64, viewOf } from "../bytes.js";
import { ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";

export const SPARSE_MAGIC = 0x564d444b; // "KDMV" little-endian
export const FLAG_NL_TEST = 1;
export const FLAG_REDUNDANT = 2;
export const FLAG_ZERO_GRAIN = 4;
export const FLAG_COMPRESSED = 1 << 16;
export const FLAG_MARKERS = 1 << 17;
export const GD_AT_END = 0xffffffffffffffffn;
/**
 * Most grain tables (grain directory entries) an extent may have, as in qemu ("L1 size too big"):
 * the directory is read whole on open. At the default geometry (64 KiB grains, 512 entries per
 * table) this is a 1 PiB disk with a 128 MiB directory.
 */
export const MAX_GRAIN_TABLES = 2 ** 25;

export interface SparseHeader {
  version: number;
  flags: number;
  /** Sizes in sectors, as stored. */
  capacity: number;
  grainSize: number;
  descriptorOffset: number;
  descriptorSize: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  gdOffset: number;
  overhead: number;
  compressAlgorithm: number;
}

export function parseSparseHeader(bytes: Uint8Array, path: string): SparseHeader & { gdAtEnd: boolean } {
  const v = viewOf(bytes);
  if (bytes.length < 512) throw new ImageFormatError("TRUNCATED", "file too short for a VMDK sparse header", path);
  if (v.getUint32(0, true) !== SPARSE_MAGIC) throw new ImageFormatError("BAD_MAGIC", "not a VMDK sparse extent", path);
  const version = v.getUint32(4, true);
  if (version < 1 || version > 3) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `VMDK sparse version ${version}`, path);
  const num = (at: number, what: string): number => {
    try {
      return u64(v, at, true, what);
    } catch {
      throw new ImageLayoutError("SIZE_OVERFLOW", `${what} is too large`, path);
    }
  };
  const h = {
    version,
    flags: v.getUint32(8, true),
    capacity: num(12, "capacity"),
    grainSize: num(20, "grain size"),
    descriptorOffset: num(28, "descriptor offset"),
    descriptorSize: num(36, "descriptor size"),
    numGTEsPerGT: v.getUint32(44, true),
    rgdOffset: num(48, "redundant grain directory offset"),
    gdAtEnd: v.getBigUint64(56, true) === GD_AT_END,
    gdOffset: 0,
    overhead: num(64, "overhead"),
    compressAlgorithm: v.getUint16(77, true),
  };
  if (!h.gdAtEnd) h.gdOffset = num(56, "grain directory offset");
  if (h.grainSize < 1 || h.grainSize > 2048 || (h.grainSize & (h.grainSize - 1)) !== 0) {
    throw new ImageLayoutError("BAD_CLUSTER_SIZE", `grain size of ${h.grainSize} sectors is invalid`, path);
  }
  if (h.numGTEsPerGT < 1 || h.numGTEsPerGT > 8192) throw new ImageLayoutError("BAD_HEADER", `${h.numGTEsPerGT} entries per grain table`, path);
  if (h.capacity * 512 > 2 ** 53 - 2 ** 21) throw new ImageLayoutError("SIZE_OVERFLOW", "capacity too large", path);
  if ((h.flags & FLAG_COMPRESSED) && h.compressAlgorithm !== 1) {
    throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `VMDK compression algorithm ${h.compressAlgorithm}`, path);
  }
  return h;
}

export function serializeSparseHeader(h: SparseHeader): Uint8Array {
  const out = new Uint8Array(512);
  const v = viewOf(out);
  v.setUint32(0, SPARSE_MAGIC, true);
  v.setUint32(4, h.version, true);
  v.setUint32(8, h.flags, true);
  v.setBigUint64(12, BigInt(h.capacity), true);
  v.setBigUint64(20, BigInt(h.grainSize), true);
  v.setBigUint64(28, BigInt(h.descriptorOffset), true);
  v.setBigUint64(36, BigInt(h.descriptorSize), true);
  v.setUint32(44, h.numGTEsPerGT, true);
  v.setBigUint64(48, BigInt(h.rgdOffset), true);
  v.setBigUint64(56, BigInt(h.gdOffset), true);
  v.setBigUint64(64, BigInt(h.overhead), true);
  out.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  v.setUint16(77, h.compressAlgorithm, true);
  return out;
}
