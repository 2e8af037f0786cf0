// Byte helpers for image metadata: checked 64-bit reads, alignment and zero detection.
import { ImageLayoutError } from "./errors.js";

/** Largest byte count we handle exactly (JS numbers are doubles). */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Read a u64 as a number; values beyond 2^53 are refused as SIZE_OVERFLOW. */
export function u64(view: DataView, at: number, littleEndian: boolean, what: string): number {
  const v = view.getBigUint64(at, littleEndian);
  if (v > BigInt(MAX_SAFE)) throw new ImageLayoutError("SIZE_OVERFLOW", `${what} is too large (${v})`);
  return Number(v);
}

/** Write a non-negative integer number as u64. */
export function setU64(view: DataView, at: number, value: number, littleEndian: boolean): void {
  view.setBigUint64(at, BigInt(value), littleEndian);
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;
export const alignDown = (n: number, a: number): number => Math.floor(n / a) * a;

const ZERO_CHUNK = Buffer.alloc(64 * 1024);

/** True when every byte of `bytes` is zero (native memcmp in 64 KiB steps). */
export function isZero(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < buf.length; at += ZERO_CHUNK.length) {
    const end = Math.min(buf.length, at + ZERO_CHUNK.length);
    if (buf.compare(ZERO_CHUNK, 0, end - at, at, end) !== 0) return false;
  }
  return true;
}

/** The one WebAssembly constructor used (lib ES2022 declares no WebAssembly values). */
const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (pages: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } }).WebAssembly;

/**
 * A zeroed buffer that starts on a page, as O_DIRECT reads want (HostFile.readBulk). Where an
 * ArrayBuffer lands is up to the allocator (glibc's malloc aligns to 16 bytes); a WebAssembly
 * memory is mapped in whole pages, so it starts on one. Were that ever not so, direct reads refuse
 * the buffer and the reads fall back to buffered ones: only speed depends on it.
 */
export function alignedBuffer(length: number): Uint8Array {
  const pages = Math.max(1, Math.ceil(length / 65536));
  return new Uint8Array(new wasm.Memory({ initial: pages, maximum: pages }).buffer, 0, length);
}

/** True when [a, a+alen) and [b, b+blen) share a byte. */
export function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen;
}

/** Parse a size such as 512, 64K, 10M, 2G, 1T (binary units); undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgtpe]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = { "": 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 }[
    m[2]!.toLowerCase()
  ]!;
  const value = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Human-readable binary size, like qemu-img (e.g. "4 MiB", "1.5 GiB"). */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${bytes} B`;
  return `${Number.isInteger(v) ? v : v.toFixed(3).replace(/0+$/, "")} ${units[i]}`;
}
