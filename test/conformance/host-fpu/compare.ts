// Compares an emulated result with the host's: status, FSAVE image (the last instruction/operand
// pointer fields masked: see POINTER_BYTES), EFLAGS arithmetic flags, AX and operand memory.
import type { FpuCase, FpuResult } from "./case.js";

/**
 * Bytes 12-27 of the 32-bit image: FIP, FCS|FOP, FDP, FDS. Both sides run the code at the same
 * addresses with the same selectors, so they are compared whenever the host image comes from
 * FNSAVE. They are masked only after a fault: the host image is then the kernel's signal-frame
 * copy converted from XSAVE, which (on AMD) leaves the pointers out unless ES was set.
 */
export const POINTER_BYTES: readonly [number, number] = [12, 28];

const SW_C1 = 0x200;

function hex(b: Uint8Array, from: number, to: number): string {
  return Array.from(b.subarray(from, to), (v) => v.toString(16).padStart(2, "0")).join("");
}

function reg(image: Uint8Array, st: number): bigint {
  let v = 0n;
  for (let k = 9; k >= 0; k--) v = (v << 8n) | BigInt(image[28 + 10 * st + k]);
  return v;
}

/** Register values as ordered integers of the same sign: adjacent patterns differ by one ulp. */
function ulpDistance(a: bigint, b: bigint): bigint {
  const signA = a >> 79n, signB = b >> 79n;
  if (signA !== signB) return a === b ? 0n : 1n << 80n;
  // Exponent and significand concatenated compare like magnitudes (normal values).
  const ma = ((a >> 64n) & 0x7fffn) * (1n << 63n) + (a & ((1n << 63n) - 1n));
  const mb = ((b >> 64n) & 0x7fffn) * (1n << 63n) + (b & ((1n << 63n) - 1n));
  return ma > mb ? ma - mb : mb - ma;
}

/** The approximate value of an 80-bit register pattern as a double (0 for NaN/inf patterns). */
function approx(v: bigint): number {
  const se = Number(v >> 64n);
  const e = se & 0x7fff;
  if (e === 0x7fff) return 0;
  const m = Number(v & 0xffffffffffffffffn);
  return (se & 0x8000 ? -1 : 1) * m * 2 ** ((e || 1) - 16383 - 63);
}

const TRIG = new Set([0xf2, 0xfb, 0xfe, 0xff]);

/**
 * Ulps allowed between emulated and host results of a transcendental case. One ulp, plus for the
 * trigonometric instructions the error of the host's argument reduction with a finite pi (about
 * |x| * 2^-66 absolute; we allow 2^-62, amplified by 1 + tan^2 for FPTAN): the emulation reduces
 * exactly, real CPUs (the P6 with a 66-bit pi, AMD with its own) do not.
 */
function toleranceUlps(c: FpuCase, host: bigint): number {
  if (!TRIG.has(c.code[1])) return 1;
  const xe = (c.image[37] << 8 | c.image[36]) & 0x7fff;
  const re = Number((host >> 64n) & 0x7fffn) || 1;
  const r = approx(host);
  const gain = c.code[1] === 0xf2 ? 1 + r * r : 1;
  // |x| * 2^-62 in ulps of the result (2^(re - 16446)), with |x| < 2^(xe - 16382).
  return 1 + Math.ceil(2 ** (xe - re + 2) * gain);
}

/** Returns null when equal, else a description of the first difference. */
export function compareResults(c: FpuCase, emu: FpuResult, host: FpuResult): string | null {
  if (emu.status !== host.status || emu.offset !== host.offset) {
    return `status/offset emu ${emu.status}@${emu.offset} host ${host.status}@${host.offset}`;
  }
  const ie = emu.image, ih = host.image;
  const word = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
  if (word(ie, 0) !== word(ih, 0)) return `cw emu ${word(ie, 0).toString(16)} host ${word(ih, 0).toString(16)}`;
  const swMask = c.approximate ? ~SW_C1 & 0xffff : 0xffff;
  if ((word(ie, 4) & swMask) !== (word(ih, 4) & swMask)) return `sw emu ${word(ie, 4).toString(16)} host ${word(ih, 4).toString(16)}`;
  if (word(ie, 8) !== word(ih, 8)) return `tw emu ${word(ie, 8).toString(16)} host ${word(ih, 8).toString(16)}`;
  for (let st = 0; st < 8; st++) {
    const a = reg(ie, st), b = reg(ih, st);
    if (a === b) continue;
    if (c.approximate && Number(ulpDistance(a, b)) <= toleranceUlps(c, b)) continue;
    return `st(${st}) emu ${a.toString(16).padStart(20, "0")} host ${b.toString(16).padStart(20, "0")}`;
  }
  // All-zero pointers (selectors included) mean the host lost them in a context switch (AMD's
  // XRSTOR restores them only with ES set): nothing to compare then.
  const lost = ih.subarray(12, 24).every((b) => b === 0) && ih[24] === 0 && ih[25] === 0;
  // Zero selectors alone: the host lost FCS/FDS the same way; the offsets and opcode still count.
  const lostSelectors = word(ih, 16) === 0 && word(ih, 24) === 0;
  if (host.status === 0 && !lost) {
    for (let k = POINTER_BYTES[0]; k < POINTER_BYTES[1]; k++) {
      if (lostSelectors && (k === 16 || k === 17 || k === 24 || k === 25)) continue;
      if (ie[k] !== ih[k]) return `pointers emu ${hex(ie, 12, 28)} host ${hex(ih, 12, 28)}`;
    }
  }
  for (const at of [2, 6, 10]) {
    if (word(ie, at) !== word(ih, at)) return `reserved image word at ${at}: emu ${word(ie, at).toString(16)} host ${word(ih, at).toString(16)}`;
  }
  if (host.status === 0) {
    if ((emu.eflags & 0x8d5) !== (host.eflags & 0x8d5)) return `eflags emu ${(emu.eflags & 0x8d5).toString(16)} host ${(host.eflags & 0x8d5).toString(16)}`;
    if ((emu.eax & 0xffff) !== (host.eax & 0xffff)) return `ax emu ${(emu.eax & 0xffff).toString(16)} host ${(host.eax & 0xffff).toString(16)}`;
  }
  for (let k = 0; k < emu.data.length; k++) {
    if (emu.data[k] !== host.data[k]) {
      const from = k & ~15;
      return `memory +${k}: emu ${hex(emu.data, from, from + 16)} host ${hex(host.data, from, from + 16)}`;
    }
  }
  return null;
}
