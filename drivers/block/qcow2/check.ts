// qcow2 consistency check: rebuild refcounts from every reference and compare with the stored ones.
import { viewOf } from "../bytes.js";
import type { CheckReport } from "../image.js";
import { l2Entries } from "./header.js";
import { readEntry } from "./refcounts.js";
import type { Qcow2Image } from "./image.js";

const MAX_MESSAGES = 100;

/** Check refcounts, table placement and COPIED flags, like `qemu-img check`. Never writes. */
export function checkQcow2(img: Qcow2Image): CheckReport {
  return analyse(img).report;
}

/** References to each cluster of the file, counted from every table (what the refcounts should be). */
export function countReferences(img: Qcow2Image): Uint32Array {
  return analyse(img).refs;
}

function analyse(img: Qcow2Image): { report: CheckReport; refs: Uint32Array } {
  const h = img.header;
  const file = img.file;
  const cs = img.clusterSize;
  const fileClusters = Math.ceil(file.size / cs);
  const refs = new Uint32Array(fileClusters);
  const report: CheckReport = { corruptions: 0, leaks: 0, messages: [], allocatedClusters: 0, totalClusters: Math.ceil(h.size / cs) };
  const say = (msg: string): void => {
    if (report.messages.length < MAX_MESSAGES) report.messages.push(msg);
  };
  const corrupt = (msg: string): void => {
    report.corruptions++;
    say(`ERROR ${msg}`);
  };
  /** Count one reference to each cluster of [off, off+len); false if it lies outside the file. */
  const ref = (off: number, len: number, what: string): boolean => {
    if (len <= 0) return true;
    const first = Math.floor(off / cs);
    const last = Math.floor((off + len - 1) / cs);
    if (last >= fileClusters) {
      corrupt(`${what} at ${off} lies beyond the end of the file`);
      return false;
    }
    for (let c = first; c <= last; c++) refs[c]!++;
    return true;
  };
  const read = (off: number, len: number): Uint8Array => {
    const buf = new Uint8Array(len);
    file.readSome(off, buf);
    return buf;
  };

  ref(0, cs, "header");
  const l2s: { offset: number; copied: boolean; table: Uint8Array }[] = [];
  const walkL1 = (l1: Uint8Array, active: boolean, label: string): void => {
    const v = viewOf(l1);
    for (let i = 0; i < l1.length / 8; i++) {
      const hi = v.getUint32(i * 8);
      const lo = v.getUint32(i * 8 + 4);
      const off = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (off === 0) continue;
      if (off % cs !== 0) {
        corrupt(`${label} L1 entry ${i}: L2 table offset ${off} is not cluster aligned`);
        continue;
      }
      if (!ref(off, cs, `${label} L2 table ${i}`)) continue;
      const table = read(off, cs);
      if (active) l2s.push({ offset: off, copied: (hi & 0x80000000) !== 0, table });
      walkL2(table, active, `${label} L2 table ${i}`);
    }
  };
  const walkL2 = (table: Uint8Array, active: boolean, label: string): void => {
    const v = viewOf(table);
    const x = 62 - (h.clusterBits - 8);
    for (let j = 0; j < l2Entries(h.clusterBits); j++) {
      const hi = v.getUint32(j * 8);
      const lo = v.getUint32(j * 8 + 4);
      if (hi & 0x40000000) {
        const value = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
        const host = Number(value & ((1n << BigInt(x)) - 1n));
        const sectors = Number(value >> BigInt(x)) + 1;
        if (hi & 0x80000000) corrupt(`${label} entry ${j}: compressed cluster has the COPIED flag`);
        if (active) report.allocatedClusters!++;
        ref(host, Math.min(sectors * 512 - (host % 512), Math.max(1, file.size - host)), `${label} compressed cluster ${j}`);
        continue;
      }
      const host = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (host === 0) {
        if ((lo & 1) && h.version < 3) corrupt(`${label} entry ${j}: zero flag in a version 2 image`);
        continue;
      }
      if (host % cs !== 0) {
        corrupt(`${label} entry ${j}: data cluster offset ${host} is not cluster aligned`);
        continue;
      }
      if (active && !(lo & 1)) report.allocatedClusters!++;
      ref(host, cs, `${label} data cluster ${j}`);
    }
  };

  if (h.l1Size > 0) {
    ref(h.l1TableOffset, h.l1Size * 8, "L1 table");
    walkL1(read(h.l1TableOffset, h.l1Size * 8), true, "active");
  }
  ref(h.refcountTableOffset, h.refcountTableClusters * cs, "refcount table");
  const rt = viewOf(read(h.refcountTableOffset, h.refcountTableClusters * cs));
  const blocks: number[] = [];
  for (let i = 0; i < rt.byteLength / 8; i++) {
    const big = rt.getBigUint64(i * 8);
    const off = Number(big & ~0x1ffn);
    blocks.push(0);
    if (big === 0n) continue;
    if (big > BigInt(Number.MAX_SAFE_INTEGER) || off % cs !== 0) {
      corrupt(`refcount block ${i}: offset ${big} is invalid`);
      continue;
    }
    if (ref(off, cs, `refcount block ${i}`)) blocks[i] = off;
  }
  walkSnapshots(img, ref, read, walkL1, corrupt);

  // Stored refcounts against the references we counted.
  const bits = 2 ** h.refcountOrder;
  const perBlock = (cs * 8) / bits;
  const stored = new Float64Array(fileClusters);
  for (let b = 0; b < blocks.length && b * perBlock < fileClusters; b++) {
    if (blocks[b] === 0) continue;
    const block = read(blocks[b]!, cs);
    for (let k = 0; k < perBlock && b * perBlock + k < fileClusters; k++) stored[b * perBlock + k] = readEntry(block, k, bits);
  }
  for (let c = 0; c < fileClusters; c++) {
    const have = stored[c]!;
    const want = refs[c]!;
    if (have === want) continue;
    if (have > want) {
      report.leaks++;
      say(`Leaked cluster ${c} refcount=${have} reference=${want}`);
    } else {
      corrupt(`cluster ${c} refcount=${have} reference=${want}`);
    }
  }
  // COPIED flags must say "refcount is exactly one".
  for (const l2 of l2s) {
    const c = l2.offset / cs;
    if (l2.copied !== (stored[c] === 1)) corrupt(`OFLAG_COPIED L2 cluster at ${l2.offset}: refcount=${stored[c]}`);
    const v = viewOf(l2.table);
    for (let j = 0; j < l2Entries(h.clusterBits); j++) {
      const hi = v.getUint32(j * 8);
      const lo = v.getUint32(j * 8 + 4);
      if (hi & 0x40000000) continue;
      const host = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (host === 0 || host % cs !== 0 || host / cs >= fileClusters) continue;
      const copied = (hi & 0x80000000) !== 0;
      if (copied !== (stored[host / cs] === 1)) corrupt(`OFLAG_COPIED data cluster at ${host}: refcount=${stored[host / cs]}`);
    }
  }
  return { report, refs };
}

/** Count references held by internal snapshots: their table, their L1 tables and what those map. */
function walkSnapshots(
  img: Qcow2Image,
  ref: (off: number, len: number, what: string) => boolean,
  read: (off: number, len: number) => Uint8Array,
  walkL1: (l1: Uint8Array, active: boolean, label: string) => void,
  corrupt: (msg: string) => void,
): void {
  const h = img.header;
  if (h.nbSnapshots === 0) return;
  let at = h.snapshotsOffset;
  for (let s = 0; s < h.nbSnapshots; s++) {
    if (at + 40 > img.file.size) {
      corrupt(`snapshot ${s} header lies beyond the end of the file`);
      return;
    }
    const v = viewOf(read(at, 40));
    const l1Offset = Number(v.getBigUint64(0) & 0x00fffffffffffe00n);
    const l1Size = v.getUint32(8);
    const idLen = v.getUint16(12);
    const nameLen = v.getUint16(14);
    const extra = v.getUint32(36);
    if (l1Size * 8 > img.file.size) {
      corrupt(`snapshot ${s} L1 table is larger than the file`);
    } else if (l1Size > 0 && ref(l1Offset, l1Size * 8, `snapshot ${s} L1 table`)) {
      walkL1(read(l1Offset, l1Size * 8), false, `snapshot ${s}`);
    }
    at += Math.ceil((40 + extra + idLen + nameLen) / 8) * 8;
  }
  ref(h.snapshotsOffset, at - h.snapshotsOffset, "snapshot table");
}
