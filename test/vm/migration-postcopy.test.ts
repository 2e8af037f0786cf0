// Post-copy live migration between two hv processes: QMP migrate with postcopy-ram, then
// migrate-start-postcopy; the VM runs at the destination before its RAM is there, and each page
// that stayed at the source comes once (asked for on first touch, or pushed). A guest whose output
// ends with a hash of all its RAM prints, migrated, exactly what an unmigrated run prints. A
// connection cut after the switch leaves the VM paused (postcopy-paused) and hv ending non-zero
// with the reason, at either end.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HV, ROOT } from "../hostile/img-harness.js";
import { freePort, hvRun, until, type HvProcess } from "../support/hv-process.js";
import { qmpClient, type QmpClient } from "../support/qmp-client.js";
import { RAM_HASH_GUEST } from "./guests.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-postcopy-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const hv = (args: string[]) => hvRun(HV, args, { cwd: ROOT });
/** Lines the guest prints before its hash: long enough (seconds) that it is still running when it moves. */
const LINES = 6000;
const VM_FAILED = 4;

interface MigrationInfo {
  status?: string;
  ram?: { remaining: number; "postcopy-requests"?: number };
}

/** A source running the RAM-hash guest with a QMP socket, a destination waiting for it, and the source's QMP client. */
async function pair(kernel: string, name: string, postcopyRam = true): Promise<{ source: HvProcess; destination: HvProcess; q: QmpClient; port: number; sock: string }> {
  const port = await freePort();
  const sock = path.join(dir, `${name}.qmp`);
  const destination = hv(["--incoming", `tcp:127.0.0.1:${port}`, ...(postcopyRam ? ["--postcopy-ram"] : []), "--no-pace", "--wall-timeout", "200"]);
  await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
  const source = hv(["--kernel", kernel, "--mem", "32M", "--debug-exit", "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "200"]);
  await until("the source's lines", () => source.out().split("\n").length > 20 && fs.existsSync(sock));
  return { source, destination, q: await qmpClient(sock), port, sock };
}

/** Turn post-copy on, migrate at `bandwidth` bytes/s and switch at once; resolves once the VM runs at the destination (postcopy-active), or the migration ended otherwise. */
async function switchNow(q: QmpClient, port: number, bandwidth: number): Promise<MigrationInfo & { "error-desc"?: string }> {
  await q.run("migrate-set-capabilities", { capabilities: [{ capability: "postcopy-ram", state: true }] });
  await q.run("migrate-set-parameters", { "max-bandwidth": bandwidth });
  await q.run("migrate", { uri: `tcp:127.0.0.1:${port}` });
  await q.run("migrate-start-postcopy");
  let info: MigrationInfo = {};
  await until("postcopy-active", () => ["postcopy-active", "failed"].includes(info.status ?? "") || (void q.run("query-migrate").then((i) => (info = i as MigrationInfo), () => {}), false));
  return info;
}

describe.skipIf(!hasNasm())("post-copy live migration (hv run)", () => {
  it("moves a running guest after one pass has begun; its output and RAM hash are an unmigrated run's, each page sent once", async () => {
    const kernel = path.join(dir, "hash.bin");
    fs.writeFileSync(kernel, RAM_HASH_GUEST(LINES, 32));
    // The same guest, not migrated: what it prints, and how it ends.
    const plain = spawnSync(process.execPath, [...HV, "run", "--kernel", kernel, "--mem", "32M", "--debug-exit", "--no-pace"], { cwd: ROOT, encoding: "latin1", timeout: 200_000 });
    expect(plain.status).toBe(67);
    expect(plain.stdout).toMatch(new RegExp(`L${LINES}\\nS[0-9a-f]{8}\\n$`));

    const { source, destination, q, port } = await pair(kernel, "whole");
    // 2 MB/s: the pages pushed after the switch take about two seconds; those the guest touches come first.
    const active = await switchNow(q, port, 2_000_000);
    expect(active.status).toBe("postcopy-active");
    // After the switch, what is still at the source.
    expect(active.ram!.remaining).toBeGreaterThan(0);
    q.close();
    expect(await source.exited, source.err()).toBe(0);
    expect(await destination.exited, destination.err()).toBe(67);
    // One output, as if it had not moved: every line once, and the same hash of all of RAM.
    expect(source.out() + destination.out()).toBe(plain.stdout);
    expect(destination.out().length).toBeGreaterThan(0);
    // Each page that stayed at the source went once: the source's count of pages after the switch is the destination's.
    const sent = /post-copy: (\d+) pages after the switch, (\d+) of them asked for first, each sent once/.exec(source.err());
    const came = /post-copy: all (\d+) pages that stayed at the source came \((\d+) asked for on first touch\), each once/.exec(destination.err());
    expect(sent, source.err()).not.toBeNull();
    expect(came, destination.err()).not.toBeNull();
    expect(Number(came![1])).toBe(Number(sent![1]));
    expect(Number(sent![1])).toBeGreaterThan(1000);
    // The guest touched pages before they were pushed: it asked for them (and they went first).
    expect(Number(came![2])).toBeGreaterThan(0);
    expect(Number(sent![2])).toBeGreaterThan(0);
  }, 600_000);

  it("a connection cut after the switch: the destination pauses and ends non-zero, naming it (postcopy-paused); the source keeps its pages, postcopy-paused", async () => {
    const kernel = path.join(dir, "hash-cut.bin");
    fs.writeFileSync(kernel, RAM_HASH_GUEST(LINES, 32));
    // The source dies: the destination has pages it can never get.
    {
      const { source, destination, q, port } = await pair(kernel, "cut-source");
      // 100 KB/s: the push would take most of a minute.
      await switchNow(q, port, 100_000);
      await until("the destination's lines", () => destination.out().split("\n").length > 5);
      q.close();
      source.child.kill("SIGKILL");
      expect(await destination.exited, destination.err()).toBe(VM_FAILED);
      expect(destination.err()).toMatch(/post-copy migration broke after the switch \(postcopy-paused\): the source closed the connection; \d+ of its pages are still at the source/);
      expect(destination.err()).toMatch(/the migrated VM is paused for good: .* hv has no post-copy recovery/);
      expect(destination.err()).not.toMatch(/at .*\.ts:\d+/);
      // It never printed its hash: it did not run on with pages missing.
      expect(destination.out()).not.toMatch(/S[0-9a-f]{8}/);
      await source.exited;
    }
    // The destination dies: the source says postcopy-paused and keeps the VM's pages, and ends non-zero when told to quit.
    {
      const { source, destination, q, port } = await pair(kernel, "cut-destination");
      await switchNow(q, port, 100_000);
      destination.child.kill("SIGKILL");
      await destination.exited;
      let info: MigrationInfo & { "error-desc"?: string } = {};
      await until("postcopy-paused", () => info.status === "postcopy-paused" || (void q.run("query-migrate").then((i) => (info = i as typeof info), () => {}), false));
      expect(info.ram!.remaining).toBeGreaterThan(0);
      expect(info["error-desc"]).toMatch(/post-copy migration broke after the switch .* pages of the VM's RAM are still here, not sent/);
      expect(source.err()).toMatch(/the VM is split between the two hosts, so it cannot run here again; this hv keeps its pages, paused \(postcopy-paused\)/);
      // Not resumed: it prints nothing more.
      const printed = source.out().length;
      await new Promise((r) => setTimeout(r, 500));
      expect(source.out().length).toBe(printed);
      await q.run("quit").catch(() => {});
      q.close();
      expect(await source.exited, source.err()).toBe(VM_FAILED);
    }
  }, 600_000);

  it("a destination without --postcopy-ram refuses the switch before it runs the VM: the source keeps it running, nothing lost", async () => {
    const kernel = path.join(dir, "hash-refused.bin");
    fs.writeFileSync(kernel, RAM_HASH_GUEST(LINES, 32));
    const { source, destination, q, port } = await pair(kernel, "refused", false);
    const info = await switchNow(q, port, 2_000_000);
    expect(info.status).toBe("failed");
    expect(info["error-desc"]).toMatch(/the destination did not take the VM: .*POSTCOPY: this destination cannot take a post-copy migration \(hv run --incoming takes one with --postcopy-ram\)/);
    expect(await destination.exited).toBe(2);
    expect(destination.err()).toMatch(/incoming migration refused: .*POSTCOPY: this destination cannot take a post-copy migration/);
    expect(destination.out()).toBe("");
    // The source runs on, as if it had not tried: its whole output is an unmigrated run's.
    q.close();
    expect(await source.exited, source.err()).toBe(67);
    expect(source.out()).toMatch(new RegExp(`L${LINES}\\nS[0-9a-f]{8}\\n$`));
    source.out().split("\n").slice(0, LINES).forEach((l, i) => expect(l).toBe(`L${i + 1}`));
  }, 600_000);
});
