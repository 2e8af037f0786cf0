// Handlers of control transfer: Jcc, JMP, CALL, RET, LOOP/JCXZ, far JMP/CALL/RET, IRET,
// INT n/INT3/INTO/INT1, HLT.

import { ExitReason } from "../../../kernel/vcpu.js";
import type { Cpu, Handler } from "../cpu.js";
import { Pfx, SEG_CS } from "../decoder.js";
import { farCall, farJump, farReturn, interruptReturn } from "../far.js";
import { condition, getOF, getZF } from "../flags.js";
import { deliver, Source } from "../interrupts.js";
import { readE16, readE32 } from "../operands.js";

/** Continue at `target` (truncated to 16 bits unless o32), checking the CS limit. */
export function jumpTo(c: Cpu, target: number, o32: boolean): void {
  const t = o32 ? target | 0 : target & 0xffff;
  if (t >>> 0 > c.limit[SEG_CS]) c.fault(13, 0);
  c.nextEip = t;
}

/** Raise a trap-class exception (INT3, INTO, INT1): EIP after the instruction is pushed. */
export function trap(c: Cpu, vector: number): never {
  c.faultTrap = true;
  c.fault(vector);
}

export function registerControl(h: Record<string, Handler>): void {
  h.jcc_Jb = (c, i) => {
    const d = c.dec;
    if (condition(c, d.opc[i] & 15)) jumpTo(c, c.nextEip + d.imm[i], (d.pfx[i] & Pfx.O32) !== 0);
  };
  h.jcc_Jz16 = (c, i) => {
    if (condition(c, c.dec.opc[i] & 15)) jumpTo(c, c.nextEip + c.dec.imm[i], false);
  };
  h.jcc_Jz32 = (c, i) => {
    if (condition(c, c.dec.opc[i] & 15)) jumpTo(c, c.nextEip + c.dec.imm[i], true);
  };
  h.jmp_Jb16 = (c, i) => jumpTo(c, c.nextEip + c.dec.imm[i], false);
  h.jmp_Jb32 = (c, i) => jumpTo(c, c.nextEip + c.dec.imm[i], true);
  h.jmp_Jz16 = h.jmp_Jb16;
  h.jmp_Jz32 = h.jmp_Jb32;
  h.call_Jz16 = (c, i) => {
    const ret = c.nextEip;
    jumpTo(c, ret + c.dec.imm[i], false);
    c.push16(ret);
  };
  h.call_Jz32 = (c, i) => {
    const ret = c.nextEip;
    jumpTo(c, ret + c.dec.imm[i], true);
    c.push32(ret);
  };
  h.jmp_Ev16 = (c, i) => jumpTo(c, readE16(c, i), false);
  h.jmp_Ev32 = (c, i) => jumpTo(c, readE32(c, i), true);
  h.call_Ev16 = (c, i) => {
    const ret = c.nextEip;
    jumpTo(c, readE16(c, i), false);
    c.push16(ret);
  };
  h.call_Ev32 = (c, i) => {
    const ret = c.nextEip;
    jumpTo(c, readE32(c, i), true);
    c.push32(ret);
  };
  h.ret16 = (c) => {
    jumpTo(c, c.peek16(0), false);
    c.setSp(c.sp + 2);
  };
  h.ret32 = (c) => {
    jumpTo(c, c.peek32(0), true);
    c.setSp(c.sp + 4);
  };
  h.ret_Iw16 = (c, i) => {
    jumpTo(c, c.peek16(0), false);
    c.setSp(c.sp + 2 + c.dec.imm[i]);
  };
  h.ret_Iw32 = (c, i) => {
    jumpTo(c, c.peek32(0), true);
    c.setSp(c.sp + 4 + c.dec.imm[i]);
  };
  const loop = (c: Cpu, i: number, kind: number) => {
    const d = c.dec;
    const a32 = (d.pfx[i] & Pfx.A32) !== 0;
    let count: number;
    if (a32) count = c.r[1] = (c.r[1] - 1) | 0;
    else count = c.r16[2] = (c.r16[2] - 1) & 0xffff;
    const go = count !== 0 && (kind === 0 || (kind === 1 ? getZF(c) !== 0 : getZF(c) === 0));
    if (go) jumpTo(c, c.nextEip + d.imm[i], (d.pfx[i] & Pfx.O32) !== 0);
  };
  h.loop = (c, i) => loop(c, i, 0);
  h.loopz = (c, i) => loop(c, i, 1);
  h.loopnz = (c, i) => loop(c, i, 2);
  h.jcxz = (c, i) => {
    const d = c.dec;
    const count = d.pfx[i] & Pfx.A32 ? c.r[1] : c.r16[2];
    if (count === 0) jumpTo(c, c.nextEip + d.imm[i], (d.pfx[i] & Pfx.O32) !== 0);
  };

  // Far transfers.
  h.jmpf_Ap16 = (c, i) => farJump(c, c.dec.imm2[i], c.dec.imm[i], false);
  h.jmpf_Ap32 = (c, i) => farJump(c, c.dec.imm2[i], c.dec.imm[i], true);
  h.callf_Ap16 = (c, i) => farCall(c, c.dec.imm2[i], c.dec.imm[i], false);
  h.callf_Ap32 = (c, i) => farCall(c, c.dec.imm2[i], c.dec.imm[i], true);
  const farPointer = (c: Cpu, i: number, o32: boolean, call: boolean) => {
    const d = c.dec;
    if (d.mod3[i]) c.fault(6);
    const off = c.ea(i);
    const eip = o32 ? c.rd32(d.seg[i], off) : c.rd16(d.seg[i], off);
    const sel = c.rd16(d.seg[i], (off + (o32 ? 4 : 2)) & d.amask[i]);
    if (call) farCall(c, sel, eip, o32);
    else farJump(c, sel, eip, o32);
  };
  h.jmpf_Mp16 = (c, i) => farPointer(c, i, false, false);
  h.jmpf_Mp32 = (c, i) => farPointer(c, i, true, false);
  h.callf_Mp16 = (c, i) => farPointer(c, i, false, true);
  h.callf_Mp32 = (c, i) => farPointer(c, i, true, true);
  h.retf16 = (c) => farReturn(c, false, 0);
  h.retf32 = (c) => farReturn(c, true, 0);
  h.retf_Iw16 = (c, i) => farReturn(c, false, c.dec.imm[i]);
  h.retf_Iw32 = (c, i) => farReturn(c, true, c.dec.imm[i]);
  h.iret16 = (c) => interruptReturn(c, false);
  h.iret32 = (c) => interruptReturn(c, true);

  // Software interrupts.
  h.int_Ib = (c, i) => deliver(c, c.dec.imm[i] & 0xff, Source.SOFTWARE, -1, c.nextEip);
  h.int3 = (c) => trap(c, 3);
  h.into = (c) => {
    if (getOF(c)) trap(c, 4);
  };
  h.int1 = (c) => trap(c, 1);
  h.hlt = (c) => {
    if (c.cr0 & 1 && c.cpl !== 0) c.fault(13, 0);
    c.activity = 1;
    c.stop = ExitReason.HLT;
    c.attention = true;
  };
}
