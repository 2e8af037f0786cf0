// How the host process gives memory back to the OS when its VMs give frames back. The kernel drops
// the storage of a chunk of frames once all of them are discarded (kernel/frames.ts); two things
// stand between that and a smaller resident set:
// - glibc's malloc serves blocks of a chunk's size from its heap, and keeps them there when they
//   are freed, once its mmap threshold has risen (it rises with each mmapped block freed). A fixed
//   threshold, set through the environment before the process starts, keeps such blocks mmapped:
//   `hv run` and `hv fleet` start themselves again with it (relaunch);
// - V8 frees an ArrayBuffer's storage only when it collects the buffer: the host loop asks for a
//   collection when much storage was dropped since the last one (StorageCollector).
// The same settings keep the peak low while a VM boots (HOST_NODE_FLAGS, hostEnv); `npm run
// bench:boot` runs our side under them too.

import { spawn } from "node:child_process";
import v8 from "node:v8";
import vm from "node:vm";

/** glibc's malloc: blocks of at least this many bytes are mmapped, and unmapped when freed. */
const MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_";
const MMAP_THRESHOLD = 128 * 1024;
/** Set to 1 to run in this process as it is (no relaunch). */
const NO_RELAUNCH_ENV = "HV_NO_RELAUNCH";
/** In a relaunched process: the pid of the process that started it. */
const PARENT_ENV = "HV_RELAUNCHED_BY";

/**
 * Node flags of a process that hosts VMs. V8's young generation grows to two semi-spaces of 16 MiB
 * when much survives a scavenge for a while, and keeps them; a boot's young objects mostly die (2-4
 * MiB were live at its peak), so 8 MiB caps the peak RSS 16 MiB lower at no measured CPU cost.
 */
export const HOST_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=8"];

/** The environment of a process that hosts VMs: `env` with glibc's malloc set as host-memory.ts says. */
export function hostEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, [MMAP_THRESHOLD_ENV]: env[MMAP_THRESHOLD_ENV] ?? String(MMAP_THRESHOLD) };
}

/** Node's arguments for the relaunched process: the host flags first, so that flags the user gave node (execArgv) win. */
export function relaunchArgs(execArgv: readonly string[], argv: readonly string[]): string[] {
  return [...HOST_NODE_FLAGS, ...execArgv, ...argv.slice(1)];
}

/** Should this process start itself again with memory it can give back? Only on Linux, and once. */
export function wantsRelaunch(env: NodeJS.ProcessEnv = process.env): boolean {
  return process.platform === "linux" && env[MMAP_THRESHOLD_ENV] === undefined && env[NO_RELAUNCH_ENV] !== "1" && env[PARENT_ENV] === undefined;
}

/**
 * Run this command again in a child process whose malloc gives freed chunks back to the OS, and
 * end as it ends (its status, or its signal). Signals for the process go on to the child; the child
 * ends when this process is gone (watchParent).
 */
export function relaunch(): void {
  const child = spawn(process.execPath, relaunchArgs(process.execArgv, process.argv), {
    stdio: "inherit",
    env: { ...hostEnv(), [PARENT_ENV]: String(process.pid) },
  });
  const forward = (signal: NodeJS.Signals) => () => void child.kill(signal);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const) process.on(signal, forward(signal));
  child.on("error", (error) => {
    process.stderr.write(`hv: cannot start itself again: ${error.message}\n`);
    process.exit(6);
  });
  child.on("exit", (code, signal) => {
    if (signal) {
      // End the same way: by that signal, with its default action.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(6), 1000).unref();
      return;
    }
    process.exit(code ?? 6);
  });
}

/** In a relaunched process: end when the process that started it is gone (it cannot pass on SIGKILL). */
export function watchParent(env: NodeJS.ProcessEnv = process.env): void {
  const parent = Number(env[PARENT_ENV]);
  if (!Number.isInteger(parent) || parent <= 0) return;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(6);
  }, 1000).unref();
}

/** Storage dropped since the last collection that makes the host loop ask for one. */
const COLLECT_AFTER_BYTES = 16 * 2 ** 20;

/** Asks V8 for a full collection when the kernel's frame storage fell by COLLECT_AFTER_BYTES since the last look that did. */
export class StorageCollector {
  private high = 0;

  /** `residentBytes`: the kernel's frame storage now. Returns whether it collected. */
  check(residentBytes: number): boolean {
    if (residentBytes > this.high) this.high = residentBytes;
    if (this.high - residentBytes < COLLECT_AFTER_BYTES) return false;
    this.high = residentBytes;
    collect();
    return true;
  }
}

let gc: (() => void) | null | undefined;

/** A full collection, through V8's gc() (made available on first use). */
function collect(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString("--expose-gc");
      gc = vm.runInNewContext("gc") as () => void;
    } catch {
      gc = null;
    }
  }
  gc?.();
}
