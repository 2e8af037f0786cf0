// Initial contents of the data area: an xorshift32 stream of dwords (the same as harness.c).
import { DATA_SIZE } from "./layout.js";

/** Fills `into` (DATA_SIZE bytes, 4-aligned) from `seed`; seed 0 means the golden-ratio constant. */
export function fillDataArea(seed: number, into: Uint8Array = new Uint8Array(DATA_SIZE)): Uint8Array {
  if (into.length % 4 !== 0 || into.byteOffset % 4 !== 0) throw new RangeError("data area must be 4-aligned");
  const words = new Uint32Array(into.buffer, into.byteOffset, into.length / 4);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return into;
}
