// Steady translator benchmark (issue 15): the loop workloads of bench:cpu's kernel (cpu/kernel.ts), each run on one machine
// until its blocks are translated and optimized, then measured over a few hundred million
// instructions of CPU time, alternating with the interpreter alone on the same code. The interpreter is the
// yardstick: the ratio translated MIPS / interpreted MIPS, measured in the same run, changes only
// when the translator does, while the machine's load moves both.
// Usage: npm run bench:cpu-steady [-- --seconds S --rounds N]   Last line: `steady_ratio=<geometric mean>`.

import { parseArgs } from "node:util";
import { ExitReason } from "../../kernel/vcpu.js";
import type { Machine } from "../../vmm/x86/testing.js";
import { WORKLOADS, buildKernel } from "./cpu/kernel.js";
import { machine } from "./cpu/ours.js";

/** One workload of bench:cpu's kernel, repeated without end (well, 2^32 times). */
function setup(workload: number, translate: boolean): Machine {
  const m = machine(buildKernel(WORKLOADS.map((_, w) => (w === workload ? 0xffffffff : 0))));
  m.engine.translate = translate;
  return m;
}

/** CPU seconds of this process (less disturbed than wall time by other processes on the machine). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Run `m` for about `seconds` of CPU time; instructions per CPU second / 1e6. */
function measure(m: Machine, seconds: number): number {
  const e = m.engine;
  const r0 = e.retired;
  const t0 = cpuSeconds();
  let t = 0;
  do {
    const reason = m.run(10_000_000);
    if (reason !== ExitReason.BUDGET) throw new Error(`workload ended with ${ExitReason[reason]}`);
    t = cpuSeconds() - t0;
  } while (t < seconds);
  return (e.retired - r0) / t / 1e6;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const HELP = `usage: npm run bench:cpu-steady -- [options]
  --seconds S   CPU seconds of each translated measurement, the interpreted ones half (default 0.4)
  --rounds N    alternated rounds of translated and interpreted runs per workload (default 7)
Last line: \`steady_ratio=<geometric mean of translated MIPS / interpreted MIPS>\`.`;

function main(): void {
  const { values } = parseArgs({ options: { seconds: { type: "string" }, rounds: { type: "string" }, help: { type: "boolean", default: false } } });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const seconds = Number(values.seconds ?? 0.4);
  const rounds = Number(values.rounds ?? 7);
  if (!(seconds > 0)) throw new Error(`--seconds takes a positive number, not '${values.seconds}'`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds takes a whole number of at least 1, not '${values.rounds}'`);
  const ratios: number[] = [];
  console.log(`${"workload".padEnd(40)} ${"interp".padStart(8)} ${"transl".padStart(8)} ${"ratio".padStart(7)}`);
  for (const [i, w] of WORKLOADS.entries()) {
    if (w.rep) continue;
    const fast = setup(i, true);
    const slow = setup(i, false);
    measure(fast, 4 * seconds); // translate the hot blocks and let V8 optimize them
    measure(slow, seconds / 2);
    // Alternate short measurements; the median of the ratios of neighbours cancels most of the
    // changes in the machine's load.
    const slows: number[] = [], fasts: number[] = [], pairs: number[] = [];
    for (let k = 0; k < rounds; k++) {
      const s = measure(slow, seconds / 2);
      const f = measure(fast, seconds);
      slows.push(s);
      fasts.push(f);
      pairs.push(f / s);
    }
    const ratio = median(pairs);
    ratios.push(ratio);
    console.log(`${w.name.padEnd(40)} ${median(slows).toFixed(1).padStart(8)} ${median(fasts).toFixed(1).padStart(8)} ${ratio.toFixed(2).padStart(7)}`);
  }
  const mean = Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length);
  console.log(`steady_ratio=${mean.toFixed(2)}`);
}

main();
