// Runs the whole SingleStepTests 80286 subset (shared/conformance) against the x86 core.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { EXCLUDED_FILES, listFiles, loadMetadata, SingleStepRunner } from "./runner.js";

const DIR = resolve(__dirname, "../../../../shared/conformance/singlestep-80286");
const present = existsSync(DIR);
if (!present) console.warn(`singlestep: skipped, ${DIR} is absent (a clone without ../shared)`);

describe.skipIf(!present)("SingleStepTests 80286 real mode", () => {
  it("passes every included test", () => {
    const runner = new SingleStepRunner(loadMetadata(DIR));
    const { included, excluded } = listFiles(DIR);
    expect(excluded.map((f) => f.replace(".MOO.gz", ""))).toEqual(EXCLUDED_FILES.map((x) => x.file));
    let passed = 0;
    const failures: string[] = [];
    for (const f of included) {
      const r = runner.runFile(join(DIR, f), f.replace(".MOO.gz", ""));
      passed += r.passed;
      failures.push(...r.failures);
    }
    expect(failures.slice(0, 10)).toEqual([]);
    expect(passed).toBeGreaterThan(90_000);
  });
});
