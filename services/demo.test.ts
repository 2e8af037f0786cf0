import { describe, expect, it } from "vitest";
import { runDemo } from "./demo.js";
import { ChromeTrace } from "./chrome-trace.js";

describe("demo system", () => {
  it("runs every client to completion, deterministically, and traces the calls", () => {
    const lines: string[] = [];
    const trace = new ChromeTrace();
    const a = runDemo({ clients: 3, calls: 5, log: (l) => lines.push(l), trace });
    const b = runDemo({ clients: 3, calls: 5, log: () => {} });
    expect(a.calls).toBe(15);
    expect(a.faults).toBe(0);
    expect(a.virtualNs).toBe(b.virtualNs);
    expect(lines.filter((l) => /^client\d: 5 ticks/.test(l))).toHaveLength(3);
    const events = trace.toJSON().traceEvents;
    expect(events.filter((e) => e.ph === "B")).toHaveLength(15);
    expect(events.filter((e) => e.ph === "E")).toHaveLength(15);
  });
});
