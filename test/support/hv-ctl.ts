// `hv ctl SOCKET ARGS...` from source, for tests that drive an hv's QMP socket: waited for, or not
// (while this process has other work, such as a proxy, or asks query-migrate meanwhile).

import { spawn, spawnSync } from "node:child_process";
import { HV, ROOT } from "../hostile/img-harness.js";

export const ctl = (sock: string, ...args: string[]) => spawnSync(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });

/** hv ctl without blocking this process: its status and output once it ended. */
export function ctlAsync(sock: string, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => child.on("close", (status) => resolve({ status, stdout, stderr })));
}
