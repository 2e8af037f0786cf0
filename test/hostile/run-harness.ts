// Harness for the hostile-input tests of `hv run`: the CLI as a child process, and tiny Multiboot guests.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { assemble } from "../vm/nasm.js";
import { HV, ROOT } from "./img-harness.js";

export interface RunResult {
  code: number | null;
  signal: string | null;
  out: string;
  err: string;
  /** Wall time the process took, ms. */
  ms: number;
}

/**
 * Run `hv run ...args` from source in a child process (stdin: nothing; output captured), through
 * `sh -c` when `shellPrefix` (e.g. "ulimit -f 1") is given. A child that outlives `timeoutMs` is
 * killed: then `signal` is set, and the test fails on it.
 */
export function hvRun(args: string[], options: { shellPrefix?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): RunResult {
  const argv = [process.execPath, ...HV, "run", ...args];
  const [cmd, cmdArgs] = options.shellPrefix
    ? ["sh", ["-c", `${options.shellPrefix}; exec ${argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")}`]]
    : [argv[0], argv.slice(1)];
  const start = performance.now();
  const r = spawnSync(cmd as string, cmdArgs as string[], {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: options.timeoutMs ?? 120_000,
    killSignal: "SIGKILL",
    env: { ...process.env, ...options.env },
  });
  return { code: r.status, signal: r.signal, out: r.stdout ?? "", err: r.stderr ?? "", ms: performance.now() - start };
}

/** A Multiboot kernel (a.out kludge, loaded at 1 MiB, 32-bit flat) around `body`. */
export function multiboot(body: string): Uint8Array {
  return assemble(`
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
${body}
end:
`);
}

/** Write `bytes` to `dir/name`; returns the path. */
export function put(dir: string, name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}
