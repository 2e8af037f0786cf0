// One VM of a fleet migrates: `hv ctl SOCKET migrate vm=NAME uri=tcp:...` on the fleet's QMP
// socket moves that VM to an `hv run --incoming` destination while it runs; the other VM of the
// fleet runs on undisturbed, and after the switch the moved VM ends in the fleet alone (status 0,
// "migrated away"), its lines going on at the destination with none lost or twice.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HV, ROOT } from "../hostile/img-harness.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { COUNTER_GUEST } from "./guests.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-fleet-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const ctl = (sock: string, ...args: string[]) => spawnSync(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "latin1") : "").split("\n").filter((l) => l.length > 0);

/** Lines L1..Ln in order, none lost, none twice (the last may be cut short by the end). */
function expectCounting(all: string[]): void {
  all.slice(0, -1).forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
}

describe.skipIf(!hasNasm())("migrate one VM of hv fleet", () => {
  it("the named VM moves to the destination and ends in the fleet alone; the other runs on", async () => {
    const kernel = path.join(dir, "counter.bin");
    fs.writeFileSync(kernel, COUNTER_GUEST());
    const [moverLog, stayerLog] = [path.join(dir, "mover.log"), path.join(dir, "stayer.log")];
    const sock = path.join(dir, "fleet.qmp");
    const fleetFile = path.join(dir, "fleet.json");
    fs.writeFileSync(fleetFile, JSON.stringify({
      vms: [
        { name: "mover", kernel, mem: "32M", console: `file:${moverLog}` },
        { name: "stayer", kernel, mem: "32M", console: `file:${stayerLog}` },
      ],
    }));
    const port = await freePort();
    const destination = hvRun(HV, ["--incoming", `tcp:127.0.0.1:${port}`, "--no-pace", "--wall-timeout", "120"], { cwd: ROOT });
    const fleet = spawn(process.execPath, [...HV, "fleet", fleetFile, "--qmp", `unix:${sock}`], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let fleetErr = "";
    fleet.stderr!.on("data", (b: Buffer) => (fleetErr += b.toString()));
    const fleetExited = new Promise<number | null>((resolve) => fleet.on("exit", (code) => resolve(code)));
    try {
      await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
      await until("both VMs' lines", () => lines(moverLog).length > 20 && lines(stayerLog).length > 20 && fs.existsSync(sock));
      // In a fleet, the migration commands name their VM.
      const unnamed = ctl(sock, "query-migrate");
      expect(unnamed.status).toBe(1);
      expect(unnamed.stderr).toMatch(/Parameter 'vm' is missing: this hv runs mover, stayer/);
      expect(ctl(sock, "migrate-set-parameters", "vm=mover", "downtime-limit=50").status).toBe(0);
      expect(JSON.parse(ctl(sock, "query-migrate-parameters", "vm=mover", "--json").stdout)).toMatchObject({ "downtime-limit": 50 });
      expect(JSON.parse(ctl(sock, "query-migrate-parameters", "vm=stayer", "--json").stdout)).toMatchObject({ "downtime-limit": 300 });
      const stayerBefore = lines(stayerLog).length;
      const moved = ctl(sock, "migrate", "vm=mover", `uri=tcp:127.0.0.1:${port}`);
      expect(moved.status, moved.stderr).toBe(0);
      expect(moved.stdout).toMatch(/^migration completed, [\d.]+ MiB sent in \d+ passes, downtime \d+ ms; the VM runs at the destination\n$/);
      expect(JSON.parse(ctl(sock, "query-migrate", "vm=mover", "--json").stdout)).toMatchObject({ status: "completed" });
      expect(JSON.parse(ctl(sock, "query-migrate", "vm=stayer", "--json").stdout)).toEqual({});
      // The moved VM goes on at the destination from where it stopped here.
      await until("the destination's lines", () => destination.out().split("\n").length > 10);
      await until("the mover's end in the fleet", () => fleetErr.includes("mover: migrated in"));
      const moverHere = lines(moverLog);
      const atDestination = destination.out().split("\n").filter((l) => l.length > 0);
      expectCounting([...moverHere, ...atDestination]);
      expect(atDestination[0]).toBe(`L${moverHere.length + 1}`);
      // The other VM ran on through it all, and still does; the mover prints nothing more here.
      await until("the stayer's lines after", () => lines(stayerLog).length > stayerBefore + 20);
      expect(lines(moverLog).length).toBe(moverHere.length);
      expect(ctl(sock, "query-status", "vm=stayer").stdout).toMatch(/running/);
      expect(ctl(sock, "quit").status).toBe(0);
      expect(await fleetExited).toBe(0);
      expect(fleetErr).toMatch(/hv: mover: status 0: the VM migrated away: it runs in another hv now/);
      expect(fleetErr).toMatch(/hv: stayer: status 0: still running when the fleet stopped/);
      expectCounting(lines(stayerLog));
    } finally {
      fleet.kill("SIGTERM");
      destination.child.kill("SIGTERM");
      await destination.exited;
    }
  }, 300_000);
});
