// Harness for the hostile-input tests of `hv img`: the CLI in-process and as a process, FIFOs that cannot hang a test.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { registerImgCommand } from "../../drivers/block/cli.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** Arguments that start `hv` from source in a child process. */
export const HV = ["--import", "tsx", path.join(ROOT, "bin/hv.ts")];

export interface HvResult {
  code: number;
  out: string;
  err: string;
}

/** Run `hv img ...args` in-process; returns exit code and captured output. */
export async function hv(...args: string[]): Promise<HvResult> {
  let out = "";
  let err = "";
  let code = 0;
  const program = new Command().exitOverride().configureOutput({ writeOut: (t) => (out += t), writeErr: (t) => (err += t) });
  registerImgCommand(program, {
    stdout: (t) => (out += t),
    stderr: { write: (t: string) => (err += t), isTTY: false },
    setExitCode: (c) => {
      code = c;
    },
  });
  try {
    await program.parseAsync(["node", "hv", "img", ...args]);
  } catch (e) {
    code = (e as { exitCode?: number }).exitCode ?? 1;
  }
  return { code, out, err };
}

/** Run `hv img ...args` as a child process through a shell prefix (e.g. "ulimit -f 64"). */
export function hvProcess(args: string[], shellPrefix = ""): HvResult {
  const quoted = [process.execPath, ...HV, "img", ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const r = spawnSync("sh", ["-c", `${shellPrefix ? `${shellPrefix}; ` : ""}exec ${quoted}`], { encoding: "utf8", cwd: ROOT, timeout: 60_000 });
  return { code: r.status ?? -1, out: r.stdout ?? "", err: r.stderr ?? "" };
}

export function mkfifo(file: string): void {
  const r = spawnSync("mkfifo", [file]);
  if (r.status !== 0) throw new Error(`mkfifo ${file} failed`);
}

/**
 * A writer that opens `fifo` after `delayMs`: should the code under test open the FIFO for reading
 * (the bug), that open returns then instead of blocking the test process forever, and the test
 * fails on its assertions. Correct code never opens it; stop() ends the waiting writer.
 */
export function fifoGuard(fifo: string, delayMs = 3000): { stop: () => void } {
  const child: ChildProcess = spawn("sh", ["-c", `sleep ${delayMs / 1000}; : > '${fifo}'`], { stdio: "ignore" });
  return {
    stop: () => {
      if (child.exitCode === null && child.pid !== undefined) child.kill("SIGKILL");
    },
  };
}
