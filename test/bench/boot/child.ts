// Runs one boot benchmark runner in a child Node process (so its peak RSS and crashes are its
// own) and collects its report; a child that dies without one gets a report saying how it died.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { findReport, type BootJob, type BootReport } from "./protocol.js";
import type { RunnerResult } from "./summary.js";

/** The repository root: children run there so `--import tsx` resolves from its node_modules. */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export interface ChildOptions {
  /** Runner script, relative to this folder ("ours-runner.ts"); run through tsx unless `bundle` is given. */
  script: string;
  /** The runner bundled to plain JS (see bundle.ts): run on bare node. */
  bundle?: string | null;
  /** Label for a report the parent has to make up. */
  runner: string;
  job: BootJob;
  /** Extra Node flags (--cpu-prof ...). */
  nodeArgs?: readonly string[];
  /** The child's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Kill the child after this many wall seconds if it has not ended on its own. */
  killAfterSeconds: number;
}

const STDERR_KEEP = 16 * 1024;

export function runChild(o: ChildOptions): Promise<RunnerResult> {
  const entry = o.bundle ? [o.bundle] : ["--import", "tsx", fileURLToPath(new URL(o.script, import.meta.url))];
  const args = [...(o.nodeArgs ?? []), ...entry, JSON.stringify(o.job)];
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: o.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let killed = false;
    let finished = false;
    child.stdout.setEncoding("latin1").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("latin1").on("data", (s: string) => {
      // With echoSerial the runner's stderr carries the guest console: pass it through live.
      if (o.job.echoSerial) process.stderr.write(s);
      stderr = (stderr + s).slice(-STDERR_KEEP);
    });
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, o.killAfterSeconds * 1000);
    const done = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      const processSeconds = (performance.now() - t0) / 1000;
      const report = findReport(stdout) ?? madeUpReport(o.runner, killed ? `killed after ${o.killAfterSeconds} s` : spawnError ? `could not start: ${spawnError.message}` : `exited with ${signal ?? `code ${code}`} and no report`, stderr);
      resolve({ report, processSeconds });
    };
    child.on("error", (e) => done(null, null, e));
    child.on("close", (code, signal) => done(code, signal));
  });
}

function madeUpReport(runner: string, end: string, stderr: string): BootReport {
  return {
    runner, booted: false, bootSeconds: null, firstOutputSeconds: null, linuxOutputSeconds: null, linuxOutputCpuSeconds: null, cpuSeconds: Number.NaN, guestUptime: null, setupSeconds: Number.NaN,
    peakRssMiB: Number.NaN, end, detail: stderr.trim().split("\n").slice(-20).join("\n"), lastLines: [],
  };
}
