// Transcendental results against values computed independently to 600 bits (mpmath) and rounded
// to nearest, plus the special operands of the SDM tables.
import { describe, expect, it } from "vitest";
import { type F80, newF80 } from "./arith.js";
import { newRoundContext } from "./float80.js";
import { f2xm1, fcos, fpatan, fptan, fsin, fyl2x, fyl2xp1, OUT_OF_RANGE } from "./transcendental.js";

const ONE: [number, bigint] = [0x3fff, 0x8000000000000000n];
const HALF: [number, bigint] = [0x3ffe, 0x8000000000000000n];
const TWO: [number, bigint] = [0x4000, 0x8000000000000000n];

function unary(f: typeof fsin, [se, m]: [number, bigint], cw = 0x37f): [number, bigint, number] {
  const ctx = newRoundContext(cw);
  const out: F80 = newF80();
  const r = f(ctx, se, m, out);
  return [out.se, out.m, r === OUT_OF_RANGE ? -1 : ctx.exc];
}

function binary(f: typeof fyl2x, x: [number, bigint], y: [number, bigint]): [number, bigint] {
  const ctx = newRoundContext();
  const out = newF80();
  f(ctx, x[0], x[1], y[0], y[1], out);
  return [out.se, out.m];
}

describe("transcendentals (correctly rounded)", () => {
  it("sin, cos, tan", () => {
    expect(unary(fsin, ONE).slice(0, 2)).toEqual([0x3ffe, 0xd76aa47848677021n]);
    expect(unary(fcos, ONE).slice(0, 2)).toEqual([0x3ffe, 0x8a51407da8345c92n]);
    expect(unary(fptan, HALF).slice(0, 2)).toEqual([0x3ffe, 0x8bda7adf9a3a5219n]);
    expect(unary(fsin, [0x3fff + 62, 0x8000000000000000n]).slice(0, 2)).toEqual([0xbffe, 0xb3f2b9aaf80a3946n]);
    expect(unary(fcos, [0x400c, 0x9c40000000000000n]).slice(0, 2)).toEqual([0xbffe, 0xf3c0744762204adcn]);
  });
  it("2^x - 1, y log2 x, y log2(x + 1), atan2", () => {
    expect(unary(f2xm1, HALF).slice(0, 2)).toEqual([0x3ffd, 0xd413cccfe7799211n]);
    expect(binary(fyl2x, [0x4000, 0xc000000000000000n], ONE)).toEqual([0x3fff, 0xcae00d1cfdeb43d0n]);
    expect(binary(fyl2xp1, [0x3fff - 10, 0x8000000000000000n], ONE)).toEqual([0x3ff5, 0xb89329ba1fa2a0fdn]);
    expect(binary(fpatan, TWO, ONE)).toEqual([0x3ffd, 0xed63382b0dda7b45n]);
  });
  it("|x| >= 2^63 is out of range (C2) and the operand stays", () => {
    expect(unary(fsin, [0x3fff + 63, 0x8000000000000000n])[2]).toBe(-1);
  });
  it("sin of a tiny x is x, or one below when chopping; PE always", () => {
    const x: [number, bigint] = [0x3fff - 100, 0x8000000000000001n];
    expect(unary(fsin, x)).toEqual([x[0], x[1], 0x20]);
    expect(unary(fsin, x, 0xf7f).slice(0, 2)).toEqual([x[0], x[1] - 1n]);
  });
  it("special operands: sin(inf) is invalid, f2xm1(-inf) = -1, atan2(+0, -0) = pi", () => {
    expect(unary(fsin, [0x7fff, 0x8000000000000000n])).toEqual([0xffff, 0xc000000000000000n, 1]);
    expect(unary(f2xm1, [0xffff, 0x8000000000000000n]).slice(0, 2)).toEqual([0xbfff, 0x8000000000000000n]);
    expect(binary(fpatan, [0x8000, 0n], [0, 0n])).toEqual([0x4000, 0xc90fdaa22168c235n]);
    expect(binary(fyl2x, [0, 0n], ONE)).toEqual([0xffff, 0x8000000000000000n]);
  });
});
