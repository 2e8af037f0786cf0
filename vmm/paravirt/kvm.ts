// KVM's paravirtual interface, as the VMM offers it to an unmodified Linux (CONFIG_KVM_GUEST):
// the CPUID leaves 0x40000000/0x40000001, the kvm-clock MSRs and the VMCALL hypercalls, after
// Documentation/virt/kvm/x86/{cpuid,msr,hypercalls}.rst. One vCPU per VM: the hypercalls that
// name another vCPU have nobody else to act on.

import type { VcpuState } from "../../kernel/index.js";
import type { GuestRam } from "../devices/virtio/index.js";
import { DeliveryMode, type ApicMessageTarget } from "../devices/lapic.js";
import { StateReader } from "../devices/state.js";
import { guestBytes } from "./guest-bytes.js";
import { PVCLOCK_TSC_STABLE_BIT, bootEpoch, tscScale, writeTimeInfo, writeWallClock, type TscScale } from "./pvclock.js";

/** CPUID leaves. */
export const KVM_CPUID_SIGNATURE = 0x40000000;
export const KVM_CPUID_FEATURES = 0x40000001;
/** "KVMKVMKVM\0\0\0" in EBX, ECX, EDX. */
export const KVM_SIGNATURE = [0x4b4d564b, 0x564b4d56, 0x0000004d] as const;

/** Feature bits of leaf 0x40000001 EAX (bit numbers). */
export const KvmFeature = {
  /** kvm-clock through MSRs 0x11/0x12. */
  CLOCKSOURCE: 0,
  /** Port I/O needs no delay: Linux stops writing port 0x80 after slow I/O (an exit each). */
  NOP_IO_DELAY: 1,
  /** kvm-clock through MSRs 0x4b564d00/0x4b564d01. */
  CLOCKSOURCE2: 3,
  /** Steal time through MSR 0x4b564d03. */
  STEAL_TIME: 5,
  /** The kvm-clock records may carry PVCLOCK_TSC_STABLE_BIT. */
  CLOCKSOURCE_STABLE_BIT: 24,
} as const;

/** What leaf 0x40000001 EAX offers: kvm-clock (old and new MSRs, stable), no I/O delays, steal time. */
export const OFFERED_FEATURES =
  (1 << KvmFeature.CLOCKSOURCE) | (1 << KvmFeature.NOP_IO_DELAY) | (1 << KvmFeature.CLOCKSOURCE2) | (1 << KvmFeature.STEAL_TIME) |
  (1 << KvmFeature.CLOCKSOURCE_STABLE_BIT);

export const KvmMsr = {
  WALL_CLOCK: 0x11,
  SYSTEM_TIME: 0x12,
  WALL_CLOCK_NEW: 0x4b564d00,
  SYSTEM_TIME_NEW: 0x4b564d01,
  STEAL_TIME: 0x4b564d03,
} as const;
/** Bit 0 of a system time or steal time MSR value: the record at the address in the other bits is live. */
const SYSTEM_TIME_ENABLE = 1;
/** Bits 5:1 of the steal time MSR are reserved (the record is 64-byte aligned): a write with them raises #GP. */
const STEAL_TIME_RESERVED = 0x3en;
/** struct kvm_steal_time: 64 bytes; the fields we write. */
const STEAL = { STEAL: 0, VERSION: 8, FLAGS: 12, PREEMPTED: 16, BYTES: 64 } as const;

export const KvmHypercall = {
  VAPIC_POLL_IRQ: 1,
  KICK_CPU: 5,
  SEND_IPI: 10,
  SCHED_YIELD: 11,
} as const;
/** Hypercall errors (returned negated in EAX). */
export const KVM_EPERM = 1, KVM_EINVAL = 22, KVM_ENOSYS = 1000;

/** ICR bits SEND_IPI refuses: a logical destination, a shorthand (the bitmap names the targets). */
const ICR_LOGICAL = 1 << 11, ICR_SHORTHAND = 3 << 18;

/** What the interface needs of its VMM. */
export interface KvmHost {
  /** Guest RAM, where the kvm-clock records go. */
  readonly ram: GuestRam;
  /** Virtual ns per TSC tick (how the guest's TSC relates to VM time). */
  readonly nsPerTscTick: number;
  /** The VM's time now, ns: kvm-clock's system time. */
  vmNow(): number;
  /** The RTC's reading: Unix time `seconds` at VM time `atNs`. */
  wallClock(): { seconds: number; atNs: number };
  /** The vCPU's local APIC (PV send-IPI), or null on a PIC-only platform. */
  readonly lapic: ApicMessageTarget | null;
}

/** The hypercall's registers (KVM's 32-bit ABI): number in EAX, arguments in EBX, ECX, EDX, ESI. */
export type HypercallRegisters = Pick<VcpuState, "eax" | "ebx" | "ecx" | "edx" | "esi">;

/** The state the guest gave the interface: the MSR values (64 bits as two 32-bit halves). */
export type KvmRecord = {
  systemTimeLo: number;
  systemTimeHi: number;
  wallClockLo: number;
  wallClockHi: number;
  /** Absent in records from before steal time (read as 0: not registered). */
  stealTimeLo?: number;
  stealTimeHi?: number;
};

export class KvmParavirt {
  private readonly scale: TscScale;
  private systemTime = 0n;
  private wallClock = 0n;
  private stealTime = 0n;

  constructor(private readonly host: KvmHost) {
    this.scale = tscScale(host.nsPerTscTick);
  }

  /** Answer a CPUID exit of hypervisor leaf `q.address` (EAX into `q.data`, then EBX, ECX, EDX). */
  cpuid(q: VcpuState["qual"]): void {
    q.data = q.ebx = q.ecx = q.edx = 0;
    if (q.address === KVM_CPUID_SIGNATURE) {
      q.data = KVM_CPUID_FEATURES;
      [q.ebx, q.ecx, q.edx] = KVM_SIGNATURE;
    } else if (q.address === KVM_CPUID_FEATURES) {
      q.data = OFFERED_FEATURES >>> 0;
    }
  }

  /**
   * An MSR exit: a read's value into `q.data`/`q.edx`, or a write taken. False for an MSR this
   * interface does not have (the access raises #GP). `tsc` is the vCPU's TSC at the access.
   */
  msr(q: VcpuState["qual"], tsc: bigint): boolean {
    const index = q.address >>> 0;
    const value = (BigInt(q.edx >>> 0) << 32n) | BigInt(q.data >>> 0);
    switch (index) {
      case KvmMsr.SYSTEM_TIME:
      case KvmMsr.SYSTEM_TIME_NEW:
        if (!q.write) return answer(q, this.systemTime);
        this.systemTime = value;
        if (value & BigInt(SYSTEM_TIME_ENABLE)) this.publishTime(value & ~BigInt(SYSTEM_TIME_ENABLE), tsc);
        return true;
      case KvmMsr.STEAL_TIME:
        if (!q.write) return answer(q, this.stealTime);
        if (value & STEAL_TIME_RESERVED) return false;
        this.stealTime = value;
        if (value & BigInt(SYSTEM_TIME_ENABLE)) this.publishStealTime(value & ~BigInt(SYSTEM_TIME_ENABLE));
        return true;
      case KvmMsr.WALL_CLOCK:
      case KvmMsr.WALL_CLOCK_NEW:
        if (!q.write) return answer(q, this.wallClock);
        this.wallClock = value;
        this.publishWallClock(value);
        return true;
      default:
        return false;
    }
  }

  /** A VMCALL at privilege level `cpl`: the value for EAX (negative: -KVM_E*). Never throws. */
  hypercall(r: HypercallRegisters, cpl: number): number {
    if (cpl !== 0) return -KVM_EPERM;
    switch (r.eax >>> 0) {
      case KvmHypercall.VAPIC_POLL_IRQ:
        return 0;
      case KvmHypercall.KICK_CPU: // wake a halted vCPU: the only one is the caller, awake
      case KvmHypercall.SCHED_YIELD: // give the time to a preempted vCPU: there is none
        return 0;
      case KvmHypercall.SEND_IPI:
        return this.sendIpi(r.ebx >>> 0, r.ecx >>> 0, r.edx >>> 0, r.esi >>> 0);
      default:
        return -KVM_ENOSYS;
    }
  }

  saveState(): KvmRecord {
    const [systemTimeLo, systemTimeHi] = halves(this.systemTime);
    const [wallClockLo, wallClockHi] = halves(this.wallClock);
    const [stealTimeLo, stealTimeHi] = halves(this.stealTime);
    return { systemTimeLo, systemTimeHi, wallClockLo, wallClockHi, stealTimeLo, stealTimeHi };
  }

  /** Take a saved record (checked first: a bad one throws DeviceStateError and changes nothing). */
  loadState(raw: unknown, path = "kvm"): void {
    const r = checkKvmRecord(raw, path);
    this.systemTime = (BigInt(r.systemTimeHi) << 32n) | BigInt(r.systemTimeLo);
    this.wallClock = (BigInt(r.wallClockHi) << 32n) | BigInt(r.wallClockLo);
    this.stealTime = (BigInt(r.stealTimeHi ?? 0) << 32n) | BigInt(r.stealTimeLo ?? 0);
  }

  /**
   * The vCPU's time record, at the time of the write: our TSC runs on VM time exactly (one tick
   * per nsPerTscTick), so one record stays right for as long as the guest keeps it.
   */
  private publishTime(gpa: bigint, tsc: bigint): void {
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER)) return;
    writeTimeInfo(this.host.ram, Number(gpa), { tsc, systemNs: BigInt(Math.floor(this.host.vmNow())), scale: this.scale, flags: PVCLOCK_TSC_STABLE_BIT });
  }

  private publishWallClock(gpa: bigint): void {
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER)) return;
    const { seconds, atNs } = this.host.wallClock();
    const { sec, nsec } = bootEpoch(seconds, atNs);
    writeWallClock(this.host.ram, Number(gpa), sec, nsec);
  }

  /**
   * The steal time record: a VM's time passes only while its vCPU runs or waits in HLT, never
   * while it is preempted, so no time is ever stolen from it: steal stays 0 and the vCPU is never
   * seen preempted. Written once, at registration, by the version protocol.
   */
  private publishStealTime(gpa: bigint): void {
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER)) return;
    const bytes = guestBytes(this.host.ram, Number(gpa), STEAL.BYTES);
    if (bytes === null) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let version = view.getUint32(STEAL.VERSION, true);
    if (version & 1) version++;
    view.setUint32(STEAL.VERSION, (version + 1) >>> 0, true);
    view.setBigUint64(STEAL.STEAL, 0n, true);
    view.setUint32(STEAL.FLAGS, 0, true);
    view.setUint8(STEAL.PREEMPTED, 0);
    view.setUint32(STEAL.VERSION, (version + 2) >>> 0, true);
  }

  /** KVM_HC_SEND_IPI in 32-bit mode: bitmaps of APIC IDs min..min+31 and min+32..min+63. */
  private sendIpi(low: number, high: number, min: number, icr: number): number {
    const lapic = this.host.lapic;
    if (lapic === null) return -KVM_ENOSYS;
    if (icr & (ICR_LOGICAL | ICR_SHORTHAND)) return -KVM_EINVAL;
    // Our one APIC has ID 0: it is in the low bitmap's bit 0 when min is 0, never in the high one.
    if (min !== 0 || (low & 1) === 0) return 0;
    const mode = (icr >> 8) & 7;
    if (mode !== DeliveryMode.FIXED && mode !== DeliveryMode.NMI) return 0;
    lapic.receiveMessage({ vector: icr & 0xff, deliveryMode: mode, levelTriggered: false, destination: 0, logical: false });
    return 1;
  }
}

/** A saved KvmRecord, every field checked (DeviceStateError naming the field). */
export function checkKvmRecord(raw: unknown, path: string): KvmRecord {
  const r = new StateReader(raw, path);
  const u32 = (k: keyof KvmRecord) => r.int(k, 0, 0xffffffff);
  const optional = (k: keyof KvmRecord) => (r.has(k) ? u32(k) : 0);
  return {
    systemTimeLo: u32("systemTimeLo"), systemTimeHi: u32("systemTimeHi"), wallClockLo: u32("wallClockLo"), wallClockHi: u32("wallClockHi"),
    stealTimeLo: optional("stealTimeLo"), stealTimeHi: optional("stealTimeHi"),
  };
}

function answer(q: VcpuState["qual"], value: bigint): true {
  [q.data, q.edx] = halves(value);
  return true;
}

/** A 64-bit MSR value as [bits 31:0, bits 63:32]. */
function halves(value: bigint): [number, number] {
  return [Number(value & 0xffffffffn), Number(value >> 32n)];
}
