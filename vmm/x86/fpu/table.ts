// The x87 opcode table as data: one record per memory form (D8-DF, ModRM reg field) and per
// register form (D8-DF, ModRM C0-FF), with the mnemonic and whether it is a waiting instruction
// and whether it is a control instruction (does not update the last instruction pointers).

import {
  arithMemory, arithRegister, compareEflags, compareRegister, compareWith, ftst, MEM_F32, MEM_F64, MEM_I16, MEM_I32,
} from "./exec-arith.js";
import {
  fcmov, fincstp, fldConstant, fldMemory, fldRegister, ffree, fsign, fstMemory, fstRegister, fxam, fxch,
  LD_BCD, LD_F32, LD_F64, LD_F80, LD_I16, LD_I32, LD_I64, ST_BCD, ST_F32, ST_F64, ST_F80, ST_I16, ST_I32, ST_I64,
} from "./exec-load.js";
import { fpremOp, fscaleOp, fxtractOp, unary } from "./exec-math.js";
import { TRANSCENDENTAL } from "./exec-trans.js";
import type { X87Host } from "./host.js";
import { VECTOR_UD } from "./host.js";
import { loadEnv, loadState, readGuest, realLayout, storeEnv, storeState, writeGuest } from "./images.js";
import type { X87 } from "./x87.js";

export type X87Handler = (x: X87, c: X87Host, i: number) => void;

export interface InstructionForm {
  readonly mnemonic: string;
  readonly run: X87Handler;
  /** Checks for a pending unmasked exception first (everything but the FN* control forms). */
  readonly waiting: boolean;
  /** Leaves FIP/FCS/FOP/FDP/FDS alone. */
  readonly control: boolean;
}

const form = (mnemonic: string, run: X87Handler, flags = ""): InstructionForm => ({
  mnemonic,
  run,
  waiting: !flags.includes("n"),
  control: flags.includes("c"),
});

const undefinedOpcode = form("(bad)", (_x, c) => c.fault(VECTOR_UD), "nc");

const ARITH = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"];

const o32 = (c: X87Host, i: number): boolean => (c.dec.pfx[i] & 1) !== 0;

// ---- control instructions ----

function fldcw(x: X87, c: X87Host, i: number): void {
  const v = c.rd16(c.dec.seg[i], c.ea(i));
  x.cw = (v & ~0xe0c0) | 0x40;
  x.updateSummary();
}

function fnstcw(x: X87, c: X87Host, i: number): void {
  c.wr16(c.dec.seg[i], c.ea(i), x.cw);
}

function fnstsw(x: X87, c: X87Host, i: number): void {
  c.wr16(c.dec.seg[i], c.ea(i), x.status);
}

function fnstenv(x: X87, c: X87Host, i: number): void {
  const n = storeEnv(x, x.image, o32(c, i), realLayout(c));
  writeGuest(c, c.dec.seg[i], c.ea(i), x.image, n);
  x.cw |= 0x3f;
  x.updateSummary();
}

function fldenv(x: X87, c: X87Host, i: number): void {
  const wide = o32(c, i);
  readGuest(c, c.dec.seg[i], c.ea(i), x.image, wide ? 28 : 14);
  loadEnv(x, x.image, wide, realLayout(c));
}

function fnsave(x: X87, c: X87Host, i: number): void {
  const n = storeState(x, x.image, o32(c, i), realLayout(c));
  writeGuest(c, c.dec.seg[i], c.ea(i), x.image, n);
  x.finit();
}

function frstor(x: X87, c: X87Host, i: number): void {
  const wide = o32(c, i);
  readGuest(c, c.dec.seg[i], c.ea(i), x.image, wide ? 108 : 94);
  loadState(x, x.image, wide, realLayout(c));
}

function fnclex(x: X87): void {
  x.sw &= 0x4700; // keep C3 C2 C1 C0
  x.clearSummary();
}

// ---- memory forms: index (opcode & 7) << 3 | reg ----

function memoryForms(): InstructionForm[] {
  const t: InstructionForm[] = [];
  const arith = (kind: number, prefix: string) => {
    for (let reg = 0; reg < 8; reg++) {
      t.push(form(`${ARITH[reg].replace(/^f/, prefix)} ${["m32", "m32int", "m64", "m16int"][kind]}`, (x, c, i) => arithMemory(x, c, i, kind)));
    }
  };
  const ld = (name: string, kind: number) => form(name, (x, c, i) => fldMemory(x, c, i, kind));
  const st = (name: string, kind: number, pop: boolean) => form(name, (x, c, i) => fstMemory(x, c, i, kind, pop));
  arith(MEM_F32, "f"); // D8
  t.push(ld("fld m32", LD_F32), undefinedOpcode, st("fst m32", ST_F32, false), st("fstp m32", ST_F32, true),
    form("fldenv", fldenv, "c"), form("fldcw", fldcw, "c"), form("fnstenv", fnstenv, "nc"), form("fnstcw", fnstcw, "nc")); // D9
  arith(MEM_I32, "fi"); // DA
  t.push(ld("fild m32int", LD_I32), undefinedOpcode, st("fist m32int", ST_I32, false), st("fistp m32int", ST_I32, true),
    undefinedOpcode, ld("fld m80", LD_F80), undefinedOpcode, st("fstp m80", ST_F80, true)); // DB
  arith(MEM_F64, "f"); // DC
  t.push(ld("fld m64", LD_F64), undefinedOpcode, st("fst m64", ST_F64, false), st("fstp m64", ST_F64, true),
    form("frstor", frstor, "c"), undefinedOpcode, form("fnsave", fnsave, "nc"), form("fnstsw m16", fnstsw, "nc")); // DD
  arith(MEM_I16, "fi"); // DE
  t.push(ld("fild m16int", LD_I16), undefinedOpcode, st("fist m16int", ST_I16, false), st("fistp m16int", ST_I16, true),
    ld("fbld m80", LD_BCD), ld("fild m64int", LD_I64), st("fbstp m80", ST_BCD, true), st("fistp m64int", ST_I64, true)); // DF
  return t;
}

// ---- register forms: index (opcode & 7) << 6 | (modrm & 0x3f) ----

function registerForms(): InstructionForm[] {
  const t = new Array<InstructionForm>(512).fill(undefinedOpcode);
  const each = (op: number, reg: number, make: (sti: number) => InstructionForm) => {
    for (let k = 0; k < 8; k++) t[(op << 6) | (reg << 3) | k] = make(k);
  };
  const one = (op: number, low: number, f: InstructionForm) => {
    t[(op << 6) | low] = f;
  };
  // D8: ST(0) = ST(0) op ST(i); D8 D0/D8 FCOM/FCOMP.
  for (let reg = 0; reg < 8; reg++) {
    if (reg === 2 || reg === 3) each(0, reg, (k) => form(`${ARITH[reg]} st(${k})`, (x, c, i) => compareRegister(x, c, i, false, reg - 2)));
    else each(0, reg, (k) => form(`${ARITH[reg]} st,st(${k})`, (x, c, i) => arithRegister(x, c, i, false, false)));
  }
  // D9
  each(1, 0, (k) => form(`fld st(${k})`, fldRegister));
  each(1, 1, (k) => form(`fxch st(${k})`, fxch));
  one(1, 0x10, form("fnop", () => undefined));
  each(1, 3, (k) => form(`fstp1 st(${k})`, (x, c, i) => fstRegister(x, c, i, true)));
  one(1, 0x20, form("fchs", (x) => fsign(x, false)));
  one(1, 0x21, form("fabs", (x) => fsign(x, true)));
  one(1, 0x24, form("ftst", ftst));
  one(1, 0x25, form("fxam", fxam));
  ["fld1", "fldl2t", "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz"].forEach((name, k) =>
    one(1, 0x28 + k, form(name, (x) => fldConstant(x, k))),
  );
  one(1, 0x30, form("f2xm1", TRANSCENDENTAL.f2xm1));
  one(1, 0x31, form("fyl2x", TRANSCENDENTAL.fyl2x));
  one(1, 0x32, form("fptan", TRANSCENDENTAL.fptan));
  one(1, 0x33, form("fpatan", TRANSCENDENTAL.fpatan));
  one(1, 0x34, form("fxtract", fxtractOp));
  one(1, 0x35, form("fprem1", (x) => fpremOp(x, true)));
  one(1, 0x36, form("fdecstp", (x) => fincstp(x, -1)));
  one(1, 0x37, form("fincstp", (x) => fincstp(x, 1)));
  one(1, 0x38, form("fprem", (x) => fpremOp(x, false)));
  one(1, 0x39, form("fyl2xp1", TRANSCENDENTAL.fyl2xp1));
  one(1, 0x3a, form("fsqrt", (x) => unary(x, 0)));
  one(1, 0x3b, form("fsincos", TRANSCENDENTAL.fsincos));
  one(1, 0x3c, form("frndint", (x) => unary(x, 1)));
  one(1, 0x3d, form("fscale", fscaleOp));
  one(1, 0x3e, form("fsin", TRANSCENDENTAL.fsin));
  one(1, 0x3f, form("fcos", TRANSCENDENTAL.fcos));
  // DA: FCMOVB/E/BE/U, FUCOMPP.
  [2, 4, 6, 10].forEach((cc, reg) =>
    each(2, reg, (k) => form(`fcmov${["b", "e", "be", "u"][reg]} st,st(${k})`, (x, c, i) => fcmov(x, c, i, cc))),
  );
  one(2, 0x29, form("fucompp", (x) => compareWith(x, 1, true, 2)));
  // DB: FCMOVNB/NE/NBE/NU, FNCLEX, FNINIT, FUCOMI, FCOMI; FENI/FDISI/FSETPM are no-ops on a P6.
  [3, 5, 7, 11].forEach((cc, reg) =>
    each(3, reg, (k) => form(`fcmovn${["b", "e", "be", "u"][reg]} st,st(${k})`, (x, c, i) => fcmov(x, c, i, cc))),
  );
  one(3, 0x20, form("fneni", () => undefined, "nc"));
  one(3, 0x21, form("fndisi", () => undefined, "nc"));
  one(3, 0x22, form("fnclex", fnclex, "nc"));
  one(3, 0x23, form("fninit", (x) => x.finit(), "nc"));
  one(3, 0x24, form("fnsetpm", () => undefined, "nc"));
  each(3, 5, (k) => form(`fucomi st,st(${k})`, (x, c, i) => compareEflags(x, c, i, true, false)));
  each(3, 6, (k) => form(`fcomi st,st(${k})`, (x, c, i) => compareEflags(x, c, i, false, false)));
  // DC: ST(i) = ST(i) op ST(0) (the sub/div pairs reversed); DC D0/D8 are FCOM/FCOMP aliases.
  for (let reg = 0; reg < 8; reg++) {
    if (reg === 2 || reg === 3) each(4, reg, (k) => form(`${ARITH[reg]}${reg} st(${k})`, (x, c, i) => compareRegister(x, c, i, false, reg - 2)));
    else each(4, reg, (k) => form(`${ARITH[reg ^ (reg >= 4 ? 1 : 0)]} st(${k}),st`, (x, c, i) => arithRegister(x, c, i, true, false)));
  }
  // DD: FFREE, FXCH4, FST, FSTP, FUCOM, FUCOMP.
  each(5, 0, (k) => form(`ffree st(${k})`, (x, c, i) => ffree(x, c, i, false)));
  each(5, 1, (k) => form(`fxch4 st(${k})`, fxch));
  each(5, 2, (k) => form(`fst st(${k})`, (x, c, i) => fstRegister(x, c, i, false)));
  each(5, 3, (k) => form(`fstp st(${k})`, (x, c, i) => fstRegister(x, c, i, true)));
  each(5, 4, (k) => form(`fucom st(${k})`, (x, c, i) => compareRegister(x, c, i, true, 0)));
  each(5, 5, (k) => form(`fucomp st(${k})`, (x, c, i) => compareRegister(x, c, i, true, 1)));
  // DE: the popping forms, FCOMP5, FCOMPP.
  for (let reg = 0; reg < 8; reg++) {
    if (reg === 2) each(6, reg, (k) => form(`fcomp5 st(${k})`, (x, c, i) => compareRegister(x, c, i, false, 1)));
    else if (reg !== 3) each(6, reg, (k) => form(`${ARITH[reg ^ (reg >= 4 ? 1 : 0)]}p st(${k}),st`, (x, c, i) => arithRegister(x, c, i, true, true)));
  }
  one(6, 0x19, form("fcompp", (x) => compareWith(x, 1, false, 2)));
  // DF: FFREEP, FXCH7, FSTP8, FSTP9, FNSTSW AX, FUCOMIP, FCOMIP.
  each(7, 0, (k) => form(`ffreep st(${k})`, (x, c, i) => ffree(x, c, i, true)));
  each(7, 1, (k) => form(`fxch7 st(${k})`, fxch));
  each(7, 2, (k) => form(`fstp8 st(${k})`, (x, c, i) => fstRegister(x, c, i, true)));
  each(7, 3, (k) => form(`fstp9 st(${k})`, (x, c, i) => fstRegister(x, c, i, true)));
  one(7, 0x20, form("fnstsw ax", (x, c) => { c.r16[0] = x.status; }, "nc"));
  each(7, 5, (k) => form(`fucomip st,st(${k})`, (x, c, i) => compareEflags(x, c, i, true, true)));
  each(7, 6, (k) => form(`fcomip st,st(${k})`, (x, c, i) => compareEflags(x, c, i, false, true)));
  return t;
}

export const MEMORY_FORMS: readonly InstructionForm[] = memoryForms();
export const REGISTER_FORMS: readonly InstructionForm[] = registerForms();

/** Mnemonic of an x87 instruction (opcode D8-DF, ModRM), for traces and tests. */
export function x87Mnemonic(opcode: number, modrm: number): string {
  const op = opcode & 7;
  return modrm >= 0xc0 ? REGISTER_FORMS[(op << 6) | (modrm & 0x3f)].mnemonic : MEMORY_FORMS[(op << 3) | ((modrm >> 3) & 7)].mnemonic;
}
