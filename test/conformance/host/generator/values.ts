// Operand values of the generator: edge values mixed with random ones.
import type { Prng } from "./prng.js";

const EDGES32 = [
  0, 1, 2, 0xffffffff, 0xfffffffe, 0x7fffffff, 0x80000000, 0x80000001, 0x7f, 0x80, 0xff, 0x100,
  0x7fff, 0x8000, 0xffff, 0x10000, 0xffff8000, 0xffffff80, 0x0f, 0x10, 0x99, 0x09, 0x55555555,
  0xaaaaaaaa,
];

/** A value of `size` bits (unsigned): an edge value, a power of two (±1) or random bits. */
export function value(r: Prng, size: 8 | 16 | 32): number {
  const mask = size === 32 ? 0xffffffff : (1 << size) - 1;
  const kind = r.below(10);
  let v: number;
  if (kind < 3) v = r.pick(EDGES32);
  else if (kind < 5) v = 2 ** r.below(size) + r.pick([0, 0, -1, 1]);
  else if (kind < 6) v = r.below(16);
  else if (kind < 7) v = -r.range(1, 16);
  else v = r.u32();
  if (size === 32) return v >>> 0;
  // narrow edge values keep their meaning: 0x7f.., 0x80.. of the narrow size
  if (kind < 3 && r.chance(0.5)) {
    const half = 1 << (size - 1);
    v = r.pick([0, 1, mask, half - 1, half, half + 1]);
  }
  return (v & mask) >>> 0;
}

/** An immediate of `size` bits as nasm text. */
export function imm(r: Prng, size: 8 | 16 | 32): string {
  return "0x" + value(r, size).toString(16);
}

/** An 8-bit count for shifts and rotates: the interesting edges around 0, 1, the width and 32. */
export function shiftCount(r: Prng, size: 8 | 16 | 32): number {
  const edges = [0, 1, 1, 2, size - 1, size, size + 1, 31, 32, 33, 63, 0xff, 0x80, size * 2];
  return r.chance(0.6) ? r.pick(edges) & 0xff : r.below(size + 2);
}
