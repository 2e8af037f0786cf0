// Tests of the 8254 PIT: tick arithmetic, the modes Linux uses, latches, port 0x61, save/load.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { IrqLine } from "./irq.js";
import { PIT_HZ, Pit, nsToTicks, ticksToNs } from "./pit.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";

function setup(startNs = 0): { pit: Pit; io: IoBus; clock: ManualClock; sink: RecordingSink } {
  const clock = new ManualClock(startNs);
  const sink = new RecordingSink();
  const pit = new Pit(clock, new IrqLine([{ sink, pin: 0 }]));
  const io = new IoBus();
  pit.attach(io);
  return { pit, io, clock, sink };
}

function program(io: IoBus, counter: number, control: number, count: number): void {
  io.write(0x43, 1, control);
  io.write(0x40 + counter, 1, count & 0xff);
  io.write(0x40 + counter, 1, count >> 8);
}

function latchRead(io: IoBus, counter: number): number {
  io.write(0x43, 1, counter << 6);
  const lo = io.read(0x40 + counter, 1);
  return lo | (io.read(0x40 + counter, 1) << 8);
}

describe("tick arithmetic", () => {
  it("converts ns to ticks exactly and back (least ns reaching a tick)", () => {
    expect(nsToTicks(1e9)).toBe(PIT_HZ);
    expect(nsToTicks(3600e9 + 1)).toBe(3600 * PIT_HZ);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (t) => {
        const ns = ticksToNs(t);
        return nsToTicks(ns) === t && (ns === 0 || nsToTicks(ns - 1) === t - 1);
      }),
    );
  });
});

describe("8254 PIT", () => {
  it("mode 2 on counter 0 counts down, reloads and raises IRQ0 once per period", () => {
    const { io, clock, sink } = setup(5000);
    const n = 4773; // Linux LATCH for HZ=250
    program(io, 0, 0x34, n);
    expect(sink.level(0)).toBe(true); // mode 2 OUT is high after the control word
    const rises0 = sink.risesOf(0);
    clock.advance(ticksToNs(10));
    expect(latchRead(io, 0)).toBe(n - 10);
    clock.advanceTo(5000 + ticksToNs(n - 1));
    expect(sink.level(0)).toBe(false); // low for one tick at count 1
    expect(latchRead(io, 0)).toBe(1);
    clock.advanceTo(5000 + ticksToNs(n));
    expect(sink.level(0)).toBe(true);
    expect(sink.risesOf(0) - rises0).toBe(1);
    expect(latchRead(io, 0)).toBe(n); // reloaded
    clock.advanceTo(5000 + 1e9);
    expect(sink.risesOf(0) - rises0).toBe(Math.floor(PIT_HZ / n));
  });

  it("mode 0 raises OUT once at terminal count and keeps counting through zero", () => {
    const { io, clock, sink } = setup();
    program(io, 0, 0x30, 1000);
    expect(sink.level(0)).toBe(false);
    clock.advanceTo(ticksToNs(1000) - 1);
    expect(sink.level(0)).toBe(false);
    clock.advanceTo(ticksToNs(1000));
    expect(sink.level(0)).toBe(true);
    clock.advanceTo(ticksToNs(1005));
    expect(latchRead(io, 0)).toBe(0x10000 - 5);
    clock.advance(1e9);
    expect(sink.risesOf(0)).toBe(1);
  });

  it("holds a latched count while the counter runs on, and read-back returns status first", () => {
    const { io, clock } = setup();
    program(io, 0, 0x34, 2000);
    clock.advanceTo(ticksToNs(100));
    io.write(0x43, 1, 0x00);
    clock.advanceTo(ticksToNs(500));
    io.write(0x43, 1, 0x00); // a second latch does not overwrite the first
    expect(io.read(0x40, 1) | (io.read(0x40, 1) << 8)).toBe(1900);
    io.write(0x43, 1, 0b1100_0010); // read-back: count and status of counter 0
    expect(io.read(0x40, 1)).toBe(0x80 | 0x30 | 0x04); // OUT high, lo/hi, mode 2
    expect(io.read(0x40, 1) | (io.read(0x40, 1) << 8)).toBe(1500);
    io.write(0x43, 1, 0x34);
    io.write(0x43, 1, 0b1110_0010); // status only: null count set before a count is written
    expect(io.read(0x40, 1) & 0x40).toBe(0x40);
  });

  it("supports low-only and high-only access modes", () => {
    const { io, clock } = setup();
    io.write(0x43, 1, 0x54); // counter 1, low byte only, mode 2
    io.write(0x41, 1, 200);
    clock.advanceTo(ticksToNs(50));
    expect(io.read(0x41, 1)).toBe(150);
    expect(io.read(0x41, 1)).toBe(150);
    io.write(0x43, 1, 0x64); // counter 1, high byte only
    io.write(0x41, 1, 0x12);
    expect(io.read(0x41, 1)).toBe(0x12);
  });

  it("runs Linux's counter-2 calibration through port 0x61 (gate and OUT2)", () => {
    const { io, clock } = setup(777);
    io.write(0x61, 1, (io.read(0x61, 1) & ~0x02) | 0x01);
    program(io, 2, 0xb0, 0xffff);
    expect(io.read(0x61, 1) & 0x20).toBe(0);
    clock.advanceTo(777 + ticksToNs(0xffff) - 1);
    expect(io.read(0x61, 1) & 0x20).toBe(0);
    clock.advanceTo(777 + ticksToNs(0xffff));
    expect(io.read(0x61, 1) & 0x21).toBe(0x21);
  });

  it("suspends counting in mode 0 while gate 2 is low", () => {
    const { io, clock, pit } = setup();
    io.write(0x61, 1, 0x01);
    program(io, 2, 0xb0, 1000);
    clock.advanceTo(ticksToNs(300));
    io.write(0x61, 1, 0x00);
    clock.advance(1e6);
    expect(pit.count(2)).toBe(700);
    const resumedAt = clock.now();
    io.write(0x61, 1, 0x01);
    clock.advanceTo(resumedAt + ticksToNs(699));
    expect(pit.out(2)).toBe(false);
    clock.advanceTo(resumedAt + ticksToNs(700));
    expect(pit.out(2)).toBe(true);
  });

  it("toggles the refresh bit of port 0x61 with virtual time", () => {
    const { io, clock } = setup();
    const seen = new Set<number>();
    for (let i = 0; i < 8; i++) {
      seen.add(io.read(0x61, 1) & 0x10);
      clock.advance(7000);
    }
    expect([...seen].sort()).toEqual([0, 0x10]);
  });

  it("makes a square wave in mode 3 and strobes in modes 4 and 1", () => {
    const { io, clock, pit } = setup();
    io.write(0x61, 1, 0x03);
    program(io, 2, 0xb6, 100);
    clock.advanceTo(ticksToNs(49));
    expect(pit.out(2)).toBe(true);
    clock.advanceTo(ticksToNs(50));
    expect(pit.out(2)).toBe(false);
    clock.advanceTo(ticksToNs(100));
    expect(pit.out(2)).toBe(true);
    expect(pit.speakerEnabled).toBe(true);

    program(io, 0, 0x38, 10); // mode 4
    const t0 = clock.now();
    clock.advanceTo(t0 + ticksToNs(10));
    expect(pit.out(0)).toBe(false);
    clock.advanceTo(t0 + ticksToNs(11));
    expect(pit.out(0)).toBe(true);

    io.write(0x61, 1, 0x00);
    program(io, 2, 0xb2, 20); // mode 1 waits for a gate trigger
    clock.advance(ticksToNs(100));
    expect(pit.out(2)).toBe(true);
    io.write(0x61, 1, 0x01);
    const t1 = clock.now();
    clock.advanceTo(t1 + ticksToNs(5));
    expect(pit.out(2)).toBe(false);
    clock.advanceTo(t1 + ticksToNs(20));
    expect(pit.out(2)).toBe(true);
  });

  it("reproduces IRQ0 edges and counts exactly after save → msgpack → load", () => {
    const a = setup(1000);
    program(a.io, 0, 0x34, 1193);
    program(a.io, 2, 0xb0, 5000);
    a.io.write(0x61, 1, 0x01);
    a.clock.advanceTo(1000 + ticksToNs(1193 * 3 + 1192)); // inside the one-tick low phase
    a.io.write(0x43, 1, 0x80); // latch counter 2, left unread
    const b = setup(a.clock.now());
    b.pit.loadState(throughMsgpack(a.pit.saveState()));
    expect(b.sink.level(0)).toBe(false);
    const trace = (s: ReturnType<typeof setup>): number[] => {
      const out: number[] = [s.io.read(0x42, 1), s.io.read(0x42, 1)];
      const r0 = s.sink.risesOf(0);
      for (let i = 0; i < 5; i++) {
        s.clock.advance(333_333);
        out.push(latchRead(s.io, 0), latchRead(s.io, 2), s.io.read(0x61, 1));
      }
      out.push(s.sink.risesOf(0) - r0);
      return out;
    };
    expect(trace(b)).toEqual(trace(a));
  });

  it("refuses a malformed state", () => {
    const { pit } = setup();
    const good = pit.saveState() as { channels: object[] };
    expect(() => pit.loadState({ ...good, channels: [{ ...good.channels[0], mode: 9 }, good.channels[1], good.channels[2]] })).toThrow(DeviceStateError);
    expect(() => pit.loadState({ ...good, irqTick: "x" })).toThrow(DeviceStateError);
  });
});
