// VHD footer and dynamic-disk header: layouts, checksums, CHS geometry and the virtual-size rule.
import { u64, viewOf } from "../bytes.js";
import { ImageArgumentError, ImageFormatError, ImageLayoutError, ImageUnsupportedError } from "../errors.js";

/** Creator application we write; our images are sized by current_size (and CHS-exact where possible). */
export const CREATOR_APP = "hvts";
export const FOOTER_SIZE = 512;
export const DYN_HEADER_SIZE = 1024;
export const DISK_FIXED = 2;
export const DISK_DYNAMIC = 3;
export const DISK_DIFFERENCING = 4;
/** Seconds between the Unix epoch and the VHD epoch (2000-01-01 UTC). */
export const VHD_EPOCH = 946684800;
/** Largest CHS geometry: 65535 cylinders, 16 heads, 255 sectors per track. */
export const MAX_CHS_SECTORS = 65535 * 16 * 255;
/** Largest VHD, 2040 GiB. */
export const MAX_VHD_BYTES = 0xff000000 * 512;

export interface Geometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export interface VhdFooter {
  dataOffset: number | null;
  timestamp: number;
  creatorApp: string;
  originalSize: number;
  currentSize: number;
  geometry: Geometry;
  diskType: number;
  uniqueId: Uint8Array;
  /** Size of the virtual disk in bytes, after the CHS-versus-current-size rule. */
  virtualSize: number;
}

export interface DynamicHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
  parentUniqueId: Uint8Array;
  parentTimestamp: number;
  parentName: string;
  locators: { code: string; dataSpace: number; dataLength: number; dataOffset: number }[];
}

/** One's complement of the byte sum, skipping the checksum field at `skip`. */
export function vhdChecksum(bytes: Uint8Array, skip: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) if (i < skip || i >= skip + 4) sum += bytes[i]!;
  return ~sum >>> 0;
}

const text = (bytes: Uint8Array): string => String.fromCharCode(...bytes);

/** Geometry for a disk of `sectors` sectors, per the VHD specification (appendix). */
export function geometryFor(sectors: number): Geometry {
  const total = Math.min(sectors, MAX_CHS_SECTORS);
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.max(4, Math.floor((cth + 1023) / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt };
}

/**
 * Size a new disk like qemu-img: round up until the CHS geometry covers it, so readers that use
 * the geometry (Virtual PC, QEMU) see the same size. Disks beyond CHS keep their exact size.
 */
export function sizeForCreate(bytes: number): { size: number; geometry: Geometry } {
  const sectors = Math.ceil(bytes / 512);
  if (sectors * 512 > MAX_VHD_BYTES) throw new ImageArgumentError("SIZE_OVERFLOW", `VHD images are limited to 2040 GiB`);
  if (sectors > MAX_CHS_SECTORS - 1) return { size: sectors * 512, geometry: { cylinders: 65535, heads: 16, sectorsPerTrack: 255 } };
  for (let i = 0; ; i++) {
    const g = geometryFor(sectors + i);
    const chs = g.cylinders * g.heads * g.sectorsPerTrack;
    if (chs >= sectors) return { size: chs * 512, geometry: g };
  }
}

export function parseFooter(bytes: Uint8Array, path: string): VhdFooter {
  const v = viewOf(bytes);
  if (text(bytes.subarray(0, 8)) !== "conectix") throw new ImageFormatError("BAD_MAGIC", "no VHD footer (cookie 'conectix')", path);
  if (v.getUint32(64) !== vhdChecksum(bytes, 64)) throw new ImageFormatError("BAD_CHECKSUM", "VHD footer checksum mismatch", path);
  const diskType = v.getUint32(60);
  if (diskType !== DISK_FIXED && diskType !== DISK_DYNAMIC && diskType !== DISK_DIFFERENCING) {
    throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `VHD disk type ${diskType} is not supported`, path);
  }
  const rawOffset = v.getBigUint64(16);
  const wrap = (at: number, what: string): number => {
    try {
      return u64(v, at, false, what);
    } catch {
      throw new ImageLayoutError("SIZE_OVERFLOW", `${what} is too large`, path);
    }
  };
  const currentSize = wrap(48, "current size");
  const geometry = { cylinders: v.getUint16(56), heads: v.getUint8(58), sectorsPerTrack: v.getUint8(59) };
  const creatorApp = text(bytes.subarray(28, 32));
  const chsSectors = geometry.cylinders * geometry.heads * geometry.sectorsPerTrack;
  // Virtual PC and QEMU size disks by geometry; Hyper-V and most others by current_size.
  const useCurrent = ["win ", "qem2", "d2v ", "CTXS", "tap\0", CREATOR_APP].includes(creatorApp) || chsSectors === MAX_CHS_SECTORS;
  const virtualSize = useCurrent ? Math.floor(currentSize / 512) * 512 : chsSectors * 512;
  if (virtualSize > MAX_VHD_BYTES) throw new ImageLayoutError("SIZE_OVERFLOW", `VHD size ${virtualSize} exceeds 2040 GiB`, path);
  return {
    dataOffset: rawOffset === 0xffffffffffffffffn ? null : wrap(16, "data offset"),
    timestamp: v.getUint32(24),
    creatorApp,
    originalSize: wrap(40, "original size"),
    currentSize,
    geometry,
    diskType,
    uniqueId: bytes.slice(68, 84),
    virtualSize,
  };
}

export function serializeFooter(f: VhdFooter): Uint8Array {
  const out = new Uint8Array(FOOTER_SIZE);
  const v = viewOf(out);
  out.set([..."conectix"].map((c) => c.charCodeAt(0)), 0);
  v.setUint32(8, 2);
  v.setUint32(12, 0x00010000);
  v.setBigUint64(16, f.dataOffset === null ? 0xffffffffffffffffn : BigInt(f.dataOffset));
  v.setUint32(24, f.timestamp);
  out.set([...f.creatorApp.padEnd(4).slice(0, 4)].map((c) => c.charCodeAt(0)), 28);
  v.setUint32(32, 0x00010000);
  out.set([..."Wi2k"].map((c) => c.charCodeAt(0)), 36);
  v.setBigUint64(40, BigInt(f.originalSize));
  v.setBigUint64(48, BigInt(f.currentSize));
  v.setUint16(56, f.geometry.cylinders);
  v.setUint8(58, f.geometry.heads);
  v.setUint8(59, f.geometry.sectorsPerTrack);
  v.setUint32(60, f.diskType);
  out.set(f.uniqueId.subarray(0, 16), 68);
  v.setUint32(64, vhdChecksum(out, 64));
  return out;
}

export function parseDynamicHeader(bytes: Uint8Array, fileSize: number, path: string): DynamicHeader {
  const v = viewOf(bytes);
  if (text(bytes.subarray(0, 8)) !== "cxsparse") throw new ImageFormatError("BAD_MAGIC", "no VHD dynamic header (cookie 'cxsparse')", path);
  if (v.getUint32(36) !== vhdChecksum(bytes, 36)) throw new ImageFormatError("BAD_CHECKSUM", "VHD dynamic header checksum mismatch", path);
  const big = v.getBigUint64(16);
  if (big > BigInt(fileSize)) throw new ImageLayoutError("OUT_OF_BOUNDS_TABLE", `BAT offset ${big} lies outside the file`, path);
  const blockSize = v.getUint32(32);
  if (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0 || blockSize > 2 ** 28) {
    throw new ImageLayoutError("BAD_CLUSTER_SIZE", `VHD block size ${blockSize} must be a power of two between 512 and 256 MiB`, path);
  }
  const locators: DynamicHeader["locators"] = [];
  for (let i = 0; i < 8; i++) {
    const at = 576 + i * 24;
    const code = text(bytes.subarray(at, at + 4));
    if (v.getUint32(at) === 0) continue;
    const off = v.getBigUint64(at + 16);
    if (off > BigInt(fileSize)) continue;
    locators.push({ code, dataSpace: v.getUint32(at + 4), dataLength: v.getUint32(at + 8), dataOffset: Number(off) });
  }
  const nameBytes = bytes.subarray(64, 576);
  let parentName = "";
  for (let i = 0; i + 1 < nameBytes.length; i += 2) {
    const ch = (nameBytes[i]! << 8) | nameBytes[i + 1]!;
    if (ch === 0) break;
    parentName += String.fromCharCode(ch);
  }
  return {
    tableOffset: Number(big),
    maxTableEntries: v.getUint32(28),
    blockSize,
    parentUniqueId: bytes.slice(40, 56),
    parentTimestamp: v.getUint32(56),
    parentName,
    locators,
  };
}

export function serializeDynamicHeader(h: DynamicHeader): Uint8Array {
  const out = new Uint8Array(DYN_HEADER_SIZE);
  const v = viewOf(out);
  out.set([..."cxsparse"].map((c) => c.charCodeAt(0)), 0);
  v.setBigUint64(8, 0xffffffffffffffffn);
  v.setBigUint64(16, BigInt(h.tableOffset));
  v.setUint32(24, 0x00010000);
  v.setUint32(28, h.maxTableEntries);
  v.setUint32(32, h.blockSize);
  out.set(h.parentUniqueId.subarray(0, 16), 40);
  v.setUint32(56, h.parentTimestamp);
  for (let i = 0; i < Math.min(255, h.parentName.length); i++) v.setUint16(64 + i * 2, h.parentName.charCodeAt(i));
  h.locators.slice(0, 8).forEach((loc, i) => {
    const at = 576 + i * 24;
    out.set([...loc.code].map((c) => c.charCodeAt(0)), at);
    v.setUint32(at + 4, loc.dataSpace);
    v.setUint32(at + 8, loc.dataLength);
    v.setBigUint64(at + 16, BigInt(loc.dataOffset));
  });
  v.setUint32(36, vhdChecksum(out, 36));
  return out;
}

/** Seconds since the VHD epoch, for footers and parent timestamps. */
export function vhdNow(): number {
  return Math.max(0, Math.floor(Date.now() / 1000) - VHD_EPOCH) >>> 0;
}
