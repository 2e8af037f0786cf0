// Whole-VM snapshots: a guest whose every step depends on time (PIT interrupts, the TSC, the PIT
// counter) runs, is saved while it runs, and goes on; a new kernel resumes the saved VM. From the
// save on, both must do exactly the same: the same serial output, the same exit, and the same whole
// state (vCPU, devices, RAM) when both are saved again at the same VM time.

import { copyRam } from "../support/ram.js";
import { decode, encode } from "@msgpack/msgpack";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { ROOT } from "../hostile/img-harness.js";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { Status } from "../../kernel/index.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm, type VmRunOptions } from "../../bin/vm-runner.js";
import type { ControlCommand, ControlHost, ControlResult } from "../../services/vm-control.js";
import { loadBios } from "../../vmm/boot/index.js";
import type { VmState } from "../../vmm/protocol.js";
import { vcpuFromRecord } from "../../vmm/vcpu-record.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, hasNasm } from "./nasm.js";
import { TIME_MIXING_ROM as ROM } from "./guests.js";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSavedVm, saveSnapshot } from "../../bin/snapshot.js";
import { SnapshotError } from "../../services/snapshot/file.js";



const MEMORY = 4 << 20;
/** VM time of the second save in the file test: after the first (at about 12 ms), before the guest ends. */
const LATER_NS = 25e6;

/** A control host the test drives: commands queued at kernel times, results kept. */
class ScriptedControl implements ControlHost {
  readonly queue: ControlCommand[] = [];
  readonly saves: { state: Uint8Array; ram: Uint8Array; serialAt: number }[] = [];
  readonly results: ControlResult[] = [];
  constructor(private readonly console: MemoryConsole) {}
  take(): ControlCommand | null {
    return this.queue.shift() ?? null;
  }
  done(command: ControlCommand, result: ControlResult): void {
    this.results.push(result);
    if (command.op === "save" && "state" in result) this.saves.push({ state: result.state.slice(), ram: copyRam(result.ram), serialAt: this.console.serial.length });
  }
}

/** Saved RAM as a snapshot file gives it: the non-zero pages, page by page. */
function ramSource(ram: Uint8Array) {
  const page = (n: number) => ram.subarray(n * 4096, (n + 1) * 4096);
  return { hasPage: (n: number) => page(n).some((b) => b !== 0), readPage: (n: number, into: Uint8Array) => into.set(page(n)) };
}

function options(con: MemoryConsole, control: ControlHost, rom: Uint8Array): VmRunOptions {
  return { memoryBytes: MEMORY, bios: rom, console: con, engine: createX86Engine, debugExitPort: 0xf4, control, maxVirtualNs: 10e9 };
}

describe.skipIf(!hasNasm())("VM snapshots", () => {
  it("a resumed VM goes on exactly as the saved one did, and as one never stopped: output, exit and whole state", async () => {
    const rom = assemble(ROM);
    // The original: saved after 15 ms of kernel time, then once more at VM time 30 ms, and on to its end.
    const conA = new MemoryConsole();
    const ctlA = new ScriptedControl(conA);
    let raiseA = () => {};
    let asked = false;
    const a = await runVm({
      ...options(conA, ctlA, rom),
      onStart: (_k, raise) => void (raiseA = raise.control),
      onSlice: (k) => {
        if (asked || k.clock.now < 15e6) return;
        asked = true;
        ctlA.queue.push({ vm: 0, op: "save" }, { vm: 0, op: "save", atVmTimeNs: 30e6 });
        raiseA();
      },
    });
    expect(ctlA.results.map((r) => r.status)).toEqual([Status.SUCCESS, Status.SUCCESS]);
    expect(a.stop).toBe("ended");
    expect(a.why).toBe(VmEnd.DEBUG_EXIT);
    const [first, second] = ctlA.saves;
    const saved = decode(first.state) as VmState;
    expect(saved.vmTimeNs).toBeGreaterThan(10e6);
    expect(saved.vmTimeNs).toBeLessThan(30e6);

    // The copy: a fresh kernel resumes the first save, and is saved at VM time 30 ms too.
    const conB = new MemoryConsole();
    const ctlB = new ScriptedControl(conB);
    ctlB.queue.push({ vm: 0, op: "resume" }, { vm: 0, op: "save", atVmTimeNs: 30e6 });
    const plan = { ...loadBios(rom, { memSize: MEMORY }), writes: [], state: vcpuFromRecord(saved.vcpu, "vcpu") };
    const b = await runVm({
      ...options(conB, ctlB, rom),
      resume: { plan, state: saved, ram: ramSource(first.ram) },
      onStart: (_k, raise) => raise.control(),
    });

    expect(ctlB.results.map((r) => r.status)).toEqual([Status.SUCCESS, Status.SUCCESS]);
    expect(b.why).toBe(a.why);
    expect(b.status).toBe(a.status);
    expect(conB.text).toBe(conA.text.slice(first.serialAt));
    expect(conB.text.length).toBeGreaterThan(100);
    // Whole state at VM time 30 ms: vCPU, devices and RAM.
    expect(decode(ctlB.saves[0].state)).toEqual(decode(second.state));
    expect(Buffer.compare(ctlB.saves[0].ram, second.ram)).toBe(0);

    // And the same as a run that was never stopped before: the save at 20 ms left no trace.
    const conC = new MemoryConsole();
    const ctlC = new ScriptedControl(conC);
    ctlC.queue.push({ vm: 0, op: "save", atVmTimeNs: 30e6 });
    const c = await runVm({ ...options(conC, ctlC, rom), onStart: (_k, raise) => raise.control() });
    expect(c.status).toBe(a.status);
    expect(conC.text).toBe(conA.text);
    expect(decode(ctlC.saves[0].state)).toEqual(decode(second.state));
    expect(Buffer.compare(ctlC.saves[0].ram, second.ram)).toBe(0);
  });

  it("goes through a snapshot file: saved, refused when tampered with, resumed from it alike", async () => {
    const rom = assemble(ROM);
    const dir = mkdtempSync(join(tmpdir(), "hv-snap-"));
    try {
      const con = new MemoryConsole();
      const ctl = new ScriptedControl(con);
      let raise = () => {};
      const plan = loadBios(rom, { memSize: MEMORY });
      const a = await runVm({
        ...options(con, ctl, rom),
        onStart: (_k, r) => void (raise = r.control),
        onSlice: (k) => {
          if (ctl.queue.length > 0 || ctl.results.length > 0 || k.clock.now < 12e6) return;
          ctl.queue.push({ vm: 0, op: "save" }, { vm: 0, op: "save", atVmTimeNs: LATER_NS });
          raise();
        },
      });
      const path = join(dir, "vm.hvsnap");
      const platform = { apic: false, acpi: true, debugcon: false, debugExitPort: 0xf4, pv: true };
      const { pages } = saveSnapshot({ path, name: "vm", memoryBytes: MEMORY, platform, roms: plan.roms, drives: [], compress: true }, ctl.saves[0].state, ctl.saves[0].ram);
      expect(pages).toBeGreaterThan(0);

      // A flipped byte anywhere is refused with the section it is in, before anything runs.
      const bytes = readFileSync(path);
      const bad = join(dir, "bad.hvsnap");
      bytes[Math.floor(bytes.length / 3)] ^= 0x40;
      writeFileSync(bad, bytes);
      expect(() => openSavedVm(bad).reader.verify()).toThrow(SnapshotError);

      const saved = openSavedVm(path);
      expect(saved.platform).toEqual(platform);
      const conB = new MemoryConsole();
      const ctlB = new ScriptedControl(conB);
      // The same later save as the original's: a save is a pause, and the VM goes on after it alike.
      ctlB.queue.push({ vm: 0, op: "resume" }, { vm: 0, op: "save", atVmTimeNs: LATER_NS });
      const b = await runVm({
        ...options(conB, ctlB, rom),
        resume: { plan: saved.plan, state: saved.state, ram: saved.reader },
        onStart: (_k, r) => r.control(),
      });
      saved.reader.close();
      expect(b.status).toBe(a.status);
      expect(conB.text).toBe(con.text.slice(ctl.saves[0].serialAt));
      expect(decode(ctlB.saves[0].state)).toEqual(decode(ctl.saves[1].state));

      // And in a fresh process: the same output, and the same whole state at a later VM time.
      const child = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "test/vm/restore-child.ts"), path, String(LATER_NS)], { cwd: ROOT, encoding: "utf8" });
      expect(child.stderr).toBe("");
      const seen = JSON.parse(child.stdout) as { state: string; ram: string; serial: string };
      const hash = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
      expect(seen.serial).toBe(con.text.slice(ctl.saves[0].serialAt));
      expect(seen.state).toBe(hash(encode(decode(ctl.saves[1].state))));
      expect(seen.ram).toBe(hash(ctl.saves[1].ram));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
