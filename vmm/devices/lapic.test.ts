// Tests of the local APIC: PIC pass-through (noapic), priorities, EOI, self IPIs, timer, save/load.

import { describe, expect, it } from "vitest";
import { IoBus, MmioBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { LAPIC_BASE, LocalApic } from "./lapic.js";
import { PicPair } from "./pic.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";

function setup(now = 0) {
  const clock = new ManualClock(now);
  const apic = new LocalApic(clock);
  const mmio = new MmioBus();
  apic.attach(mmio);
  const r = (off: number): number => mmio.read(LAPIC_BASE + off, 4);
  const w = (off: number, v: number): void => mmio.write(LAPIC_BASE + off, 4, v);
  return { clock, apic, mmio, r, w };
}

/** A software-enabled APIC with spurious vector 0xff. */
function enabled(now = 0) {
  const s = setup(now);
  s.w(0xf0, 0x1ff);
  return s;
}

function selfIpi(w: (off: number, v: number) => void, vector: number): void {
  w(0x300, (1 << 18) | vector);
}

describe("local APIC", () => {
  it("comes out of reset with the documented register values", () => {
    const { r } = setup();
    expect(r(0x30)).toBe(0x00050014);
    expect(r(0xf0)).toBe(0xff);
    expect(r(0xe0)).toBe(0xffffffff);
    expect(r(0x320)).toBe(0x10000);
    expect(r(0x350)).toBe(0x700);
    expect(r(0x360)).toBe(0x10000);
  });

  it("passes the PIC through LINT0 in ExtINT mode (noapic) and when globally disabled", () => {
    const { apic, w } = setup();
    const pic = new PicPair();
    const io = new IoBus();
    pic.attach(io);
    for (const [p, v] of [[0x20, 0x11], [0x21, 0x30], [0x21, 0x04], [0x21, 0x01], [0xa0, 0x11], [0xa1, 0x38], [0xa1, 0x02], [0xa1, 0x01]]) io.write(p, 1, v);
    apic.extInt = pic;
    pic.onIntr = () => apic.extIntChanged();
    const seen: boolean[] = [];
    apic.onIntr = (l) => seen.push(l);
    pic.setIrq(0, true);
    expect(apic.hasInterrupt()).toBe(true);
    expect(apic.acknowledge()).toBe(0x30);
    expect(seen).toEqual([true, false]);
    io.write(0x20, 1, 0x20);
    w(0xf0, 0x1ff);
    w(0x350, 0x10700); // LINT0 masked: the PIC is cut off
    pic.setIrq(1, true);
    expect(apic.hasInterrupt()).toBe(false);
    apic.apicBaseMsr = 0xfee00000; // global disable: PIC straight to the CPU
    expect(apic.hasInterrupt()).toBe(true);
    expect(apic.acknowledge()).toBe(0x31);
  });

  it("orders fixed interrupts by priority class, nests, and EOIs the highest in service", () => {
    const { apic, w, r } = enabled();
    selfIpi(w, 0x41);
    selfIpi(w, 0x35);
    expect(apic.acknowledge()).toBe(0x41);
    expect(r(0xa0)).toBe(0x40);
    expect(apic.hasInterrupt()).toBe(false); // 0x35 is a lower class than 0x41 in service
    selfIpi(w, 0x62);
    expect(apic.acknowledge()).toBe(0x62);
    expect(r(0x100 + 0x30) & (1 << 2)).toBe(1 << 2); // ISR word 3 has 0x62
    w(0xb0, 0);
    expect(apic.inService(0x62)).toBe(false);
    expect(apic.inService(0x41)).toBe(true);
    w(0xb0, 0);
    expect(apic.acknowledge()).toBe(0x35);
  });

  it("holds classes at or below TPR and answers a stale INTA with the spurious vector", () => {
    const { apic, w } = enabled();
    w(0x80, 0x50);
    selfIpi(w, 0x45);
    expect(apic.hasInterrupt()).toBe(false);
    expect(apic.acknowledge()).toBe(0xff);
    expect(apic.requested(0x45)).toBe(true);
    w(0x80, 0x30);
    expect(apic.acknowledge()).toBe(0x45);
  });

  it("runs the one-shot timer on virtual time with the divide configuration", () => {
    const { apic, w, r, clock } = enabled(500);
    w(0x3e0, 0x3); // divide by 16
    w(0x320, 0x00030); // one-shot, vector 0x30
    w(0x380, 1000);
    clock.advanceTo(500 + 16 * 250);
    expect(r(0x390)).toBe(750);
    clock.advanceTo(500 + 16000 - 1);
    expect(apic.hasInterrupt()).toBe(false);
    clock.advanceTo(500 + 16000);
    expect(apic.acknowledge()).toBe(0x30);
    expect(r(0x390)).toBe(0);
    clock.advance(1e6);
    expect(apic.hasInterrupt()).toBe(false);
  });

  it("reloads the periodic timer and counts while masked without interrupting", () => {
    const { apic, w, r, clock } = enabled();
    w(0x3e0, 0xb); // divide by 1
    w(0x320, 0x20031); // periodic
    w(0x380, 10_000);
    let ticks = 0;
    for (let t = 1; t <= 100; t++) {
      clock.advanceTo(t * 10_000);
      if (apic.hasInterrupt()) {
        expect(apic.acknowledge()).toBe(0x31);
        w(0xb0, 0);
        ticks++;
      }
    }
    expect(ticks).toBe(100);
    w(0x320, 0x30031); // masked periodic
    clock.advance(3_000);
    expect(r(0x390)).toBe(7_000);
    clock.advance(50_000);
    expect(apic.hasInterrupt()).toBe(false);
  });

  it("masks every LVT while software-disabled and records illegal vectors in ESR", () => {
    const { apic, w, r } = enabled();
    w(0x370, 0xfe); // error vector
    w(0xf0, 0xff);
    expect(r(0x370) & 0x10000).toBe(0x10000);
    w(0x320, 0x40);
    expect(r(0x320) & 0x10000).toBe(0x10000);
    w(0xf0, 0x1ff);
    w(0x370, 0xfe);
    apic.accept(5, false);
    w(0x280, 0);
    expect(r(0x280)).toBe(0x40);
    expect(apic.acknowledge()).toBe(0xfe);
  });

  it("reports EOIs of level-triggered vectors", () => {
    const { apic, w } = enabled();
    const eois: number[] = [];
    apic.onLevelEoi = (v) => eois.push(v);
    apic.receiveMessage({ vector: 0x3a, deliveryMode: 0, levelTriggered: true, destination: 0, logical: false });
    apic.receiveMessage({ vector: 0x3b, deliveryMode: 0, levelTriggered: false, destination: 0xff, logical: false });
    apic.receiveMessage({ vector: 0x3c, deliveryMode: 0, levelTriggered: false, destination: 3, logical: false });
    expect(apic.acknowledge()).toBe(0x3b);
    w(0xb0, 0);
    expect(apic.acknowledge()).toBe(0x3a);
    w(0xb0, 0);
    expect(eois).toEqual([0x3a]);
    expect(apic.hasInterrupt()).toBe(false); // 0x3c was for another APIC
  });

  it("reproduces pending vectors and the periodic timer after save → msgpack → load", () => {
    const a = enabled(1000);
    a.w(0x3e0, 0x1);
    a.w(0x320, 0x20040);
    a.w(0x380, 777);
    a.clock.advance(5_000);
    selfIpi(a.w, 0x90);
    a.apic.acknowledge();
    const b = setup(a.clock.now());
    b.apic.loadState(throughMsgpack(a.apic.saveState()));
    const trace = (s: ReturnType<typeof setup>): number[] => {
      const out: number[] = [];
      for (let i = 0; i < 30; i++) {
        s.clock.advance(1_111);
        out.push(s.r(0x390), s.r(0xa0));
        if (i % 4 === 0) out.push(s.apic.acknowledge());
        if (i % 7 === 0) s.w(0xb0, 0);
      }
      return out;
    };
    expect(trace(b)).toEqual(trace(a));
  });

  it("refuses a malformed state", () => {
    const { apic } = setup();
    const good = apic.saveState();
    expect(() => apic.loadState({ ...good, irr: [1, 2] })).toThrow(DeviceStateError);
    expect(() => apic.loadState({ ...good, tpr: 256 })).toThrow(DeviceStateError);
  });
});
