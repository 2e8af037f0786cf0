// Helpers for the block tests: scratch folders (tmpfs when available), seeded content, the qemu-img oracle.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** A fresh scratch folder, on /dev/shm when it exists (fast), else the OS temp folder. */
export function scratchDir(prefix = "hv-img-test-"): string {
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  return fs.mkdtempSync(path.join(base, prefix));
}

/** Deterministic xorshift32 bytes. */
export function fillRandom(buf: Uint8Array, seed: number): void {
  let x = seed >>> 0 || 1;
  const words = new Uint32Array(Math.ceil(buf.length / 4));
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  buf.set(new Uint8Array(words.buffer, 0, buf.length));
}

/**
 * A disk image content of `size` bytes with holes: random 64 KiB-aligned pieces, some partial
 * (unaligned start/length), everything else zero.
 */
export function holeyContent(size: number, seed: number, density = 0.4): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 7;
  const rnd = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  for (let at = 0; at < size; at += 65536) {
    if (rnd() > density) continue;
    const start = at + (rnd() < 0.3 ? Math.floor(rnd() * 65536) : 0);
    const len = rnd() < 0.3 ? Math.floor(rnd() * 70000) + 1 : 65536;
    const end = Math.min(size, start + len);
    if (end > start) fillRandom(out.subarray(start, end), Math.floor(rnd() * 2 ** 31) + 1);
  }
  return out;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[]): RunResult {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Is qemu-img installed? */
export const hasQemuImg = ((): boolean => {
  try {
    return spawnSync("qemu-img", ["--version"]).status === 0;
  } catch {
    return false;
  }
})();

export const qemuImg = (...args: string[]): RunResult => run("qemu-img", args);

/** qemu-io ships with qemu-img (qemu-utils); run commands (one -c each) against an image. */
export const qemuIo = (file: string, ...cmds: string[]): RunResult => run("qemu-io", [...cmds.flatMap((c) => ["-c", c]), file]);
