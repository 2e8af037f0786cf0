// Differential tester of the x87 unit against the host CPU:
// `npm run conformance -- host-fpu --seed S --count N [--engine] [--verbose] [--focus prem]` prints
// `host-fpu: N passed, M failed`. Each case runs on the x87 unit driven directly (TestHost) and,
// with --engine, also through the whole core (createX86Engine); a case passes when all agree.
// `--focus prem` draws the cases from the focused stream of focus.ts (FPREM/FPREM1/FSCALE/FXTRACT
// near underflow) instead of the default generator.
import type { FpuCase, FpuResult } from "./case.js";
import { compareResults } from "./compare.js";
import { EngineSide } from "./engine-side.js";
import { emulate } from "./emulate.js";
import { generateFocusCase } from "./focus.js";
import { generateCase } from "./generator.js";
import { hostSupport, runNative } from "./native.js";

export interface RunSummary {
  passed: number;
  failed: number;
  failures: string[];
  skipped: string | null;
}

const BATCH = 2000;
/** Times a case that differs from the host runs on the host again before it counts as failed. */
const HOST_RETRIES = 2;

/** Case generators by `--focus` name; "" is the default stream. */
export const GENERATORS: Readonly<Record<string, (seed: number, index: number) => FpuCase>> = {
  "": generateCase,
  prem: generateFocusCase,
};

/** Run `count` cases of the stream `seed`; keeps up to `keep` failure descriptions. */
export async function runHostFpu(seed: number, count: number, keep = 20, engine = false, generate = generateCase): Promise<RunSummary> {
  const support = hostSupport();
  const summary: RunSummary = { passed: 0, failed: 0, failures: [], skipped: null };
  if (!support.ok) {
    summary.skipped = support.reason;
    return summary;
  }
  const side = engine ? new EngineSide() : null;
  const viaEngine = (c: Parameters<typeof emulate>[0]): FpuResult | string => {
    try {
      return side!.run(c);
    } catch (e) {
      return `engine: ${(e as Error).message}`;
    }
  };
  for (let start = 0; start < count; start += BATCH) {
    const cases = [];
    for (let k = start; k < Math.min(count, start + BATCH); k++) cases.push(generate(seed, k));
    const native = await runNative(support.harness, cases);
    for (let k = 0; k < cases.length; k++) {
      const c = cases[k];
      const emu = emulate(c);
      const differs = (host: FpuResult): string | null => {
        let diff = compareResults(c, emu, host);
        if (diff === null && side !== null) {
          const e = viaEngine(c);
          diff = typeof e === "string" ? e : compareResults(c, e, host);
          if (diff !== null) diff = `through the core: ${diff}`;
        }
        return diff;
      };
      let diff = differs(native[k]);
      // The host is disturbed now and then: a context switch in the middle of a case can leave the
      // x87's last data pointer and selector zero (seen on AMD, about once in a million cases under
      // load). A difference counts only when the host, asked again, still gives it.
      for (let again = 0; diff !== null && again < HOST_RETRIES; again++) {
        const [host] = await runNative(support.harness, [c]);
        if (differs(host) === null) diff = null;
      }
      if (diff === null) summary.passed++;
      else {
        summary.failed++;
        if (summary.failures.length < keep) summary.failures.push(`#${start + k} ${c.text}: ${diff}`);
      }
    }
  }
  return summary;
}

function option(argv: string[], name: string, fallback: number): number {
  const at = argv.indexOf(name);
  if (at < 0) return fallback;
  const v = Number(argv[at + 1]);
  if (!Number.isInteger(v) || v < 0) throw new TypeError(`${name} needs a non-negative integer, got ${argv[at + 1]}`);
  return v;
}

export async function main(argv: string[]): Promise<number> {
  let seed: number, count: number;
  const at = argv.indexOf("--focus");
  const focus = at < 0 ? "" : argv[at + 1] ?? "";
  const generate = GENERATORS[focus];
  try {
    seed = option(argv, "--seed", 1);
    count = option(argv, "--count", 1000);
    if (generate === undefined || (at >= 0 && focus === "")) throw new TypeError(`--focus takes one of: ${Object.keys(GENERATORS).filter((k) => k).join(", ")}`);
  } catch (e) {
    console.error(`host-fpu: ${(e as Error).message}`);
    return 2;
  }
  const s = await runHostFpu(seed, count, argv.includes("--verbose") ? 1000 : 20, argv.includes("--engine"), generate);
  if (s.skipped !== null) {
    console.log(`host-fpu: skipped (${s.skipped})`);
    return 0;
  }
  for (const f of s.failures) console.log(`  FAIL ${f}`);
  console.log(`host-fpu: ${s.passed} passed, ${s.failed} failed`);
  return s.failed === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, "/"))) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
