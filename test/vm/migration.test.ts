// Live migration on loopback, both ends in this process: a guest that prints numbered lines and
// keeps writing memory moves from one VM to another while it runs; the lines go on at the
// destination with none lost and none twice. A destination that refuses the stream leaves the
// source running, and so does a connection cut anywhere, or an ACK that never comes.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { HostControl } from "../../bin/host-control.js";
import { OutgoingMigration, migrateIn, migrateOut, type MigrationOptions, type MigrationResult } from "../../bin/migrate.js";
import { openSavedVm, platformConfig, type SaveRequest } from "../../bin/snapshot.js";
import { copyRam } from "../support/ram.js";
import { runVm } from "../../bin/vm-runner.js";
import type { ControlCommand, ControlHost, ControlResult } from "../../services/vm-control.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import fc from "fast-check";
import { scaled } from "../support/scale.js";
import { hasNasm } from "./nasm.js";
import { COUNTER_GUEST as GUEST, DIRTIER_GUEST } from "./guests.js";
import type { Kernel } from "../../kernel/index.js";

const MEMORY = 32 << 20;

const platform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };

function listen(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

/** Whole lines "L1".."Ln" in order, none missing, none twice (the VM may stop in the middle of the last): the largest n. */
function checkLines(text: string): number {
  const lines = text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter((l) => l.length > 0);
  lines.forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
  return lines.length;
}

class QueueControl implements ControlHost {
  readonly queue: ControlCommand[] = [];
  take(): ControlCommand | null {
    return this.queue.shift() ?? null;
  }
  done(_c: ControlCommand, _r: ControlResult): void {}
}

/** The source's control commands as the control component takes them ("dirty collect" for a dirty log's collection). */
class RecordingControl extends HostControl {
  readonly ops: string[] = [];
  override take(): ControlCommand | null {
    const c = super.take();
    if (c) this.ops.push(c.op === "dirty" ? `dirty ${c.action}` : c.op);
    return c;
  }
}

/**
 * Boot the counter guest (or `guest`), move it (after 10 lines) to a destination in this process
 * with `options` (or what they are for the source's kernel), and let the destination print 10
 * lines: what both printed, the migration's result, its host time.
 */
async function moveCounter(options: MigrationOptions | ((source: Kernel) => MigrationOptions), guest = GUEST, control = new HostControl()) {
  const kernel = guest();
  const plan = loadKernel(kernel, { memSize: MEMORY });
  const request: Omit<SaveRequest, "path"> = { name: "mover", memoryBytes: MEMORY, platform, roms: plan.roms, drives: [] };
  const { server, port } = await listen();
  const sourceCon = new MemoryConsole();
  const destCon = new MemoryConsole();
  let result: MigrationResult | null = null;
  let started = 0;
  let elapsedMs = 0;
  const destination = new Promise<void>((resolve, reject) => {
    server.once("connection", (socket: Socket) => {
      migrateIn(socket)
        .then(async (incoming) => {
          const ctl = new QueueControl();
          ctl.queue.push({ vm: 0, op: "resume" });
          incoming.accept();
          try {
            await runVm({
              memoryBytes: incoming.vm.memoryBytes,
              resume: { plan: incoming.vm.plan, state: incoming.vm.state, ram: incoming.vm.reader },
              console: destCon,
              engine: createX86Engine,
              control: ctl,
              ...platformConfig(incoming.vm.platform),
              maxVirtualNs: 60e9,
              onStart: (_k, raise) => raise.control(),
              stopRequested: () => String.fromCharCode(...destCon.serial).split("\n").length > 10,
            });
            resolve();
          } finally {
            incoming.vm.reader.close();
          }
        })
        .catch(reject);
    });
  });
  const sourceRun = await runVm({
    memoryBytes: MEMORY,
    plan,
    console: sourceCon,
    engine: createX86Engine,
    control,
    ...platformConfig(platform),
    // Stopped and waiting for the destination's ACK, the source idles through virtual time (its
    // memory scanner's timer) at seconds per second of the host: a bound only against a hang.
    maxVirtualNs: 3600e9,
    onStart: (_k, raise) => void (control.raise = raise.control),
    onSlice: (k) => {
      if (started || String.fromCharCode(...sourceCon.serial).split("\n").length <= 10) return;
      started = performance.now();
      void migrateOut(control, 0, request, connect(port, "127.0.0.1"), typeof options === "function" ? options(k) : options).then((r) => {
        elapsedMs = performance.now() - started;
        result = r;
      });
    },
    stopRequested: () => result !== null,
  });
  await destination;
  server.close();
  const r = result as MigrationResult | null;
  if (!r) throw new Error(`the migration did not complete (source: ${JSON.stringify({ ended: sourceRun.ended, stop: sourceRun.stop, message: sourceRun.message })})`);
  return { result: r, elapsedMs, sourceText: String.fromCharCode(...sourceCon.serial), destText: String.fromCharCode(...destCon.serial) };
}

describe.skipIf(!hasNasm())("live migration", () => {
  it("moves a running guest that keeps writing memory: its lines go on at the destination, none lost or twice", async () => {
    const run = await moveCounter({ stopPages: 16 });
    expect(run.result.pass).toBeGreaterThanOrEqual(1);
    // The source's lines and then the destination's: one sequence, nothing lost, nothing twice.
    const lines = checkLines(run.sourceText + run.destText);
    expect(lines).toBeGreaterThan(checkLines(run.sourceText.slice(0, run.sourceText.lastIndexOf("\n") + 1)) + 9);
  });

  it("looks at RAM afresh with each pass's dirty log, while the VM runs: the stop's look covers only what was written since, not the whole pass", async () => {
    for (const stopPages of [100_000, 16]) {
      const control = new RecordingControl();
      const run = await moveCounter({ stopPages }, GUEST, control);
      checkLines(run.sourceText + run.destText);
      // Each pass: RAM read for its pages, then RAM looked at again with the collection of the log
      // (an ATTACH, which re-delegates the pages remapped since the one before: the guest wrote them).
      const pass = ["ram", "ram", "dirty collect"];
      expect(control.ops, `stopPages ${stopPages}`).toEqual(["dirty start", ...Array.from({ length: run.result.pass }, () => pass).flat(), "pause", "dirty last", "ram", "state"]);
    }
  });

  it("keeps to max-bandwidth, and stops when the rest fits the downtime limit (or after the most passes)", async () => {
    const rate = 2_000_000;
    const limited = await moveCounter({ maxBandwidth: rate });
    // The token bucket: never faster than the rate (a lower bound on time, whatever the machine).
    expect(limited.elapsedMs).toBeGreaterThanOrEqual(((limited.result.bytes / rate) * 1000) * 0.95);
    checkLines(limited.sourceText + limited.destText);
    // The guest dirties 64 pages a line: about 270 KB, 135 ms at 2 MB/s, within the 300 ms default: few passes.
    expect(limited.result.pass).toBeLessThan(8);
    const never = await moveCounter({ downtimeLimitMs: 0, maxPasses: 3 });
    expect(never.result.pass).toBe(3);
    checkLines(never.sourceText + never.destText);
  });

  it("auto-converge: a guest that dirties faster than the link converges within the downtime limit when throttled, and not without", async () => {
    // The link runs on the source's virtual time (as if the host held it to wall time exactly):
    // 10 pages per ms of it, against a guest that writes 50 pages per ms of its own time.
    const link = (k: Kernel): MigrationOptions => ({ clock: () => k.clock.now / 1e6, maxBandwidth: 10 * 4101 * 1000, downtimeLimitMs: 3 });
    const off = await moveCounter(link, DIRTIER_GUEST);
    expect(off.result.converged).toBe(false);
    expect(off.result.pass).toBe(8);
    expect(off.result.throttle).toBe(0);
    // What the last pass left would take far longer than the limit: the guest outran the link.
    expect(off.result.expectedDowntimeMs).toBeGreaterThan(3 * 3);
    // query-migrate's dirty-pages-rate: pages written per second of the link's clock in the last pass, no more than the guest writes.
    expect(off.result.dirtyRate).toBeGreaterThan(0);
    expect(off.result.dirtyRate).toBeLessThanOrEqual(50_000);
    checkLines(off.sourceText + off.destText);
    const autoConverge = { triggerThreshold: 50, initial: 50, increment: 20, max: 99 };
    const on = await moveCounter((k) => ({ ...link(k), autoConverge }), DIRTIER_GUEST);
    expect(on.result.converged).toBe(true);
    expect(on.result.throttle).toBeGreaterThanOrEqual(50);
    expect(on.result.expectedDowntimeMs).toBeLessThanOrEqual(3);
    // Its last pass left what fits 3 ms of the link: a few pages, where the unthrottled one left a whole region's worth.
    expect(on.result.dirty).toBeLessThan(off.result.dirty / 4);
    checkLines(on.sourceText + on.destText);
  });

  it("a connection cut at random points of real migrations, the last ACK included, leaves the source running, as it was", async () => {
    const kernel = GUEST();
    const plan = loadKernel(kernel, { memSize: MEMORY });
    const request: Omit<SaveRequest, "path"> = { name: "stayer", memoryBytes: MEMORY, platform, roms: plan.roms, drives: [] };
    /**
     * Migrate through a destination that reads the stream as a real one does (migrateIn) but never
     * runs the VM: it cuts the connection after `cutAfter` bytes, or, once the whole VM came, sends no
     * ACK and goes (a destination that died just before it confirmed). What went through: bytes, and
     * whether the whole VM arrived.
     */
    const migrateCut = async (cutAfter: number) => {
      const { server, port } = await listen();
      const through = { bytes: 0, whole: false };
      server.on("connection", (socket: Socket) => {
        // Counted before the destination's reader sees them (its listener comes second).
        socket.on("data", (chunk: Buffer) => {
          through.bytes += chunk.length;
          if (through.bytes >= cutAfter) socket.destroy();
        });
        migrateIn(socket).then(
          (vm) => {
            through.whole = true;
            vm.vm.reader.close();
            socket.destroy();
          },
          () => socket.destroy(),
        );
      });
      const con = new MemoryConsole();
      const control = new HostControl();
      let started = false;
      let failed: Error | null = null;
      let linesAtFailure = 0;
      const result = await runVm({
        memoryBytes: MEMORY,
        plan,
        console: con,
        engine: createX86Engine,
        control,
        ...platformConfig(platform),
        maxVirtualNs: 60e9,
        onStart: (_k, raise) => {
          control.raise = raise.control;
        },
        onSlice: () => {
          const lines = String.fromCharCode(...con.serial).split("\n").length;
          if (!started && lines > 5) {
            started = true;
            migrateOut(control, 0, request, connect(port, "127.0.0.1"), { stopPages: 16 }).catch((error: Error) => {
              failed = error;
              linesAtFailure = String.fromCharCode(...con.serial).split("\n").length;
            });
          }
        },
        // After the failure the guest goes on: 10 more lines.
        stopRequested: () => failed !== null && String.fromCharCode(...con.serial).split("\n").length > linesAtFailure + 10,
      });
      server.close();
      expect(failed, `cut after ${cutAfter} bytes`).not.toBeNull();
      expect(result.ended).toBe(false);
      expect(result.stop).toBe("quit");
      const text = String.fromCharCode(...con.serial);
      checkLines(text.slice(0, text.lastIndexOf("\n") + 1));
      return through;
    };
    // The whole stream, with no ACK at its end: how long a migration is.
    const whole = await migrateCut(Infinity);
    expect(whole.whole, "the destination read the whole VM").toBe(true);
    // Cuts anywhere in such a stream (each migration's is a little different: the guest runs on).
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: whole.bytes }), async (cutAfter) => void (await migrateCut(cutAfter))),
      { numRuns: scaled(8), seed: 12 },
    );
  });

  it("a resumed VM whose pages the scanner took away migrates whole: the destination's RAM is the source's at the stop, byte for byte", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hv-migrate-"));
    try {
      const kernel = GUEST();
      const plan = loadKernel(kernel, { memSize: MEMORY });
      const request: Omit<SaveRequest, "path"> = { name: "resumed", memoryBytes: MEMORY, platform, roms: plan.roms, drives: [] };
      // A snapshot of the guest after 5 lines.
      const file = join(dir, "counter.hvsnap");
      const first = new MemoryConsole();
      const control0 = new HostControl();
      let saved = false;
      await runVm({
        memoryBytes: MEMORY, plan, console: first, engine: createX86Engine, control: control0, ...platformConfig(platform), maxVirtualNs: 60e9,
        onStart: (_k, raise) => void (control0.raise = raise.control),
        onSlice: () => {
          if (saved || String.fromCharCode(...first.serial).split("\n").length <= 5) return;
          saved = true;
          void control0.save(0, { ...request, path: file }).then(() => (saved = true));
        },
        stopRequested: () => saved && existsSync(file),
      });
      // Resumed from it (its pages come from the file on first touch), with the scanner fast, then migrated.
      const vm = openSavedVm(file);
      const { server, port } = await listen();
      const control = new HostControl();
      let sourceRam: Uint8Array | null = null;
      let destRam: Uint8Array | null = null;
      let scanner = { merged: 0, zeroed: 0 };
      const destination = new Promise<void>((resolve, reject) => {
        server.once("connection", (socket: Socket) => {
          migrateIn(socket)
            .then(async (incoming) => {
              const ctl: ControlHost & { queue: ControlCommand[] } = {
                queue: [{ vm: 0, op: "save" }],
                take() {
                  return this.queue.shift() ?? null;
                },
                done(command, result) {
                  if (command.op === "save" && "state" in result) destRam = copyRam(result.ram);
                },
              };
              incoming.accept();
              try {
                await runVm({
                  memoryBytes: incoming.vm.memoryBytes, resume: { plan: incoming.vm.plan, state: incoming.vm.state, ram: incoming.vm.reader },
                  console: new MemoryConsole(), engine: createX86Engine, control: ctl, ...platformConfig(incoming.vm.platform), maxVirtualNs: 60e9,
                  onStart: (_k, raise) => raise.control(),
                  stopRequested: () => destRam !== null,
                });
                resolve();
              } finally {
                incoming.vm.reader.close();
              }
            })
            .catch(reject);
        });
      });
      const con = new MemoryConsole();
      let started = false;
      let asking = false;
      await runVm({
        memoryBytes: vm.memoryBytes, resume: { plan: vm.plan, state: vm.state, ram: vm.reader }, console: con, engine: createX86Engine, control,
        ...platformConfig(vm.platform), scanRate: 500_000, maxVirtualNs: 60e9,
        onStart: (_k, raise) => {
          control.raise = raise.control;
          void control.resume(0);
        },
        onSlice: () => {
          // Once the scanner has taken pages away (asked again and again until then), migrate.
          if (started || asking) return;
          asking = true;
          void control.query(0).then((q) => {
            asking = false;
            scanner = q.memory.scanner;
            if (scanner.merged + scanner.zeroed === 0) return;
            started = true;
            void migrateOut(control, 0, request, connect(port, "127.0.0.1")).then(() => control.capture(0, (_state, ram) => (sourceRam = copyRam(ram))));
          });
        },
        stopRequested: () => sourceRam !== null,
      });
      vm.reader.close();
      await destination;
      server.close();
      // The scanner did take pages away from the resumed VM before it moved.
      expect(scanner.merged + scanner.zeroed).toBeGreaterThan(0);
      expect(sourceRam).not.toBeNull();
      expect(destRam).not.toBeNull();
      expect(Buffer.compare(sourceRam!, destRam!)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("migrate_cancel while the destination keeps the source waiting: the source goes on, the migration says cancelled", async () => {
    const kernel = GUEST();
    const plan = loadKernel(kernel, { memSize: MEMORY });
    const request: Omit<SaveRequest, "path"> = { name: "cancelled", memoryBytes: MEMORY, platform, roms: plan.roms, drives: [] };
    const { server, port } = await listen();
    // A destination that takes everything and never answers.
    server.on("connection", (socket: Socket) => socket.on("data", () => {}));
    const con = new MemoryConsole();
    const control = new HostControl();
    const migration = new OutgoingMigration(control, () => request, (host, p) => connect(p, host), () => {
      throw new Error("the migration must not complete");
    });
    let phase: "run" | "migrating" | "cancelled" = "run";
    let linesAtCancel = 0;
    const lines = () => String.fromCharCode(...con.serial).split("\n").length;
    const result = await runVm({
      memoryBytes: MEMORY, plan, console: con, engine: createX86Engine, control, ...platformConfig(platform), maxVirtualNs: 60e9,
      onStart: (_k, raise) => void (control.raise = raise.control),
      onSlice: () => {
        if (phase === "run" && lines() > 5) {
          phase = "migrating";
          migration.start(0, `tcp:127.0.0.1:${port}`);
        } else if (phase === "migrating" && migration.query().ram !== undefined) {
          migration.cancel();
          phase = "cancelled";
        } else if (phase === "cancelled" && linesAtCancel === 0 && migration.query().status === "cancelled") linesAtCancel = lines();
      },
      stopRequested: () => linesAtCancel > 0 && lines() > linesAtCancel + 10,
    });
    server.close();
    expect(result.ended).toBe(false);
    expect(migration.query()).toMatchObject({ status: "cancelled" });
    const text = String.fromCharCode(...con.serial);
    checkLines(text.slice(0, text.lastIndexOf("\n") + 1));
  });

  it("migrate-set-parameters takes whole numbers in range and refuses the rest, naming the parameter", () => {
    const m = new OutgoingMigration(new HostControl(), () => ({}) as never, () => ({}) as never, () => {});
    const defaults = { "max-bandwidth": 0, "downtime-limit": 300, "throttle-trigger-threshold": 50, "cpu-throttle-initial": 20, "cpu-throttle-increment": 10, "max-cpu-throttle": 99 };
    expect(m.parameters).toEqual(defaults);
    m.setParameters({ "max-bandwidth": 125_000_000, "downtime-limit": 20, "cpu-throttle-initial": 30 });
    const set = { ...defaults, "max-bandwidth": 125_000_000, "downtime-limit": 20, "cpu-throttle-initial": 30 };
    expect(m.parameters).toEqual(set);
    for (const bad of [{ "max-bandwidth": -1 }, { "max-bandwidth": 2 ** 41 }, { "downtime-limit": 0.5 }, { "downtime-limit": Number.NaN }, { "max-cpu-throttle": 100 }, { "cpu-throttle-increment": 0 }])
      expect(() => m.setParameters(bad)).toThrow(/Parameter '(max-bandwidth|downtime-limit|max-cpu-throttle|cpu-throttle-increment)' expects a whole number/);
    // A refused change changes nothing, not even the parameters before the bad one.
    expect(() => m.setParameters({ "downtime-limit": 50, "max-cpu-throttle": 200 })).toThrow(/max-cpu-throttle/);
    expect(m.parameters).toEqual(set);
    expect(m.capabilities).toEqual({ "auto-converge": false, "postcopy-ram": false });
    m.setCapabilities([{ capability: "auto-converge", state: true }]);
    expect(m.capabilities).toEqual({ "auto-converge": true, "postcopy-ram": false });
    expect(() => m.setCapabilities([{ capability: "xbzrle", state: true }])).toThrow(/Capability 'xbzrle' is not one hv has \(auto-converge, postcopy-ram\)/);
    // migrate-start-postcopy: only with postcopy-ram set, and with a migration to switch (QEMU's rules).
    expect(() => m.startPostcopy()).toThrow(/Enable postcopy with migrate-set-capabilities \(postcopy-ram\) before the start of migration/);
    m.setCapabilities([{ capability: "postcopy-ram", state: true }]);
    expect(m.capabilities["postcopy-ram"]).toBe(true);
    expect(() => m.startPostcopy()).toThrow(/there is no migration to switch to post-copy/);
    // A fleet's VMs: not yet.
    const f = new OutgoingMigration(new HostControl(), () => ({}) as never, () => ({}) as never, () => {});
    f.postcopyAllowed = false;
    expect(() => f.setCapabilities([{ capability: "postcopy-ram", state: true }])).toThrow(/post-copy is for hv run's VM, not yet a fleet's/);
    expect(() => m.start(0, "tcp:localhost:99999")).toThrow(/not tcp:HOST:PORT/);
  });
});
