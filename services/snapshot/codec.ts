// Compression of sections and RAM chunks: Brotli from node:zlib, the fastest codec it offers.
//
// Measured on this machine (64 KiB chunks): Brotli quality 0 with a 64 KiB window compresses
// random pages at ~700 MB/s and text at ~300 MB/s (ratio 0.28); deflateRaw level 1 managed
// ~55 and ~125 MB/s for about the same ratio. A 128 MiB save must fit in 500 ms.
import zlib from "node:zlib";
import { describeThrown, refuse } from "./errors.js";

/** How a section (or every chunk of the ram section) is stored. */
export type Compression = "none" | "brotli";
export const COMPRESSIONS: readonly Compression[] = ["none", "brotli"];

const P = zlib.constants;

/** RAM chunks: speed first. The window matches the largest chunk the writer makes (64 KiB). */
export function compressChunk(raw: Uint8Array): Uint8Array {
  return zlib.brotliCompressSync(raw, {
    params: { [P.BROTLI_PARAM_QUALITY]: 0, [P.BROTLI_PARAM_LGWIN]: 16, [P.BROTLI_PARAM_SIZE_HINT]: raw.length },
  });
}

/** Metadata sections are small (ROMs are the largest part): a better ratio costs little. */
export function compressSection(raw: Uint8Array): Uint8Array {
  return zlib.brotliCompressSync(raw, { params: { [P.BROTLI_PARAM_QUALITY]: 5, [P.BROTLI_PARAM_SIZE_HINT]: raw.length } });
}

/**
 * Decompresses untrusted data that must come out exactly `decodedBytes` long. The output is capped
 * at that size, so a decompression bomb costs no more than the size the file declared (which the
 * caller has already bounded).
 */
export function decompress(stored: Uint8Array, decodedBytes: number, section: string, field: string): Uint8Array {
  let out: Uint8Array;
  try {
    out = zlib.brotliDecompressSync(stored, { maxOutputLength: Math.max(1, decodedBytes) });
  } catch (err) {
    return refuse(section, field, `the compressed data does not decompress (${describeThrown(err)})`);
  }
  if (out.length !== decodedBytes) refuse(section, field, `decompresses to ${out.length} bytes, not the ${decodedBytes} declared`);
  return out;
}
