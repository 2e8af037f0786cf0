// Random x87 test cases: initial register stack (normals, denormals, pseudo-denormals, unnormals,
// NaNs, infinities, zeros, pseudo-NaN/infinity), control word (masks, PC, RC), operands in memory
// and a short sequence of x87 instructions over them.
import { x87Mnemonic } from "../../../vmm/x86/fpu/table.js";
import { CASE_DATA_SIZE, type FpuCase, IMAGE_SIZE } from "./case.js";

/** Deterministic PRNG (mulberry32). */
export class Rng {
  constructor(private state: number) {}
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  u32(): number {
    return (this.int(0x10000) << 16) | this.int(0x10000);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

export function randomSignificand(r: Rng): bigint {
  switch (r.int(6)) {
    case 0: return 0xffffffffffffffffn;
    case 1: return 1n << BigInt(r.int(64));
    case 2: { // few significant bits: exercises precision-control ties
      const bits = 1 + r.int(30);
      return (BigInt(r.u32()) & ((1n << BigInt(bits)) - 1n)) << BigInt(64 - bits);
    }
    case 3: return (BigInt(r.u32()) << 32n) | 0x80000000n | BigInt(r.int(2));
    default: return (BigInt(r.u32()) << 32n) | BigInt(r.u32());
  }
}

/** A random 80-bit value as [sign|exponent, significand]. */
export function randomExtended(r: Rng): [number, bigint] {
  const sign = r.chance(0.5) ? 0x8000 : 0;
  const sig = randomSignificand(r);
  const J = 1n << 63n;
  switch (r.int(20)) {
    case 0: return [sign, 0n];
    case 1: return [sign | 0x7fff, J];
    case 2: return [sign | 0x7fff, J | (1n << 62n) | (sig & ((1n << 62n) - 1n))]; // QNaN
    case 3: return [sign | 0x7fff, J | ((sig & ((1n << 62n) - 1n)) || 1n)]; // SNaN
    case 4: return [sign, (sig & ~J) || 1n]; // denormal
    case 5: return [sign, sig | J]; // pseudo-denormal
    case 6: return [sign | (1 + r.int(0x7ffe)), sig & ~J]; // unnormal
    case 7: return [sign | 0x7fff, sig & ~J]; // pseudo-NaN / pseudo-infinity
    case 8: return [0xffff, 0xc000000000000000n];
    case 9: return [sign | (r.chance(0.5) ? 1 + r.int(70) : 0x7ffe - r.int(70)), sig | J]; // extremes
    case 10: return [sign | (0x3fff + r.int(64)), sig | J]; // integers and large
    default: return [sign | (0x3fff - 40 + r.int(80)), sig | J];
  }
}

function putExtended(b: Uint8Array, at: number, [se, m]: [number, bigint]): void {
  let v = m;
  for (let k = 0; k < 8; k++) {
    b[at + k] = Number(v & 0xffn);
    v >>= 8n;
  }
  b[at + 8] = se & 0xff;
  b[at + 9] = se >> 8;
}

/** Random memory operand bytes (16-byte slot) of a kind: f32, f64, f80, int, BCD. */
function fillSlot(r: Rng, b: Uint8Array, at: number): void {
  const kind = r.int(6);
  const view = new DataView(b.buffer, b.byteOffset);
  if (kind === 0) {
    // float32 with special patterns
    const sign = r.chance(0.5) ? 0x80000000 : 0;
    const e = r.pick([0, 0xff, 1, 0xfe, 127, 100 + r.int(60), r.int(256)]);
    const f = r.pick([0, 1, 0x400000, 0x7fffff, r.int(0x800000)]);
    view.setUint32(at, (sign | (e << 23) | f) >>> 0, true);
  } else if (kind === 1) {
    const sign = r.chance(0.5) ? 0x80000000 : 0;
    const e = r.pick([0, 0x7ff, 1, 0x7fe, 1023, 1000 + r.int(60), r.int(0x800)]);
    const hi = r.pick([0, 1, 0x80000, 0xfffff, r.int(0x100000)]);
    view.setUint32(at + 4, (sign | (e << 20) | hi) >>> 0, true);
    view.setUint32(at, r.pick([0, 1, 0xffffffff, r.u32()]) >>> 0, true);
  } else if (kind === 2) {
    putExtended(b, at, randomExtended(r));
  } else if (kind === 3) {
    const v = r.pick([0, 1, -1, 0x7fff, -0x8000, 0x7fffffff, -0x80000000, r.u32() | 0, r.int(1000) - 500]);
    view.setInt32(at, v, true);
    view.setInt32(at + 4, r.pick([0, -1, r.u32() | 0, v < 0 ? -1 : 0]), true);
  } else if (kind === 4) {
    // packed BCD (valid digits)
    for (let k = 0; k < 9; k++) b[at + k] = r.chance(0.3) ? 0 : r.int(10) * 16 + r.int(10);
    b[at + 9] = r.chance(0.5) ? 0x80 : 0;
  } else {
    for (let k = 0; k < 16; k++) b[at + k] = r.int(256);
  }
}

const MEM_SLOTS = 8; // slots 0-7 at [ebx + 16 * k]; the state area for FNSAVE/FRSTOR at +128

function memoryOperand(r: Rng, reg: number, opcode: number, slot?: number): number[] {
  const disp = (slot ?? r.int(MEM_SLOTS)) * 16;
  return [opcode, 0x80 | (reg << 3) | 3, disp, 0, 0, 0];
}

/** Opcode bytes of one random instruction (no transcendental). */
function randomInstruction(r: Rng): number[] {
  const roll = r.int(100);
  if (roll < 40) {
    // register forms D8-DF
    const op = 0xd8 + r.int(8);
    let modrm = 0xc0 + r.int(64);
    if (op === 0xd9 && modrm >= 0xf0) {
      // only the non-transcendental ones: FXTRACT FPREM1 FDECSTP FINCSTP FPREM FSQRT FRNDINT FSCALE
      modrm = r.pick([0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xfa, 0xfc, 0xfd]);
    }
    if (op === 0xdb && modrm === 0xe3 && r.chance(0.8)) modrm = 0xe2;
    // D9 D8+i (FSTP1, an FSTP alias on Intel) behaves differently on AMD hosts: not compared.
    if (op === 0xd9 && modrm >= 0xd8 && modrm <= 0xdf) modrm -= 0x18;
    return [op, modrm];
  }
  if (roll < 80) {
    // arithmetic/compare/load/store with memory
    const op = 0xd8 + r.int(8);
    let reg = r.int(8);
    if (op === 0xd9 && (reg === 4 || reg === 6)) reg = 0; // FLDENV/FNSTENV: separate
    if (op === 0xdd && (reg === 4 || reg === 6)) reg = 2;
    if (reg === 1 && op !== 0xd9 && (op & 1) === 1) reg = 3; // FISTTP is SSE3, not P6
    return memoryOperand(r, reg, op);
  }
  if (roll < 86) return [0x9b]; // FWAIT
  if (roll < 90) return [0xd9, 0xe8 + r.int(7)]; // constants
  if (roll < 93) return [0xdf, 0xe0]; // FNSTSW AX
  if (roll < 95) return memoryOperand(r, 5, 0xd9); // FLDCW from a slot
  if (roll < 97) return [0xd9, 0xb3, 128, 0, 0, 0]; // FNSTENV [ebx+128]
  if (roll < 98) return [0xdd, 0xb3, 128, 0, 0, 0]; // FNSAVE [ebx+128]
  if (roll < 99) return [0xd9, 0xa3, 128, 0, 0, 0]; // FLDENV [ebx+128]
  return [0xdd, 0xa3, 128, 0, 0, 0]; // FRSTOR [ebx+128]
}

const TRANSCENDENTAL_MODRM = [0xf0, 0xf1, 0xf2, 0xf3, 0xf9, 0xfb, 0xfe, 0xff];

/** A finite operand suitable for a transcendental (in its architectural range, mostly). */
function transcendentalOperand(r: Rng, modrm: number): [number, bigint] {
  if (r.chance(0.15)) {
    // Special operands; F2XM1 and FYL2XP1 are undefined outside their ranges, so only
    // non-finite, zero and denormal values there.
    for (;;) {
      const v = randomExtended(r);
      const e = v[0] & 0x7fff;
      if ((modrm !== 0xf0 && modrm !== 0xf9) || e === 0 || e === 0x7fff || e < 0x3fff - 2) return v;
    }
  }
  const sign = r.chance(0.5) ? 0x8000 : 0;
  const sig = randomSignificand(r) | (1n << 63n);
  switch (modrm) {
    case 0xf0: return [sign | (0x3fff - 1 - r.int(70)), sig]; // F2XM1: |x| < 1
    case 0xf9: return [sign | (0x3fff - 2 - r.int(70)), sig]; // FYL2XP1: |x| < 0.29
    case 0xf1: return [0x3fff - 100 + r.int(200), sig]; // FYL2X: x > 0
    default: return [sign | (0x3fff - 30 + r.int(60)), sig]; // trig/FPATAN: |x| < 2^30
  }
}

export function imageFor(r: Rng, cw: number, regs: [number, bigint][], emptyMask: number, top: number): Uint8Array {
  const b = new Uint8Array(IMAGE_SIZE);
  const view = new DataView(b.buffer);
  view.setUint32(0, (0xffff0000 | cw) >>> 0, true);
  view.setUint32(4, (0xffff0000 | (top << 11)) >>> 0, true);
  let tw = 0;
  for (let p = 0; p < 8; p++) if ((emptyMask >> p) & 1) tw |= 3 << (2 * p);
  view.setUint32(8, (0xffff0000 | tw) >>> 0, true);
  view.setUint32(24, 0xffff0000, true);
  for (let st = 0; st < 8; st++) putExtended(b, 28 + 10 * st, regs[st]);
  void r;
  return b;
}

function randomControlWord(r: Rng): number {
  const masks = r.chance(0.75) ? 0x3f : r.int(64);
  const pc = r.pick([0, 2, 3, 3, 1]);
  const rc = r.int(4);
  return 0x40 | masks | (pc << 8) | (rc << 10);
}

export function describe(code: number[]): string {
  const out: string[] = [];
  let k = 0;
  while (k < code.length) {
    let b = code[k];
    if (b === 0x9b) {
      out.push("fwait");
      k++;
      continue;
    }
    const modrm = code[k + 1];
    const len = modrm >= 0xc0 ? 2 : 6;
    out.push(x87Mnemonic(b, modrm) + (modrm < 0xc0 ? ` [ebx+${code[k + 2]}]` : ""));
    b = 0;
    k += len;
  }
  return out.join("; ");
}

/** Case `index` of the stream seeded by `seed`. */
export function generateCase(seed: number, index: number): FpuCase {
  const r = new Rng((seed * 0x9e3779b1) ^ (index * 0x85ebca6b) ^ 0x5bd1e995);
  const regs: [number, bigint][] = [];
  for (let k = 0; k < 8; k++) regs.push(randomExtended(r));
  let emptyMask = 0;
  for (let p = 0; p < 8; p++) if (r.chance(0.3)) emptyMask |= 1 << p;
  const top = r.int(8);
  const cw = randomControlWord(r);
  const data = new Uint8Array(CASE_DATA_SIZE);
  for (let s = 0; s < MEM_SLOTS; s++) fillSlot(r, data, 16 * s);
  for (let k = 128; k < CASE_DATA_SIZE; k++) data[k] = r.int(256);
  // A plausible environment at +128 for FLDENV/FRSTOR: a real control word, some tags.
  data[128] = 0x7f & (r.chance(0.5) ? 0xff : r.int(256));
  data[129] = r.int(16);
  const code: number[] = [];
  const approximate = r.chance(0.15);
  if (approximate) {
    const modrm = r.pick(TRANSCENDENTAL_MODRM);
    regs[0] = transcendentalOperand(r, modrm);
    regs[1] = modrm === 0xf3 || modrm === 0xf1 || modrm === 0xf9 ? regs[1] : regs[1];
    emptyMask &= ~((1 << top) | (1 << ((top + 1) & 7)));
    if (r.chance(0.7)) emptyMask |= 1 << ((top + 7) & 7);
    code.push(0xd9, modrm);
  } else {
    const n = 1 + r.int(6);
    for (let k = 0; k < n; k++) code.push(...randomInstruction(r));
  }
  const eflags = r.int(0x1000) & 0x8d5;
  const image = imageFor(r, approximate ? 0x7f | (r.int(4) << 10) | 0x300 : cw, regs, emptyMask, top);
  return { code: new Uint8Array(code), image, data, eflags, text: describe(code), approximate };
}
