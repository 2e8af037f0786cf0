// The differential run: generate → assemble (nasm) → run natively → run on the core → compare.
import { type AssembledCase, assembleBatch } from "./assemble.js";
import { CaseKind, type HostCase, type NativeResult, Status, applyRuns } from "./case-format.js";
import { type Difference, comparedFlags, compareOutcomes } from "./compare.js";
import { type CoreModule, EmulatorSide } from "./emulator.js";
import { fillDataArea } from "./fill.js";
import { type GeneratedCase, type GeneratorOptions, generateCase } from "./generator/generate.js";
import { DATA_SIZE } from "./layout.js";
import { runNative } from "./native.js";

export interface RunOptions {
  seed: number;
  /** Cases with indices first .. first+count-1. */
  first: number;
  count: number;
  batchSize: number;
  failFast: boolean;
  ring: 0 | 3;
  generator: GeneratorOptions;
  /** How many failures get a prefix search (first failing item, blame statistics); 0 for none. */
  minimize: number;
  progress: (done: number, failed: number) => void;
}

export interface Failure {
  assembled: AssembledCase;
  diffs: Difference[];
  /** Lines [from, to) of the first top-level item whose prefix already fails. */
  firstBadItem?: { from: number; to: number };
}

export interface ClassStat {
  cases: number;
  failed: number;
}

export interface RunSummary {
  passed: number;
  failed: number;
  failures: Failure[];
  classes: Map<string, ClassStat>;
  /** Instruction classes in the first failing item of each minimized failure, with counts. */
  blame: Map<string, number>;
  /** Milliseconds spent per stage. */
  timing: { generate: number; assemble: number; native: number; emulate: number; wall: number };
}

interface Prepared {
  assembled: AssembledCase[];
  native: NativeResult[];
}

export function toHostCase(a: AssembledCase): HostCase {
  const s = a.source;
  return { id: s.index, kind: CaseKind.INTEGER, code: a.code, fillSeed: s.fillSeed, regs: s.regs, eflags: s.eflags, ext: new Uint8Array(0) };
}

/** Runs the host-CPU comparison; `core` null runs the native side only (everything "passes"). */
export async function runHostConformance(harness: string, core: CoreModule | null, options: RunOptions): Promise<RunSummary> {
  const summary: RunSummary = {
    passed: 0, failed: 0, failures: [], classes: new Map(), blame: new Map(),
    timing: { generate: 0, assemble: 0, native: 0, emulate: 0, wall: 0 },
  };
  const wallStart = performance.now();
  const side = core ? new EmulatorSide(core, { ring: options.ring }) : null;
  const fill = new Uint8Array(DATA_SIZE);
  const image = new Uint8Array(DATA_SIZE);
  const prepare = async (start: number): Promise<Prepared> => {
    const count = Math.min(options.batchSize, options.first + options.count - start);
    let t = performance.now();
    const cases = Array.from({ length: count }, (_, i) => generateCase(options.seed, start + i, options.generator));
    summary.timing.generate += performance.now() - t;
    t = performance.now();
    const assembled = await assembleBatch(cases);
    summary.timing.assemble += performance.now() - t;
    t = performance.now();
    const native = await runNative(harness, CaseKind.INTEGER, assembled.map(toHostCase));
    summary.timing.native += performance.now() - t;
    return { assembled, native };
  };
  const end = options.first + options.count;
  let next: Promise<Prepared> | null = options.count > 0 ? prepare(options.first) : null;
  for (let start = options.first; next; start += options.batchSize) {
    const batch = await next;
    next = start + options.batchSize < end ? prepare(start + options.batchSize) : null;
    const t = performance.now();
    for (let i = 0; i < batch.assembled.length; i++) {
      const a = batch.assembled[i];
      const diffs = side ? compareOne(side, a, batch.native[i], fill, image) : nativeProblems(batch.native[i]);
      countClasses(summary.classes, a.source, diffs.length > 0);
      if (diffs.length === 0) summary.passed++;
      else {
        summary.failed++;
        summary.failures.push({ assembled: a, diffs });
        if (options.failFast) break;
      }
    }
    summary.timing.emulate += performance.now() - t;
    options.progress(summary.passed + summary.failed, summary.failed);
    if (options.failFast && summary.failed) {
      await next?.catch(() => undefined);
      break;
    }
  }
  if (side) {
    const minimized = summary.failures.slice(0, options.minimize);
    await findFirstBadItems(harness, side, minimized, fill, image, options.batchSize);
    for (const failure of minimized) {
      const { from, to } = failure.firstBadItem!;
      const classes = new Set(failure.assembled.source.lines.slice(from, to).filter((l) => !l.isLabel && l.cls !== "setup").map((l) => l.cls));
      for (const cls of classes) summary.blame.set(cls, (summary.blame.get(cls) ?? 0) + 1);
    }
  }
  summary.timing.wall = performance.now() - wallStart;
  return summary;
}

/** Runs one case on the core and compares it with the native result. */
function compareOne(side: EmulatorSide, a: AssembledCase, native: NativeResult, fill: Uint8Array, image: Uint8Array): Difference[] {
  const problems = nativeProblems(native);
  if (problems.length) return problems;
  fillDataArea(a.source.fillSeed, fill);
  const nativeData = applyRuns(fill, native.runs, image);
  const emulated = side.run(toHostCase(a), fill);
  const diffs = compareOutcomes(native, nativeData, emulated, fill, comparedFlags(a, native.eip));
  if (diffs.length && emulated.note) diffs.push({ what: "note", native: "", emulator: "", note: emulated.note });
  return diffs;
}

/** A native run that timed out or was refused is a generator bug: report it as a failure. */
function nativeProblems(native: NativeResult): Difference[] {
  if (native.status === Status.TIMEOUT) return [{ what: "native", native: "timeout", emulator: "-", note: "generator bug: the sequence does not end" }];
  if (native.status === Status.BAD_CASE) return [{ what: "native", native: "bad case", emulator: "-", note: "code too large" }];
  return [];
}

function countClasses(classes: Map<string, ClassStat>, c: GeneratedCase, failed: boolean): void {
  const seen = new Set<string>();
  for (const line of c.lines) if (!line.isLabel && line.cls !== "setup" && line.cls !== "dead") seen.add(line.cls);
  for (const cls of seen) {
    const stat = classes.get(cls) ?? { cases: 0, failed: 0 };
    stat.cases++;
    if (failed) stat.failed++;
    classes.set(cls, stat);
  }
}

/** A prefix of a case: its first `items` top-level items, relabelled so it can share a batch. */
function prefixCase(c: GeneratedCase, items: number, tag: number): GeneratedCase {
  const cut = c.itemEnds[items - 1];
  const prefix = `p${tag}_`;
  const rename = new RegExp(`\\b${c.prefix}`, "g");
  const lines = c.lines.slice(0, cut).map((line) => ({ ...line, text: line.text.replace(rename, prefix) }));
  const finalUndef = cut < c.lines.length ? c.lines[cut].undefBefore : c.finalUndef;
  return { ...c, prefix, lines, itemEnds: c.itemEnds.slice(0, items), finalUndef };
}

/** For each failure, runs every item prefix of its case and marks the first one that fails. */
async function findFirstBadItems(
  harness: string, side: EmulatorSide, failures: Failure[], fill: Uint8Array, image: Uint8Array, batchSize: number,
): Promise<void> {
  const prefixes: Array<{ failure: Failure; items: number; c: GeneratedCase }> = [];
  for (const failure of failures) {
    const source = failure.assembled.source;
    for (let items = 1; items < source.itemEnds.length; items++) {
      prefixes.push({ failure, items, c: prefixCase(source, items, prefixes.length) });
    }
  }
  for (let start = 0; start < prefixes.length; start += batchSize) {
    const chunk = prefixes.slice(start, start + batchSize);
    const assembled = await assembleBatch(chunk.map((p) => p.c));
    const native = await runNative(harness, CaseKind.INTEGER, assembled.map(toHostCase));
    for (let i = 0; i < chunk.length; i++) {
      const { failure, items } = chunk[i];
      if (failure.firstBadItem) continue;
      if (compareOne(side, assembled[i], native[i], fill, image).length > 0) {
        const ends = failure.assembled.source.itemEnds;
        failure.firstBadItem = { from: items > 1 ? ends[items - 2] : 0, to: ends[items - 1] };
      }
    }
  }
  for (const failure of failures) {
    if (failure.firstBadItem) continue;
    const ends = failure.assembled.source.itemEnds;
    failure.firstBadItem = { from: ends.length > 1 ? ends[ends.length - 2] : 0, to: ends[ends.length - 1] };
  }
}
