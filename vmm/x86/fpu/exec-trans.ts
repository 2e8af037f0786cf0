// Handlers of the x87 transcendental instructions: stack handling around transcendental.ts.

import { DONE, type F80, setIndefinite } from "./arith.js";
import { IE, INT_BIT, type RoundContext, SF } from "./float80.js";
import { preStops } from "./exec-arith.js";
import type { X87Host } from "./host.js";
import { f2xm1, fcos, fpatan, fptan, fsin, fsincos, fyl2x, fyl2xp1, OUT_OF_RANGE } from "./transcendental.js";
import { SW_C2 } from "./status.js";
import type { X87 } from "./x87.js";

type Binary = (ctx: RoundContext, xSe: number, xM: bigint, ySe: number, yM: bigint, out: F80) => number;
type Unary = (ctx: RoundContext, se: number, m: bigint, out: F80) => number;

/** ST(1) = f(ST(0), ST(1)), then pop (FYL2X, FYL2XP1, FPATAN). */
function binaryPop(x: X87, f: Binary): void {
  x.setC1(0);
  if (x.isEmpty(0) || x.isEmpty(1)) {
    if (x.stackUnderflow(1)) x.pop();
    return;
  }
  const a = x.phys(0), b = x.phys(1);
  if (f(x.ctx, x.se[a], x.m[a], x.se[b], x.m[b], x.t0) !== DONE || preStops(x)) return;
  x.writeF(1, x.t0);
  x.setC1(x.ctx.up);
  x.pop();
}

/** ST(0) = f(ST(0)) with the C2 out-of-range protocol (FSIN, FCOS) or none (F2XM1). */
function unaryTrig(x: X87, f: Unary, trig: boolean): void {
  x.setC1(0);
  if (x.isEmpty(0)) {
    x.stackUnderflow(0);
    return;
  }
  const a = x.phys(0);
  const r = f(x.ctx, x.se[a], x.m[a], x.t0);
  if (r === OUT_OF_RANGE) {
    x.sw |= SW_C2;
    return;
  }
  if (trig) x.sw &= ~SW_C2;
  if (r !== DONE || preStops(x)) return;
  x.writeF(0, x.t0);
  x.setC1(x.ctx.up);
}

/** Stack checks of the pushing forms (FPTAN, FSINCOS); false after a stack fault. */
function twoResultCheck(x: X87): boolean {
  const underflow = x.isEmpty(0);
  if (!underflow && x.isEmpty(7)) return true;
  x.ctx.exc |= IE | SF;
  x.setC1(underflow ? 0 : 1);
  if (x.cw & IE) {
    setIndefinite(x.t0);
    x.writeF(0, x.t0);
    x.push(x.t0.se, x.t0.m);
  }
  return false;
}

function fptanOp(x: X87): void {
  x.setC1(0);
  if (!twoResultCheck(x)) return;
  const a = x.phys(0);
  const r = fptan(x.ctx, x.se[a], x.m[a], x.t0);
  if (r === OUT_OF_RANGE) {
    x.sw |= SW_C2;
    return;
  }
  x.sw &= ~SW_C2;
  if (r !== DONE || preStops(x)) return;
  x.writeF(0, x.t0);
  x.setC1(x.ctx.up);
  if ((x.t0.se & 0x7fff) === 0x7fff && x.t0.m !== INT_BIT) x.push(x.t0.se, x.t0.m);
  else x.push(0x3fff, INT_BIT);
}

function fsincosOp(x: X87): void {
  x.setC1(0);
  if (!twoResultCheck(x)) return;
  const a = x.phys(0);
  const r = fsincos(x.ctx, x.se[a], x.m[a], x.t0, x.t1);
  if (r === OUT_OF_RANGE) {
    x.sw |= SW_C2;
    return;
  }
  x.sw &= ~SW_C2;
  if (r !== DONE || preStops(x)) return;
  x.writeF(0, x.t0);
  x.push(x.t1.se, x.t1.m);
  x.setC1(x.ctx.up);
}

export const TRANSCENDENTAL: Record<string, (x: X87, c: X87Host, i: number) => void> = {
  f2xm1: (x) => unaryTrig(x, f2xm1, false),
  fyl2x: (x) => binaryPop(x, fyl2x),
  fyl2xp1: (x) => binaryPop(x, fyl2xp1),
  fpatan: (x) => binaryPop(x, fpatan),
  fptan: fptanOp,
  fsin: (x) => unaryTrig(x, fsin, true),
  fcos: (x) => unaryTrig(x, fcos, true),
  fsincos: fsincosOp,
};
