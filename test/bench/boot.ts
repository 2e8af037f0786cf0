// Boot benchmark (`npm run bench:boot`): boots the default guest in boot-ok mode (Debian's i686
// kernel + busybox initramfs; /init prints `BOOT-OK <uptime>` and powers off) with our stack and
// with v86, each in its own child process, one after the other, and prints a table and last
// `boot_s=<ours> v86_s=<peer> ratio=<ours/peer> peak_rss_mib=<ours>` (nan where not measured).
// Exit status 0 when every runner that ran booted, 1 otherwise. `--help` lists the options.
// With --pv it measures KVM's paravirtual interface instead (boot/pv.ts): guest instructions and
// VM exits to the shell prompt and exits per second of an idle shell, with and without it.
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { HOST_NODE_FLAGS, hostEnv } from "../../bin/host-memory.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { bundleLocator, bundleRunner, type Bundle } from "./boot/bundle.js";
import { REPO_ROOT, runChild } from "./boot/child.js";
import { asCpuProfile, formatSelfTimes, topFiles, topFunctions } from "./boot/profile.js";
import type { BootJob, BootReport } from "./boot/protocol.js";
import { findSeabios } from "./boot/seabios.js";
import { measurePv, type PvMeasure } from "./boot/pv.js";
import { contentionWarnings, cpuRatio, failureDetails, LEGEND, num, resultLine, table, type RunnerResult } from "./boot/summary.js";

const HELP = `usage: npm run bench:boot -- [options]
  --only ours|v86   run one side only (the other is reported as nan)
  --timeout S       wall seconds each runner may take (default 600)
  --mem-mib N       guest RAM in MiB (default 128)
  --quiet           add 'quiet' to the kernel command line (both sides)
  --smp N           our VM's vCPUs (default 1; more: with local APICs; v86 keeps one)
  --echo            show the guests' serial output on stderr as it arrives
  --profile         run ours under node --cpu-prof and print where its time goes
  --top N           rows of the profile summary (default 30)
  --pv              instead: instructions and VM exits to the shell prompt, and exits/s of the idle
                    shell, with KVM's paravirtual interface and without (--no-pv); ours only
  --idle-s S        with --pv: VM seconds the shell idles at its prompt (default 5)
the table's columns:
${LEGEND.join("\n")}`;

function options() {
  const { values } = parseArgs({
    options: {
      only: { type: "string" },
      timeout: { type: "string", default: "600" },
      "mem-mib": { type: "string", default: "128" },
      quiet: { type: "boolean", default: false },
      smp: { type: "string", default: "1" },
      echo: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      top: { type: "string", default: "30" },
      pv: { type: "boolean", default: false },
      "idle-s": { type: "string", default: "5" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const positive = (name: string, v: string) => {
    const n = Number(v);
    if (!(n > 0)) throw new Error(`--${name} takes a positive number, not '${v}'`);
    return n;
  };
  if (values.only !== undefined && values.only !== "ours" && values.only !== "v86") throw new Error(`--only takes ours or v86, not '${values.only}'`);
  return {
    only: values.only as "ours" | "v86" | undefined,
    timeoutSeconds: positive("timeout", values.timeout),
    memoryBytes: positive("mem-mib", values["mem-mib"]) * 1024 * 1024,
    quiet: values.quiet,
    cpus: Math.floor(positive("smp", values.smp)),
    echo: values.echo,
    profile: values.profile,
    top: Math.floor(positive("top", values.top)),
    pv: values.pv,
    idleSeconds: positive("idle-s", values["idle-s"]),
  };
}

function skipped(runner: string): RunnerResult {
  const report: BootReport = {
    runner, booted: false, bootSeconds: null, firstOutputSeconds: null, linuxOutputSeconds: null, linuxOutputCpuSeconds: null, cpuSeconds: Number.NaN, guestUptime: null,
    setupSeconds: Number.NaN, peakRssMiB: Number.NaN, end: "skipped (--only)", detail: "", lastLines: [],
  };
  return { report, processSeconds: Number.NaN };
}

function printProfile(dir: string, top: number, fromMicros: number | undefined, bundle: Bundle | null): void {
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) {
    console.log(`\nno CPU profile was written in ${dir} (did the runner crash?)`);
    return;
  }
  const path = join(dir, file);
  const profile = asCpuProfile(JSON.parse(readFileSync(path, "utf8")));
  const o = { root: REPO_ROOT, fromMicros, locate: bundle ? bundleLocator(bundle) : undefined };
  const from = fromMicros === undefined ? "whole run" : "from the VM's start on (Node start-up and module loading left out)";
  console.log(`\nCPU profile of ours (open in Chrome DevTools or speedscope): ${path}`);
  console.log(formatSelfTimes(`top ${top} functions by self time, ${from}:`, topFunctions(profile, top, o)).join("\n"));
  console.log(formatSelfTimes("self time by file:", topFiles(profile, Math.min(top, 15), o)).join("\n"));
}

/** `--pv`: the default guest to its prompt with and without the interface; prints the counts. */
async function mainPv(opts: ReturnType<typeof options>): Promise<number> {
  const guest = await ensureDefaultGuest({ quiet: opts.quiet });
  console.log(`paravirtual benchmark: default guest to its shell prompt, then ${opts.idleSeconds} s (VM time) idle`);
  const runs: PvMeasure[] = [];
  for (const pv of [true, false]) {
    process.stderr.write(`bench:boot: booting ${pv ? "with" : "without (--no-pv)"} KVM's paravirtual interface...\n`);
    runs.push(await measurePv(guest, pv, opts.idleSeconds, opts.timeoutSeconds));
  }
  const reasons = [...new Set(runs.flatMap((r) => Object.keys(r.byReason)))].sort((a, b) => (runs[1].byReason[b] ?? 0) - (runs[1].byReason[a] ?? 0));
  const rows = [
    ["", "pv", "no-pv"],
    ["reached prompt", ...runs.map((r) => String(r.reached))],
    ["clocksource", ...runs.map((r) => r.clocksource)],
    ["VM s to prompt", ...runs.map((r) => r.promptSeconds.toFixed(3))],
    ["instructions", ...runs.map((r) => String(r.instructions))],
    ["VM exits", ...runs.map((r) => String(r.exits))],
    ...reasons.map((k) => [`  ${k}`, ...runs.map((r) => String(r.byReason[k] ?? 0))]),
    ["idle exits/s", ...runs.map((r) => r.idleExitsPerSecond.toFixed(1))],
    ...[...new Set(runs.flatMap((r) => Object.keys(r.idleByReason)))].map((k) => [`  ${k}`, ...runs.map((r) => (r.idleByReason[k] ?? 0).toFixed(1))]),
    ["wall s", ...runs.map((r) => r.wallSeconds.toFixed(1))],
  ];
  const width = rows.map((r) => r.map((c) => c.length)).reduce((w, r) => w.map((x, i) => Math.max(x, r[i])));
  console.log(rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join("  ")).join("\n"));
  const [on, off] = runs;
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(3) : "nan");
  console.log(
    `pv_boot_exit_ratio=${ratio(on.exits, off.exits)} pv_boot_instruction_ratio=${ratio(on.instructions, off.instructions)} ` +
      `idle_exits_per_s_pv=${on.idleExitsPerSecond.toFixed(1)} idle_exits_per_s_nopv=${off.idleExitsPerSecond.toFixed(1)}`,
  );
  return runs.every((r) => r.reached) ? 0 : 1;
}

async function main(): Promise<number> {
  const opts = options();
  if (opts.pv) return mainPv(opts);
  const guest = await ensureDefaultGuest({ bootOk: true, quiet: opts.quiet });
  const job: BootJob = {
    kernel: guest.kernel, initrd: guest.initrd, append: guest.append, memoryBytes: opts.memoryBytes,
    timeoutSeconds: opts.timeoutSeconds, echoSerial: opts.echo, cpus: opts.cpus,
  };
  const killAfterSeconds = opts.timeoutSeconds + 60;
  console.log(`boot benchmark: ${opts.memoryBytes / 1024 / 1024} MiB guest, ${opts.cpus} vCPU(s) for ours, timeout ${opts.timeoutSeconds} s per runner`);
  console.log(`  kernel  ${guest.kernel}\n  initrd  ${guest.initrd}\n  append  ${guest.append}`);

  // Runners run as plain JS bundles so the tsx loader is not part of their RSS; tsx is the fallback.
  const bundles = new Map<string, Bundle | null>();
  for (const script of [opts.only !== "v86" && "ours-runner.ts", opts.only !== "ours" && "v86-runner.ts"]) {
    if (!script) continue;
    const b = await bundleRunner(script, REPO_ROOT);
    if ("unavailable" in b) console.log(`  note: ${b.unavailable}; running ${script} through tsx (its RSS includes the tsx loader, ~35 MiB)`);
    bundles.set(script, "unavailable" in b ? null : b);
  }
  const oursBundle = bundles.get("ours-runner.ts") ?? null;

  let ours = skipped("ours");
  let profileDir: string | null = null;
  if (opts.only !== "v86") {
    profileDir = opts.profile ? mkdtempSync(join(tmpdir(), "hv-boot-profile-")) : null;
    process.stderr.write(`bench:boot: booting with our stack${profileDir ? " (profiling: times include the profiler)" : ""}...\n`);
    // Under the Node flags and malloc settings `hv run` gives itself (bin/host-memory.ts).
    const nodeArgs = [...HOST_NODE_FLAGS, ...(profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [])];
    ours = await runChild({ script: "ours-runner.ts", bundle: oursBundle?.file, runner: "ours", job, nodeArgs, env: hostEnv(), killAfterSeconds });
  }

  let peer = skipped("v86");
  if (opts.only !== "ours") {
    const seabios = findSeabios();
    if ("missing" in seabios) {
      peer = { ...skipped("v86"), report: { ...skipped("v86").report, end: "no SeaBIOS", detail: seabios.missing } };
    } else {
      process.stderr.write("bench:boot: booting with v86...\n");
      peer = await runChild({ script: "v86-runner.ts", bundle: bundles.get("v86-runner.ts")?.file, runner: "v86", job, killAfterSeconds });
    }
  }

  console.log("");
  console.log(table([ours, peer]).join("\n"));
  console.log(LEGEND.join("\n"));
  const ratio = cpuRatio(ours.report, peer.report);
  if (ratio !== null) console.log(`  CPU-time ratio ours/v86: ${num(ratio, 3)}`);
  for (const w of contentionWarnings([ours, peer])) console.log(w);
  for (const r of [ours, peer]) {
    if (r.report.end.startsWith("skipped")) continue;
    const lines = failureDetails(r.report);
    if (lines.length > 0) console.log(`\n${lines.join("\n")}`);
  }
  if (profileDir) printProfile(profileDir, opts.top, ours.report.vmStartMicros, oursBundle);
  console.log(resultLine(ours.report, peer.report));
  const ran = [ours, peer].filter((r) => !r.report.end.startsWith("skipped"));
  return ran.every((r) => r.report.booted) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench:boot: ${error instanceof Error ? error.message : String(error)}\n`);
    console.log(resultLine(skipped("ours").report, skipped("v86").report));
    process.exitCode = 1;
  },
);
