// Tests of the HPET: capabilities, the main counter on virtual time, one-shot and periodic timers,
// edge and level delivery, legacy replacement routing, and state.
import { describe, expect, it } from "vitest";
import { MmioBus } from "./bus.js";
import { ManualClock } from "./clock.js";
import { HPET_BASE, HPET_CFG, HPET_PERIOD_FS, HPET_PIT_INPUT, HPET_RTC_INPUT, HPET_TN, Hpet, HpetReg } from "./hpet.js";
import { IrqLine } from "./irq.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";

function setup(startNs = 0) {
  const clock = new ManualClock(startNs);
  const isa = new RecordingSink();
  const gsi = new RecordingSink();
  const hpet = new Hpet(clock, {
    irq0: new IrqLine([{ sink: isa, pin: 0 }]),
    irq8: new IrqLine([{ sink: isa, pin: 8 }]),
    gsi: (pin, level) => gsi.setIrq(pin, level),
  });
  const mmio = new MmioBus();
  hpet.attach(mmio);
  const r32 = (off: number) => mmio.read(HPET_BASE + off, 4);
  const w32 = (off: number, v: number) => mmio.write(HPET_BASE + off, 4, v);
  const r64 = (off: number) => BigInt(r32(off)) | (BigInt(r32(off + 4)) << 32n);
  const timer = (n: number, reg: number) => HpetReg.TIMER_BASE + n * HpetReg.TIMER_STRIDE + reg;
  return { clock, isa, gsi, hpet, mmio, r32, w32, r64, timer };
}

describe("HPET registers", () => {
  it("reports QEMU's capabilities: Intel, 3 timers, 64-bit, legacy capable, 10 ns period", () => {
    const { r32, timer } = setup();
    const cap = r32(HpetReg.CAPABILITIES);
    expect(cap >>> 16).toBe(0x8086);
    expect((cap >>> 8) & 0x1f).toBe(2);
    expect(cap & (1 << 13)).not.toBe(0);
    expect(cap & (1 << 15)).not.toBe(0);
    expect(cap & 0xff).toBe(1);
    expect(r32(HpetReg.CAPABILITIES + 4)).toBe(HPET_PERIOD_FS);
    expect(r32(timer(0, HpetReg.TIMER_CONF)) & (HPET_TN.PERIODIC_CAP | HPET_TN.SIZE_64_CAP)).toBe(HPET_TN.PERIODIC_CAP | HPET_TN.SIZE_64_CAP);
    expect(r32(timer(2, HpetReg.TIMER_CONF) + 4) & (1 << 2)).not.toBe(0);
  });

  it("runs the main counter at 100 MHz of virtual time only while enabled; it is writable while halted", () => {
    const { clock, r64, w32 } = setup(5000);
    clock.advance(1000);
    expect(r64(HpetReg.COUNTER)).toBe(0n);
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE);
    clock.advance(1_000_000);
    expect(r64(HpetReg.COUNTER)).toBe(100_000n);
    w32(HpetReg.CONFIG, 0);
    clock.advance(1_000_000);
    expect(r64(HpetReg.COUNTER)).toBe(100_000n);
    w32(HpetReg.COUNTER + 4, 1);
    w32(HpetReg.COUNTER, 7);
    expect(r64(HpetReg.COUNTER)).toBe((1n << 32n) + 7n);
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE);
    clock.advance(100);
    expect(r64(HpetReg.COUNTER)).toBe((1n << 32n) + 17n);
  });
});

describe("HPET timers", () => {
  it("one-shot, edge: fires once at the comparator on its routed I/O APIC input", () => {
    const { clock, gsi, hpet, w32, timer } = setup();
    w32(timer(2, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE | (20 << HPET_TN.ROUTE_SHIFT));
    w32(timer(2, HpetReg.TIMER_COMPARATOR), 1000);
    w32(timer(2, HpetReg.TIMER_COMPARATOR) + 4, 0);
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE);
    clock.advanceTo(9_999);
    expect(gsi.risesOf(20)).toBe(0);
    clock.advanceTo(10_000);
    expect(gsi.risesOf(20)).toBe(1);
    expect(gsi.level(20)).toBe(false);
    clock.advance(100_000_000);
    expect(hpet.fired[2]).toBe(1);
  });

  it("periodic (Linux's SET_VALUE sequence): fires every period, in legacy mode on IRQ 0 in place of the PIT", () => {
    const { clock, isa, hpet, w32, r32, timer } = setup();
    hpet.setIrq(HPET_PIT_INPUT, true);
    expect(isa.level(0)).toBe(true);
    w32(HpetReg.CONFIG, HPET_CFG.LEGACY);
    // The PIT is cut off from IRQ 0.
    expect(isa.level(0)).toBe(false);
    hpet.setIrq(HPET_PIT_INPUT, false);
    hpet.setIrq(HPET_PIT_INPUT, true);
    expect(isa.risesOf(0)).toBe(1);
    w32(timer(0, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE | HPET_TN.PERIODIC | HPET_TN.SET_VALUE | HPET_TN.MODE_32);
    w32(timer(0, HpetReg.TIMER_COMPARATOR), 100_000); // first match at 1 ms
    w32(timer(0, HpetReg.TIMER_COMPARATOR), 100_000); // period 1 ms
    expect(r32(timer(0, HpetReg.TIMER_CONF)) & HPET_TN.SET_VALUE).toBe(0);
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE | HPET_CFG.LEGACY);
    clock.advanceTo(10_500_000);
    expect(hpet.fired[0]).toBe(10);
    expect(isa.risesOf(0)).toBe(11);
    expect(r32(timer(0, HpetReg.TIMER_COMPARATOR))).toBe(1_100_000);
    // Leaving legacy mode gives IRQ 0 back to the PIT's level.
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE);
    expect(isa.level(0)).toBe(true);
  });

  it("level-triggered: sets GINTR_STA and holds the line until the bit is written with 1", () => {
    const { clock, isa, hpet, w32, r32, timer } = setup();
    hpet.setIrq(HPET_RTC_INPUT, false);
    w32(timer(1, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE | HPET_TN.LEVEL);
    w32(timer(1, HpetReg.TIMER_COMPARATOR), 50);
    w32(timer(1, HpetReg.TIMER_COMPARATOR) + 4, 0);
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE | HPET_CFG.LEGACY);
    clock.advanceTo(500);
    expect(r32(HpetReg.INT_STATUS)).toBe(2);
    expect(isa.level(8)).toBe(true);
    w32(HpetReg.INT_STATUS, 1); // not its bit
    expect(isa.level(8)).toBe(true);
    w32(HpetReg.INT_STATUS, 2);
    expect(r32(HpetReg.INT_STATUS)).toBe(0);
    expect(isa.level(8)).toBe(false);
  });

  it("a 32-bit timer matches again after its 32-bit wrap; a passed 64-bit comparator does not", () => {
    const { clock, hpet, w32, timer } = setup();
    w32(HpetReg.CONFIG, HPET_CFG.ENABLE);
    clock.advanceTo(1000); // counter 100
    w32(timer(0, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE | HPET_TN.MODE_32);
    w32(timer(0, HpetReg.TIMER_COMPARATOR), 50);
    w32(timer(1, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE);
    w32(timer(1, HpetReg.TIMER_COMPARATOR), 50);
    w32(timer(1, HpetReg.TIMER_COMPARATOR) + 4, 0);
    clock.advanceTo(1000 + (2 ** 32 - 50) * 10 - 10);
    expect(hpet.fired[0]).toBe(0);
    clock.advanceTo(1000 + (2 ** 32 - 50) * 10);
    expect(hpet.fired[0]).toBe(1);
    expect(hpet.fired[1]).toBe(0);
  });

  it("ignores accesses outside the registers and writes to read-only fields", () => {
    const { r32, w32, r64 } = setup();
    w32(HpetReg.CAPABILITIES, 0);
    expect(r32(HpetReg.CAPABILITIES + 4)).toBe(HPET_PERIOD_FS);
    w32(0x3f8, 0xffffffff);
    expect(r32(0x3f8)).toBe(0);
    expect(r64(0x200)).toBe(0n);
  });
});

describe("HPET state", () => {
  it("a restored HPET fires where the original does; bad records are refused unchanged", () => {
    const run = (restoreAt: number | null) => {
      const a = setup();
      a.w32(a.timer(0, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE | HPET_TN.PERIODIC | HPET_TN.SET_VALUE);
      a.w32(a.timer(0, HpetReg.TIMER_COMPARATOR) + 4, 0); // SET_VALUE: the high half of the first match
      a.w32(a.timer(0, HpetReg.TIMER_CONF), HPET_TN.INT_ENABLE | HPET_TN.PERIODIC | HPET_TN.SET_VALUE);
      a.w32(a.timer(0, HpetReg.TIMER_COMPARATOR), 7_000);
      a.w32(a.timer(0, HpetReg.TIMER_COMPARATOR), 3_000);
      a.w32(a.timer(0, HpetReg.TIMER_COMPARATOR) + 4, 0); // the period's high half
      a.w32(HpetReg.CONFIG, HPET_CFG.ENABLE | HPET_CFG.LEGACY);
      if (restoreAt === null) {
        a.clock.advanceTo(1_000_000);
        return { fired: a.hpet.fired[0], counter: a.r64(HpetReg.COUNTER) };
      }
      a.clock.advanceTo(restoreAt);
      const saved = throughMsgpack(a.hpet.saveState());
      const b = setup(restoreAt);
      b.hpet.loadState(saved);
      expect(b.hpet.saveState()).toEqual(saved);
      b.clock.advanceTo(1_000_000);
      return { fired: a.hpet.fired[0] + b.hpet.fired[0], counter: b.r64(HpetReg.COUNTER) };
    };
    const whole = run(null);
    expect(whole.fired).toBe(32); // at counter 7000, 10000, ..., 100000 (1 ms = 100000 ticks)
    expect(run(123_456)).toEqual(whole);
    const b = setup();
    const good = b.hpet.saveState() as Record<string, unknown>;
    expect(() => b.hpet.loadState({ ...good, counterBase: "18446744073709551616" })).toThrow(DeviceStateError);
    expect(() => b.hpet.loadState({ ...good, counterBase: "-1" })).toThrow(DeviceStateError);
    expect(() => b.hpet.loadState({ ...good, config: 4 })).toThrow(DeviceStateError);
    expect(b.hpet.saveState()).toEqual(good);
  });
});
