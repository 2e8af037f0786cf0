// Summaries of a V8 CPU profile (`node --cpu-prof` output): self time per function and per source
// file, for the boot benchmark's `--profile` ("where does the time go").
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The parts of the .cpuprofile format (Chrome DevTools protocol Profiler.Profile) we read. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number } }[];
  startTime: number;
  endTime: number;
  /** Node id of each sample. */
  samples: number[];
  /** Microseconds between consecutive samples; timeDeltas[i] precedes samples[i]. */
  timeDeltas: number[];
}

export interface SelfTime {
  /** "name  file:line" for functions, a path for files. */
  name: string;
  /** Self time, microseconds. */
  micros: number;
  /** Share of all sampled time, 0..1. */
  share: number;
}

/** Error for a file that is not a CPU profile. */
export class BadProfileError extends Error {
  override name = "BadProfileError";
}

/** Checks the shape of a parsed .cpuprofile. */
export function asCpuProfile(raw: unknown): CpuProfile {
  const p = raw as Partial<CpuProfile> | null;
  if (!p || !Array.isArray(p.nodes) || !Array.isArray(p.samples) || !Array.isArray(p.timeDeltas) || p.samples.length !== p.timeDeltas.length) {
    throw new BadProfileError("not a V8 CPU profile (needs nodes, samples and timeDeltas of the same length)");
  }
  return p as CpuProfile;
}

function displayUrl(url: string, root: string): string {
  if (!url) return "";
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const rel = relative(root, path);
  return rel.startsWith("..") ? path : rel;
}

/**
 * Self time of every sample, by node id: a sample lasts until the next one (the last gets
 * nothing). Samples taken before `fromMicros` (the profile's monotonic clock, the one
 * process.hrtime uses) are left out.
 */
function selfByNode(profile: CpuProfile, fromMicros: number): { byNode: Map<number, number>; total: number } {
  const byNode = new Map<number, number>();
  let total = 0;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length - 1; i++) {
    at += profile.timeDeltas[i];
    if (at < fromMicros) continue;
    const dt = profile.timeDeltas[i + 1];
    byNode.set(profile.samples[i], (byNode.get(profile.samples[i]) ?? 0) + dt);
    total += dt;
  }
  return { byNode, total };
}

function top(totals: Map<string, number>, total: number, n: number): SelfTime[] {
  return [...totals]
    .map(([name, micros]) => ({ name, micros, share: total > 0 ? micros / total : 0 }))
    .sort((a, b) => b.micros - a.micros || a.name.localeCompare(b.name))
    .slice(0, n);
}

export interface SummaryOptions {
  /** Paths are shown relative to this folder. */
  root?: string;
  /** Leave out samples before this time (microseconds on the profile's clock). */
  fromMicros?: number;
  /** Maps generated code (a bundle) back to its sources; null: leave the frame as it is. */
  locate?: (url: string, line: number, column: number) => { file: string; line: number } | null;
}

/** The file and 0-based line (-1: unknown) of a call frame, through `locate` when it knows the frame. */
function frameSource(f: CpuProfile["nodes"][number]["callFrame"], o: SummaryOptions): { path: string; line: number } {
  const root = o.root ?? process.cwd();
  const mapped = f.url ? o.locate?.(f.url, f.lineNumber, f.columnNumber) : null;
  if (mapped) return { path: displayUrl(mapped.file, root), line: mapped.line };
  return { path: displayUrl(f.url, root), line: f.lineNumber };
}

/**
 * The `n` functions with the most self time, by name and file (the same function reached
 * through different call paths counts once). Lines are shown when the profile has them: code
 * loaded through tsx is one line per file, so there it is the name that tells functions apart.
 */
export function topFunctions(profile: CpuProfile, n: number, o: SummaryOptions = {}): SelfTime[] {
  const { byNode, total } = selfByNode(profile, o.fromMicros ?? -Infinity);
  const totals = new Map<string, number>();
  for (const node of profile.nodes) {
    const t = byNode.get(node.id);
    if (!t) continue;
    const f = node.callFrame;
    const src = frameSource(f, o);
    const where = src.path ? `  ${src.path}${src.line > 0 ? `:${src.line + 1}` : ""}` : "";
    const key = `${f.functionName || "(anonymous)"}${where}`;
    totals.set(key, (totals.get(key) ?? 0) + t);
  }
  return top(totals, total, n);
}

/** The `n` source files with the most self time ("(program)", "(garbage collector)" count as files). */
export function topFiles(profile: CpuProfile, n: number, o: SummaryOptions = {}): SelfTime[] {
  const { byNode, total } = selfByNode(profile, o.fromMicros ?? -Infinity);
  const totals = new Map<string, number>();
  for (const node of profile.nodes) {
    const t = byNode.get(node.id);
    if (!t) continue;
    const key = frameSource(node.callFrame, o).path || node.callFrame.functionName || "(native)";
    totals.set(key, (totals.get(key) ?? 0) + t);
  }
  return top(totals, total, n);
}

/** Lines of a "self time" table. */
export function formatSelfTimes(title: string, rows: SelfTime[]): string[] {
  const out = [title];
  for (const r of rows) out.push(`  ${(r.micros / 1000).toFixed(1).padStart(10)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.name}`);
  return out;
}
