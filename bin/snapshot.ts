// A saved VM and its snapshot file: what the control component hands over (the encoded VmState and
// guest RAM) becomes the file's sections, and a file becomes what `runVm` resumes. Everything read
// from a file is checked here, before any component starts: a refused file changes nothing.

import { decode, encode } from "@msgpack/msgpack";
import { existsSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { createImage } from "../drivers/block/ops/create.js";
import { openImage } from "../drivers/block/open.js";
import { checkSavedDevices, freshDeviceRecords } from "../vmm/vmm.js";
import { VcpuState } from "../kernel/index.js";
import { savedVmInMemory } from "../services/snapshot/file.js";
import type { DriveConfig } from "../drivers/block/component.js";
import { openSnapshot, writeSnapshot, SnapshotError, type DriveRecord, type SavedSetupSource, type SavedVmSource, type SnapshotContents, type SnapshotReader } from "../services/snapshot/file.js";
import type { BootPlan } from "../vmm/boot/index.js";
import { DeviceStateError, StateReader } from "../vmm/devices/state.js";
import type { RamPages, VmState } from "../vmm/protocol.js";
import { vcpuFromRecord, vcpuRecord } from "../vmm/vcpu-record.js";
import { checkKvmRecord } from "../vmm/paravirt/kvm.js";
import { checkHvRecord } from "../vmm/paravirt/hv-state.js";

/** How the VM was configured: a snapshot resumes only on the same platform. */
export interface SavedPlatform {
  apic: boolean;
  /** fw_cfg, ACPI and the HPET (files saved before they existed: false, the platform those VMs had). */
  acpi: boolean;
  debugcon: boolean;
  /** isa-debug-exit port, or -1 for none. */
  debugExitPort: number;
  /** KVM's paravirtual interface offered (snapshots from before it: false, as those VMs ran). */
  pv: boolean;
}

/** A saved platform as the VMM's configuration has it (no isa-debug-exit: null, not -1). */
export function platformConfig(p: SavedPlatform): { apic: boolean; acpi: boolean; debugcon: boolean; debugExitPort: number | null; pv: boolean } {
  return { apic: p.apic, acpi: p.acpi, debugcon: p.debugcon, debugExitPort: p.debugExitPort >= 0 ? p.debugExitPort : null, pv: p.pv };
}

export interface SaveRequest {
  path: string;
  name: string;
  memoryBytes: number;
  platform: SavedPlatform;
  roms: BootPlan["roms"];
  drives: readonly DriveConfig[];
  compress?: boolean;
}

/** Write a saved VM (its encoded VmState and RAM, as the control component hands them over). */
export function saveSnapshot(request: SaveRequest, encodedState: Uint8Array, ram: Uint8Array | RamPages): { bytes: number; pages: number } {
  return writeSnapshot(request.path, { ...savedMetadata(request, encodedState), ram }, { compress: request.compress });
}

/** A saved VM's metadata (a snapshot file's sections but RAM), from its encoded VmState: what a migration stream carries too. */
export function savedMetadata(request: Omit<SaveRequest, "path">, encodedState: Uint8Array): Omit<SnapshotContents, "ram"> {
  const state = decode(encodedState) as VmState;
  const setup = savedSetup(request, state.vmTimeNs);
  return {
    ...setup,
    vcpus: [{ registers: state.vcpu, halted: state.halted, ignneChanged: state.ignneChanged, ...(state.kvm ? { kvm: state.kvm } : {}), ...(state.hv ? { hv: state.hv } : {}) }],
    devices: state.platform,
  };
}

/** A VM's setup: the metadata but its state (header at `vmTimeNs`, ROMs, drives); a migration's hello carries it (at 0), so that the destination builds the VM early. */
export function savedSetup(request: Omit<SaveRequest, "path">, vmTimeNs = 0): Pick<SnapshotContents, "header" | "memoryMap" | "drives"> {
  return {
    header: {
      name: request.name,
      createdAt: new Date().toISOString(),
      hvVersion: "0.1.0",
      memoryBytes: request.memoryBytes,
      vmTimeNs,
      vcpuCount: 1,
      boot: { apic: request.platform.apic, acpi: request.platform.acpi, debugcon: request.platform.debugcon, debugExitPort: request.platform.debugExitPort, pv: request.platform.pv },
    },
    memoryMap: { ramBytes: request.memoryBytes, roms: request.roms.map((r) => ({ gpa: r.gpa, bytes: r.bytes })) },
    drives: request.drives.map(driveRecord),
  };
}

/** What a drive is now: restore refuses one that changed since the save. */
export function driveRecord(d: DriveConfig): DriveRecord {
  const st = statSync(d.path);
  return { path: d.path, format: d.format ?? "probe", sizeBytes: st.size, readOnly: d.readOnly ?? false, identity: `${st.dev}:${st.ino}:${st.mtimeMs}` };
}

export interface RestoredVm<Source extends SavedVmSource = SavedVmSource> {
  /** Its records and pages: an open snapshot file, or what a migration brought. */
  reader: Source;
  name: string;
  memoryBytes: number;
  platform: SavedPlatform;
  drives: DriveConfig[];
  plan: BootPlan;
  state: VmState;
  /** A linked clone: its RAM is a template's, whose pages it shares with other clones while it only reads them (resume.share). */
  clone: boolean;
}

/** A linked clone: its writes go to qcow2 overlays `DIR/NAME-vdX.qcow2` whose backing files are the snapshot's drives. */
export interface CloneOptions {
  dir: string;
  /** Default: the saved VM's name, "-clone-" and a time stamp. */
  name?: string;
}

/**
 * Open a snapshot and check everything a resume needs (the vCPU record field by field; the device
 * records are checked again by the devices themselves before the vCPU exists). With
 * `ignoreDriveChanges`, drives that changed since the save are taken as they are. With `clone`,
 * the snapshot is a template: the VM is a linked clone that writes its own overlays and leaves
 * the template's drives (and the file) as they are.
 */
export function openSavedVm(path: string, options: { ignoreDriveChanges?: boolean; clone?: CloneOptions } = {}): RestoredVm<SnapshotReader> {
  return checkSavedVm(openSnapshot(path), options);
}

/**
 * A saved VM from its records and pages (a file's, or a migration's), checked as openSavedVm says; `reader` is closed when it is refused.
 * `devicesCheckedByLoad`: the device records are left to the VMM that takes them (LOAD checks them
 * as its devices load them, all or none: an incoming migration's VM, built already).
 */
export function checkSavedVm<Source extends SavedVmSource>(reader: Source, options: { ignoreDriveChanges?: boolean; clone?: CloneOptions; devicesCheckedByLoad?: boolean } = {}): RestoredVm<Source> {
  try {
    const h = reader.header;
    if (h.vcpuCount !== 1 || reader.vcpus.length !== 1) throw new SnapshotError("vcpus", "length", `${reader.vcpus.length} vCPUs; this hv runs 1`);
    const vcpu = new StateReader(reader.vcpus[0], "vcpus[0]");
    const registers = vcpuFromRecord((reader.vcpus[0] as Record<string, unknown>).registers, "vcpus[0].registers");
    const halted = vcpu.bool("halted");
    const ignneChanged = vcpu.bool("ignneChanged");
    const kvm = vcpu.has("kvm") ? checkKvmRecord((reader.vcpus[0] as Record<string, unknown>).kvm, "vcpus[0].kvm") : undefined;
    // The ABI's record is checked here, and again by the VMM that takes it.
    const hvRaw = (reader.vcpus[0] as Record<string, unknown>).hv;
    if (vcpu.has("hv")) checkHvRecord(hvRaw, "vcpus[0].hv");
    const hv = vcpu.has("hv") ? (hvRaw as Record<string, unknown>) : undefined;
    const { platform, drives: checked } = checkSavedSetup(reader, options);
    // The devices' records, against the devices this VM will have (its drives as they are now).
    if (!options.devicesCheckedByLoad) {
      const sectors = checked.map((d, i) => drivesSectors(d, i));
      try {
        const config = { memoryBytes: h.memoryBytes, plan: { writes: [], roms: [], state: registers, memoryMap: [] }, ...platformConfig(platform) };
        checkSavedDevices(config, checked.map((d, i) => ({ sectors: sectors[i], readOnly: d.readOnly ?? false })), reader.devices);
      } catch (error) {
        if (error instanceof DeviceStateError) throw new SnapshotError("devices", error.path, error.problem);
        throw error;
      }
    }
    const name = options.clone ? options.clone.name ?? `${h.name}-clone-${Date.now().toString(36)}` : h.name;
    const drives = options.clone ? cloneDrives(checked, options.clone.dir, name) : checked;
    const state: VmState = { vmTimeNs: h.vmTimeNs, vcpu: (reader.vcpus[0] as Record<string, unknown>).registers as Record<string, unknown>, halted, platform: reader.devices, ignneChanged, kvm, hv };
    const plan: BootPlan = { writes: [], roms: reader.memoryMap.roms.map((r) => ({ gpa: r.gpa, bytes: r.bytes })), state: registers, memoryMap: [] };
    return { reader, name, memoryBytes: h.memoryBytes, platform, drives, plan, state, clone: options.clone !== undefined };
  } catch (error) {
    reader.close();
    if (error instanceof DeviceStateError) throw new SnapshotError("vcpus", error.path, error.problem);
    throw error;
  }
}

/** What a VM is built from (the platform, drives as they are now, ROMs), from a saved VM's setup sections. */
export interface CheckedSetup {
  name: string;
  memoryBytes: number;
  platform: SavedPlatform;
  drives: DriveConfig[];
  roms: BootPlan["roms"];
}

/** A saved VM's setup (header, ROMs, drives; a file's, a migration's hello), checked: its drives must be as they were (unless `ignoreDriveChanges`). */
export function checkSavedSetup(setup: SavedSetupSource, options: { ignoreDriveChanges?: boolean } = {}): CheckedSetup {
  const h = setup.header;
  const boot = h.boot ?? {};
  const platform: SavedPlatform = {
    apic: boot.apic === true,
    acpi: boot.acpi === true,
    debugcon: boot.debugcon === true,
    debugExitPort: typeof boot.debugExitPort === "number" && Number.isInteger(boot.debugExitPort) && boot.debugExitPort >= -1 && boot.debugExitPort <= 0xffff ? boot.debugExitPort : -1,
    pv: boot.pv === true,
  };
  const drives = setup.drives.map((d, i) => checkDrive(d, i, options.ignoreDriveChanges ?? false));
  return { name: h.name, memoryBytes: h.memoryBytes, platform, drives, roms: setup.memoryMap.roms.map((r) => ({ gpa: r.gpa, bytes: r.bytes })) };
}

/**
 * Put a made-up VM of `setup` (its devices just built, a reset vCPU, no drives) through the checks a
 * saved VM's state goes through. An incoming migration does this while the pages come: at the stop
 * the checks and the devices' loadState then run code that has run before in this process (the
 * first run of each was a good part of the downtime). Throws nothing: a failure here means nothing.
 */
export function warmChecks(setup: CheckedSetup): void {
  try {
    const config = { memoryBytes: setup.memoryBytes, plan: { writes: [], roms: [], state: new VcpuState(), memoryMap: [] }, ...platformConfig(setup.platform) };
    const header = savedSetup({ name: setup.name, memoryBytes: setup.memoryBytes, platform: setup.platform, roms: setup.roms, drives: [] }).header;
    const sections = {
      header,
      vcpus: [{ registers: vcpuRecord(new VcpuState()), halted: false, ignneChanged: false }],
      devices: freshDeviceRecords(config),
      memoryMap: { ramBytes: setup.memoryBytes, roms: setup.roms },
      drives: [],
    };
    checkSavedVm(savedVmInMemory(sections, setup.memoryBytes, new Map()));
  } catch {
    // Only a warm-up.
  }
}

/**
 * Run a save's steps a few times on a made-up VM of `request` (its devices just built, a reset vCPU):
 * the devices' saveState, the vCPU record, msgpack both ways and the stream's state record. A
 * migration does this while the pages go: at the stop the VMM's SAVE (the same code, in this
 * process) and the state record then run code that has run before. Throws nothing.
 */
export function warmSave(request: Omit<SaveRequest, "path">, times = 3): void {
  try {
    const config = { memoryBytes: request.memoryBytes, plan: { writes: [], roms: [], state: new VcpuState(), memoryMap: [] }, ...platformConfig(request.platform) };
    for (let i = 0; i < times; i++) {
      const state: VmState = { vmTimeNs: 0, vcpu: vcpuRecord(new VcpuState()) as unknown as Record<string, unknown>, halted: false, platform: freshDeviceRecords(config) as Record<string, unknown>, ignneChanged: false };
      encode(savedMetadata(request, encode(state)));
    }
  } catch {
    // Only a warm-up.
  }
}

function checkDrive(d: DriveRecord, i: number, ignoreChanges: boolean): DriveConfig {
  let now: DriveRecord;
  try {
    now = driveRecord({ path: d.path, format: d.format === "probe" ? undefined : (d.format as DriveConfig["format"]), readOnly: d.readOnly });
  } catch {
    throw new SnapshotError("drives", `[${i}].path`, `drive '${d.path}' is gone`);
  }
  if (!ignoreChanges && now.sizeBytes !== d.sizeBytes) throw new SnapshotError("drives", `[${i}].sizeBytes`, `drive '${d.path}' is ${now.sizeBytes} bytes, was ${d.sizeBytes} at the save`);
  if (!ignoreChanges && now.identity !== d.identity) throw new SnapshotError("drives", `[${i}].identity`, `drive '${d.path}' changed since the save (use --ignore-drive-changes to take it as it is)`);
  return { path: d.path, format: d.format === "probe" ? undefined : (d.format as DriveConfig["format"]), readOnly: d.readOnly };
}

/** A qcow2 overlay for each drive, backed by it: a clone's writes land there. Refuses to replace a file. */
function cloneDrives(drives: readonly DriveConfig[], dir: string, name: string): DriveConfig[] {
  const overlays = drives.map((_, i) => join(dir, `${name}-vd${String.fromCharCode(97 + i)}.qcow2`));
  for (const o of overlays) if (existsSync(o)) throw new SnapshotError("drives", "overlay", `the clone's overlay '${o}' exists already (remove it, or name the clone otherwise)`);
  const made: string[] = [];
  try {
    return drives.map((d, i) => {
      createImage(overlays[i], "qcow2", undefined, { backing: { file: resolve(d.path), format: d.format } });
      made.push(overlays[i]);
      return { path: overlays[i], format: "qcow2", readOnly: d.readOnly };
    });
  } catch (error) {
    for (const o of made) rmSync(o, { force: true });
    throw new SnapshotError("drives", "overlay", `the clone's overlay could not be made: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The disk size of drive i in 512-byte sectors, as the VM will see it (its image's virtual size). */
function drivesSectors(d: DriveConfig, i: number): number {
  try {
    const image = openImage(d.path, { format: d.format });
    try {
      return Math.floor(image.virtualSize / 512);
    } finally {
      image.close();
    }
  } catch (error) {
    throw new SnapshotError("drives", `[${i}].path`, `drive '${d.path}' cannot be opened: ${error instanceof Error ? error.message : String(error)}`);
  }
}
