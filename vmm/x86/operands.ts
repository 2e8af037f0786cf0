// Operand access for decoded instructions: ModRM r/m (register or memory) and reg operands in
// 8, 16 and 32 bits.

import type { Cpu } from "./cpu.js";

/** Byte offset in the register file of 8-bit register n (AL CL DL BL AH CH DH BH). */
export const R8 = new Uint8Array([0, 4, 8, 12, 1, 5, 9, 13]);

export function readE8(c: Cpu, i: number): number {
  const d = c.dec;
  return d.mod3[i] ? c.r8[R8[d.rm[i]]] : c.rd8(d.seg[i], c.ea(i));
}
export function readE16(c: Cpu, i: number): number {
  const d = c.dec;
  return d.mod3[i] ? c.r16[d.rm[i] << 1] : c.rd16(d.seg[i], c.ea(i));
}
export function readE32(c: Cpu, i: number): number {
  const d = c.dec;
  return d.mod3[i] ? c.r[d.rm[i]] : c.rd32(d.seg[i], c.ea(i));
}
export function writeE8(c: Cpu, i: number, v: number): void {
  const d = c.dec;
  if (d.mod3[i]) c.r8[R8[d.rm[i]]] = v;
  else c.wr8(d.seg[i], c.ea(i), v);
}
export function writeE16(c: Cpu, i: number, v: number): void {
  const d = c.dec;
  if (d.mod3[i]) c.r16[d.rm[i] << 1] = v;
  else c.wr16(d.seg[i], c.ea(i), v);
}
export function writeE32(c: Cpu, i: number, v: number): void {
  const d = c.dec;
  if (d.mod3[i]) c.r[d.rm[i]] = v;
  else c.wr32(d.seg[i], c.ea(i), v);
}

export const getG8 = (c: Cpu, i: number): number => c.r8[R8[c.dec.reg[i]]];
export const getG16 = (c: Cpu, i: number): number => c.r16[c.dec.reg[i] << 1];
export const getG32 = (c: Cpu, i: number): number => c.r[c.dec.reg[i]];
export function setG8(c: Cpu, i: number, v: number): void {
  c.r8[R8[c.dec.reg[i]]] = v;
}
export function setG16(c: Cpu, i: number, v: number): void {
  c.r16[c.dec.reg[i] << 1] = v;
}
export function setG32(c: Cpu, i: number, v: number): void {
  c.r[c.dec.reg[i]] = v;
}

/** Operand readers/writers by size index (0: 8, 1: 16, 2: 32 bits). */
export const READ_E = [readE8, readE16, readE32];
export const WRITE_E = [writeE8, writeE16, writeE32];
export const GET_G = [getG8, getG16, getG32];
export const SET_G = [setG8, setG16, setG32];
/** Sign-bit index and value mask by size index. */
export const SIGN_BIT = [7, 15, 31];
export const SIZE_MASK = [0xff, 0xffff, -1];

/**
 * Read the r/m operand of size index `s` and remember where it came from, for `storeRm`
 * (read-modify-write without allocating a closure).
 */
export function loadRm(c: Cpu, i: number, s: number): number {
  const d = c.dec;
  if (d.mod3[i]) {
    const rm = d.rm[i];
    c.rmReg = rm;
    return s === 2 ? c.r[rm] : s === 1 ? c.r16[rm << 1] : c.r8[R8[rm]];
  }
  const seg = d.seg[i];
  const off = c.ea(i);
  c.rmReg = -1;
  c.rmSeg = seg;
  c.rmOff = off;
  return s === 2 ? c.rd32(seg, off) : s === 1 ? c.rd16(seg, off) : c.rd8(seg, off);
}

/** Write `v` to where the last `loadRm` read from. */
export function storeRm(c: Cpu, s: number, v: number): void {
  const rm = c.rmReg;
  if (rm >= 0) {
    if (s === 2) c.r[rm] = v;
    else if (s === 1) c.r16[rm << 1] = v;
    else c.r8[R8[rm]] = v;
  } else if (s === 2) c.wr32(c.rmSeg, c.rmOff, v);
  else if (s === 1) c.wr16(c.rmSeg, c.rmOff, v);
  else c.wr8(c.rmSeg, c.rmOff, v);
}
