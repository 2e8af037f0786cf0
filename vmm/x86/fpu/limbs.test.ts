// The number fast paths (limbs*.ts) against the BigInt reference (arith.ts, ops.ts,
// convert.ts) on random operands under every precision and rounding control: wherever a fast path
// answers, its result, flags and C1 must be the reference's; where it declines, it changes nothing.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { add, DONE, div, mul, newF80, sqrt } from "./arith.js";
import { fromInteger, loadF32, loadF64, storeF32, storeF64, toInteger, widenF32, widenF64 } from "./convert.js";
import { classify, newRoundContext } from "./float80.js";
import { addParts, classifyParts, compareParts, frndintParts, mulParts, newParts, type Parts } from "./limbs.js";
import { divParts, sqrtParts } from "./limbs-div.js";
import { f32Parts, f64Parts, fistParts, int64Parts, intParts, storeF32Parts, storeF64Parts } from "./limbs-convert.js";
import { compare, frndint } from "./ops.js";

const J = 1n << 63n, ONES = (1n << 64n) - 1n;
const hiOf = (m: bigint): number => Number(m >> 32n) | 0;
const loOf = (m: bigint): number => Number(m & 0xffffffffn) | 0;
const sigOf = (p: Parts): bigint => (BigInt(p.hi >>> 0) << 32n) | BigInt(p.lo >>> 0);

interface Value {
  se: number;
  m: bigint;
}

/** Significands with the integer bit: random, extreme, few bits (ties), runs of ones (carries). */
const normalSig = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: J, max: ONES }) },
  { weight: 1, arbitrary: fc.constantFrom(J, ONES, J | 1n, 0xc000000000000000n, 0xfffffffffffff800n, 0xffffff0000000000n) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 64 }), fc.bigInt({ min: 0n, max: ONES }))
      .map(([bits, r]) => (J | r) & (ONES << BigInt(64 - bits)) & ONES),
  },
  // High bits and a low tail: sticky bits far below the rounding position.
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 0xffffn }).map((k) => J | k) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 40 }), fc.bigInt({ min: 0n, max: ONES }))
      .map(([bits, r]) => ((J | r) & (ONES << BigInt(64 - bits)) & ONES) | 1n),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 63 }))
      .map(([a, b]) => J | ((1n << BigInt(Math.max(a, b))) - (1n << BigInt(Math.min(a, b))))),
  },
);

/** Any 80-bit encoding, mostly normals (the fast paths must decline the others). */
const anyValue: fc.Arbitrary<Value> = fc.tuple(
  fc.integer({ min: 0, max: 1 }),
  fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0x3fff - 200, max: 0x3fff + 200 }) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 0x7ffe }) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 140 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0x7ffe - 140, max: 0x7ffe }) },
  ),
  normalSig,
  fc.integer({ min: 0, max: 15 }),
  fc.bigInt({ min: 0n, max: ONES }),
).map(([s, e, m, kind, r]): Value => {
  const sign = s << 15;
  switch (kind) {
    case 0: return { se: sign, m: 0n };
    case 1: return { se: sign, m: r & ~J || 1n }; // denormal
    case 2: return { se: sign, m: r | J }; // pseudo-denormal
    case 3: return { se: sign | 0x7fff, m: kind === 3 && (r & 1n) ? J : r | J }; // infinity or NaN
    case 4: return { se: sign | e, m: r & ~J }; // unnormal
    default: return { se: sign | e, m };
  }
});

/** b close to a in exponent (cancellation, every alignment distance) or anywhere. */
const pair = anyValue.chain((a) =>
  fc.tuple(fc.constant(a), fc.oneof(
    anyValue,
    fc.tuple(anyValue, fc.integer({ min: -140, max: 140 })).map(([b, d]): Value => {
      const e = (a.se & 0x7fff) + d;
      if ((b.se & 0x7fff) === 0 || (b.se & 0x7fff) === 0x7fff || e < 1 || e > 0x7ffe) return b;
      return { se: (b.se & 0x8000) | e, m: b.m };
    }),
    fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 70 }), fc.bigInt({ min: 0n, max: 7n }))
      .map(([s, d, k]): Value => ({ se: (s << 15) | (a.se & 0x7fff), m: (a.m >> BigInt(d)) + k || J })),
  )),
);

/** Control word: random exception masks, every PC (including the reserved 1) and RC. */
const controlWord = fc.tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }))
  .map(([masks, pc, rc]) => masks | 0x40 | (pc << 8) | (rc << 10));

type RefOp = (ctx: ReturnType<typeof newRoundContext>, a: Value, b: Value, out: ReturnType<typeof newF80>) => number;
type FastOp = (ctx: ReturnType<typeof newRoundContext>, a: Value, b: Value, out: Parts) => boolean;

/** Run both; returns whether the fast path answered. */
function agree(cw: number, a: Value, b: Value, ref: RefOp, fast: FastOp): boolean {
  const rctx = newRoundContext(cw), fctx = newRoundContext(cw);
  const out = newF80(), p = newParts();
  const r = ref(rctx, a, b, out);
  if (!fast(fctx, a, b, p)) {
    if (fctx.exc !== 0 || fctx.up !== 0) expect([fctx.exc, fctx.up]).toEqual([0, 0]);
    return false;
  }
  // Compare cheaply; build the readable report only on a mismatch.
  if (r !== DONE || p.se !== out.se || sigOf(p) !== out.m || fctx.exc !== rctx.exc || fctx.up !== rctx.up) {
    expect({ r, se: p.se, m: sigOf(p).toString(16), exc: fctx.exc, up: fctx.up })
      .toEqual({ r: DONE, se: out.se, m: out.m.toString(16), exc: rctx.exc, up: rctx.up });
  }
  return true;
}

const OPS: Record<string, [RefOp, FastOp]> = {
  add: [
    (c, a, b, o) => add(c, a.se, a.m, b.se, b.m, false, o),
    (c, a, b, p) => addParts(c, a.se, hiOf(a.m), loOf(a.m), b.se, hiOf(b.m), loOf(b.m), 0, p),
  ],
  sub: [
    (c, a, b, o) => add(c, a.se, a.m, b.se, b.m, true, o),
    (c, a, b, p) => addParts(c, a.se, hiOf(a.m), loOf(a.m), b.se, hiOf(b.m), loOf(b.m), 1, p),
  ],
  mul: [
    (c, a, b, o) => mul(c, a.se, a.m, b.se, b.m, o),
    (c, a, b, p) => mulParts(c, a.se, hiOf(a.m), loOf(a.m), b.se, hiOf(b.m), loOf(b.m), p),
  ],
  div: [
    (c, a, b, o) => div(c, a.se, a.m, b.se, b.m, o),
    (c, a, b, p) => divParts(c, a.se, hiOf(a.m), loOf(a.m), b.se, hiOf(b.m), loOf(b.m), p),
  ],
};

describe("number fast paths agree with the BigInt reference", () => {
  for (const [name, [ref, fast]] of Object.entries(OPS)) {
    it(`${name}: random operands, every PC/RC and mask`, () => {
      let answered = 0, runs = 0;
      fc.assert(
        fc.property(controlWord, pair, (cw, [a, b]) => {
          runs++;
          if (agree(cw, a, b, ref, fast)) answered++;
        }),
        { numRuns: 15_000, seed: 0x5eed + name.length },
      );
      // Most generated pairs are normal: the fast path must be the common case, not a no-op.
      expect(answered / runs).toBeGreaterThan(0.2);
    });
  }

  it("sqrt: random operands, every PC/RC and mask", () => {
    const ref: RefOp = (c, a, _b, o) => sqrt(c, a.se, a.m, o);
    const fast: FastOp = (c, a, _b, p) => sqrtParts(c, a.se, hiOf(a.m), loOf(a.m), p);
    // Perfect squares and near-squares (exact roots, remainders of one) besides random values.
    const square = fc.tuple(fc.bigInt({ min: 1n << 31n, max: (1n << 32n) - 1n }), fc.integer({ min: -1, max: 1 }), fc.integer({ min: 1, max: 0x7ffe }))
      .map(([r, k, e]): Value => ({ se: e, m: ((r * r) << BigInt(64 - (r * r).toString(2).length)) + BigInt(k) || J }));
    let answered = 0;
    fc.assert(
      fc.property(controlWord, fc.oneof(anyValue, square), (cw, a) => {
        if (agree(cw, a, a, ref, fast)) answered++;
      }),
      { numRuns: 20_000, seed: 16 },
    );
    expect(answered).toBeGreaterThan(8_000);
  });

  it("sqrt: tiny nonzero remainders (N - Y^2 below 2^32, built by Hensel lifting)", () => {
    /** x with x^2 = t (mod 2^63), for t = 1 (mod 8). */
    const sqrtMod = (t: bigint): bigint => {
      let x = 1n;
      for (let i = 3n; i < 63n; i++) if (((x * x - t) >> i) & 1n) x += 1n << (i - 1n);
      return x & ((1n << 63n) - 1n);
    };
    let checked = 0;
    fc.assert(
      fc.property(controlWord, fc.bigInt({ min: 0n, max: (1n << 29n) - 1n }), fc.integer({ min: 0x3fff - 300, max: 0x3fff + 300 }), (cw, k, e) => {
        const r = 8n * k + 7n; // remainder, = 7 (mod 8) so that -r is an odd square residue
        for (const x of [sqrtMod((1n << 63n) - r), (1n << 63n) - sqrtMod((1n << 63n) - r)]) {
          const y = x | (1n << 63n);
          const n = y * y + r;
          if (n >= 1n << 127n || n % (1n << 63n) !== 0n) continue;
          // An even unbiased exponent makes the root of m * 2^63.
          const a = { se: (e - ((e - 0x3fff) & 1)) & 0x7fff, m: n >> 63n };
          expect(agree(cw, a, a, (c, v, _b, o) => sqrt(c, v.se, v.m, o), (c, v, _b, p) => sqrtParts(c, v.se, hiOf(v.m), loOf(v.m), p))).toBe(true);
          checked++;
        }
      }),
      { numRuns: 2_000, seed: 17 },
    );
    expect(checked).toBeGreaterThan(500);
  });

  it("frndint: random operands and values near integers, every RC", () => {
    const ref: RefOp = (c, a, _b, o) => frndint(c, a.se, a.m, o);
    const fast: FastOp = (c, a, _b, p) => frndintParts(c, a.se, hiOf(a.m), loOf(a.m), p);
    const nearIntegers = fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: -3, max: 66 }), normalSig)
      .map(([s, e, m]): Value => ({ se: (s << 15) | (0x3fff + e), m }));
    let answered = 0;
    fc.assert(
      fc.property(controlWord, fc.oneof(anyValue, nearIntegers), (cw, a) => {
        if (agree(cw, a, a, ref, fast)) answered++;
      }),
      { numRuns: 20_000, seed: 18 },
    );
    expect(answered).toBeGreaterThan(8_000);
  });

  it("add/sub: edge significands at every alignment distance, every PC/RC", () => {
    const edges = [J, ONES, J | 1n, J | 0xffffn, 0xc000000000000001n, 0xffffffff00000000n, J | (1n << 32n)];
    let answered = 0;
    for (const am of edges) for (const bm of edges) for (let d = 0; d <= 140; d++) {
      for (let k = 0; k < 16; k++) {
        const cw = 0x7f | ((k & 3) << 8) | ((k >> 2) << 10);
        const a = { se: 0x3fff, m: am }, b = { se: (k & 1) << 15 | (0x3fff - d), m: bm };
        if (agree(cw, a, b, OPS.sub[0], OPS.sub[1])) answered++;
        if (agree(cw, b, a, OPS.add[0], OPS.add[1])) answered++;
      }
    }
    expect(answered).toBe(2 * edges.length * edges.length * 141 * 16);
  });

  it("answers for ordinary normal operands (no exponent extremes)", () => {
    const ordinary = fc.tuple(fc.integer({ min: 0, max: 0xffff }), normalSig)
      .map(([s, m]): Value => ({ se: (s & 0x8000) | (0x3fff - 100 + (s % 200)), m }));
    fc.assert(
      fc.property(controlWord, ordinary, ordinary, (cw, a, b) => {
        for (const [ref, fast] of Object.values(OPS)) {
          const wasAnswered = agree(cw, a, b, ref, fast);
          // Only an exact cancellation to a tiny value may fall back; products and quotients never.
          if (!wasAnswered && ref !== OPS.add[0] && ref !== OPS.sub[0]) expect(wasAnswered).toBe(true);
        }
      }),
      { numRuns: 5_000, seed: 7 },
    );
  });
});

describe("number memory conversions agree with convert.ts", () => {
  it("64-bit and 32-bit reals widen exactly (normals and zeros; others declined)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, 0x7fe, 0x7ff, -1), (lo, hi, e) => {
        if (e >= 0) hi = (hi & 0x800fffff) | (e << 20);
        const p = newParts(), ref = newF80(), ctx = newRoundContext();
        const denormal = widenF64(lo | 0, hi | 0, ref);
        if (f64Parts(lo | 0, hi | 0, p)) {
          expect(denormal).toBe(false);
          expect([p.se, sigOf(p)]).toEqual([ref.se, ref.m]);
          expect(loadF64(ctx, lo | 0, hi | 0, ref)).toBe(DONE);
          expect([p.se, sigOf(p), ctx.exc]).toEqual([ref.se, ref.m, 0]);
        } else {
          const exp = (hi >>> 20) & 0x7ff;
          expect(exp === 0x7ff || (exp === 0 && (lo !== 0 || (hi & 0xfffff) !== 0))).toBe(true);
        }
        const bits = e >= 0 ? (hi & 0x807fffff) | ((e & 0xff) << 23) : hi;
        const q = newParts(), ref32 = newF80();
        const den32 = widenF32(bits | 0, ref32);
        if (f32Parts(bits | 0, q)) {
          expect(den32).toBe(false);
          expect([q.se, sigOf(q)]).toEqual([ref32.se, ref32.m]);
          expect(loadF32(newRoundContext(), bits | 0, ref32)).toBe(DONE);
          expect([q.se, sigOf(q)]).toEqual([ref32.se, ref32.m]);
        } else expect(((bits >>> 23) & 0xff) === 0 || ((bits >>> 23) & 0xff) === 0xff).toBe(true);
      }),
      { numRuns: 20_000, seed: 11 },
    );
  });

  it("64-bit integers convert exactly", () => {
    fc.assert(
      fc.property(fc.oneof(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), fc.constantFrom(0n, -1n, 1n, -(1n << 63n), (1n << 63n) - 1n, 1n << 32n, -(1n << 32n))), (v) => {
        const p = newParts(), ref = newF80();
        const u = BigInt.asUintN(64, v);
        int64Parts(Number(u & 0xffffffffn) | 0, Number(u >> 32n) | 0, p);
        fromInteger(v < 0n ? 1 : 0, v < 0n ? -v : v, ref);
        expect([p.se, sigOf(p)]).toEqual([ref.se, ref.m]);
      }),
      { numRuns: 5_000, seed: 19 },
    );
  });

  it("classes of every encoding", () => {
    fc.assert(
      fc.property(anyValue, (v) => {
        expect(classifyParts(v.se, hiOf(v.m), loOf(v.m))).toBe(classify(v.se, v.m));
      }),
      { numRuns: 5_000, seed: 20 },
    );
  });

  it("16/32-bit integers convert exactly", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.constantFrom(0, -1, 1, -0x80000000, 0x7fffffff, -0x8000, 0x7fff)), (v) => {
        const p = newParts(), ref = newF80();
        intParts(v, p);
        fromInteger(v < 0 ? 1 : 0, BigInt(Math.abs(v)), ref);
        expect([p.se, sigOf(p)]).toEqual([ref.se, ref.m]);
      }),
      { numRuns: 5_000, seed: 12 },
    );
  });

  it("FST m64 / m32 round like convert.ts under every RC (declining denormal, overflow, special)", () => {
    const nearLimits = fc.oneof(
      fc.integer({ min: 0x3fff - 1100, max: 0x3fff - 960 }),
      fc.integer({ min: 0x3fff + 960, max: 0x3fff + 1100 }),
      fc.integer({ min: 0x3fff - 160, max: 0x3fff + 160 }),
    );
    let answered = 0;
    fc.assert(
      fc.property(controlWord, anyValue, nearLimits, fc.boolean(), (cw, v, e, keepExp) => {
        const se = keepExp || (v.se & 0x7fff) === 0 || (v.se & 0x7fff) === 0x7fff ? v.se : (v.se & 0x8000) | e;
        const hi = hiOf(v.m), lo = loOf(v.m);
        const rctx = newRoundContext(cw), fctx = newRoundContext(cw), p = newParts();
        const ref64 = storeF64(rctx, se, v.m);
        if (storeF64Parts(fctx, se, hi, lo, p)) {
          answered++;
          expect((BigInt(p.hi >>> 0) << 32n) | BigInt(p.lo >>> 0)).toBe(ref64);
          expect([fctx.exc, fctx.up]).toEqual([rctx.exc, rctx.up]);
        } else expect([fctx.exc, fctx.up]).toEqual([0, 0]);
        const r32 = newRoundContext(cw), f32 = newRoundContext(cw);
        const ref32 = storeF32(r32, se, v.m);
        if (storeF32Parts(f32, se, hi, lo, p)) {
          expect(p.lo >>> 0).toBe(ref32);
          expect([f32.exc, f32.up]).toEqual([r32.exc, r32.up]);
        } else expect([f32.exc, f32.up]).toEqual([0, 0]);
      }),
      { numRuns: 20_000, seed: 13 },
    );
    expect(answered).toBeGreaterThan(5_000);
  });
});

describe("number compare and integer store agree with ops.ts / convert.ts", () => {
  it("compare: normal and zero operands (others declined)", () => {
    let answered = 0;
    fc.assert(
      fc.property(pair, fc.boolean(), ([a, b], quiet) => {
        const r = compareParts(a.se, hiOf(a.m), loOf(a.m), b.se, hiOf(b.m), loOf(b.m));
        const ctx = newRoundContext();
        const ref = compare(ctx, a.se, a.m, b.se, b.m, quiet);
        if (r < 0) return;
        answered++;
        if (r !== ref || ctx.exc !== 0) expect([r, 0]).toEqual([ref, ctx.exc]);
      }),
      { numRuns: 20_000, seed: 14 },
    );
    expect(answered).toBeGreaterThan(5_000);
  });

  it("FIST m16/m32/m64 under every RC: value, PE and C1 (out of range declined)", () => {
    const LIMITS: Record<number, [bigint, bigint]> = {
      2: [0x7fffn, 0x8000n], 4: [0x7fffffffn, 0x80000000n], 8: [0x7fffffffffffffffn, 0x8000000000000000n],
    };
    const nearIntegers = fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: -3, max: 64 }), normalSig)
      .map(([s, e, m]): Value => ({ se: (s << 15) | (0x3fff + e), m }));
    let answered = 0;
    fc.assert(
      fc.property(controlWord, fc.oneof(nearIntegers, anyValue), fc.constantFrom(2, 4, 8), (cw, v, bytes) => {
        const [limit, negLimit] = LIMITS[bytes];
        const rctx = newRoundContext(cw), fctx = newRoundContext(cw), p = newParts();
        const ref = toInteger(rctx, v.se, v.m, limit, negLimit);
        if (!fistParts(fctx, v.se, hiOf(v.m), loOf(v.m), bytes, p)) {
          expect([fctx.exc, fctx.up]).toEqual([0, 0]);
          return;
        }
        answered++;
        const got = BigInt.asIntN(64, (BigInt(p.hi >>> 0) << 32n) | BigInt(p.lo >>> 0));
        if (ref !== got || fctx.exc !== rctx.exc || fctx.up !== rctx.up) {
          expect([got, fctx.exc, fctx.up]).toEqual([ref, rctx.exc, rctx.up]);
        }
      }),
      { numRuns: 30_000, seed: 15 },
    );
    expect(answered).toBeGreaterThan(8_000);
  });
});
