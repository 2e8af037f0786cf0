// A saved VM and its snapshot file: what the control component hands over (the encoded VmState and
// guest RAM) becomes the file's sections, and a file becomes what `runVm` resumes. Everything read
// from a file is checked here, before any component starts: a refused file changes nothing.

import { decode } from "@msgpack/msgpack";
import { statSync } from "node:fs";
import type { DriveConfig } from "../drivers/block/component.js";
import { openSnapshot, writeSnapshot, SnapshotError, type DriveRecord, type SnapshotReader } from "../services/snapshot/file.js";
import type { BootPlan } from "../vmm/boot/index.js";
import { DeviceStateError, StateReader } from "../vmm/devices/state.js";
import type { VmState } from "../vmm/protocol.js";
import { vcpuFromRecord } from "../vmm/vcpu-record.js";

/** How the VM was configured: a snapshot resumes only on the same platform. */
export interface SavedPlatform {
  apic: boolean;
  debugcon: boolean;
  /** isa-debug-exit port, or -1 for none. */
  debugExitPort: number;
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
export function saveSnapshot(request: SaveRequest, encodedState: Uint8Array, ram: Uint8Array): { bytes: number; pages: number } {
  const state = decode(encodedState) as VmState;
  return writeSnapshot(
    request.path,
    {
      header: {
        name: request.name,
        createdAt: new Date().toISOString(),
        hvVersion: "0.1.0",
        memoryBytes: request.memoryBytes,
        vmTimeNs: state.vmTimeNs,
        vcpuCount: 1,
        boot: { apic: request.platform.apic, debugcon: request.platform.debugcon, debugExitPort: request.platform.debugExitPort },
      },
      vcpus: [{ registers: state.vcpu, halted: state.halted, ignneChanged: state.ignneChanged }],
      devices: state.platform,
      memoryMap: { ramBytes: request.memoryBytes, roms: request.roms.map((r) => ({ gpa: r.gpa, bytes: r.bytes })) },
      drives: request.drives.map(driveRecord),
      ram,
    },
    { compress: request.compress },
  );
}

/** What a drive is now: restore refuses one that changed since the save. */
function driveRecord(d: DriveConfig): DriveRecord {
  const st = statSync(d.path);
  return { path: d.path, format: d.format ?? "probe", sizeBytes: st.size, readOnly: d.readOnly ?? false, identity: `${st.dev}:${st.ino}:${st.mtimeMs}` };
}

export interface RestoredVm {
  reader: SnapshotReader;
  name: string;
  memoryBytes: number;
  platform: SavedPlatform;
  drives: DriveConfig[];
  plan: BootPlan;
  state: VmState;
}

/**
 * Open a snapshot and check everything a resume needs (the vCPU record field by field; the device
 * records are checked again by the devices themselves before the vCPU exists). With
 * `ignoreDriveChanges`, drives that changed since the save are taken as they are.
 */
export function openSavedVm(path: string, options: { ignoreDriveChanges?: boolean } = {}): RestoredVm {
  const reader = openSnapshot(path);
  try {
    const h = reader.header;
    if (h.vcpuCount !== 1 || reader.vcpus.length !== 1) throw new SnapshotError("vcpus", "length", `${reader.vcpus.length} vCPUs; this hv runs 1`);
    const vcpu = new StateReader(reader.vcpus[0], "vcpus[0]");
    const registers = vcpuFromRecord((reader.vcpus[0] as Record<string, unknown>).registers, "vcpus[0].registers");
    const halted = vcpu.bool("halted");
    const ignneChanged = vcpu.bool("ignneChanged");
    const boot = h.boot ?? {};
    const platform: SavedPlatform = {
      apic: boot.apic === true,
      debugcon: boot.debugcon === true,
      debugExitPort: typeof boot.debugExitPort === "number" && Number.isInteger(boot.debugExitPort) && boot.debugExitPort >= -1 && boot.debugExitPort <= 0xffff ? boot.debugExitPort : -1,
    };
    const drives = reader.drives.map((d, i) => checkDrive(d, i, options.ignoreDriveChanges ?? false));
    const state: VmState = { vmTimeNs: h.vmTimeNs, vcpu: (reader.vcpus[0] as Record<string, unknown>).registers as Record<string, unknown>, halted, platform: reader.devices, ignneChanged };
    const plan: BootPlan = { writes: [], roms: reader.memoryMap.roms.map((r) => ({ gpa: r.gpa, bytes: r.bytes })), state: registers, memoryMap: [] };
    return { reader, name: h.name, memoryBytes: h.memoryBytes, platform, drives, plan, state };
  } catch (error) {
    reader.close();
    if (error instanceof DeviceStateError) throw new SnapshotError("vcpus", error.path, error.problem);
    throw error;
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
