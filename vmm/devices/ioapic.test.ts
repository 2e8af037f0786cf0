// Tests of the I/O APIC: registers, edge and level delivery, remote IRR and EOI, save/load.

import { describe, expect, it } from "vitest";
import { MmioBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { IOAPIC_BASE, IoApic } from "./ioapic.js";
import { IrqLine } from "./irq.js";
import { LocalApic, type ApicMessage } from "./lapic.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";

class Collect {
  readonly messages: ApicMessage[] = [];
  receiveMessage(msg: ApicMessage): void {
    this.messages.push(msg);
  }
}

function setup(target: { receiveMessage(m: ApicMessage): void } = new Collect()) {
  const ioapic = new IoApic(target);
  const mmio = new MmioBus();
  ioapic.attach(mmio);
  const reg = (n: number, v?: number): number => {
    mmio.write(IOAPIC_BASE, 4, n);
    if (v !== undefined) mmio.write(IOAPIC_BASE + 0x10, 4, v);
    return mmio.read(IOAPIC_BASE + 0x10, 4);
  };
  return { ioapic, mmio, reg };
}

describe("I/O APIC", () => {
  it("reports 24 entries, keeps its ID and starts with every entry masked", () => {
    const { reg } = setup();
    expect(reg(1)).toBe(0x00170011);
    reg(0, 0x02000000);
    expect(reg(0)).toBe(0x02000000);
    expect(reg(0x10)).toBe(0x10000);
    expect(reg(0x10 + 2 * 23)).toBe(0x10000);
  });

  it("sends an edge-triggered entry's vector on each rising edge while unmasked", () => {
    const target = new Collect();
    const { ioapic, reg } = setup(target);
    reg(0x10 + 2 * 2, 0x30);
    reg(0x11 + 2 * 2, 0x01000000);
    const line = new IrqLine([{ sink: ioapic, pin: 2 }]);
    line.raise();
    line.raise();
    line.lower();
    line.pulse();
    expect(target.messages.map((m) => [m.vector, m.destination, m.levelTriggered])).toEqual([[0x30, 1, false], [0x30, 1, false]]);
    reg(0x10 + 2 * 2, 0x10030);
    line.pulse();
    expect(target.messages.length).toBe(2);
  });

  it("holds a level-triggered entry in remote IRR until the EOI and resends if still asserted", () => {
    const clock = new ManualClock();
    const apic = new LocalApic(clock);
    apic.write(0xfee000f0, 4, 0x1ff);
    const { ioapic, reg } = setup(apic);
    apic.onLevelEoi = (v) => ioapic.endOfInterrupt(v);
    reg(0x10 + 2 * 11, 0x8000 | 0x2000 | 0x4b);
    ioapic.setIrq(11, true);
    expect(reg(0x10 + 2 * 11) & 0x4000).toBe(0x4000);
    expect(apic.acknowledge()).toBe(0x4b);
    reg(0x10 + 2 * 11, 0x8000 | 0x2000 | 0x4b); // remote IRR is read-only
    expect(reg(0x10 + 2 * 11) & 0x4000).toBe(0x4000);
    apic.write(0xfee000b0, 4, 0); // EOI with the input still high: delivered again
    expect(apic.acknowledge()).toBe(0x4b);
    ioapic.setIrq(11, false);
    apic.write(0xfee000b0, 4, 0);
    expect(reg(0x10 + 2 * 11) & 0x4000).toBe(0);
    expect(apic.hasInterrupt()).toBe(false);
  });

  it("delivers a level input that is already asserted when the entry is unmasked", () => {
    const target = new Collect();
    const { ioapic, reg } = setup(target);
    ioapic.setIrq(9, true);
    expect(target.messages.length).toBe(0);
    reg(0x10 + 2 * 9, 0x8000 | 0x49);
    expect(target.messages.map((m) => m.vector)).toEqual([0x49]);
  });

  it("reproduces the table, inputs and remote IRR after save → msgpack → load", () => {
    const a = setup(new Collect());
    a.reg(0x10 + 2 * 5, 0x8000 | 0x45);
    a.ioapic.setIrq(5, true);
    a.reg(0x12);
    const target = new Collect();
    const b = setup(target);
    b.ioapic.loadState(throughMsgpack(a.ioapic.saveState()));
    expect(b.mmio.read(IOAPIC_BASE, 4)).toBe(0x12);
    expect(b.ioapic.entry(5)).toEqual(a.ioapic.entry(5));
    b.ioapic.endOfInterrupt(0x45);
    expect(target.messages.map((m) => m.vector)).toEqual([0x45]);
    expect(() => b.ioapic.loadState({ ...a.ioapic.saveState(), low: [] })).toThrow(DeviceStateError);
  });
});
