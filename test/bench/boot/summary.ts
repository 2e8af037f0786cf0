// The boot benchmark's output: a table of both runners, the failure details of a runner that did
// not boot, and the last line `boot_s=<ours> v86_s=<peer> ratio=<ours/peer> peak_rss_mib=<ours>`.
import type { BootReport } from "./protocol.js";

/** A runner's report plus what the parent measured around the child process. */
export interface RunnerResult {
  report: BootReport;
  /** Wall seconds from spawning the child to its exit. */
  processSeconds: number;
}

/** A number with `digits` decimals, or `nan` when it could not be measured. */
export function num(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? "nan" : value.toFixed(digits);
}

/** The machine-readable last line. Values of a runner that did not boot are `nan`. */
export function resultLine(ours: BootReport, peer: BootReport): string {
  const oursS = ours.booted ? ours.bootSeconds : null;
  const peerS = peer.booted ? peer.bootSeconds : null;
  const ratio = oursS !== null && peerS !== null && peerS > 0 ? oursS / peerS : null;
  return `boot_s=${num(oursS, 3)} v86_s=${num(peerS, 3)} ratio=${num(ratio, 3)} peak_rss_mib=${num(ours.booted ? ours.peakRssMiB : null, 1)}`;
}

const COLUMNS = ["runner", "booted", "boot_s", "cpu_s", "first_out_s", "linux_s", "linux_cpu_s", "rest_s", "rest_cpu_s", "uptime_s", "rss_mib", "proc_s", "end"] as const;

/** The legend under the table: what each column measures (the same words as `--help`). */
export const LEGEND = [
  "  boot_s: wall time from starting the VM to BOOT-OK on the serial port; cpu_s: CPU time of the runner by then;",
  "  first_out_s: to the first serial byte, whoever wrote it (v86: Linux's 16-bit setup code, 'Probing EDD', run by SeaBIOS",
  "    before the decompressor; ours enters at the 32-bit entry point, so its first byte is the kernel's banner);",
  "  linux_s, linux_cpu_s: wall and CPU time to the kernel's banner 'Linux version', the same moment on both sides: the",
  "    XZ decompressor (silent in this kernel) has run; rest_s, rest_cpu_s: from the banner to BOOT-OK;",
  "  uptime_s: the guest's /proc/uptime at BOOT-OK; rss_mib: the runner's peak RSS (ours under the node flags and malloc",
  "    settings hv run gives itself, bin/host-memory.ts); proc_s: whole child process",
];

/** `a - b` when the runner booted and both were measured, else null. */
function after(r: BootReport, a: number | null, b: number | null): number | null {
  return r.booted && a !== null && b !== null ? a - b : null;
}

/** The human table, one row per runner. */
export function table(results: RunnerResult[]): string[] {
  const rows: string[][] = [COLUMNS.slice()];
  for (const { report: r, processSeconds } of results) {
    const linuxS = r.linuxOutputSeconds, linuxCpu = r.linuxOutputCpuSeconds;
    rows.push([
      r.runner,
      r.booted ? "yes" : "NO",
      num(r.bootSeconds, 2),
      num(r.cpuSeconds, 2),
      num(r.firstOutputSeconds, 2),
      num(linuxS, 2),
      num(linuxCpu, 2),
      // The boot's second phase, from the same moment on both sides: the kernel's banner to BOOT-OK.
      num(after(r, r.bootSeconds, linuxS), 2),
      num(after(r, r.cpuSeconds, linuxCpu), 2),
      num(r.guestUptime, 2),
      num(r.peakRssMiB, 1),
      num(processSeconds, 2),
      r.end,
    ]);
  }
  const widths = COLUMNS.map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) => row.map((cell, c) => (c === 0 || c === row.length - 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ").trimEnd());
}

/** What to show about a runner that did not boot: why it ended and its last serial lines. */
export function failureDetails(r: BootReport, lines = 20): string[] {
  if (r.booted) return [];
  const out = [`${r.runner}: did not boot: ${r.end}`];
  for (const d of r.detail.split("\n").filter(Boolean)) out.push(`  ${d}`);
  const tail = r.lastLines.slice(-lines);
  out.push(tail.length > 0 ? `  last serial lines (${tail.length}):` : "  no serial output");
  for (const l of tail) out.push(`  | ${l}`);
  return out;
}

/**
 * Warnings for runners that got much less than one CPU while booting (a busy machine): their
 * wall time is inflated, and cpu_s is the fairer number. Runners are single-threaded, so a
 * CPU/wall share well below 1 means they waited for a core.
 */
export function contentionWarnings(results: RunnerResult[], threshold = 0.8): string[] {
  const out: string[] = [];
  for (const { report: r } of results) {
    if (!r.booted || r.bootSeconds === null || !(r.bootSeconds > 0)) continue;
    const share = r.cpuSeconds / r.bootSeconds;
    if (share < threshold) {
      out.push(`warning: ${r.runner} got ${(share * 100).toFixed(0)}% of a CPU while booting (a busy machine?): its wall time is inflated; compare cpu_s`);
    }
  }
  return out;
}

/** The ratio of CPU seconds (ours/peer) when both booted, for the human summary. */
export function cpuRatio(ours: BootReport, peer: BootReport): number | null {
  return ours.booted && peer.booted && peer.cpuSeconds > 0 ? ours.cpuSeconds / peer.cpuSeconds : null;
}
