// One VM of a fleet migrates: `hv ctl SOCKET migrate vm=NAME uri=tcp:...` on the fleet's QMP
// socket moves that VM to an `hv run --incoming` destination while it runs; the other VM of the
// fleet runs on undisturbed, and after the switch the moved VM ends in the fleet alone (status 0,
// "migrated away"), its lines going on at the destination with none lost or twice. With inc=true
// the fleet VM's qcow2 overlay goes too (block migration), and the other VM's drive stays as it was.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HV, ROOT } from "../hostile/img-harness.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { ctl } from "../support/hv-ctl.js";
import { expectedDisk, firstDifference, makeWriterDisk, overlayOver, readDisk, sectorOf, sha } from "./block-migration-disk.js";
import { COUNTER_GUEST } from "./guests.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-fleet-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "latin1") : "").split("\n").filter((l) => l.length > 0);

/** Lines L1..Ln in order, none lost, none twice (the last may be cut short by the end). */
function expectCounting(all: string[]): void {
  all.slice(0, -1).forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
}

/** `hv fleet FILE --qmp unix:SOCK`: its exit and what it said on stderr. */
function startFleet(fleetFile: string, sock: string) {
  const child = spawn(process.execPath, [...HV, "fleet", fleetFile, "--qmp", `unix:${sock}`], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, err: () => err, exited };
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
    const { child: fleet, err: fleetErr, exited: fleetExited } = startFleet(fleetFile, sock);
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
      await until("the mover's end in the fleet", () => fleetErr().includes("mover: migrated in"));
      const moverHere = lines(moverLog);
      // The VM may have stopped in the middle of a line: the destination prints the rest of it.
      const together = (fs.readFileSync(moverLog, "latin1") + destination.out()).split("\n").filter((l) => l.length > 0);
      expectCounting(together);
      expect(together.length).toBeGreaterThan(moverHere.length + 5);
      // The other VM ran on through it all, and still does; the mover prints nothing more here.
      await until("the stayer's lines after", () => lines(stayerLog).length > stayerBefore + 20);
      expect(lines(moverLog).length).toBe(moverHere.length);
      expect(ctl(sock, "query-status", "vm=stayer").stdout).toMatch(/running/);
      expect(ctl(sock, "quit").status).toBe(0);
      expect(await fleetExited).toBe(0);
      expect(fleetErr()).toMatch(/hv: mover: status 0: the VM migrated away: it runs in another hv now/);
      expect(fleetErr()).toMatch(/hv: stayer: status 0: still running when the fleet stopped/);
      expectCounting(lines(stayerLog));
    } finally {
      fleet.kill("SIGTERM");
      destination.child.kill("SIGTERM");
      await destination.exited;
    }
  }, 300_000);
  it("inc=true: the named VM's overlay goes with it (the fleet's block driver holds the other VM's drive first); the other's drive is untouched", async () => {
    // The stayer's drive is the block driver's first; the mover's overlay comes after it.
    const writes = 30_000;
    const { base, backing, baseHash, sourceOverlay, kernel: writer } = makeWriterDisk(dir, writes, "mover.qcow2");
    const counter = path.join(dir, "counter.bin");
    fs.writeFileSync(counter, COUNTER_GUEST());
    const stayerDisk = path.join(dir, "stayer.raw");
    fs.writeFileSync(stayerDisk, new Uint8Array(1 << 20).fill(0x5a));
    const stayerHash = sha(stayerDisk);
    const destinationOverlay = path.join(dir, "mover-here.qcow2");
    const [moverLog, stayerLog] = [path.join(dir, "mover-inc.log"), path.join(dir, "stayer-inc.log")];
    const sock = path.join(dir, "fleet-inc.qmp");
    const fleetFile = path.join(dir, "fleet-inc.json");
    fs.writeFileSync(fleetFile, JSON.stringify({
      vms: [
        { name: "stayer", kernel: counter, mem: "32M", console: `file:${stayerLog}`, drives: [`file=${stayerDisk},format=raw`] },
        { name: "mover", kernel: writer, mem: "32M", console: `file:${moverLog}`, drives: [`file=${sourceOverlay}`] },
      ],
    }));
    const port = await freePort();
    const destination = hvRun(HV, ["--incoming", `tcp:127.0.0.1:${port}`, "--drive", `file=${destinationOverlay}`, "--no-pace", "--wall-timeout", "240"], { cwd: ROOT });
    const { child: fleet, err: fleetErr, exited: fleetExited } = startFleet(fleetFile, sock);
    try {
      await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
      await until("both VMs' lines", () => lines(moverLog).length > 300 && lines(stayerLog).length > 20 && fs.existsSync(sock));
      const moved = ctl(sock, "migrate", "vm=mover", `uri=tcp:127.0.0.1:${port}`, "inc=true", "--json");
      expect(moved.status, moved.stderr).toBe(0);
      const info = JSON.parse(moved.stdout) as { status: string; disk?: { transferred: number } };
      expect(info.status).toBe("completed");
      // The overlay's chunks went (whole 64 KiB ones): the source had written hundreds of sectors, each in a chunk of its own.
      expect(info.disk?.transferred ?? 0).toBeGreaterThanOrEqual(100 * 65536);
      expect(await destination.exited, destination.err()).toBe(0);
      await until("the mover's end in the fleet", () => fleetErr().includes("mover: migrated in"));

      const moverHere = lines(moverLog);
      expect(moverHere).not.toContain("DONE");
      // The VM may have stopped in the middle of a line: the destination prints the rest of it.
      const all = (fs.readFileSync(moverLog, "latin1") + destination.out()).split("\n").filter((l) => l.length > 0);
      expect(all.at(-1)).toBe("DONE");
      all.slice(0, -1).forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
      expect(all.length).toBe(writes + 1);
      // The destination's own overlay reads as the guest's whole history; the source's as it was up to the move.
      const atDestination = readDisk(destinationOverlay);
      expect(firstDifference(atDestination, expectedDisk(base, writes))).toBe(-1);
      const atSource = readDisk(sourceOverlay);
      for (let n = 1; n <= moverHere.length; n++) {
        const at = sectorOf(n) * 512;
        expect(Buffer.compare(atSource.subarray(at, at + 512), atDestination.subarray(at, at + 512)), `write ${n}`).toBe(0);
      }
      expect(overlayOver(destinationOverlay, backing)).toEqual({ format: "qcow2", backing });
      expect(sha(backing)).toBe(baseHash);
      // The other VM ran on, its drive as it was.
      const stayerBefore = lines(stayerLog).length;
      await until("the stayer's lines after", () => lines(stayerLog).length > stayerBefore + 20);
      expect(ctl(sock, "quit").status).toBe(0);
      expect(await fleetExited).toBe(0);
      expectCounting(lines(stayerLog));
      expect(sha(stayerDisk)).toBe(stayerHash);
    } finally {
      fleet.kill("SIGTERM");
      destination.child.kill("SIGTERM");
      await destination.exited;
    }
  }, 400_000);
});
