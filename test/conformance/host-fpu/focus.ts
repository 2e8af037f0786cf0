// Focused x87 cases (`--focus prem`): FPREM, FPREM1, FSCALE and FXTRACT on denormal, tiny and
// near-underflow operands under masked and unmasked UE/DE/PE (and OE/IE/ZE), which the default
// generator reaches only rarely. A separate stream: the default generator is left as it is.
import { CASE_DATA_SIZE, type FpuCase } from "./case.js";
import { describe, imageFor, randomExtended, randomSignificand, Rng } from "./generator.js";

const J = 1n << 63n;
const BIAS = 16383;
type Value = [number, bigint];

const FPREM = 0xf8, FPREM1 = 0xf5, FSCALE = 0xfd, FXTRACT = 0xf4;

function sign(r: Rng): number {
  return r.chance(0.5) ? 0x8000 : 0;
}

/** A value at the bottom of the range: denormal, pseudo-denormal, tiny normal, zero or anything. */
function tinyValue(r: Rng): Value {
  const s = sign(r);
  const sig = randomSignificand(r);
  switch (r.int(10)) {
    case 0:
    case 1:
    case 2: return [s, (sig >> BigInt(1 + r.int(63))) || 1n]; // denormal of any length
    case 3: return [s, sig | J]; // pseudo-denormal
    case 4:
    case 5: return [s | (1 + r.int(80)), sig | J]; // tiny normal
    case 6: return [s | (1 + r.int(3)), J | BigInt(r.int(4))]; // at the smallest normals
    case 7: return [s, 0n];
    case 8: return [s | (BIAS - 40 + r.int(80)), sig | J];
    default: return randomExtended(r);
  }
}

/** Exponent of the leading one of a finite nonzero value (unbiased, denormals normalized). */
function leadExponent([se, m]: Value): number {
  return ((se & 0x7fff) || 1) - BIAS - 63 + m.toString(2).length - 1;
}

/** The integer n (|n| < 2^63) as an 80-bit value, with `fraction` random bits below its last bit. */
function integerValue(r: Rng, n: number, fraction: boolean): Value {
  if (n === 0 && !fraction) return [sign(r), 0n];
  const mag = BigInt(Math.abs(n));
  const neg = n < 0 ? 0x8000 : 0;
  if (mag === 0n) return [neg | (BIAS - 1 - r.int(4)), randomSignificand(r) | J];
  const len = mag.toString(2).length;
  let m = mag << BigInt(64 - len);
  if (fraction && len < 64) m |= randomSignificand(r) >> BigInt(len);
  return [neg | (BIAS + len - 1), m];
}

/** FPREM/FPREM1 operands whose remainder tends to be tiny or denormal. */
function remainderOperands(r: Rng): [Value, Value] {
  const b = r.chance(0.8) ? tinyValue(r) : randomExtended(r);
  const roll = r.int(10);
  if (roll < 2) return [tinyValue(r), b];
  if (roll < 3) return [tinyValue(r), [sign(r) | 0x7fff, J]]; // divisor infinity: the dividend stays
  const [bSe, bM] = b;
  const be = bSe & 0x7fff;
  if (be === 0x7fff || bM === 0n) return [tinyValue(r), b];
  // Dividend a few (or up to 70) binades above the divisor, often sharing its leading bits.
  const bLead = leadExponent(b);
  const up = r.pick([0, 0, 1, 2, 3, r.int(70), 63 + r.int(4)]);
  const lead = bLead + up;
  const biased = lead + BIAS;
  const norm = bM << BigInt(64 - bM.toString(2).length);
  let m = r.chance(0.5) ? norm ^ BigInt(r.int(256)) : (randomSignificand(r) | J);
  if (r.chance(0.2)) m = norm + 1n <= 0xffffffffffffffffn ? norm + 1n : norm - 1n;
  if (biased >= 1) return [[sign(r) | biased, m | J], b];
  // Below the normal range: a denormal of the same leading-bit position.
  const shift = 1 - biased;
  return [[sign(r), shift >= 64 ? 1n : (m | J) >> BigInt(shift) || 1n], b];
}

/** FSCALE operands whose result lands near or below the bottom of the range (or above the top). */
function scaleOperands(r: Rng): [Value, Value] {
  const a = r.chance(0.85) ? tinyValue(r) : randomExtended(r);
  const finite = (a[0] & 0x7fff) !== 0x7fff && a[1] !== 0n;
  const roll = r.int(10);
  let n: number;
  if (roll < 5 && finite) n = -(leadExponent(a) + BIAS - 1) + r.int(90) - 75; // to the bottom
  else if (roll < 6) n = r.int(140) - 20; // a denormal scaled up
  else if (roll < 7) n = -r.pick([32768, 32767, 40000, 16383 + r.int(30000), 24576, 24640 + r.int(64)]);
  else if (roll < 8 && finite) n = 16384 - leadExponent(a) + r.int(40) - 20; // to the top
  else if (roll < 9) return [a, tinyValue(r)]; // a tiny or denormal scale
  else n = r.int(200) - 100;
  return [a, integerValue(r, n, r.chance(0.3))];
}

function controlWord(r: Rng): number {
  let masks = 0x3f;
  if (r.chance(0.5)) masks &= ~0x10; // UE
  if (r.chance(0.35)) masks &= ~0x02; // DE
  if (r.chance(0.35)) masks &= ~0x20; // PE
  if (r.chance(0.15)) masks &= ~0x08; // OE
  if (r.chance(0.1)) masks &= ~0x01; // IE
  if (r.chance(0.1)) masks &= ~0x04; // ZE
  return 0x40 | masks | (r.pick([0, 2, 3, 3]) << 8) | (r.int(4) << 10);
}

/** Case `index` of the focused stream seeded by `seed`. */
export function generateFocusCase(seed: number, index: number): FpuCase {
  const r = new Rng((seed * 0x2545f491) ^ (index * 0x9e3779b9) ^ 0x1b873593);
  const op = r.pick([FPREM, FPREM1, FPREM, FPREM1, FSCALE, FSCALE, FXTRACT]);
  const regs: Value[] = [];
  for (let k = 0; k < 8; k++) regs.push(randomExtended(r));
  const [a, b] = op === FSCALE ? scaleOperands(r) : op === FXTRACT ? [tinyValue(r), tinyValue(r)] : remainderOperands(r);
  regs[0] = a;
  regs[1] = b;
  const top = r.int(8);
  let emptyMask = 0;
  for (let p = 0; p < 8; p++) if (r.chance(0.3)) emptyMask |= 1 << p;
  if (r.chance(0.97)) emptyMask &= ~((1 << top) | (1 << ((top + 1) & 7)));
  if (op === FXTRACT && r.chance(0.9)) emptyMask |= 1 << ((top + 7) & 7);
  const code = [0xd9, op];
  if (op !== FXTRACT && r.chance(0.3)) code.push(0xd9, op); // a second step (FPREM loops)
  if (r.chance(0.3)) code.push(0xdf, 0xe0); // FNSTSW AX
  if (r.chance(0.2)) code.push(0x9b); // FWAIT: an unmasked exception faults here
  const image = imageFor(r, controlWord(r), regs, emptyMask, top);
  return { code: new Uint8Array(code), image, data: new Uint8Array(CASE_DATA_SIZE), eflags: 0, text: describe(code), approximate: false };
}
