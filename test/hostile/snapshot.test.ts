// Hostile snapshots with valid checksums: records that lie about the vCPU, the devices or the
// drives are refused by `openSavedVm` (and so by `hv run --restore`) with the section and field
// named, before any component starts.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSavedVm, saveSnapshot } from "../../bin/snapshot.js";
import { runVm } from "../../bin/vm-runner.js";
import { MemoryConsole } from "../../drivers/console/host.js";
import { openSnapshot, writeSnapshot, type SnapshotContents } from "../../services/snapshot/file.js";
import type { ControlCommand, ControlResult } from "../../services/vm-control.js";
import { loadBios } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, hasNasm, pitInterrupts, realModeRom } from "../vm/nasm.js";
import { HV, ROOT } from "./img-harness.js";
import { spawnSync } from "node:child_process";

const MEMORY = 2 << 20;
const ROM = realModeRom(`${pitInterrupts("irq0", 1193)}
  sti
.idle:
  hlt
  jmp .idle
irq0:
  mov al, 0x20
  out 0x20, al
  iret`);

describe.skipIf(!hasNasm())("hostile snapshots", () => {
  const dir = mkdtempSync(join(tmpdir(), "hv-hostile-snap-"));
  const good = join(dir, "good.hvsnap");
  const disk = join(dir, "disk.raw");
  let contents: SnapshotContents;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeAll(async () => {
    writeFileSync(disk, new Uint8Array(1 << 20));
    const rom = assemble(ROM);
    const plan = loadBios(rom, { memSize: MEMORY });
    let raise = () => {};
    let saved = false;
    const control = {
      queue: [] as ControlCommand[],
      take() {
        return this.queue.shift() ?? null;
      },
      done(_c: ControlCommand, r: ControlResult) {
        if (!("state" in r)) throw new Error(`save failed: ${r.status}`);
        saveSnapshot({ path: good, name: "victim", memoryBytes: MEMORY, platform: { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true }, roms: plan.roms, drives: [{ path: disk, format: "raw" }] }, r.state, r.ram);
        saved = true;
      },
    };
    await runVm({
      memoryBytes: MEMORY,
      plan,
      console: new MemoryConsole(),
      engine: createX86Engine,
      drives: [{ path: disk, format: "raw" }],
      debugExitPort: null,
      control,
      stopRequested: () => saved,
      onStart: (_k, r) => void (raise = r.control),
      onSlice: (k) => {
        if (k.clock.now > 20e6 && control.queue.length === 0 && !saved) {
          control.queue.push({ vm: 0, op: "save" });
          raise();
        }
      },
    });
    const reader = openSnapshot(good);
    const ram = new Uint8Array(MEMORY);
    reader.readAll(ram);
    contents = { header: reader.header, vcpus: reader.vcpus, devices: reader.devices, memoryMap: reader.memoryMap, drives: reader.drives, ram };
    reader.close();
  });

  const hvOf = (c: SnapshotContents) => c.vcpus[0] as Record<string, unknown>;
  const hvRecordOf = (c: SnapshotContents) => hvOf(c).hv as { upcallVector: number; timerNs: number; events: { sharedInfo: number; ports: number[] }; grants: unknown; maps: number[] };

  /** A copy of the good file with `change` applied to its decoded contents (checksums stay valid). */
  function tampered(name: string, change: (c: SnapshotContents) => void): string {
    const c = structuredClone(contents);
    change(c);
    const path = join(dir, `${name}.hvsnap`);
    writeSnapshot(path, c);
    return path;
  }

  it("resumes the untampered file", () => {
    const vm = openSavedVm(good);
    vm.reader.close();
    expect(vm.state.vmTimeNs).toBeGreaterThan(0);
    // Its hv PV ABI record is there (empty: the guest never used the ABI).
    expect(vm.state.hv).toEqual({ upcallVector: 0, upcallRaised: false, timerNs: null, events: { sharedInfo: -1, ports: [] }, grants: { gpa: 0, entries: 0, mapped: [] }, maps: [] });
  });

  it.each([
    ["a device register out of range", (c: SnapshotContents) => (((c.devices.pit as { channels: { mode: number }[] }).channels[0].mode = 9)), /devices section, pit\.channels\[0\]\.mode/],
    ["a device missing", (c: SnapshotContents) => void delete c.devices.pic, /devices section, platform\.pic: missing/],
    ["a device of another kind", (c: SnapshotContents) => void (c.devices.i8042 = [1, 2, 3]), /devices section, i8042/],
    ["a disk of another size than the drive's", (c: SnapshotContents) => void ((c.devices.pci as { functions: Record<string, { virtio: { model: { sectors: number } } }> }).functions["04.0"].virtio.model.sectors += 1), /devices section, .*sectors: saved disk has 2049 sectors, this one 2048/],
    ["a register that is not a number", (c: SnapshotContents) => void ((c.vcpus[0] as { registers: Record<string, unknown> }).registers.eip = "x"), /vcpus section, vcpus\[0\]\.registers\.eip/],
    ["a halted flag that is not a boolean", (c: SnapshotContents) => void ((c.vcpus[0] as Record<string, unknown>).halted = 1), /vcpus section, vcpus\[0\]\.halted/],
    ["an hv ABI record of another kind", (c: SnapshotContents) => void (hvOf(c).hv = "x"), /vcpus section, vcpus\[0\]\.hv: not a record/],
    ["an hv port in no state there is", (c: SnapshotContents) => void (hvRecordOf(c).events.ports = [1, 9, 0, 0, 0]), /vcpus section, vcpus\[0\]\.hv\.events\.ports\[0\]/],
    ["an hv port twice", (c: SnapshotContents) => void (hvRecordOf(c).events.ports = [3, 3, 0, 0, 0, 3, 3, 0, 0, 1]), /vcpus section, vcpus\[0\]\.hv\.events\.ports\[1\]: not a port, or a port twice/],
    ["an hv loopback port without its other end", (c: SnapshotContents) => void (hvRecordOf(c).events.ports = [1, 2, 0x7ff0, 5, 0]), /vcpus\[0\]\.hv\.events\.ports: loopback port 1/],
    ["an hv port list cut short", (c: SnapshotContents) => void (hvRecordOf(c).events.ports = [1, 1, 0]), /vcpus\[0\]\.hv\.events\.ports: not \[port/],
    ["an hv shared-info page off a page boundary", (c: SnapshotContents) => void (hvRecordOf(c).events.sharedInfo = 0x1234), /vcpus\[0\]\.hv\.events\.sharedInfo/],
    ["an hv grant table crossing a page", (c: SnapshotContents) => void (hvRecordOf(c).grants = { gpa: 4088, entries: 2, mapped: [] }), /vcpus\[0\]\.hv\.grants\.gpa/],
    ["an hv grant mapped past its table", (c: SnapshotContents) => void (hvRecordOf(c).grants = { gpa: 0x1000, entries: 2, mapped: [2, 0, 0, 1] }), /vcpus\[0\]\.hv\.grants\.mapped\[0\]/],
    ["an hv mapping outside the grant map area", (c: SnapshotContents) => void (hvRecordOf(c).maps = [256, 0, 0, 1]), /vcpus\[0\]\.hv\.maps\[0\]/],
    ["an hv upcall vector of an exception", (c: SnapshotContents) => void (hvRecordOf(c).upcallVector = 14), /vcpus\[0\]\.hv\.upcallVector/],
    ["an hv timer that is not a time", (c: SnapshotContents) => void (hvRecordOf(c).timerNs = -5), /vcpus\[0\]\.hv\.timerNs/],
    ["a drive that changed since the save", (c: SnapshotContents) => void (c.drives[0].identity = "0:0:0"), /drives section, \[0\]\.identity/],
    ["a drive of another size", (c: SnapshotContents) => void (c.drives[0].sizeBytes += 512), /drives section, \[0\]\.sizeBytes/],
  ])("refuses %s, naming the section and field", (_what, change, message) => {
    const path = tampered(_what.replace(/\W+/g, "-"), change);
    expect(() => openSavedVm(path)).toThrow(message);
  });

  it("opens a file saved before ACPI existed (no boot.acpi) as a VM without it, and keeps acpi=true otherwise", () => {
    const withAcpi = openSavedVm(good);
    withAcpi.reader.close();
    expect(withAcpi.platform.acpi).toBe(true);
    const old = openSavedVm(
      tampered("no-acpi-field", (c) => {
        delete (c.header.boot as Record<string, unknown>).acpi;
        for (const d of ["fw-cfg", "acpi-pm", "hpet"]) delete (c.devices as Record<string, unknown>)[d];
      }),
    );
    old.reader.close();
    expect(old.platform.acpi).toBe(false);
  });

  it("hv run --restore refuses a tampered file before anything starts", () => {
    const path = tampered("pit-mode", (c) => ((c.devices.pit as { channels: { mode: number }[] }).channels[0].mode = 9));
    const r = spawnSync(process.execPath, [...HV, "run", "--restore", path, "--no-pace"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/devices section, pit\.channels\[0\]\.mode/);
    expect(r.stdout).toBe("");
  });
});
