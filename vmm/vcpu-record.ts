// A vCPU's complete state as a plain record (numbers, booleans, bytes) for snapshots and migration
// streams, and the checked way back. Every group of the MTD but the exit qualification, which
// describes an exit in progress: snapshots are taken at instruction boundaries.

import { Mtd, VcpuState, type SegmentState } from "../kernel/index.js";
import { StateReader } from "./devices/state.js";

/** The state groups a record holds. */
export const RECORD_MTD = Mtd.ALL & ~Mtd.QUAL;

const U32 = 0xffffffff;
const SEGMENTS = ["es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr"] as const;
const REGISTERS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cr0", "cr2", "cr3", "cr4", "dr0", "dr1", "dr2", "dr3", "dr6", "dr7", "gdtrBase", "idtrBase", "sysenterEsp", "sysenterEip", "exceptionBitmap", "apicBase"] as const;
/** Exit controls of the paravirtual interface (optional in a record). */
const PV_CONTROLS = ["hypervisorLeaves", "msrExits", "vmcallExits"] as const;
/** FXSAVE image size. */
const FPU_BYTES = 512;

export type VcpuRecord = Record<string, unknown>;

/**
 * Copy every group of `from` into `to` but the exit qualification (`to` keeps its own); the FXSAVE
 * image is shared (the engine saves into a fresh one). Field by field, not structuredClone: a
 * halted vCPU is parked and woken with this on every event, and a clone was half the time of a
 * VM-to-VM event-channel round trip. (vcpu-record.test.ts checks that no field is left out.)
 */
export function copyVcpuState(from: VcpuState, to: VcpuState): void {
  to.mtd = from.mtd;
  to.eax = from.eax; to.ecx = from.ecx; to.edx = from.edx; to.ebx = from.ebx;
  to.esp = from.esp; to.ebp = from.ebp; to.esi = from.esi; to.edi = from.edi;
  to.eip = from.eip; to.instructionLength = from.instructionLength; to.eflags = from.eflags;
  to.es = { ...from.es }; to.cs = { ...from.cs }; to.ss = { ...from.ss }; to.ds = { ...from.ds };
  to.fs = { ...from.fs }; to.gs = { ...from.gs }; to.ldtr = { ...from.ldtr }; to.tr = { ...from.tr };
  to.gdtrBase = from.gdtrBase; to.gdtrLimit = from.gdtrLimit; to.idtrBase = from.idtrBase; to.idtrLimit = from.idtrLimit;
  to.cr0 = from.cr0; to.cr2 = from.cr2; to.cr3 = from.cr3; to.cr4 = from.cr4;
  to.dr0 = from.dr0; to.dr1 = from.dr1; to.dr2 = from.dr2; to.dr3 = from.dr3; to.dr6 = from.dr6; to.dr7 = from.dr7;
  to.sysenterCs = from.sysenterCs; to.sysenterEsp = from.sysenterEsp; to.sysenterEip = from.sysenterEip;
  to.tsc = from.tsc;
  to.apicBase = from.apicBase; to.apicId = from.apicId;
  to.exceptionBitmap = from.exceptionBitmap; to.cpuidExits = from.cpuidExits; to.ferrExits = from.ferrExits;
  to.hypervisorLeaves = from.hypervisorLeaves; to.msrExits = from.msrExits; to.vmcallExits = from.vmcallExits;
  to.inj = { ...from.inj };
  to.interruptibility = from.interruptibility; to.activity = from.activity; to.ferr = from.ferr; to.ignne = from.ignne;
  to.fpu = from.fpu;
}

/** The record of a state saved with RECORD_MTD. */
export function vcpuRecord(st: VcpuState): VcpuRecord {
  const out: VcpuRecord = {};
  for (const k of REGISTERS) out[k] = st[k] >>> 0;
  for (const k of SEGMENTS) out[k] = { ...st[k] };
  Object.assign(out, {
    gdtrLimit: st.gdtrLimit,
    idtrLimit: st.idtrLimit,
    sysenterCs: st.sysenterCs,
    // The TSC as two 32-bit halves: msgpack readers need not know 64-bit integers.
    tscHi: Number(st.tsc >> 32n) >>> 0,
    tscLo: Number(st.tsc & 0xffffffffn) >>> 0,
    cpuidExits: st.cpuidExits,
    ferrExits: st.ferrExits,
    hypervisorLeaves: st.hypervisorLeaves,
    msrExits: st.msrExits,
    vmcallExits: st.vmcallExits,
    inj: { ...st.inj },
    interruptibility: st.interruptibility,
    activity: st.activity,
    ignne: st.ignne,
    fpu: st.fpu ?? null,
  });
  return out;
}

/** The state in a record, every field checked; throws DeviceStateError naming the field (`path` first). */
export function vcpuFromRecord(raw: unknown, path: string): VcpuState {
  const r = new StateReader(raw, path);
  const st = new VcpuState();
  for (const k of REGISTERS) st[k] = r.int(k, 0, U32);
  for (const k of SEGMENTS) Object.assign(st[k], segment(r.record(k)));
  st.gdtrLimit = r.int("gdtrLimit", 0, 0xffff);
  st.idtrLimit = r.int("idtrLimit", 0, 0xffff);
  st.sysenterCs = r.int("sysenterCs", 0, 0xffff);
  st.tsc = (BigInt(r.int("tscHi", 0, U32)) << 32n) | BigInt(r.int("tscLo", 0, U32));
  st.cpuidExits = r.bool("cpuidExits");
  st.ferrExits = r.bool("ferrExits");
  // Records saved before the paravirtual interface lack these: such a VM never had it.
  for (const k of PV_CONTROLS) st[k] = r.has(k) ? r.bool(k) : false;
  const inj = r.record("inj");
  st.inj = { valid: inj.bool("valid"), vector: inj.int("vector", 0, 255), type: inj.int("type", 0, 7), errorCode: inj.int("errorCode", -1, U32), requestWindow: inj.bool("requestWindow") };
  st.interruptibility = r.int("interruptibility", 0, 15);
  st.activity = r.int("activity", 0, 2);
  st.ignne = r.bool("ignne");
  st.fpu = r.isNull("fpu") ? null : r.bytes("fpu", FPU_BYTES);
  st.mtd = RECORD_MTD;
  return st;
}

function segment(r: StateReader): SegmentState {
  return { selector: r.int("selector", 0, 0xffff), base: r.int("base", 0, U32), limit: r.int("limit", 0, U32), attributes: r.int("attributes", 0, 0x1ffff) };
}
