// Handlers of the string instructions (MOVS CMPS STOS LODS SCAS INS OUTS) with REP/REPE/REPNE.
// A repeated instruction runs at most CHUNK iterations per step and then restarts itself, so
// interrupts, exits and the budget are seen in the middle of long copies.

import type { Cpu, Handler } from "../cpu.js";
import { Pfx, SEG_ES } from "../decoder.js";
import { alu, ALU_CMP } from "../alu.js";
import { DF, getZF } from "../flags.js";
import { checkIoPermission, portIn, portOut } from "../io.js";

const CHUNK = 4096;
const SIZES = [1, 2, 4] as const;
const BITS = [7, 15, 31];

function read(c: Cpu, seg: number, off: number, s: number): number {
  return s === 0 ? c.rd8(seg, off) : s === 1 ? c.rd16(seg, off) : c.rd32(seg, off);
}
function write(c: Cpu, seg: number, off: number, s: number, v: number): void {
  if (s === 0) c.wr8(seg, off, v);
  else if (s === 1) c.wr16(seg, off, v);
  else c.wr32(seg, off, v);
}
function acc(c: Cpu, s: number): number {
  return s === 0 ? c.r8[0] : s === 1 ? c.r16[0] : c.r[0];
}

const KIND_MOVS = 0, KIND_CMPS = 1, KIND_STOS = 2, KIND_LODS = 3, KIND_SCAS = 4, KIND_INS = 5, KIND_OUTS = 6;

/** One string instruction of `kind` and size index `s`, with its repeat prefix. */
function stringOp(c: Cpu, i: number, kind: number, s: number): void {
  const d = c.dec;
  const pfx = d.pfx[i];
  const a32 = (pfx & Pfx.A32) !== 0;
  const rep = pfx & (Pfx.REP | Pfx.REPNE);
  const seg = d.seg[i];
  const size = SIZES[s];
  const step = c.flags & DF ? -size : size;
  if (kind === KIND_INS || kind === KIND_OUTS) checkIoPermission(c, c.r16[4], size);
  let n = rep ? (a32 ? c.r[1] >>> 0 : c.r16[2]) : 1;
  if (n === 0) return;
  const r = c.r, r16 = c.r16;
  let k = 0;
  while (k < CHUNK) {
    const si = a32 ? r[6] : r16[12];
    const di = a32 ? r[7] : r16[14];
    let stop = false;
    switch (kind) {
      case KIND_MOVS:
        write(c, SEG_ES, di, s, read(c, seg, si, s));
        break;
      case KIND_STOS:
        write(c, SEG_ES, di, s, acc(c, s));
        break;
      case KIND_LODS: {
        const v = read(c, seg, si, s);
        if (s === 0) c.r8[0] = v;
        else if (s === 1) r16[0] = v;
        else r[0] = v;
        break;
      }
      case KIND_CMPS: {
        const a = read(c, seg, si, s);
        const b = read(c, SEG_ES, di, s);
        alu(c, ALU_CMP, a, b, BITS[s]);
        stop = rep === Pfx.REP ? getZF(c) === 0 : getZF(c) !== 0;
        break;
      }
      case KIND_SCAS: {
        const b = read(c, SEG_ES, di, s);
        alu(c, ALU_CMP, acc(c, s), b, BITS[s]);
        stop = rep === Pfx.REP ? getZF(c) === 0 : getZF(c) !== 0;
        break;
      }
      case KIND_INS: {
        c.probeWrite(SEG_ES, di, size);
        write(c, SEG_ES, di, s, portIn(c, c.r16[4], size));
        break;
      }
      default:
        portOut(c, c.r16[4], size, read(c, seg, si, s));
        break;
    }
    if (kind === KIND_MOVS || kind === KIND_LODS || kind === KIND_CMPS || kind === KIND_OUTS) {
      if (a32) r[6] = (si + step) | 0;
      else r16[12] = si + step;
    }
    if (kind !== KIND_LODS && kind !== KIND_OUTS) {
      if (a32) r[7] = (di + step) | 0;
      else r16[14] = di + step;
    }
    k++;
    if (!rep) return;
    n--;
    if (a32) r[1] = n;
    else r16[2] = n;
    if (n === 0 || stop) {
      c.retired += k - 1;
      return;
    }
  }
  // Chunk used up: run this instruction again (interrupts and exits can come in between).
  c.nextEip = c.eip;
  c.retired += k - 1;
}

export function registerString(h: Record<string, Handler>): void {
  const names = ["movs", "cmps", "stos", "lods", "scas", "ins", "outs"];
  names.forEach((name, kind) => {
    h[`${name}b`] = (c, i) => stringOp(c, i, kind, 0);
    h[`${name}16`] = (c, i) => stringOp(c, i, kind, 1);
    h[`${name}32`] = (c, i) => stringOp(c, i, kind, 2);
  });
}
