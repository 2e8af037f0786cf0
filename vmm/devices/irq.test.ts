// Tests of the shared (wired-OR) interrupt line.
import { describe, expect, it } from "vitest";
import { IrqLine, SharedIrq } from "./irq.js";
import { RecordingSink } from "./test-support.js";

describe("SharedIrq", () => {
  it("holds the line while any source asserts; one source lowering does not drop the other", () => {
    const sink = new RecordingSink();
    const out = new IrqLine([{ sink, pin: 9 }]);
    const shared = new SharedIrq(out);
    const sci = shared.input();
    const intx = shared.input();
    sci.raise();
    intx.raise();
    intx.lower();
    expect(sink.level(9)).toBe(true);
    sci.lower();
    expect(sink.level(9)).toBe(false);
    expect(sink.risesOf(9)).toBe(1);
  });

  it("resyncs the output after the sources restored their levels, without telling the controllers", () => {
    const sink = new RecordingSink();
    const out = new IrqLine([{ sink, pin: 9 }]);
    const shared = new SharedIrq(out);
    const a = shared.input();
    a.restore(true);
    shared.resync();
    expect(out.level).toBe(true);
    expect(sink.risesOf(9)).toBe(0);
    // The next change is seen: the output knew it was high.
    a.lower();
    expect(sink.levels.get(9)).toBe(false);
  });
});
