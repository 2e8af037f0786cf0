// Tests of the wired PC platform: Linux-like flows across devices, reset sources, whole-platform save/load.

import { describe, expect, it } from "vitest";
import { ManualClock } from "./clock.js";
import { PcPlatform } from "./platform.js";
import { ticksToNs } from "./pit.js";
import { HPET_BASE, HPET_CFG, HPET_TN, HpetReg } from "./hpet.js";
import { FW_CFG_DATA_PORT, FW_CFG_SELECTOR_PORT, FwCfgKey } from "./fw-cfg.js";
import { PM1A_CNT_BLK, PM1_CNT, PM_TMR_BLK, SLP_TYP_S5 } from "./acpi-pm.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";

function platform(apic = true, now = 0) {
  const clock = new ManualClock(now);
  const out: number[] = [];
  const exits: number[] = [];
  const p = new PcPlatform({
    clock, memoryBytes: 64 * 2 ** 20, startTime: 1_700_000_000, apic, serialPorts: 2,
    debugExit: { onExit: (s) => exits.push(s) }, debugConsole: (b) => out.push(b),
  });
  return { p, clock, out, exits };
}

/** Linux's 8259 initialisation with vectors 0x30/0x38, everything unmasked. */
function initPic(p: PcPlatform): void {
  for (const [port, v] of [[0x20, 0x11], [0x21, 0x30], [0x21, 0x04], [0x21, 0x01], [0xa0, 0x11], [0xa1, 0x38], [0xa1, 0x02], [0xa1, 0x01], [0x21, 0], [0xa1, 0]]) {
    p.io.write(port, 1, v);
  }
}

describe("PC platform", () => {
  for (const apic of [false, true]) {
    it(`delivers PIT ticks through the PIC to the vCPU (${apic ? "APIC in virtual-wire mode" : "no APIC"})`, () => {
      const { p, clock } = platform(apic);
      initPic(p);
      const intr: boolean[] = [];
      p.onIntr = (l) => intr.push(l);
      p.io.write(0x43, 1, 0x34); // OUT rises with the control word: the first edge merges with the first tick
      p.io.write(0x40, 1, 4773 & 0xff);
      p.io.write(0x40, 1, 4773 >> 8);
      const ic = p.interruptController;
      let ticks = 0;
      for (let i = 1; i <= 50; i++) {
        clock.advanceTo(ticksToNs(4773 * i));
        if (ic.hasInterrupt()) {
          expect(ic.acknowledge()).toBe(0x30);
          p.io.write(0x20, 1, 0x20);
          ticks++;
        }
      }
      expect(ticks).toBe(50);
      expect(intr.filter((l) => l).length).toBe(50);
    });
  }

  it("routes ISA IRQs to the I/O APIC too (IRQ0 on pin 2) and serial IRQ4 through it", () => {
    const { p } = platform(true);
    p.mmio.write(0xfee000f0, 4, 0x1ff);
    p.mmio.write(0xfee00350, 4, 0x10700); // LINT0 masked: APIC mode
    const route = (pin: number, vector: number): void => {
      p.mmio.write(0xfec00000, 4, 0x10 + 2 * pin);
      p.mmio.write(0xfec00010, 4, vector);
    };
    route(4, 0x24);
    const com1 = p.io;
    com1.write(0x3fc, 1, 0x08);
    com1.write(0x3f9, 1, 0x01);
    p.uarts[0].receive([0x41]);
    expect(p.interruptController.hasInterrupt()).toBe(true);
    expect(p.interruptController.acknowledge()).toBe(0x24);
    expect(p.io.read(0x3f8, 1)).toBe(0x41);
    expect(p.isaIrq[0].level).toBe(false);
  });

  it("collects reset requests from the keyboard controller, port 0x92 and 0xcf9, and shares A20", () => {
    const { p } = platform();
    let resets = 0;
    p.onReset = () => resets++;
    p.io.write(0x64, 1, 0xfe);
    p.io.write(0x92, 1, 0x01);
    p.io.write(0xcf9, 1, 0x06);
    expect(resets).toBe(3);
    p.io.write(0x64, 1, 0xdd);
    p.io.write(0x92, 1, 0x02);
    expect(p.a20.enabled).toBe(true);
    p.io.write(0x92, 1, 0x00);
    expect(p.a20.enabled).toBe(false);
  });

  it("powers off on a PM1 control write of SLP_EN with the sleep type of \\_S5, and on no other", () => {
    const { p } = platform();
    let off = 0;
    p.onPowerOff = () => off++;
    p.io.write(PM1A_CNT_BLK, 2, (1 << 10) | PM1_CNT.SLP_EN); // S1's type (not soft-off)
    p.io.write(PM1A_CNT_BLK, 2, SLP_TYP_S5 << 10); // the type alone, no SLP_EN
    expect(off).toBe(0);
    p.io.write(PM1A_CNT_BLK, 2, (SLP_TYP_S5 << 10) | PM1_CNT.SLP_EN);
    expect(off).toBe(1);
  });

  it("serves the debug ports and leaves unclaimed ports all-ones", () => {
    const { p, out, exits } = platform();
    p.io.write(0xe9, 1, 0x4f);
    p.io.write(0xf4, 1, 0x01);
    expect(out).toEqual([0x4f]);
    expect(exits).toEqual([3]);
    expect(p.io.read(0x80, 1)).toBe(0xff);
    expect(p.io.unclaimedReads).toBe(1);
  });

  it("saves and restores every device through msgpack, refusing a damaged record as a whole", () => {
    const a = platform(true, 5000);
    initPic(a.p);
    a.p.io.write(0x43, 1, 0x34);
    a.p.io.write(0x40, 1, 0x00);
    a.p.io.write(0x40, 1, 0x10);
    a.clock.advance(3_000_000);
    const state = throughMsgpack(a.p.saveState()) as Record<string, Record<string, unknown>>;
    const b = platform(true, a.clock.now());
    b.p.loadState(state);
    const trace = (s: ReturnType<typeof platform>): number[] => {
      const r: number[] = [];
      for (let i = 0; i < 20; i++) {
        s.clock.advance(1_000_000);
        const ic = s.p.interruptController;
        r.push(Number(ic.hasInterrupt()));
        if (ic.hasInterrupt()) {
          r.push(ic.acknowledge());
          s.p.io.write(0x20, 1, 0x20);
        }
        s.p.io.write(0x43, 1, 0);
        r.push(s.p.io.read(0x40, 1), s.p.io.read(0x40, 1));
      }
      return r;
    };
    expect(trace(b)).toEqual(trace(a));
    const before = JSON.stringify(b.p.pic.saveState());
    const damaged = { ...state, ioapic: { ...state.ioapic, id: 99 } };
    b.p.io.write(0x21, 1, 0x5a);
    const masked = JSON.stringify(b.p.pic.saveState());
    expect(masked).not.toBe(before);
    expect(() => b.p.loadState(damaged)).toThrow(DeviceStateError);
    expect(JSON.stringify(b.p.pic.saveState())).toBe(masked);
  });

  it("has fw_cfg, the PM timer, the HPET and ACPI tables by default, none of them with acpi off", () => {
    const { p, clock } = platform(true);
    p.io.write(FW_CFG_SELECTOR_PORT, 2, FwCfgKey.SIGNATURE);
    expect(String.fromCharCode(...[0, 1, 2, 3].map(() => p.io.read(FW_CFG_DATA_PORT, 1)))).toBe("QEMU");
    p.io.write(FW_CFG_SELECTOR_PORT, 2, FwCfgKey.FILE_DIR);
    expect([0, 1, 2, 3].map(() => p.io.read(FW_CFG_DATA_PORT, 1))).toEqual([0, 0, 0, 3]);
    clock.advance(1_000_000);
    expect(p.io.read(PM_TMR_BLK, 4)).toBe(3579);
    expect(p.mmio.read(HPET_BASE + 4, 4)).toBe(0x00989680);
    expect(p.acpiTables?.bytes.length).toBeGreaterThan(36);
    const names = p.devices().map((d) => d.name);
    expect(names).toEqual(expect.arrayContaining(["fw-cfg", "acpi-pm", "hpet"]));
    const off = new PcPlatform({ clock: new ManualClock(), memoryBytes: 64 << 20, startTime: 0, acpi: false });
    expect(off.io.read(PM_TMR_BLK, 4)).toBe(0xffffffff);
    expect(off.io.read(FW_CFG_DATA_PORT, 1)).toBe(0xff);
    expect(off.mmio.read(HPET_BASE, 4)).toBe(0xffffffff);
    expect(off.acpiTables).toBeNull();
    expect(off.devices().map((d) => d.name)).not.toContain("hpet");
  });

  it("HPET legacy replacement takes IRQ 0 from the PIT: ticks then come at the HPET's rate", () => {
    const { p, clock } = platform(false);
    initPic(p);
    // PIT at 4773 ticks (4 ms); the HPET's timer 0 every 1 ms in legacy mode.
    p.io.write(0x43, 1, 0x34);
    p.io.write(0x40, 1, 4773 & 0xff);
    p.io.write(0x40, 1, 4773 >> 8);
    const timer0 = HPET_BASE + HpetReg.TIMER_BASE;
    p.mmio.write(timer0 + HpetReg.TIMER_CONF, 4, HPET_TN.INT_ENABLE | HPET_TN.PERIODIC | HPET_TN.SET_VALUE | HPET_TN.MODE_32);
    p.mmio.write(timer0 + HpetReg.TIMER_COMPARATOR, 4, 100_000);
    p.mmio.write(timer0 + HpetReg.TIMER_COMPARATOR, 4, 100_000);
    const count = (ms: number) => {
      let n = 0;
      const ic = p.interruptController;
      for (let i = 0; i < ms * 10; i++) {
        clock.advance(100_000);
        while (ic.hasInterrupt()) {
          expect(ic.acknowledge()).toBe(0x30);
          p.io.write(0x20, 1, 0x20);
          n++;
        }
      }
      return n;
    };
    expect(count(40)).toBe(10); // the PIT alone: every 4 ms
    p.mmio.write(HPET_BASE + HpetReg.CONFIG, 4, HPET_CFG.ENABLE | HPET_CFG.LEGACY);
    expect(count(40)).toBe(40); // the HPET alone: every 1 ms
  });
});
