// The host-CPU oracle (issue 4): 20,000 random sequences, native vs our core, zero differences.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadCore } from "./emulator.js";
import { hostSupport } from "./native.js";
import { runHostConformance } from "./pipeline.js";
import { formatFailure } from "./report.js";
import { describeRun } from "./runner.js";
import { scaled } from "../../support/scale.js";

const SEED = 20240601;
const COUNT = scaled(20_000);
const support = hostSupport();
const coreExists = existsSync(new URL("../../../vmm/x86/index.ts", import.meta.url));
const skipReason = !support.ok ? support.reason : !coreExists ? "vmm/x86/index.ts does not exist yet" : "";
if (skipReason) console.warn(`host conformance skipped: ${skipReason}`);

describe.skipIf(skipReason !== "")("host CPU conformance", () => {
  it(`runs ${COUNT} sequences (seed ${SEED}) identically natively and on the core`, async () => {
    if (!support.ok) return;
    const { core, reason } = await loadCore();
    expect(core, reason).not.toBeNull();
    const summary = await runHostConformance(support.harness, core, {
      seed: SEED, first: 0, count: COUNT, batchSize: 2000, failFast: false, ring: 0, generator: {}, minimize: 3,
      progress: () => undefined,
    });
    const report = summary.failures.slice(0, 3).map((f) => formatFailure(SEED, f.assembled, f.diffs, core, f.firstBadItem));
    expect(summary.failed, `${describeRun(summary, false)}\n${report.join("\n\n")}`).toBe(0);
    expect(summary.passed).toBe(COUNT);
  }, 900_000);
});
