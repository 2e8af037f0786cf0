// Tests of the APIC bus: IPIs between the local APICs of a multiprocessor (destinations, shorthands,
// lowest priority, INIT and SIPI) and I/O APIC messages to one of several processors.

import { describe, expect, it } from "vitest";
import { ApicBus } from "./apic-bus.js";
import { ManualClock } from "./clock.js";
import { DeliveryMode, LocalApic } from "./lapic.js";

const ICR_LOW = 0x300, ICR_HIGH = 0x310, SVR = 0xf0, LDR = 0xd0, TPR = 0x80, LINT0 = 0x350;

/** `n` software-enabled APICs on one bus, flat logical IDs 1 << id; what each was told of INIT and SIPI. */
function processors(n: number) {
  const clock = new ManualClock(0);
  const lapics = Array.from({ length: n }, (_, id) => new LocalApic(clock, id));
  const bus = new ApicBus(lapics);
  const events: string[] = [];
  lapics.forEach((l, id) => {
    l.write(SVR, 4, 0x1ff);
    l.write(LDR, 4, (1 << (24 + id)) >>> 0);
    l.onInit = () => events.push(`init${id}`);
    l.onStartup = (v) => events.push(`sipi${id}:${v.toString(16)}`);
    l.onNmi = () => events.push(`nmi${id}`);
  });
  const ipi = (from: number, destination: number, low: number) => {
    lapics[from].write(ICR_HIGH, 4, destination << 24);
    lapics[from].write(ICR_LOW, 4, low);
  };
  const requested = (vector: number) => lapics.map((l) => l.requested(vector));
  return { lapics, bus, events, ipi, requested };
}

describe("APIC bus", () => {
  it("delivers fixed IPIs to a physical ID, a logical mask, and by shorthand", () => {
    const p = processors(3);
    p.ipi(0, 2, 0x40); // physical APIC ID 2
    expect(p.requested(0x40)).toEqual([false, false, true]);
    p.ipi(2, 0b011, 0x800 | 0x41); // logical: processors 0 and 1
    expect(p.requested(0x41)).toEqual([true, true, false]);
    p.ipi(1, 0, (1 << 18) | 0x42); // self
    expect(p.requested(0x42)).toEqual([false, true, false]);
    p.ipi(1, 0, (2 << 18) | 0x43); // all including self
    expect(p.requested(0x43)).toEqual([true, true, true]);
    p.ipi(1, 0, (3 << 18) | 0x44); // all excluding self
    expect(p.requested(0x44)).toEqual([true, false, true]);
    p.ipi(0, 0xff, 0x45); // physical broadcast
    expect(p.requested(0x45)).toEqual([true, true, true]);
  });

  it("gives a lowest-priority message to one processor: the lowest priority, then the lowest ID", () => {
    const p = processors(3);
    p.lapics[0].write(TPR, 4, 0x20);
    p.bus.receiveMessage({ vector: 0x50, deliveryMode: DeliveryMode.LOWEST, levelTriggered: false, destination: 0b111, logical: true });
    expect(p.requested(0x50)).toEqual([false, true, false]);
  });

  it("hands INIT and SIPI to the target's processor; INIT de-assert does nothing; NMIs go by destination", () => {
    const p = processors(2);
    p.ipi(0, 1, 0x4500); // INIT, level assert
    p.ipi(0, 1, 0x8500); // INIT level de-assert
    p.ipi(0, 1, 0x4670); // SIPI, vector 0x70
    p.ipi(1, 0, 0x400); // NMI to the BSP
    expect(p.events).toEqual(["init1", "sipi1:70", "nmi0"]);
  });

  it("leaves a globally disabled APIC out, even of broadcasts; only the BSP's LINT0 starts as ExtINT", () => {
    const p = processors(2);
    p.lapics[1].apicBaseMsr = 0xfee00000; // bit 11 clear
    p.ipi(0, 0, (2 << 18) | 0x46);
    expect(p.requested(0x46)).toEqual([true, false]);
    expect(p.lapics.map((l) => l.read(LINT0, 4))).toEqual([0x700, 0x10000]);
    expect(p.lapics.map((l) => l.name)).toEqual(["lapic", "lapic1"]);
  });
});
