// Tests of the MC146818 RTC/CMOS: time from virtual time, formats, update cycle, interrupts, NVRAM.

import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { IrqLine } from "./irq.js";
import { REG_A, REG_B, REG_C, Rtc } from "./rtc.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";

/** 2024-01-02 03:04:05 UTC, a Tuesday. */
const START = Date.UTC(2024, 0, 2, 3, 4, 5) / 1000;

function setup(now = 1_000_000, startTime = START, memoryBytes = 128 * 2 ** 20) {
  const clock = new ManualClock(now);
  const sink = new RecordingSink();
  const rtc = new Rtc(clock, new IrqLine([{ sink, pin: 8 }]), { startTime, memoryBytes });
  const io = new IoBus();
  rtc.attach(io);
  const get = (reg: number): number => {
    io.write(0x70, 1, reg);
    return io.read(0x71, 1);
  };
  const set = (reg: number, v: number): void => {
    io.write(0x70, 1, reg);
    io.write(0x71, 1, v);
  };
  return { rtc, io, clock, sink, get, set, t0: now };
}

describe("MC146818 RTC", () => {
  it("shows the start time in BCD 24-hour format and advances with virtual time", () => {
    const { get, clock, t0 } = setup();
    expect([0, 2, 4, 6, 7, 8, 9, 0x32].map(get)).toEqual([0x05, 0x04, 0x03, 0x03, 0x02, 0x01, 0x24, 0x20]);
    clock.advanceTo(t0 + 61e9 - 1);
    expect(get(0)).toBe(0x05);
    expect(get(2)).toBe(0x05);
    clock.advanceTo(t0 + 61e9);
    expect(get(0)).toBe(0x06);
    expect(get(REG_A)).toBe(0x26);
    expect(get(0x0d)).toBe(0x80);
  });

  it("switches to binary and 12-hour format per register B", () => {
    const { get, set } = setup(0, Date.UTC(1999, 11, 31, 15, 59, 58) / 1000);
    set(REG_B, 0x04); // binary, 12-hour
    expect(get(4)).toBe(0x80 | 3);
    expect(get(0)).toBe(58);
    expect(get(9)).toBe(99);
    expect(get(0x32)).toBe(19);
    set(REG_B, 0x00); // BCD, 12-hour
    expect(get(4)).toBe(0x83);
  });

  it("sets UIP in the last 244 us before each update", () => {
    const { get, clock, t0 } = setup();
    clock.advanceTo(t0 + 1e9 - 244_001);
    expect(get(REG_A) & 0x80).toBe(0);
    clock.advanceTo(t0 + 1e9 - 100_000);
    expect(get(REG_A) & 0x80).toBe(0x80);
    expect(get(0)).toBe(0x05);
    clock.advanceTo(t0 + 1e9);
    expect(get(REG_A) & 0x80).toBe(0);
    expect(get(0)).toBe(0x06);
  });

  it("takes a new time written with SET held, the way Linux sets the clock", () => {
    const { get, set, clock, rtc } = setup();
    set(REG_B, 0x82);
    clock.advance(5e9); // frozen while SET is on
    expect(get(0)).toBe(0x05);
    set(0, 0x30);
    set(2, 0x45);
    set(4, 0x12);
    set(7, 0x15);
    set(8, 0x06);
    set(9, 0x25);
    set(REG_B, 0x02);
    expect(rtc.time).toBe(Date.UTC(2025, 5, 15, 12, 45, 30) / 1000);
    clock.advance(1e9);
    expect(get(0)).toBe(0x31);
  });

  it("gives its reference point (Unix seconds at a virtual time), running or set anew", () => {
    const { set, clock, rtc, t0 } = setup();
    clock.advance(2.5e9);
    expect(rtc.reference).toEqual({ seconds: START, atNs: t0 });
    set(REG_B, 0x82);
    set(0, 0x30);
    clock.advance(1e9);
    const frozen = rtc.reference; // frozen: the time registers, now
    expect(frozen).toEqual({ seconds: START - 5 + 0x1e, atNs: clock.now() });
    set(REG_B, 0x02);
    expect(rtc.reference).toEqual({ seconds: START - 5 + 0x1e, atNs: clock.now() });
  });

  it("raises IRQ8 for the periodic flag at the register-A rate until register C is read", () => {
    const { get, set, clock, sink, t0 } = setup();
    set(REG_B, 0x42); // PIE
    expect(sink.level(8)).toBe(false);
    let reads = 0;
    const end = t0 + 1e9;
    while (clock.nextDeadline() <= end) {
      clock.advanceTo(clock.nextDeadline());
      expect(sink.level(8)).toBe(true);
      expect(get(REG_C) & 0xe0).toBe(0xc0); // UF may come along at a second boundary
      expect(sink.level(8)).toBe(false);
      reads++;
    }
    expect(reads).toBe(1024);
    set(REG_A, 0x2f); // 2 Hz
    clock.advanceTo(end + 0.5e9);
    expect(sink.risesOf(8)).toBe(1025);
  });

  it("reports the periodic flag in register C without an interrupt when PIE is off", () => {
    const { get, clock, sink } = setup();
    clock.advance(2e6);
    expect(get(REG_C)).toBe(0x40);
    expect(get(REG_C)).toBe(0x00);
    expect(sink.risesOf(8)).toBe(0);
  });

  it("raises update-ended once a second and the alarm at its time", () => {
    const { get, set, clock, sink, t0 } = setup();
    set(REG_B, 0x12); // UIE
    clock.advanceTo(t0 + 1e9 - 1);
    expect(sink.level(8)).toBe(false);
    clock.advanceTo(t0 + 1e9);
    expect(sink.level(8)).toBe(true);
    expect(get(REG_C) & 0xb0).toBe(0x90); // PF is set too (not enabled)
    set(REG_B, 0x22); // AIE only
    set(1, 0x09); // alarm at 03:04:09
    set(3, 0xc0); // any minute
    set(5, 0x03);
    clock.advanceTo(t0 + 3e9);
    get(REG_C);
    expect(sink.level(8)).toBe(false);
    clock.advanceTo(t0 + 4e9);
    expect(sink.level(8)).toBe(true);
    expect(get(REG_C) & 0xa0).toBe(0xa0);
  });

  it("halts the clock while the divider is in reset and updates 500 ms after release", () => {
    const { get, set, clock } = setup();
    set(REG_A, 0x76);
    clock.advance(10e9);
    expect(get(0)).toBe(0x05);
    set(REG_A, 0x26);
    const released = clock.now();
    clock.advanceTo(released + 0.5e9 - 1);
    expect(get(0)).toBe(0x05);
    clock.advanceTo(released + 0.5e9);
    expect(get(0)).toBe(0x06);
  });

  it("fills the NVRAM memory fields and checksum, and masks NMI with bit 7 of port 0x70", () => {
    const { get, io, rtc } = setup();
    expect(get(0x15) | (get(0x16) << 8)).toBe(640);
    expect(get(0x17) | (get(0x18) << 8)).toBe(0xffff);
    expect(get(0x30) | (get(0x31) << 8)).toBe(0xffff);
    expect(get(0x34) | (get(0x35) << 8)).toBe((128 - 16) * 16);
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += get(i);
    expect((get(0x2e) << 8) | get(0x2f)).toBe(sum);
    io.write(0x70, 1, 0x80 | 0x40);
    expect(rtc.nmiMasked).toBe(true);
    io.write(0x71, 1, 0x5a);
    io.write(0x70, 1, 0x40);
    expect(rtc.nmiMasked).toBe(false);
    expect(io.read(0x71, 1)).toBe(0x5a);
    const small = setup(0, START, 8 * 2 ** 20);
    expect(small.get(0x17) | (small.get(0x18) << 8)).toBe(7 * 1024);
    expect(small.get(0x34)).toBe(0);
  });

  it("reproduces time, flags and interrupts exactly after save → msgpack → load", () => {
    const a = setup();
    a.set(REG_B, 0x52); // PIE + UIE
    a.set(REG_A, 0x2a); // 64 Hz
    a.clock.advance(0.7e9 + 123);
    a.get(REG_C);
    a.clock.advance(5_000_000); // a periodic event pending, IRQ8 up
    a.io.write(0x70, 1, 0x0c);
    const b = setup(a.clock.now(), 0);
    b.rtc.loadState(throughMsgpack(a.rtc.saveState()));
    const trace = (s: ReturnType<typeof setup>): number[] => {
      const out = [s.io.read(0x71, 1)];
      for (let i = 0; i < 40; i++) {
        s.clock.advance(37_000_000);
        out.push(Number(s.sink.level(8)), s.get(REG_C), s.get(0), s.get(REG_A));
      }
      return out;
    };
    expect(trace(b)).toEqual(trace(a));
  });

  it("refuses a malformed state", () => {
    const { rtc } = setup();
    const good = rtc.saveState();
    expect(() => rtc.loadState({ ...good, cmos: new Uint8Array(64) })).toThrow(DeviceStateError);
    expect(() => rtc.loadState({ ...good, index: 200 })).toThrow(DeviceStateError);
    expect(() => rtc.loadState(null)).toThrow(DeviceStateError);
  });
});
