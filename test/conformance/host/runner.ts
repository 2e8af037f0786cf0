// `npm run conformance -- host`: the host-CPU differential tester's command line.
//
//   host [--seed S] [--count N] [--case I] [--batch B] [--ring 0|3] [--only a,b] [--skip a,b] [--verbose]
//        [--fail-fast] [--native-only] [--reports K]
// Prints progress on stderr and, last on stdout, `host: N passed, M failed`. Exits 0 when
// nothing failed or the host cannot run 32-bit x86 code natively (a skip notice says why).
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadCore } from "./emulator.js";
import { hostSupport } from "./native.js";
import { type RunOptions, type RunSummary, runHostConformance } from "./pipeline.js";
import { formatFailure } from "./report.js";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

interface CliOptions {
  seed: number;
  first: number;
  count: number;
  batch: number;
  ring: 0 | 3;
  only: string[] | undefined;
  skip: string[];
  verbose: boolean;
  failFast: boolean;
  nativeOnly: boolean;
  reports: number;
}

export function parseArgs(argv: readonly string[]): CliOptions {
  const o: CliOptions = { seed: 1, first: 0, count: 1000, batch: 1000, ring: 0, only: undefined, skip: [], verbose: false, failFast: false, nativeOnly: false, reports: 5 };
  const int = (name: string, text: string | undefined, min: number): number => {
    const v = Number(text);
    if (text === undefined || !Number.isInteger(v) || v < min || v > 0xffffffff) throw new UsageError(`${name} wants an integer >= ${min}, got ${text ?? "nothing"}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case "--seed": o.seed = int(arg, argv[++i], 0); break;
      case "--count": o.count = int(arg, argv[++i], 0); break;
      case "--case": o.first = int(arg, argv[++i], 0); o.count = 1; o.verbose = true; break;
      case "--batch": o.batch = int(arg, argv[++i], 1); break;
      case "--reports": o.reports = int(arg, argv[++i], 0); break;
      case "--ring": {
        const ring = int(arg, argv[++i], 0);
        if (ring !== 0 && ring !== 3) throw new UsageError("--ring wants 0 or 3");
        o.ring = ring;
        break;
      }
      case "--only": o.only = (argv[++i] ?? "").split(",").filter(Boolean); break;
      case "--skip": o.skip = (argv[++i] ?? "").split(",").filter(Boolean); break;
      case "--verbose": o.verbose = true; break;
      case "--fail-fast": o.failFast = true; break;
      case "--native-only": o.nativeOnly = true; break;
      default: throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return o;
}

export async function main(argv: string[]): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`host: ${error.message}\n`);
    return 2;
  }
  const support = hostSupport();
  if (!support.ok) {
    console.log(`host: skipped - this host cannot run 32-bit x86 code natively: ${support.reason}`);
    return 0;
  }
  let core = null;
  if (!options.nativeOnly) {
    const loaded = await loadCore();
    if (!loaded.core) {
      process.stderr.write(`host: the x86 core is not available: ${loaded.reason} (use --native-only to exercise the harness)\n`);
      return 2;
    }
    core = loaded.core;
  }
  const run: RunOptions = {
    seed: options.seed, first: options.first, count: options.count, batchSize: options.batch,
    failFast: options.failFast, ring: options.ring, generator: { only: options.only, skip: options.skip }, minimize: 1000,
    progress: (done, failed) => process.stderr.write(`host: ${done}/${options.count} run, ${failed} failed\n`),
  };
  const summary = await runHostConformance(support.harness, core, run);
  const shown = options.verbose ? summary.failures.length : Math.min(options.reports, summary.failures.length);
  for (const failure of summary.failures.slice(0, shown)) {
    process.stderr.write(`\n${formatFailure(options.seed, failure.assembled, failure.diffs, core, failure.firstBadItem)}\n`);
  }
  if (summary.failures.length > shown) process.stderr.write(`\n(${summary.failures.length - shown} more failures not shown; --verbose shows all)\n`);
  process.stderr.write(describeRun(summary, core === null));
  console.log(`host: ${summary.passed} passed, ${summary.failed} failed`);
  return summary.failed > 0 ? 1 : 0;
}

/** Timing and the instruction classes with the highest failure rates. */
export function describeRun(summary: RunSummary, nativeOnly: boolean): string {
  const t = summary.timing;
  const total = summary.passed + summary.failed;
  const rate = (ms: number): string => (ms > 0 ? `${Math.round((total * 1000) / ms)}/s` : "-");
  const lines = [
    `\nhost: ${total} sequences in ${(t.wall / 1000).toFixed(1)} s` +
      ` (generate ${rate(t.generate)}, nasm ${rate(t.assemble)}, native ${rate(t.native)}, ${nativeOnly ? "checks" : "core+compare"} ${rate(t.emulate)})`,
  ];
  const blamed = [...summary.blame.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15);
  if (blamed.length) {
    lines.push("host: classes in the first failing item of each failure (prefix search):");
    lines.push("  " + blamed.map(([cls, n]) => `${cls} ${n}`).join(", "));
  }
  const worst = topFailingClasses(summary, 12);
  if (worst.length) {
    lines.push("host: instruction classes by failure rate (failing sequences / sequences containing the class):");
    for (const [cls, stat] of worst) lines.push(`  ${cls.padEnd(12)} ${stat.failed}/${stat.cases} (${((100 * stat.failed) / stat.cases).toFixed(0)}%)`);
  }
  return lines.join("\n") + "\n";
}

export function topFailingClasses(summary: RunSummary, n: number): Array<[string, { cases: number; failed: number }]> {
  return [...summary.classes.entries()]
    .filter(([, s]) => s.failed > 0)
    .sort((a, b) => b[1].failed / b[1].cases - a[1].failed / a[1].cases || b[1].failed - a[1].failed)
    .slice(0, n);
}

// run directly: npx tsx test/conformance/host/runner.ts --seed 1 --count 1000
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
