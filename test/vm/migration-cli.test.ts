// Live migration as a user does it: two hv processes, the destination started with
// `hv run --incoming tcp:HOST:PORT`, the source told `migrate` over its QMP socket (with hv ctl).
// The source ends with status 0 once the destination runs the VM; the guest's lines go on there.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HV, ROOT } from "../hostile/img-harness.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { COUNTER_GUEST } from "./guests.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-cli-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Start `hv run ARGS`; its stdout and stderr as they come. */
const hv = (args: string[]) => hvRun(HV, args, { cwd: ROOT });

const ctl = (sock: string, ...args: string[]) => spawnSync(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });

describe.skipIf(!hasNasm())("hv run --incoming and QMP migrate", () => {
  it("moves a running guest between two hv processes; the source ends with 0, the lines go on at the destination", async () => {
    // Prints L<n> (n counting up) while it rewrites 64 pages with n.
    const kernel = path.join(dir, "counter.bin");
    fs.writeFileSync(kernel, COUNTER_GUEST());
    const port = await freePort();
    const sock = path.join(dir, "source.qmp");
    const destination = hv(["--incoming", `tcp:127.0.0.1:${port}`, "--no-pace", "--wall-timeout", "120"]);
    await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
    const source = hv(["--kernel", kernel, "--mem", "32M", "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "120"]);
    await until("the source's lines", () => source.out().split("\n").length > 20 && fs.existsSync(sock));
    // hv ctl migrate waits until the migration ended (no bar: its stdout is not a terminal).
    const started = ctl(sock, "migrate", `uri=tcp:127.0.0.1:${port}`);
    expect(started.status, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/^migration completed, [\d.]+ MiB sent in \d+ passes, downtime \d+ ms; the VM runs at the destination\n$/);
    expect(started.stderr).toBe("");
    const code = await source.exited;
    expect(code, source.err()).toBe(0);
    // The destination goes on from where the source stopped.
    const before = source.out();
    await until("the destination's lines", () => destination.out().split("\n").length > 10);
    destination.child.kill("SIGTERM");
    await destination.exited;
    const lines = (before + destination.out()).split("\n").filter((l) => l.length > 0);
    const complete = lines.slice(0, -1); // the last may be cut by the kill
    complete.forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
    expect(destination.out().length).toBeGreaterThan(0);
  }, 300_000);

  it("refuses --incoming with a boot source or a bad address, before anything listens", () => {
    for (const [args, message] of [
      [["--incoming", "tcp:127.0.0.1:0x50"], /--incoming: 'tcp:127.0.0.1:0x50' is not tcp:HOST:PORT/],
      [["--incoming", "unix:/tmp/x"], /is not tcp:HOST:PORT/],
      [["--incoming", "tcp:127.0.0.1:4444", "--kernel", "x.bin"], /--incoming takes the VM from the stream/],
      // --drive names a block-migrated drive's new overlay here: qcow2, writable, and not with --isolate.
      [["--incoming", "tcp:127.0.0.1:4444", "--drive", "file=x.raw,format=raw"], /--drive file=x\.raw names a block-migrated drive's overlay here, a new qcow2 file/],
      [["--incoming", "tcp:127.0.0.1:4444", "--drive", "file=x.qcow2", "--isolate"], /not with --isolate/],
    ] as const) {
      const r = spawnSync(process.execPath, [...HV, "run", ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
