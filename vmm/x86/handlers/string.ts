// Handlers of the string instructions (MOVS CMPS STOS LODS SCAS INS OUTS) with REP/REPE/REPNE.
// A repeated instruction runs at most CHUNK iterations per step (fewer where the run's budget
// ends) and then restarts itself, so interrupts, exits and the budget are seen in the middle of
// long copies. Each element counts as one retired instruction.

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

/**
 * Elements of a repeated instruction to run in one step: at most CHUNK and no more than the run's
 * budget holds (at least one), so a run ends exactly at its budget, in a copy's middle too.
 */
function chunkOf(c: Cpu): number {
  const left = c.budgetEnd - c.retired;
  return left >= CHUNK ? CHUNK : left > 1 ? left : 1;
}

/**
 * Count the `k` elements of a repeated instruction as `k` retired instructions (the run loop adds
 * the first). More than one ends the block (c.attention): the budget, which counts them too, is
 * checked at the next instruction boundary, so every tier stops at the same instruction.
 */
function retireElements(c: Cpu, k: number): void {
  if (k <= 1) return;
  c.retired += k - 1;
  c.attention = true;
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
  if (rep && a32 && (kind === KIND_MOVS || kind === KIND_STOS)) return repeatInBulk(c, kind, seg, s, n);
  if (rep === Pfx.REPNE && a32 && kind === KIND_SCAS && s === 0 && !(c.flags & DF)) return scanInBulk(c, n);
  const r = c.r, r16 = c.r16;
  const chunk = chunkOf(c);
  let k = 0;
  while (k < chunk) {
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
      retireElements(c, k);
      return;
    }
  }
  // Chunk used up: run this instruction again (interrupts and exits can come in between).
  c.nextEip = c.eip;
  retireElements(c, k);
}

/**
 * REP MOVS and STOS with 32-bit addresses: runs of elements that stay in one source and one
 * destination page the TLB already allows are copied or filled at once, the rest one element at a
 * time (which fills the TLB, or faults with the registers at that element). The chunks, the
 * registers, the retired count and the bytes are those of one element at a time: a copy whose
 * source and destination overlap goes element by element, since later elements read earlier ones.
 */
function repeatInBulk(c: Cpu, kind: number, seg: number, s: number, n: number): void {
  const r = c.r;
  const size = SIZES[s];
  const step = c.flags & DF ? -size : size;
  const chunk = chunkOf(c);
  let k = 0;
  while (k < chunk) {
    const m = bulk(c, kind, seg, s, Math.min(n, chunk - k));
    if (m > 0) {
      k += m;
      n -= m;
    } else {
      if (kind === KIND_MOVS) {
        write(c, SEG_ES, r[7], s, read(c, seg, r[6], s));
        r[6] = (r[6] + step) | 0;
      } else write(c, SEG_ES, r[7], s, acc(c, s));
      r[7] = (r[7] + step) | 0;
      k++;
      n--;
    }
    r[1] = n;
    if (n === 0) {
      retireElements(c, k);
      return;
    }
  }
  c.nextEip = c.eip;
  retireElements(c, k);
}

/**
 * REPNE SCASB going up (strlen, memchr) with 32-bit addresses: the rest of each page the TLB
 * allows is searched at once; EDI, ECX, the flags (those of the last byte compared) and the
 * retired count come out as one byte at a time would leave them.
 */
function scanInBulk(c: Cpu, n: number): void {
  const r = c.r;
  const al = c.r8[0];
  const chunk = chunkOf(c);
  let k = 0;
  while (k < chunk) {
    const lin = (c.base[SEG_ES] + r[7]) | 0, p = lin >>> 12;
    let m = 1, found = false, last: number;
    if (c.segFast[SEG_ES] & 1 && c.tlbFlags[p] & c.rdMask) {
      m = Math.min(n, chunk - k, inPage(lin, 1, false));
      const bytes = c.bytes[c.tlbStore[p]], at = c.tlbOff[p] + (lin & 0xfff);
      const hit = bytes.indexOf(al, at);
      found = hit >= 0 && hit < at + m;
      if (found) m = hit - at + 1;
      last = bytes[at + m - 1];
    } else {
      last = c.rd8(SEG_ES, r[7]);
      found = last === al;
    }
    alu(c, ALU_CMP, al, last, 7);
    r[7] = (r[7] + m) | 0;
    k += m;
    n -= m;
    r[1] = n;
    if (n === 0 || found) {
      retireElements(c, k);
      return;
    }
  }
  c.nextEip = c.eip;
  retireElements(c, k);
}

/** Elements of `size` bytes from linear `lin` on that fit in its page, going down when `back`. */
function inPage(lin: number, size: number, back: boolean): number {
  const o = lin & 0xfff;
  if (!back) return ((4096 - o) / size) | 0;
  return o + size <= 4096 ? ((o / size) | 0) + 1 : 0;
}

/** Up to `n` elements of REP MOVS/STOS at once, within the current pages; 0 when the TLB or the segments do not allow it. */
function bulk(c: Cpu, kind: number, seg: number, s: number, n: number): number {
  const r = c.r;
  const size = SIZES[s];
  const back = (c.flags & DF) !== 0;
  if (!(c.segFast[SEG_ES] & 2)) return 0;
  const dLin = (c.base[SEG_ES] + r[7]) | 0, dp = dLin >>> 12;
  if (!(c.tlbFlags[dp] & c.wrMask)) return 0;
  let m = Math.min(n, inPage(dLin, size, back));
  let sLin = 0, sp = 0;
  if (kind === KIND_MOVS) {
    if (!(c.segFast[seg] & 1)) return 0;
    sLin = (c.base[seg] + r[6]) | 0;
    sp = sLin >>> 12;
    if (!(c.tlbFlags[sp] & c.rdMask)) return 0;
    m = Math.min(m, inPage(sLin, size, back));
  }
  if (m < 2) return 0;
  const bytes = m * size;
  // The lowest address of the run: the first element's going up, the last one's going down.
  const low = back ? bytes - size : 0;
  const store = c.tlbStore[dp], dst = c.bytes[store];
  const d0 = c.tlbOff[dp] + (dLin & 0xfff) - low;
  if (kind === KIND_MOVS) {
    const src = c.bytes[c.tlbStore[sp]];
    const s0 = c.tlbOff[sp] + (sLin & 0xfff) - low;
    if (src === dst) {
      if (s0 !== d0 && s0 < d0 + bytes && d0 < s0 + bytes) return 0;
      dst.copyWithin(d0, s0, s0 + bytes);
    } else dst.set(src.subarray(s0, s0 + bytes), d0);
    r[6] = (r[6] + (back ? -bytes : bytes)) | 0;
  } else {
    const v = acc(c, s);
    if (s === 0 || (s === 1 ? (v & 0xff) === ((v >>> 8) & 0xff) : v === Math.imul(v & 0xff, 0x01010101))) dst.fill(v & 0xff, d0, d0 + bytes);
    else {
      // One element, then the pattern doubled.
      if (s === 1) c.views[store].setUint16(d0, v, true);
      else c.views[store].setInt32(d0, v, true);
      for (let done = size; done < bytes; done *= 2) dst.copyWithin(d0 + done, d0, d0 + Math.min(done, bytes - done));
    }
  }
  r[7] = (r[7] + (back ? -bytes : bytes)) | 0;
  return m;
}

export function registerString(h: Record<string, Handler>): void {
  const names = ["movs", "cmps", "stos", "lods", "scas", "ins", "outs"];
  names.forEach((name, kind) => {
    h[`${name}b`] = (c, i) => stringOp(c, i, kind, 0);
    h[`${name}16`] = (c, i) => stringOp(c, i, kind, 1);
    h[`${name}32`] = (c, i) => stringOp(c, i, kind, 2);
  });
}
