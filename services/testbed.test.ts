import { describe, expect, it } from "vitest";
import { Status } from "../kernel/index.js";
import { Testbed } from "./testbed.js";

describe("testbed", () => {
  it("runs one component against a fake peer and shows what the fake saw", () => {
    const bed = new Testbed();
    const seen: number[] = [];
    const clock = bed.fake("clock", (utcb) => {
      seen.push(utcb.words[0]);
      utcb.set(1000 * utcb.words[0]);
    });
    const results: number[] = [];
    bed.start(
      "counter",
      (sys) =>
        (function* () {
          for (let i = 1; i <= 3; i++) {
            sys.utcb.set(i);
            expect(sys.call(7)).toBe(Status.SUCCESS);
            results.push(sys.utcb.words[0]);
            yield sys.wait.sleep(10);
          }
          // A selector it was not granted is just empty.
          expect(sys.call(8)).toBe(Status.BAD_CAPABILITY);
        })(),
      { grants: [{ from: clock, to: 7 }] },
    );
    expect(bed.run()).toBe("idle");
    expect(bed.faults).toEqual([]);
    expect(seen).toEqual([1, 2, 3]);
    expect(results).toEqual([1000, 2000, 3000]);
  });

  it("a component that throws is reported as a fault, and the rest goes on", () => {
    const bed = new Testbed();
    let other = 0;
    bed.start("crashy", () =>
      (function* () {
        throw new Error("bad component");
      })(),
    );
    bed.start("steady", (sys) =>
      (function* () {
        yield sys.wait.sleep(5);
        other++;
      })(),
    );
    bed.run();
    expect(bed.faults.map((f) => f.pd)).toEqual(["crashy"]);
    expect(other).toBe(1);
  });
});
