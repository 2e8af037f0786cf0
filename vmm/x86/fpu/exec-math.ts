// Handlers of the x87 operations on ST(0) (and ST(1)): FSQRT, FRNDINT, FSCALE, FXTRACT,
// FPREM, FPREM1.

import { DONE, setIndefinite, sqrt } from "./arith.js";
import { IE, SF } from "./float80.js";
import { frndintParts } from "./limbs.js";
import { sqrtParts } from "./limbs-div.js";
import { fprem, frndint, fscale, fxtract } from "./ops.js";
import { preStops } from "./exec-arith.js";
import type { X87 } from "./x87.js";
import { SW_C0, SW_C1, SW_C2, SW_C3 } from "./status.js";

/** ST(0) = f(ST(0)) for FSQRT (0) and FRNDINT (1). */
export function unary(x: X87, which: number): void {
  x.setC1(0);
  if (x.isEmpty(0)) {
    x.stackUnderflow(0);
    return;
  }
  const r = x.phys(0);
  const p = x.p0;
  const se = x.se[r], hi = x.sigHi(r), lo = x.sigLo(r);
  if (which === 0 ? sqrtParts(x.ctx, se, hi, lo, p) : frndintParts(x.ctx, se, hi, lo, p)) {
    x.writeParts(0, p.se, p.hi, p.lo);
    x.setC1(x.ctx.up);
    return;
  }
  const res = which === 0 ? sqrt(x.ctx, x.se[r], x.m[r], x.t0) : frndint(x.ctx, x.se[r], x.m[r], x.t0);
  if (res !== DONE || preStops(x)) return;
  x.writeF(0, x.t0);
  x.setC1(x.ctx.up);
}

export function fscaleOp(x: X87): void {
  x.setC1(0);
  if (x.isEmpty(0) || x.isEmpty(1)) {
    x.stackUnderflow(0);
    return;
  }
  const a = x.phys(0), b = x.phys(1);
  if (fscale(x.ctx, x.se[a], x.m[a], x.se[b], x.m[b], x.t0) !== DONE || preStops(x)) return;
  x.writeF(0, x.t0);
  x.setC1(x.ctx.up);
}

export function fxtractOp(x: X87): void {
  x.setC1(0);
  const underflow = x.isEmpty(0);
  if (underflow || !x.isEmpty(7)) {
    // Stack fault; the masked response leaves the indefinite in both results.
    x.ctx.exc |= IE | SF;
    x.setC1(underflow ? 0 : 1);
    if (x.cw & IE) {
      setIndefinite(x.t0);
      x.writeF(0, x.t0);
      x.push(x.t0.se, x.t0.m);
    }
    return;
  }
  const r = x.phys(0);
  if (fxtract(x.ctx, x.se[r], x.m[r], x.t0, x.t1) !== DONE || preStops(x)) return;
  x.writeF(0, x.t1);
  x.push(x.t0.se, x.t0.m);
}

/** FPREM (ieee false) and FPREM1. */
export function fpremOp(x: X87, ieee: boolean): void {
  x.sw &= ~(SW_C1 | SW_C2);
  if (x.isEmpty(0) || x.isEmpty(1)) {
    x.stackUnderflow(0);
    return;
  }
  const a = x.phys(0), b = x.phys(1);
  const rem = x.rem;
  if (fprem(x.ctx, x.se[a], x.m[a], x.se[b], x.m[b], ieee, x.t0, rem) !== DONE || preStops(x)) return;
  if (rem.q >= 0) {
    if (rem.partial) x.setCC(SW_C2);
    else x.setCC((rem.q & 4 ? SW_C0 : 0) | (rem.q & 2 ? SW_C3 : 0) | (rem.q & 1 ? SW_C1 : 0));
  }
  x.writeF(0, x.t0);
}
