// Tests of the manual device clock and interrupt lines.

import { describe, expect, it } from "vitest";
import { ManualClock } from "./clock.js";
import { IrqLine } from "./irq.js";
import { RecordingSink } from "./test-support.js";

describe("ManualClock", () => {
  it("fires timers in deadline order with now() at the deadline", () => {
    const clock = new ManualClock(100);
    const seen: string[] = [];
    clock.setTimer(500, () => seen.push(`b@${clock.now()}`));
    clock.setTimer(300, () => seen.push(`a@${clock.now()}`));
    clock.setTimer(500, () => seen.push(`c@${clock.now()}`));
    const dead = clock.setTimer(400, () => seen.push("cancelled"));
    clock.cancelTimer(dead);
    expect(clock.nextDeadline()).toBe(300);
    clock.advanceTo(450);
    expect(seen).toEqual(["a@300"]);
    expect(clock.now()).toBe(450);
    clock.advance(1000);
    expect(seen).toEqual(["a@300", "b@500", "c@500"]);
    expect(clock.armed).toBe(0);
  });

  it("runs timers armed by callbacks when they fall due within the same advance", () => {
    const clock = new ManualClock();
    const at: number[] = [];
    const tick = (): void => {
      at.push(clock.now());
      if (at.length < 4) clock.setTimer(clock.now() + 10, tick);
    };
    clock.setTimer(10, tick);
    clock.advanceTo(100);
    expect(at).toEqual([10, 20, 30, 40]);
  });
});

describe("IrqLine", () => {
  it("tells every target about level changes only", () => {
    const pic = new RecordingSink();
    const ioapic = new RecordingSink();
    const line = new IrqLine([{ sink: pic, pin: 0 }]);
    line.connect({ sink: ioapic, pin: 2 });
    line.raise();
    line.raise();
    expect(pic.level(0)).toBe(true);
    expect(ioapic.level(2)).toBe(true);
    expect(pic.risesOf(0)).toBe(1);
    line.lower();
    line.pulse();
    expect(pic.risesOf(0)).toBe(2);
    expect(line.level).toBe(false);
    line.restore(true);
    expect(line.level).toBe(true);
    expect(pic.level(0)).toBe(false);
  });
});
