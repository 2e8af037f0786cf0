// Tests of the CPU profile summaries used by the boot benchmark's --profile.
import { describe, expect, it } from "vitest";
import { asCpuProfile, BadProfileError, formatSelfTimes, topFiles, topFunctions, type CpuProfile } from "./profile.js";

const frame = (functionName: string, url: string, lineNumber: number) => ({ functionName, url, lineNumber, columnNumber: 0 });

/** root → main → {step (hot), decode}; step also appears under a second parent (same function). */
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame("(root)", "", -1) },
    { id: 2, callFrame: frame("main", "file:///repo/a.ts", 0) },
    { id: 3, callFrame: frame("step", "file:///repo/vmm/cpu.ts", 9) },
    { id: 4, callFrame: frame("decode", "file:///repo/vmm/decoder.ts", 4) },
    { id: 5, callFrame: frame("step", "file:///repo/vmm/cpu.ts", 9) },
    { id: 6, callFrame: frame("(garbage collector)", "", -1) },
  ],
  startTime: 0,
  endTime: 1000,
  samples: [3, 3, 4, 5, 6, 2, 3],
  timeDeltas: [0, 100, 200, 50, 300, 25, 40],
};

describe("CPU profile summaries", () => {
  it("attributes each interval to the sample it follows and merges the same function", () => {
    const rows = topFunctions(profile, 10, { root: "/repo" });
    // step: samples 0,1 (node 3) → 100 + 200, sample 3 (node 5) → 300; the last sample gets nothing.
    expect(rows[0]).toMatchObject({ name: "step  vmm/cpu.ts:10", micros: 600 });
    expect(rows.map((r) => r.name)).toEqual(["step  vmm/cpu.ts:10", "decode  vmm/decoder.ts:5", "main  a.ts", "(garbage collector)"]);
    expect(rows.map((r) => r.micros)).toEqual([600, 50, 40, 25]);
    const total = 100 + 200 + 50 + 300 + 25 + 40;
    expect(rows.reduce((s, r) => s + r.micros, 0)).toBe(total);
    expect(rows[0].share).toBeCloseTo(600 / total);
  });

  it("groups by file and limits the rows", () => {
    const rows = topFiles(profile, 2, { root: "/repo" });
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ name: "vmm/cpu.ts", micros: 600 });
    expect(rows[1]).toMatchObject({ name: "vmm/decoder.ts", micros: 50 });
  });

  it("formats milliseconds and percentages", () => {
    const lines = formatSelfTimes("top", topFunctions(profile, 1, { root: "/repo" }));
    expect(lines[0]).toBe("top");
    expect(lines[1]).toMatch(/^\s+0\.6 ms\s+83\.9%  step  vmm\/cpu\.ts:10$/);
  });

  it("leaves out samples before a start time", () => {
    // Sample times: 0, 100, 300, 350, 650, 675, 715; from 300 on: decode 50, step 300, gc 25, main 40.
    const rows = topFunctions(profile, 10, { root: "/repo", fromMicros: 300 });
    expect(rows.map((r) => [r.name, r.micros])).toEqual([["step  vmm/cpu.ts:10", 300], ["decode  vmm/decoder.ts:5", 50], ["main  a.ts", 40], ["(garbage collector)", 25]]);
  });

  it("refuses what is not a profile", () => {
    expect(() => asCpuProfile({ nodes: [] })).toThrow(BadProfileError);
    expect(() => asCpuProfile({ nodes: [], samples: [1], timeDeltas: [] })).toThrow(BadProfileError);
    expect(asCpuProfile(profile)).toBe(profile);
  });
});

describe("CPU profile summaries through a source map", () => {
  it("names the original file and line of frames the locator knows", () => {
    const bundled: CpuProfile = {
      ...profile,
      nodes: profile.nodes.map((n) => (n.id === 3 || n.id === 5 ? { ...n, callFrame: frame("step", "file:///repo/b.mjs", 40) } : n)),
    };
    const locate = (url: string, line: number) => (url === "file:///repo/b.mjs" ? { file: "/repo/vmm/x86/cpu.ts", line: line - 30 } : null);
    expect(topFunctions(bundled, 1, { root: "/repo", locate })[0]).toMatchObject({ name: "step  vmm/x86/cpu.ts:11", micros: 600 });
    expect(topFiles(bundled, 1, { root: "/repo", locate })[0]).toMatchObject({ name: "vmm/x86/cpu.ts", micros: 600 });
    expect(topFiles(bundled, 1, { root: "/repo" })[0]).toMatchObject({ name: "b.mjs", micros: 600 });
  });
});
