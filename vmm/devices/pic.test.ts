// Tests of the 8259A pair: Linux's init sequence, priorities, EOI, cascade, ELCR, save/load.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { PicPair } from "./pic.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";

/** A PIC pair on a bus, initialised the way Linux's init_8259A does (vectors 0x30/0x38). */
function linuxPic(autoEoi = false): { pic: PicPair; io: IoBus } {
  const io = new IoBus();
  const pic = new PicPair();
  pic.attach(io);
  io.write(0x21, 1, 0xff);
  io.write(0xa1, 1, 0xff);
  io.write(0x20, 1, 0x11);
  io.write(0x21, 1, 0x30);
  io.write(0x21, 1, 0x04);
  io.write(0x21, 1, autoEoi ? 0x03 : 0x01);
  io.write(0xa0, 1, 0x11);
  io.write(0xa1, 1, 0x38);
  io.write(0xa1, 1, 0x02);
  io.write(0xa1, 1, 0x01);
  io.write(0x21, 1, 0x00);
  io.write(0xa1, 1, 0x00);
  return { pic, io };
}

describe("8259A pair", () => {
  it("passes Linux's probe: the mask register reads back", () => {
    const { io } = linuxPic();
    io.write(0xa1, 1, 0xff);
    io.write(0x21, 1, 0xfb);
    expect(io.read(0x21, 1)).toBe(0xfb);
    expect(io.read(0xa1, 1)).toBe(0xff);
  });

  it("delivers by priority and holds lower priorities until EOI", () => {
    const { pic, io } = linuxPic();
    pic.setIrq(4, true);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x31);
    expect(pic.isr).toBe(0x02);
    expect(pic.hasInterrupt()).toBe(false); // IRQ4 waits behind IRQ1 in service
    pic.setIrq(0, true); // higher priority nests
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x30);
    io.write(0x20, 1, 0x20); // non-specific EOI ends IRQ0
    expect(pic.isr).toBe(0x02);
    expect(pic.hasInterrupt()).toBe(false);
    io.write(0x20, 1, 0x61); // specific EOI for IRQ1
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x34);
    expect(pic.irr).toBe(0); // edge requests are consumed by INTA
  });

  it("needs a new rising edge for an edge-triggered input", () => {
    const { pic, io } = linuxPic();
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x33);
    io.write(0x20, 1, 0x20);
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(3, false);
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x33);
  });

  it("cascades the slave through IRQ2 and needs EOI on both chips", () => {
    const { pic, io } = linuxPic();
    pic.setIrq(14, true);
    expect(pic.acknowledge()).toBe(0x3e);
    expect(pic.isr).toBe((1 << 14) | (1 << 2));
    pic.setIrq(8, true);
    expect(pic.hasInterrupt()).toBe(false); // master IRQ2 still in service
    io.write(0xa0, 1, 0x66);
    io.write(0x20, 1, 0x62);
    expect(pic.isr).toBe(0);
    expect(pic.acknowledge()).toBe(0x38);
  });

  it("keeps masked requests in IRR and reads IRR/ISR through OCW3", () => {
    const { pic, io } = linuxPic();
    io.write(0x21, 1, 0x20);
    pic.setIrq(5, true);
    expect(pic.hasInterrupt()).toBe(false);
    io.write(0x20, 1, 0x0a);
    expect(io.read(0x20, 1)).toBe(0x20);
    io.write(0x21, 1, 0x00);
    expect(pic.acknowledge()).toBe(0x35);
    io.write(0x20, 1, 0x0b);
    expect(io.read(0x20, 1)).toBe(0x20);
    io.write(0x20, 1, 0x0a);
    expect(io.read(0x20, 1)).toBe(0x00);
  });

  it("answers INTA without a request with spurious IRQ7 / IRQ15 and sets no ISR bit", () => {
    const { pic, io } = linuxPic();
    expect(pic.acknowledge()).toBe(0x37);
    expect(pic.isr).toBe(0);
    io.write(0x4d1, 1, 0x08); // IRQ11 level-triggered
    pic.setIrq(11, true);
    expect(pic.hasInterrupt()).toBe(true);
    pic.setIrq(11, false); // request goes away before INTA
    expect(pic.acknowledge()).toBe(0x3f);
    expect(pic.isr).toBe(1 << 2);
  });

  it("makes IRR follow a level-triggered input (ELCR) and re-interrupts after EOI", () => {
    const { pic, io } = linuxPic();
    io.write(0x4d0, 1, 0xff);
    io.write(0x4d1, 1, 0xff);
    expect(io.read(0x4d0, 1)).toBe(0xf8);
    expect(io.read(0x4d1, 1)).toBe(0xde);
    pic.setIrq(10, true);
    expect(pic.acknowledge()).toBe(0x3a);
    expect(pic.irr & (1 << 10)).not.toBe(0);
    io.write(0xa0, 1, 0x20);
    io.write(0x20, 1, 0x20);
    expect(pic.acknowledge()).toBe(0x3a);
    pic.setIrq(10, false); // the device is served before the EOI
    io.write(0xa0, 1, 0x20);
    io.write(0x20, 1, 0x20);
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.irr).toBe(0);
  });

  it("does not set ISR in auto-EOI mode", () => {
    const { pic } = linuxPic(true);
    pic.setIrq(1, true);
    expect(pic.acknowledge()).toBe(0x31);
    expect(pic.isr).toBe(0);
    pic.setIrq(0, true);
    expect(pic.acknowledge()).toBe(0x30);
  });

  it("rotates priorities on a rotating EOI", () => {
    const { pic, io } = linuxPic();
    pic.setIrq(0, true);
    expect(pic.acknowledge()).toBe(0x30);
    io.write(0x20, 1, 0xa0); // rotate on non-specific EOI: IRQ0 becomes lowest
    pic.setIrq(0, false);
    pic.setIrq(0, true);
    pic.setIrq(5, true);
    expect(pic.acknowledge()).toBe(0x35);
    io.write(0x20, 1, 0xc4); // set priority: IRQ4 lowest, IRQ5 highest
    pic.setIrq(6, true);
    io.write(0x20, 1, 0x65);
    expect(pic.acknowledge()).toBe(0x36);
  });

  it("lets lower priorities through in special mask mode", () => {
    const { pic, io } = linuxPic();
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x33);
    pic.setIrq(5, true);
    expect(pic.hasInterrupt()).toBe(false);
    io.write(0x21, 1, 0x08);
    io.write(0x20, 1, 0x68); // set special mask mode
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x35);
  });

  it("answers a poll command with the highest request and acknowledges it", () => {
    const { pic, io } = linuxPic();
    pic.setIrq(6, true);
    io.write(0x20, 1, 0x0c);
    expect(io.read(0x20, 1)).toBe(0x86);
    expect(pic.isr).toBe(0x40);
    io.write(0x20, 1, 0x0c);
    expect(io.read(0x20, 1)).toBe(0x00);
  });

  it("reports INTR changes to the VMM", () => {
    const { pic, io } = linuxPic();
    const seen: boolean[] = [];
    pic.onIntr = (l) => seen.push(l);
    pic.setIrq(1, true);
    pic.acknowledge();
    io.write(0x20, 1, 0x20);
    expect(seen).toEqual([true, false]);
  });

  it("reproduces behaviour exactly after save → msgpack → load", () => {
    const { pic, io } = linuxPic();
    io.write(0x4d1, 1, 0x08);
    pic.setIrq(11, true);
    pic.setIrq(1, true);
    pic.setIrq(4, true);
    expect(pic.acknowledge()).toBe(0x31);
    io.write(0x20, 1, 0x0b);
    const copy = new PicPair();
    const io2 = new IoBus();
    copy.attach(io2);
    copy.loadState(throughMsgpack(pic.saveState()));
    const script = (p: PicPair, b: IoBus): number[] => {
      const out = [b.read(0x20, 1), b.read(0x21, 1), Number(p.hasInterrupt())];
      b.write(0x20, 1, 0x20);
      out.push(p.acknowledge(), p.acknowledge());
      p.setIrq(11, false);
      b.write(0xa0, 1, 0x20);
      b.write(0x20, 1, 0x20);
      out.push(p.acknowledge(), p.isr, p.irr);
      return out;
    };
    expect(script(copy, io2)).toEqual(script(pic, io));
  });

  it("refuses a malformed state with a typed error and keeps its own", () => {
    const { pic } = linuxPic();
    pic.setIrq(1, true);
    const good = pic.saveState() as { chips: Record<string, unknown>[] };
    const bad = { ...good, chips: [{ ...good.chips[0], imr: 300 }, good.chips[1]] };
    expect(() => pic.loadState(bad)).toThrow(DeviceStateError);
    expect(() => pic.loadState({ chips: [] })).toThrow(DeviceStateError);
    expect(pic.acknowledge()).toBe(0x31);
  });
});

describe("8259A pair, random operation sequences", () => {
  type Op = { kind: "irq"; pin: number; level: boolean } | { kind: "io"; port: number; value: number } | { kind: "read"; port: number } | { kind: "inta" };
  const op = fc.oneof(
    fc.record({ kind: fc.constant("irq" as const), pin: fc.integer({ min: 0, max: 15 }), level: fc.boolean() }),
    fc.record({ kind: fc.constant("io" as const), port: fc.constantFrom(0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1), value: fc.constantFrom(0x20, 0x60, 0x62, 0x0a, 0x0b, 0x0c, 0x00, 0xff, 0xfb, 0x68, 0x48, 0xa0, 0xc3, 0x08) }),
    fc.record({ kind: fc.constant("read" as const), port: fc.constantFrom(0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1) }),
    fc.record({ kind: fc.constant("inta" as const) }),
  );
  const run = (pic: PicPair, io: IoBus, ops: Op[]): number[] =>
    ops.map((o) => {
      if (o.kind === "irq") pic.setIrq(o.pin, o.level);
      else if (o.kind === "io") io.write(o.port, 1, o.value);
      else if (o.kind === "read") return io.read(o.port, 1);
      else return pic.acknowledge();
      return Number(pic.hasInterrupt());
    });

  it("behaves identically after a save → msgpack → load at any point", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.array(op, { maxLength: 40 }), (before, after) => {
        const { pic, io } = linuxPic();
        run(pic, io, before);
        const copy = new PicPair();
        const io2 = new IoBus();
        copy.attach(io2);
        copy.loadState(throughMsgpack(pic.saveState()));
        expect(run(copy, io2, after)).toEqual(run(pic, io, after));
      }),
      { numRuns: 200 },
    );
  });
});
