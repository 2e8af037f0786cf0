// Interrupting `hv img convert` (SIGINT, SIGTERM, SIGHUP): it stops at the next chunk and leaves no temporary folder, no target.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchDir } from "../../drivers/block/test-util.js";
import { HV, ROOT } from "./img-harness.js";

/** All data, no zeros: the copy runs chunk by chunk (8 MiB each) for long enough to be interrupted. */
const SOURCE_BYTES = 512 << 20;

let dir: string;
let source: string;
beforeAll(() => {
  dir = scratchDir("hv-hostile-int-");
  source = path.join(dir, "source.raw");
  const fd = fs.openSync(source, "w");
  const chunk = Buffer.alloc(8 << 20, 0xa5);
  for (let at = 0; at < SOURCE_BYTES; at += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, at);
  fs.closeSync(fd);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const leftovers = (): string[] => fs.readdirSync(dir).filter((f) => f.startsWith(".hv-convert-"));

/** Start a convert, send `signal` once its temporary folder exists (the copy has begun), and wait for the exit. */
async function interruptedConvert(signal: NodeJS.Signals, target: string): Promise<{ code: number | null; stderr: string; sawFolder: boolean }> {
  const child = spawn(process.execPath, [...HV, "img", "convert", "-f", "raw", "-O", "qcow2", source, target], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  let sawFolder = false;
  while (child.exitCode === null) {
    if (leftovers().length > 0) {
      sawFolder = true;
      child.kill(signal);
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return { code: await exited, stderr, sawFolder };
}

describe("an interrupted convert", () => {
  it.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ] as const)("%s: exits %i, names the interruption, leaves no .hv-convert-* folder and no target", async (signal, exitCode) => {
    const target = path.join(dir, `out-${signal}.qcow2`);
    const r = await interruptedConvert(signal, target);
    expect(r.sawFolder).toBe(true);
    expect(r.stderr).toContain(`interrupted by ${signal} [INTERRUPTED]`);
    expect(r.code).toBe(exitCode);
    expect(leftovers()).toEqual([]);
    expect(fs.existsSync(target)).toBe(false);
  });

  it("an interrupted convert over an existing file leaves that file as it was", async () => {
    const target = path.join(dir, "existing.qcow2");
    fs.writeFileSync(target, "the old content");
    const r = await interruptedConvert("SIGINT", target);
    expect(r.code).toBe(130);
    expect(fs.readFileSync(target, "utf8")).toBe("the old content");
    expect(leftovers()).toEqual([]);
  });
});
