// CPU benchmark (issue 15): one Multiboot kernel (cpu/kernel.ts: CRC-32, insertion sort, a range
// decoder shaped like the XZ decompressor, a byte-copy loop, REP MOVSD; paging on) run on our x86
// core and, in a child process, on v86, so both times are for the same instructions.
//
//   cold: our core's first 100 M instructions of a fresh machine (translation and V8's warm-up
//         included);
//   warm: each workload repeated for at least --seconds of our CPU time (the count is found on a
//         short run first), timed from the end of its first repetition; v86 runs the same kernel.
//
// Times are CPU seconds of each process (both single-threaded emulators; compiler threads count).
// The workloads' results are compared between the two: a difference is an emulation bug.
// Last line: `cpu_mips=<warm> cpu_cold_mips=<n> cpu_ratio_vs_v86=<our time / v86's, warm> fpu_mflops=<n>`
// (cpu_mips and the ratio over the non-REP workloads: REP MOVSD counts an iteration as one instruction).
// Our core runs with its WebAssembly tier, as hv does (HV_WASM=0: without it).
// Usage: npm run bench:cpu [-- --seconds S --only ours]

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchmarkFpu } from "../../vmm/x86/fpu/bench.js";
import { KernelOutput, RESULT_PREFIX, WORKLOADS, buildKernel, type Kernel, type PeerReport } from "./cpu/kernel.js";
import { WASM_TIER, runOurs } from "./cpu/ours.js";

const COLD_INSTRUCTIONS = 100_000_000;

const HELP = `usage: npm run bench:cpu -- [options]
  --seconds S   CPU seconds of ours each workload runs for at least, after a warm-up (default 2)
  --only ours   skip v86 (the ratio is then nan)
Runs one Multiboot kernel (CRC-32, insertion sort, a range decoder, a byte-copy loop, REP MOVSD) on
our core and on v86; last line \`cpu_mips=<warm> cpu_cold_mips=<n> cpu_ratio_vs_v86=<n> fpu_mflops=<n>\`.
HV_WASM=0: our core without its WebAssembly tier.`;

/** Per workload: instructions and CPU seconds from the end of repetition `from` to its last. */
function warm(marks: KernelOutput["marks"], from = 1): Array<{ instructions: number; seconds: number }> {
  return marks.map((m) => {
    if (m.length < from + 2) return { instructions: NaN, seconds: NaN };
    const a = m[from], b = m[m.length - 1];
    return { instructions: b.retired - a.retired, seconds: b.cpu - a.cpu };
  });
}

/** Repetitions so that each workload's warm part takes about `seconds` of our CPU time. */
function calibrate(seconds: number): number[] {
  const output = new KernelOutput();
  runOurs(buildKernel(WORKLOADS.map(() => 3)), output);
  // The third repetition: translated and optimized by then.
  return warm(output.marks, 2).map((w) => 1 + Math.max(2, Math.ceil(seconds / Math.max(w.seconds, 1e-4))));
}

function runV86(kernel: Kernel): PeerReport {
  const dir = mkdtempSync(join(tmpdir(), "hv-bench-cpu-"));
  try {
    const file = join(dir, "kernel.bin");
    writeFileSync(file, kernel.image);
    let stdout: string;
    try {
      stdout = execFileSync(process.execPath, ["--import", "tsx", new URL("./cpu/v86-runner.ts", import.meta.url).pathname, file], { encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "inherit"] });
    } catch (error) {
      stdout = String((error as { stdout?: string }).stdout ?? "");
    }
    const line = stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
    if (!line) return { ok: false, detail: "the v86 runner printed no result", marks: [], results: [] };
    return JSON.parse(line.slice(RESULT_PREFIX.length)) as PeerReport;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fixed = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "nan");

export function main(): void {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: "2" }, only: { type: "string" }, help: { type: "boolean", default: false } } });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const seconds = Number(values.seconds);
  if (!(seconds > 0)) throw new Error(`--seconds ${values.seconds}: a positive number of seconds`);
  if (values.only !== undefined && values.only !== "ours") throw new Error(`--only takes ours, not '${values.only}'`);

  // Cold first, while V8 has optimized nothing of ours yet.
  const cold = runOurs(buildKernel(WORKLOADS.map(() => 1_000_000)), new KernelOutput(), COLD_INSTRUCTIONS);
  const reps = calibrate(seconds);
  const kernel = buildKernel(reps);
  const ours = new KernelOutput();
  runOurs(kernel, ours);
  const peer = values.only === "ours" ? null : runV86(kernel);

  const oursWarm = warm(ours.marks);
  // Same kernel, same instructions: v86's counts are ours.
  const peerWarm = peer?.ok ? warm(peer.marks.map((m, w) => m.map((x, k) => ({ cpu: x.cpu, retired: ours.marks[w][k]?.retired ?? NaN })))) : null;
  const header = ["workload", "reps", "instrs", "ours_s", "ours_MIPS", "v86_s", "v86_MIPS", "ratio"];
  const rows = WORKLOADS.map((w, i) => {
    const o = oursWarm[i], p = peerWarm?.[i];
    return [w.name, String(reps[i]), String(o.instructions), fixed(o.seconds, 3), fixed(o.instructions / o.seconds / 1e6, 1),
      fixed(p?.seconds ?? NaN, 3), fixed((p?.instructions ?? NaN) / (p?.seconds ?? NaN) / 1e6, 1), fixed(o.seconds / (p?.seconds ?? NaN), 2)];
  });
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  for (const r of [header, ...rows]) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "));
  console.log(`(warm: CPU seconds after each workload's first repetition; REP MOVSD counts an iteration as one instruction and is left out of cpu_mips and the ratio)`);
  console.log(`ours: the interpreter, the JS tier${WASM_TIER ? " and the WebAssembly tier, as hv runs (HV_WASM=0: without it)" : " (HV_WASM=0: no WebAssembly tier)"}`);
  console.log(`cold: ${cold.retired} instructions in ${cold.seconds.toFixed(3)} s of CPU on a fresh machine`);

  let ratio = NaN;
  if (peer === null) console.log("v86: not run (--only ours)");
  else if (!peer.ok) console.log(`v86: ${peer.detail}`);
  else if (peer.results.join() !== ours.results.join()) {
    console.log(`v86 and our core disagree on the workloads' results: ours ${ours.results.join(" ")}, v86 ${peer.results.join(" ")}`);
    process.exitCode = 1;
  } else {
    const sum = (xs: Array<{ seconds: number }>) => xs.filter((_, i) => !WORKLOADS[i].rep).reduce((a, x) => a + x.seconds, 0);
    ratio = sum(oursWarm) / sum(peerWarm!);
    console.log(`results agree: ${ours.results.join(" ")}`);
  }
  const nonRep = oursWarm.filter((_, i) => !WORKLOADS[i].rep);
  const mips = nonRep.reduce((a, x) => a + x.instructions, 0) / nonRep.reduce((a, x) => a + x.seconds, 0) / 1e6;
  // The x87 unit on a fixed workload (degree-16 Horner evaluation through its execute path).
  const mflops = benchmarkFpu();
  console.log(`cpu_mips=${fixed(mips, 1)} cpu_cold_mips=${fixed(cold.retired / cold.seconds / 1e6, 1)} cpu_ratio_vs_v86=${fixed(ratio, 3)} fpu_mflops=${mflops.toFixed(2)}`);
}

main();
