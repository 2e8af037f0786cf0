// Port I/O: the IOPL / TSS I/O-permission-bitmap check and the synchronous PIO exit.

import { ExitReason } from "../../kernel/vcpu.js";
import { type Cpu, SEG_TR } from "./cpu.js";
import { VM } from "./flags.js";

/** Raise #GP(0) unless the current task may access ports port..port+size-1. */
export function checkIoPermission(c: Cpu, port: number, size: number): void {
  if (!(c.cr0 & 1)) return;
  if (!(c.flags & VM) && c.cpl <= ((c.flags >> 12) & 3)) return;
  const type = c.attr[SEG_TR] & 0xf;
  if (type !== 9 && type !== 11) c.fault(13, 0);
  const limit = c.limit[SEG_TR];
  if (limit < 103) c.fault(13, 0);
  const base = c.base[SEG_TR];
  const mapOffset = c.linRd16(base + 102, false);
  const at = mapOffset + (port >>> 3);
  if (at + 1 > limit) c.fault(13, 0);
  const bits = c.linRd16(base + at, false);
  if (bits & (((1 << size) - 1) << (port & 7))) c.fault(13, 0);
}

const MASK = [0, 0xff, 0xffff, 0, -1];

/** IN: a synchronous PIO exit; all ones when nobody answers. */
export function portIn(c: Cpu, port: number, size: number): number {
  const st = c.state;
  const q = st.qual;
  q.address = port;
  q.size = size;
  q.write = false;
  q.data = 0;
  const ok = c.exits !== null && c.exits.exit(ExitReason.PIO, st);
  c.exited();
  return (ok ? q.data : -1) & MASK[size];
}

export function portOut(c: Cpu, port: number, size: number, v: number): void {
  const st = c.state;
  const q = st.qual;
  q.address = port;
  q.size = size;
  q.write = true;
  q.data = size === 4 ? v >>> 0 : v & MASK[size];
  if (c.exits !== null) c.exits.exit(ExitReason.PIO, st);
  c.exited();
}
