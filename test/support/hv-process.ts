// `hv` as a child process, for tests and benchmarks that run two of them: a free loopback port,
// `hv run ARGS` with its output as it comes, and waiting for what it prints.

import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";

/** A free TCP port on loopback (taken and given back). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface HvProcess {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

/** Start `node HV... run ARGS` (`hv` is how node starts hv: a built file, or tsx and the source); stdin piped when `stdin` is. */
export function hvRun(hv: readonly string[], args: readonly string[], options: { cwd?: string; stdin?: "ignore" | "pipe" } = {}): HvProcess {
  const child = spawn(process.execPath, [...hv, "run", ...args], { cwd: options.cwd, stdio: [options.stdin ?? "ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString("latin1")));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString("latin1")));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

/** Wait until `ok()` (polled every 20 ms); throws naming `what` after `ms` of wall time (a hang, not a measure). */
export async function until(what: string, ok: () => boolean, ms = 120_000): Promise<void> {
  const start = Date.now();
  while (!ok()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
