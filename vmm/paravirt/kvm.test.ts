// KVM's paravirtual interface as the VMM answers it: CPUID leaves, kvm-clock MSRs (records in
// guest memory, bounds), hypercalls (known, unknown, from user mode), and the saved record.

import { describe, expect, it } from "vitest";
import { VcpuState } from "../../kernel/index.js";
import { FlatGuestRam } from "../devices/virtio/index.js";
import type { ApicMessage } from "../devices/lapic.js";
import { DeviceStateError } from "../devices/state.js";
import { KVM_CPUID_FEATURES, KVM_CPUID_SIGNATURE, KVM_ENOSYS, KVM_EPERM, KvmFeature, KvmHypercall, KvmMsr, KvmParavirt, type KvmHost } from "./kvm.js";
import { PVCLOCK_TSC_STABLE_BIT, TIME_INFO, WALL_CLOCK, scaleDelta, tscScale } from "./pvclock.js";

function setup(options: { apic?: boolean; nsPerTscTick?: number } = {}) {
  const ram = new FlatGuestRam(new Uint8Array(0x10000));
  const messages: ApicMessage[] = [];
  const host = {
    ram,
    nsPerTscTick: options.nsPerTscTick ?? 1,
    now: 5_000_000,
    vmNow() {
      return this.now;
    },
    wallClock: () => ({ seconds: 1_700_000_100, atNs: 100_000_000_000 }),
    lapic: options.apic ? { receiveMessage: (m: ApicMessage) => void messages.push(m) } : null,
  };
  return { ram, host, messages, kvm: new KvmParavirt(host as KvmHost) };
}

function wrmsr(kvm: KvmParavirt, index: number, value: bigint, tsc = 0n): boolean {
  const q = new VcpuState().qual;
  Object.assign(q, { address: index, write: true, size: 8, data: Number(value & 0xffffffffn), edx: Number(value >> 32n) });
  return kvm.msr(q, tsc);
}

function rdmsr(kvm: KvmParavirt, index: number): bigint | null {
  const q = new VcpuState().qual;
  Object.assign(q, { address: index, write: false, size: 8 });
  return kvm.msr(q, 0n) ? (BigInt(q.edx >>> 0) << 32n) | BigInt(q.data >>> 0) : null;
}

describe("CPUID leaves", () => {
  it("signs as KVM and offers kvm-clock", () => {
    const { kvm } = setup();
    const q = new VcpuState().qual;
    q.address = KVM_CPUID_SIGNATURE;
    kvm.cpuid(q);
    expect(q.data).toBe(KVM_CPUID_FEATURES);
    const sig = Buffer.alloc(12);
    [q.ebx, q.ecx, q.edx].forEach((w, i) => sig.writeUInt32LE(w >>> 0, 4 * i));
    expect(sig.toString("latin1")).toBe("KVMKVMKVM\0\0\0");
    q.address = KVM_CPUID_FEATURES;
    kvm.cpuid(q);
    for (const bit of [KvmFeature.CLOCKSOURCE2, KvmFeature.CLOCKSOURCE_STABLE_BIT, KvmFeature.CLOCKSOURCE, KvmFeature.STEAL_TIME]) expect((q.data >>> bit) & 1).toBe(1);
    for (const bit of [6, 7, 11]) expect((q.data >>> bit) & 1).toBe(0); // PV EOI, unhalt, send-IPI: not offered
    expect([q.ebx, q.ecx, q.edx]).toEqual([0, 0, 0]);
    q.address = 0x40000002;
    q.data = 99;
    kvm.cpuid(q);
    expect([q.data, q.ebx, q.ecx, q.edx]).toEqual([0, 0, 0, 0]);
  });
});

describe("kvm-clock MSRs", () => {
  it("writes the time record at the registered address; the guest's formula gives VM time", () => {
    const { kvm, ram, host } = setup();
    const tsc = 77_000_000n;
    expect(wrmsr(kvm, KvmMsr.SYSTEM_TIME_NEW, 0x2040n | 1n, tsc)).toBe(true);
    expect(rdmsr(kvm, KvmMsr.SYSTEM_TIME_NEW)).toBe(0x2041n);
    const v = new DataView(ram.bytes.buffer, 0x2040, 32);
    expect(v.getUint32(TIME_INFO.VERSION, true) % 2).toBe(0);
    expect(v.getBigUint64(TIME_INFO.TSC_TIMESTAMP, true)).toBe(tsc);
    expect(v.getBigUint64(TIME_INFO.SYSTEM_TIME, true)).toBe(BigInt(host.now));
    expect(v.getUint8(TIME_INFO.FLAGS)).toBe(PVCLOCK_TSC_STABLE_BIT);
    // 3 ms later (VM time and TSC move together), the guest computes exactly the VM time.
    const scale = { mul: v.getUint32(TIME_INFO.MUL, true), shift: v.getInt8(TIME_INFO.SHIFT) };
    const later = tsc + 3_000_000n;
    expect(v.getBigUint64(TIME_INFO.SYSTEM_TIME, true) + scaleDelta(later - tsc, scale)).toBe(BigInt(host.now + 3_000_000));
  });

  it("uses the scale of the VM's TSC rate", () => {
    const { kvm, ram } = setup({ nsPerTscTick: 4 });
    wrmsr(kvm, KvmMsr.SYSTEM_TIME, 0x100n | 1n);
    expect([ram.u32(0x100 + TIME_INFO.MUL), new Int8Array(ram.bytes.buffer, 0x100 + TIME_INFO.SHIFT, 1)[0]]).toEqual([tscScale(4).mul, tscScale(4).shift]);
  });

  it("writes nothing for a disabled record or one outside RAM, and never throws", () => {
    const { kvm, ram } = setup();
    for (const value of [0x2040n, 0xfff0n | 1n, 0x10000n | 1n, (1n << 32n) | 0x41n, 0xffffffff_ffffffffn]) {
      expect(wrmsr(kvm, KvmMsr.SYSTEM_TIME_NEW, value)).toBe(true);
      expect(rdmsr(kvm, KvmMsr.SYSTEM_TIME_NEW)).toBe(value);
    }
    for (const value of [0xfff8n, 0x10000n, (1n << 32n) | 0x40n, 0xffffffff_ffffffffn]) expect(wrmsr(kvm, KvmMsr.WALL_CLOCK_NEW, value)).toBe(true);
    expect(ram.bytes.every((b) => b === 0)).toBe(true);
  });

  it("writes the wall clock as the Unix time of VM time 0", () => {
    const { kvm, ram } = setup();
    expect(wrmsr(kvm, KvmMsr.WALL_CLOCK_NEW, 0x3000n)).toBe(true);
    expect(rdmsr(kvm, KvmMsr.WALL_CLOCK_NEW)).toBe(0x3000n);
    // The RTC read 1_700_000_100 at VM time 100 s.
    expect([ram.u32(0x3000 + WALL_CLOCK.SEC), ram.u32(0x3000 + WALL_CLOCK.NSEC), ram.u32(0x3000) % 2]).toEqual([1_700_000_000, 0, 0]);
  });

  it("leaves other MSRs alone (the access raises #GP)", () => {
    const { kvm } = setup();
    for (const index of [0x4b564d02, 0x4b564d04, 0x4b564dff, 0x1a0, 0, 0xffffffff]) {
      expect(wrmsr(kvm, index, 1n)).toBe(false);
      expect(rdmsr(kvm, index)).toBe(null);
    }
  });

  it("registers a steal time record that says nothing was stolen; refuses reserved bits", () => {
    const { kvm, ram } = setup();
    ram.bytes.fill(0xaa, 0x4000, 0x4040);
    expect(wrmsr(kvm, KvmMsr.STEAL_TIME, 0x4000n | 1n)).toBe(true);
    expect(rdmsr(kvm, KvmMsr.STEAL_TIME)).toBe(0x4001n);
    const v = new DataView(ram.bytes.buffer, 0x4000, 64);
    expect(v.getBigUint64(0, true)).toBe(0n); // steal
    expect(v.getUint32(8, true) % 2).toBe(0); // version, even
    expect(v.getUint8(16)).toBe(0); // not preempted
    expect(wrmsr(kvm, KvmMsr.STEAL_TIME, 0x4000n | 2n | 1n)).toBe(false); // reserved bit 1: #GP
    expect(rdmsr(kvm, KvmMsr.STEAL_TIME)).toBe(0x4001n);
    const before = ram.bytes.slice();
    for (const beyond of [0x10000n, 1n << 32n, 0xffffffc0n]) expect(wrmsr(kvm, KvmMsr.STEAL_TIME, beyond | 1n)).toBe(true); // not written
    expect(ram.bytes).toEqual(before);
  });

  it("saves and loads the MSR values; refuses a bad record", () => {
    const { kvm } = setup();
    wrmsr(kvm, KvmMsr.SYSTEM_TIME_NEW, 0x1_0000_2041n);
    wrmsr(kvm, KvmMsr.WALL_CLOCK_NEW, 0x3000n);
    wrmsr(kvm, KvmMsr.STEAL_TIME, 0x4001n);
    const saved = kvm.saveState();
    const other = setup().kvm;
    other.loadState(structuredClone(saved));
    expect(rdmsr(other, KvmMsr.SYSTEM_TIME_NEW)).toBe(0x1_0000_2041n);
    expect(rdmsr(other, KvmMsr.WALL_CLOCK)).toBe(0x3000n);
    expect(rdmsr(other, KvmMsr.STEAL_TIME)).toBe(0x4001n);
    const { stealTimeLo: _lo, stealTimeHi: _hi, ...older } = saved; // a record from before steal time
    other.loadState(older);
    expect(rdmsr(other, KvmMsr.STEAL_TIME)).toBe(0n);
    expect(() => other.loadState({ ...saved, wallClockHi: -1 })).toThrow(DeviceStateError);
    expect(() => other.loadState({ systemTimeLo: 1 })).toThrow(/wallClock|systemTimeHi/);
    expect(rdmsr(other, KvmMsr.SYSTEM_TIME_NEW)).toBe(0x1_0000_2041n); // unchanged by the refusals
  });
});

describe("hypercalls", () => {
  const call = (kvm: KvmParavirt, eax: number, args: Partial<Record<"ebx" | "ecx" | "edx" | "esi", number>> = {}, cpl = 0) =>
    kvm.hypercall({ eax, ebx: 0, ecx: 0, edx: 0, esi: 0, ...args }, cpl);

  it("answers the ones that apply to one vCPU", () => {
    const { kvm } = setup();
    expect(call(kvm, KvmHypercall.VAPIC_POLL_IRQ)).toBe(0);
    expect(call(kvm, KvmHypercall.KICK_CPU, { ebx: 0, ecx: 0 })).toBe(0);
    expect(call(kvm, KvmHypercall.SCHED_YIELD, { ebx: 3 })).toBe(0);
  });

  it("returns -KVM_ENOSYS for unknown numbers and -KVM_EPERM from user mode", () => {
    const { kvm } = setup();
    for (const nr of [0, 2, 3, 4, 6, 9, 12, 13, 0xffff, 0x7fffffff, 0xffffffff]) expect(call(kvm, nr)).toBe(-KVM_ENOSYS);
    expect(call(kvm, KvmHypercall.VAPIC_POLL_IRQ, {}, 3)).toBe(-KVM_EPERM);
  });

  it("sends a PV IPI to the one APIC when the bitmap names it", () => {
    const { kvm, messages } = setup({ apic: true });
    expect(call(kvm, KvmHypercall.SEND_IPI, { ebx: 1, ecx: 0, edx: 0, esi: 0x40 })).toBe(1);
    expect(messages).toEqual([{ vector: 0x40, deliveryMode: 0, levelTriggered: false, destination: 0, logical: false }]);
    expect(call(kvm, KvmHypercall.SEND_IPI, { ebx: 2, esi: 0x41 })).toBe(0); // APIC ID 1: nobody
    expect(call(kvm, KvmHypercall.SEND_IPI, { ebx: 1, edx: 1, esi: 0x42 })).toBe(0); // IDs from 1
    expect(call(kvm, KvmHypercall.SEND_IPI, { ebx: 1, esi: 0x40 | (1 << 18) })).toBe(-22); // a shorthand
    expect(messages.length).toBe(1);
    expect(call(setup().kvm, KvmHypercall.SEND_IPI, { ebx: 1, esi: 0x40 })).toBe(-KVM_ENOSYS); // no APIC
  });
});
