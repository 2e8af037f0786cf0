// Tests of the ACPI PM registers: the PM timer on virtual time, PM1 status/enable and the SCI.
import { describe, expect, it } from "vitest";
import { AcpiPm, PM1, PM1A_CNT_BLK, PM1A_EVT_BLK, PM1_CNT, PM_TIMER_HZ, PM_TMR_BLK, pmTicks, pmTicksToNs } from "./acpi-pm.js";
import { IoBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { IrqLine } from "./irq.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";

function setup(startNs = 0) {
  const clock = new ManualClock(startNs);
  const sink = new RecordingSink();
  const sci = new IrqLine([{ sink, pin: 9 }]);
  const pm = new AcpiPm(clock, sci);
  const io = new IoBus();
  pm.attach(io);
  return { clock, sink, pm, io };
}

describe("ACPI PM timer", () => {
  it("counts at 3.579545 MHz of virtual time, 24 bits wide", () => {
    const { clock, io } = setup();
    expect(io.read(PM_TMR_BLK, 4)).toBe(0);
    clock.advance(1_000_000); // 1 ms
    expect(io.read(PM_TMR_BLK, 4)).toBe(3579);
    clock.advanceTo(1e9);
    expect(io.read(PM_TMR_BLK, 4)).toBe(PM_TIMER_HZ & 0xffffff);
    // Wraps at 2^24 ticks (about 4.69 s).
    clock.advanceTo(pmTicksToNs(0x1000000 + 5));
    expect(io.read(PM_TMR_BLK, 4)).toBe(5);
    // Byte reads see the same counter.
    expect(io.read(PM_TMR_BLK, 1)).toBe(5);
  });

  it("tick conversions are inverse and exact over long times", () => {
    for (const ticks of [0, 1, 3579544, 3579545, 2 ** 40 + 17]) {
      expect(pmTicks(pmTicksToNs(ticks))).toBe(ticks);
      expect(pmTicks(pmTicksToNs(ticks) - 1)).toBe(Math.max(0, ticks - 1));
    }
  });

  it("sets TMR_STS when bit 23 changes; with TMR_EN that raises the SCI until cleared", () => {
    const { clock, io, sink } = setup();
    expect(io.read(PM1A_EVT_BLK, 2) & PM1.TMR).toBe(0);
    io.write(PM1A_EVT_BLK + 2, 2, PM1.TMR);
    expect(io.read(PM1A_EVT_BLK + 2, 2)).toBe(PM1.TMR);
    clock.advanceTo(pmTicksToNs(1 << 23) - 1);
    expect(sink.level(9)).toBe(false);
    clock.advanceTo(pmTicksToNs(1 << 23));
    expect(io.read(PM1A_EVT_BLK, 2) & PM1.TMR).toBe(PM1.TMR);
    expect(sink.level(9)).toBe(true);
    io.write(PM1A_EVT_BLK, 2, PM1.TMR);
    expect(io.read(PM1A_EVT_BLK, 2) & PM1.TMR).toBe(0);
    expect(sink.level(9)).toBe(false);
    clock.advanceTo(pmTicksToNs(2 << 23));
    expect(sink.risesOf(9)).toBe(2);
  });
});

describe("PM1 control", () => {
  it("reads SCI_EN set always (no SMI port: ACPI mode), keeps SLP_TYP and reports SLP_EN", () => {
    const { io, pm } = setup();
    expect(io.read(PM1A_CNT_BLK, 2) & PM1_CNT.SCI_EN).toBe(1);
    io.write(PM1A_CNT_BLK, 2, 0);
    expect(io.read(PM1A_CNT_BLK, 2) & PM1_CNT.SCI_EN).toBe(1);
    const sleeps: number[] = [];
    pm.onSleep = (t) => sleeps.push(t);
    io.write(PM1A_CNT_BLK, 2, (5 << 10) | PM1_CNT.SLP_EN);
    expect(sleeps).toEqual([5]);
    expect(io.read(PM1A_CNT_BLK, 2)).toBe((5 << 10) | 1);
  });

  it("saves and restores status, enable, control and the TMR_STS epoch; refuses bad records unchanged", () => {
    const { clock, io, pm } = setup();
    io.write(PM1A_EVT_BLK + 2, 2, PM1.TMR | PM1.PWRBTN);
    clock.advanceTo(pmTicksToNs(3 << 23) + 5);
    const saved = throughMsgpack(pm.saveState());
    const b = setup(clock.now());
    b.pm.loadState(saved);
    expect(b.io.read(PM1A_EVT_BLK, 2)).toBe(io.read(PM1A_EVT_BLK, 2));
    expect(b.io.read(PM1A_EVT_BLK + 2, 2)).toBe(PM1.TMR | PM1.PWRBTN);
    expect(() => b.pm.loadState({ ...(saved as object), enable: 1 << 14 })).toThrow(DeviceStateError);
    expect(b.pm.saveState()).toEqual(saved);
  });
});
