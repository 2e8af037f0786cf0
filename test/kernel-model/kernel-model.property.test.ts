// Property test: random create / delegate / revoke / call sequences across four PDs, compared after
// every step with a naive reference model (see model.ts for the invariants checked).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Checker, OP_RANDOM_WORDS, opFrom } from "./model.js";
import { scaled } from "../support/scale.js";

const RUNS = scaled(10_000);

describe("kernel against the reference model", () => {
  it(`agrees on ${RUNS} random operation sequences`, () => {
    const op = fc.array(fc.nat(), { minLength: OP_RANDOM_WORDS, maxLength: OP_RANDOM_WORDS }).map(opFrom);
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const checker = new Checker();
        for (const o of ops) checker.step(o);
      }),
      { numRuns: RUNS, seed: 20261125 },
    );
  }, 600_000);

  it("the model itself notices a wrong kernel answer", () => {
    const checker = new Checker();
    checker.step({ op: "sm", pd: 1, sel: 20, initial: 0 });
    // Tamper with the kernel behind the model's back: the next comparison must fail.
    checker.k.root.objects.get(9)!.cap.object;
    const pd = checker.k.root.objects.get(9)!.cap.object as import("../../kernel/pd.js").Pd;
    pd.used += 1;
    expect(() => checker.step({ op: "down", pd: 1, sel: 20 })).toThrow(/uses/);
  });
});
