// Memory images of the x87 state: the FSTENV/FLDENV environment and FSAVE/FRSTOR state in their
// 16/32-bit, real/protected layouts, and the FXSAVE/FXRSTOR image as a P6 (no SSE) lays it out.

import type { X87Host } from "./host.js";
import { CR0_PE, EFLAGS_VM } from "./host.js";
import type { X87 } from "./x87.js";

/** Layout of an environment image: 28 bytes (32-bit) or 14 bytes (16-bit), real or protected. */
export function envSize(o32: boolean): number {
  return o32 ? 28 : 14;
}

/** Real-address and virtual-8086 mode use the real layouts. */
export function realLayout(c: X87Host): boolean {
  return (c.cr0 & CR0_PE) === 0 || (c.flags & EFLAGS_VM) !== 0;
}

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
}
function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}
const get16 = (b: Uint8Array, at: number): number => b[at] | (b[at + 1] << 8);
const get32 = (b: Uint8Array, at: number): number => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

/** Fill b[0..size) with the environment; returns the size. */
export function storeEnv(x: X87, b: Uint8Array, o32: boolean, real: boolean): number {
  const cw = x.cw, sw = x.status, tw = x.tagWord;
  if (o32) {
    put32(b, 0, cw | 0xffff0000);
    put32(b, 4, sw | 0xffff0000);
    put32(b, 8, tw | 0xffff0000);
    if (real) {
      put32(b, 12, (x.fipLinear & 0xffff) | 0xffff0000);
      put32(b, 16, (((x.fipLinear >>> 16) & 0xffff) << 12) | (x.fop & 0x7ff));
      put32(b, 20, (x.fdpLinear & 0xffff) | 0xffff0000);
      put32(b, 24, ((x.fdpLinear >>> 16) & 0xffff) << 12);
    } else {
      put32(b, 12, x.fip);
      put32(b, 16, x.fcs | ((x.fop & 0x7ff) << 16));
      put32(b, 20, x.fdp);
      put32(b, 24, x.fds | 0xffff0000);
    }
    return 28;
  }
  put16(b, 0, cw);
  put16(b, 2, sw);
  put16(b, 4, tw);
  if (real) {
    put16(b, 6, x.fipLinear);
    put16(b, 8, (((x.fipLinear >>> 16) & 0xf) << 12) | (x.fop & 0x7ff));
    put16(b, 10, x.fdpLinear);
    put16(b, 12, ((x.fdpLinear >>> 16) & 0xf) << 12);
  } else {
    put16(b, 6, x.fip);
    put16(b, 8, x.fcs);
    put16(b, 10, x.fdp);
    put16(b, 12, x.fds);
  }
  return 14;
}

/** Load the environment from b; returns its size. ES/B follow the loaded flags and masks. */
export function loadEnv(x: X87, b: Uint8Array, o32: boolean, real: boolean): number {
  let tw: number;
  if (o32) {
    x.cw = (get16(b, 0) & ~0xe0c0) | 0x40;
    x.status = get16(b, 4);
    tw = get16(b, 8);
    if (real) {
      x.fipLinear = (get16(b, 12) | ((get32(b, 16) >>> 12) << 16)) | 0;
      x.fop = get16(b, 16) & 0x7ff;
      x.fdpLinear = (get16(b, 20) | ((get32(b, 24) >>> 12) << 16)) | 0;
      x.fip = x.fipLinear & 0xffff;
      x.fdp = x.fdpLinear & 0xffff;
      x.fcs = x.fds = 0;
    } else {
      x.fip = get32(b, 12) | 0;
      x.fcs = get16(b, 16);
      x.fop = get16(b, 18) & 0x7ff;
      x.fdp = get32(b, 20) | 0;
      x.fds = get16(b, 24);
      x.fipLinear = x.fip;
      x.fdpLinear = x.fdp;
    }
  } else {
    x.cw = (get16(b, 0) & ~0xe0c0) | 0x40;
    x.status = get16(b, 2);
    tw = get16(b, 4);
    if (real) {
      x.fipLinear = get16(b, 6) | ((get16(b, 8) >>> 12) << 16);
      x.fop = get16(b, 8) & 0x7ff;
      x.fdpLinear = get16(b, 10) | ((get16(b, 12) >>> 12) << 16);
      x.fip = x.fipLinear & 0xffff;
      x.fdp = x.fdpLinear & 0xffff;
      x.fcs = x.fds = 0;
    } else {
      x.fip = get16(b, 6);
      x.fcs = get16(b, 8);
      x.fdp = get16(b, 10);
      x.fds = get16(b, 12);
      x.fipLinear = x.fip;
      x.fdpLinear = x.fdp;
    }
  }
  x.tagWord = tw;
  x.updateSummary();
  return o32 ? 28 : 14;
}

function putReg(x: X87, b: Uint8Array, at: number, st: number): void {
  const r = x.phys(st);
  let m = x.m[r];
  for (let k = 0; k < 8; k++) {
    b[at + k] = Number(m & 0xffn);
    m >>= 8n;
  }
  put16(b, at + 8, x.se[r]);
}

function getReg(x: X87, b: Uint8Array, at: number, st: number): void {
  const r = x.phys(st);
  x.m[r] = (BigInt(get32(b, at + 4)) << 32n) | BigInt(get32(b, at));
  x.se[r] = get16(b, at + 8);
}

/** FSAVE image (94 or 108 bytes) into b; returns the size. Does not reinitialize. */
export function storeState(x: X87, b: Uint8Array, o32: boolean, real: boolean): number {
  const n = storeEnv(x, b, o32, real);
  for (let st = 0; st < 8; st++) putReg(x, b, n + 10 * st, st);
  return n + 80;
}

export function loadState(x: X87, b: Uint8Array, o32: boolean, real: boolean): number {
  const n = loadEnv(x, b, o32, real);
  for (let st = 0; st < 8; st++) getReg(x, b, n + 10 * st, st);
  return n + 80;
}

/** The FXSAVE image (512 bytes; MXCSR and XMM areas zero: a P6 without SSE). */
export function storeFxsave(x: X87, b: Uint8Array): void {
  b.fill(0, 0, 512);
  put16(b, 0, x.cw);
  put16(b, 2, x.status);
  b[4] = ~x.empty & 0xff;
  put16(b, 6, x.fop & 0x7ff);
  put32(b, 8, x.fip);
  put16(b, 12, x.fcs);
  put32(b, 16, x.fdp);
  put16(b, 20, x.fds);
  for (let st = 0; st < 8; st++) putReg(x, b, 32 + 16 * st, st);
}

export function loadFxsave(x: X87, b: Uint8Array): void {
  x.cw = (get16(b, 0) & ~0xe0c0) | 0x40;
  x.status = get16(b, 2);
  x.empty = ~b[4] & 0xff;
  x.fop = get16(b, 6) & 0x7ff;
  x.fip = get32(b, 8) | 0;
  x.fcs = get16(b, 12);
  x.fdp = get32(b, 16) | 0;
  x.fds = get16(b, 20);
  x.fipLinear = x.fip;
  x.fdpLinear = x.fdp;
  for (let st = 0; st < 8; st++) getReg(x, b, 32 + 16 * st, st);
  x.updateSummary();
}

/** Copy n bytes of guest memory at seg:off into b (faults before anything changes). */
export function readGuest(c: X87Host, seg: number, off: number, b: Uint8Array, n: number): void {
  for (let k = 0; k < n; k++) b[k] = c.rd8(seg, (off + k) | 0);
}

/** Write b[0..n) to guest memory at seg:off (probed first: a fault writes nothing). */
export function writeGuest(c: X87Host, seg: number, off: number, b: Uint8Array, n: number): void {
  c.probeWrite(seg, off, n);
  for (let k = 0; k < n; k++) c.wr8(seg, (off + k) | 0, b[k]);
}
