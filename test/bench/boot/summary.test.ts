// Tests of the boot benchmark's table and last line.
import { describe, expect, it } from "vitest";
import type { BootReport } from "./protocol.js";
import { contentionWarnings, cpuRatio, failureDetails, num, resultLine, table } from "./summary.js";

const report = (over: Partial<BootReport>): BootReport => ({
  runner: "x", booted: true, bootSeconds: 10, firstOutputSeconds: 0.5, linuxOutputSeconds: 4, linuxOutputCpuSeconds: 3.5, cpuSeconds: 9, guestUptime: 8.25, setupSeconds: 0.2,
  peakRssMiB: 150.25, end: "boot-ok", detail: "", lastLines: [], ...over,
});

describe("resultLine", () => {
  it("gives both times, their ratio and our peak RSS", () => {
    const line = resultLine(report({ runner: "ours", bootSeconds: 5 }), report({ runner: "v86", bootSeconds: 20 }));
    expect(line).toBe("boot_s=5.000 v86_s=20.000 ratio=0.250 peak_rss_mib=150.3");
  });

  it("puts nan where a runner did not boot", () => {
    const failed = report({ runner: "ours", booted: false, bootSeconds: null, end: "reset" });
    expect(resultLine(failed, report({ runner: "v86", bootSeconds: 31.7 }))).toBe("boot_s=nan v86_s=31.700 ratio=nan peak_rss_mib=nan");
    expect(resultLine(report({ bootSeconds: 3 }), report({ booted: false, bootSeconds: null }))).toBe("boot_s=3.000 v86_s=nan ratio=nan peak_rss_mib=150.3");
  });

  it("matches the format the issue asks for", () => {
    const line = resultLine(report({ booted: false, bootSeconds: null }), report({}));
    expect(line).toMatch(/^boot_s=(\d+\.\d+|nan) v86_s=(\d+\.\d+|nan) ratio=(\d+\.\d+|nan) peak_rss_mib=(\d+\.\d+|nan)$/);
  });
});

describe("table and failure details", () => {
  it("aligns one row per runner", () => {
    const lines = table([
      { report: report({ runner: "ours", booted: false, bootSeconds: null, guestUptime: null, end: "reset" }), processSeconds: 1.5 },
      { report: report({ runner: "v86" }), processSeconds: 12 },
    ]);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^runner\s+booted\s+boot_s/);
    expect(lines[1]).toMatch(/^ours\s+NO\s+nan\s+9\.00\s+0\.50\s+4\.00\s+3\.50\s+nan\s+nan\s+nan\s+150\.3\s+1\.50  reset$/);
    // The phases: 0.50 s to the first byte, 4.00 s (3.50 s CPU) to the kernel's banner, 6.00 s
    // (5.50 s CPU) from the banner to BOOT-OK.
    expect(lines[2]).toMatch(/^v86 \s+yes\s+10\.00\s+9\.00\s+0\.50\s+4\.00\s+3\.50\s+6\.00\s+5\.50\s+8\.25\s/);
    // Numbers are right-aligned under their header.
    expect(lines[2].indexOf("10.00") + 5).toBe(lines[0].indexOf("boot_s") + 6);
  });

  it("has no phase split without the kernel's banner (a quiet kernel)", () => {
    const lines = table([{ report: report({ linuxOutputSeconds: null, linuxOutputCpuSeconds: null }), processSeconds: 12 }]);
    expect(lines[1]).toMatch(/^x\s+yes\s+10\.00\s+9\.00\s+0\.50\s+nan\s+nan\s+nan\s+nan\s+8\.25\s/);
  });

  it("shows why a runner failed and its last serial lines", () => {
    const r = report({ runner: "ours", booted: false, end: "reset (triple fault)", detail: "triple fault at 10:1ff17de\nvirtual time 0.1 s", lastLines: ["a", "b", "c"] });
    expect(failureDetails(r, 2)).toEqual([
      "ours: did not boot: reset (triple fault)", "  triple fault at 10:1ff17de", "  virtual time 0.1 s", "  last serial lines (2):", "  | b", "  | c",
    ]);
    expect(failureDetails(report({}))).toEqual([]);
    expect(failureDetails(report({ booted: false, lastLines: [] }))).toContain("  no serial output");
  });

  it("writes nan for what was not measured", () => {
    expect(num(null, 2)).toBe("nan");
    expect(num(Number.NaN, 2)).toBe("nan");
    expect(num(1.005, 1)).toBe("1.0");
  });
});

describe("contention", () => {
  it("warns about a runner that got much less than a CPU, only when it booted", () => {
    const busy = { report: report({ runner: "v86", bootSeconds: 30, cpuSeconds: 15 }), processSeconds: 31 };
    const idle = { report: report({ runner: "ours", bootSeconds: 10, cpuSeconds: 9.8 }), processSeconds: 11 };
    const failed = { report: report({ runner: "x", booted: false, bootSeconds: null, cpuSeconds: 0.1 }), processSeconds: 1 };
    const lines = contentionWarnings([idle, busy, failed]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^warning: v86 got 50% of a CPU/);
  });

  it("gives the CPU-time ratio only when both booted", () => {
    expect(cpuRatio(report({ cpuSeconds: 4 }), report({ cpuSeconds: 16 }))).toBe(0.25);
    expect(cpuRatio(report({ booted: false }), report({}))).toBeNull();
  });
});
