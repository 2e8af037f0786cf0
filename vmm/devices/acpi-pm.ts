// ACPI power management registers at QEMU piix4's ports: the PM1a event block (PM1_STS, PM1_EN)
// at 0x600, the PM1a control block (PM1_CNT) at 0x604 and the 24-bit PM timer at 0x608.
//
// The PM timer counts at 3.579545 MHz of virtual time, computed from the VM's clock (no state: a
// resumed VM reads on from its saved time). TMR_STS is set each time bit 23 of the counter
// changes; with TMR_EN it raises the SCI (IRQ 9, level, as the MADT's override says). The FADT
// gives no SMI command port, so the system is always in ACPI mode: SCI_EN reads 1. A write of
// SLP_EN is told to `onSleep` with SLP_TYP (the DSDT's \_S5 names SLP_TYP_S5: soft-off).

import type { AccessSize, Device, IoBus } from "./bus.js";
import type { DeviceClock, TimerHandle } from "./clock.js";
import type { IrqLine } from "./irq.js";
import { StateReader } from "./state.js";

/** Port blocks (as in the FADT). */
export const PM1A_EVT_BLK = 0x600;
export const PM1A_CNT_BLK = 0x604;
export const PM_TMR_BLK = 0x608;
/** Bytes in each block. */
export const PM1_EVT_LEN = 4;
export const PM1_CNT_LEN = 2;
export const PM_TMR_LEN = 4;
/** The SCI's ISA IRQ. */
export const SCI_IRQ = 9;

/** PM timer frequency, Hz. */
export const PM_TIMER_HZ = 3579545;
/** The counter is 24 bits wide (FADT TMR_VAL_EXT clear). */
const TIMER_MASK = 0xffffff;
/** TMR_STS is set when this bit of the counter changes. */
const TIMER_MSB_TICKS = 1 << 23;

/** PM1_STS / PM1_EN bits. */
export const PM1 = {
  TMR: 1 << 0,
  BM: 1 << 4,
  GBL: 1 << 5,
  PWRBTN: 1 << 8,
  SLPBTN: 1 << 9,
  RTC: 1 << 10,
  WAK: 1 << 15,
} as const;
/** Status bits that exist (write 1 to clear). */
const STS_MASK = PM1.TMR | PM1.BM | PM1.GBL | PM1.PWRBTN | PM1.SLPBTN | PM1.RTC | PM1.WAK;
/** Enable bits that exist. */
const EN_MASK = PM1.TMR | PM1.GBL | PM1.PWRBTN | PM1.SLPBTN | PM1.RTC;

/** PM1_CNT bits. */
export const PM1_CNT = {
  SCI_EN: 1 << 0,
  BM_RLD: 1 << 1,
  GBL_RLS: 1 << 2,
  SLP_TYP_SHIFT: 10,
  SLP_TYP_MASK: 7 << 10,
  SLP_EN: 1 << 13,
} as const;

/** The sleep type of soft-off (S5), as QEMU's piix4 decodes SLP_TYP: 0. */
export const SLP_TYP_S5 = 0;

/** PM timer ticks completed at virtual time `ns` (from 0), exact for large ns. */
export function pmTicks(ns: number): number {
  if (ns <= 0) return 0;
  const seconds = Math.floor(ns / 1e9);
  return seconds * PM_TIMER_HZ + Math.floor(((ns - seconds * 1e9) * PM_TIMER_HZ) / 1e9);
}

/** The least ns at which `ticks` ticks have completed. */
export function pmTicksToNs(ticks: number): number {
  const seconds = Math.floor(ticks / PM_TIMER_HZ);
  return seconds * 1e9 + Math.ceil(((ticks - seconds * PM_TIMER_HZ) * 1e9) / PM_TIMER_HZ);
}

export class AcpiPm implements Device {
  readonly name = "acpi-pm";
  /** Status bits other than TMR_STS (which is computed). */
  private status = 0;
  private enable = 0;
  /** PM1_CNT's read/write bits (SCI_EN is always set). */
  private control = PM1_CNT.SCI_EN;
  /** The counter's bit-23 period number at the last TMR_STS clear: TMR_STS is set once it moved on. */
  private timerEpoch = 0;
  private timer: TimerHandle = 0;
  /** Told of a write with SLP_EN: the sleep type (0-7). */
  onSleep: ((type: number) => void) | null = null;

  constructor(
    private readonly clock: DeviceClock,
    private readonly sci: IrqLine,
  ) {
    this.timerEpoch = this.epoch();
  }

  attach(io: IoBus): void {
    io.register({ name: "acpi-pm1-evt", base: PM1A_EVT_BLK, length: PM1_EVT_LEN, sizes: 2, handler: { read: (p) => this.readEvt(p), write: (p, _s, v) => this.writeEvt(p, v) } });
    io.register({ name: "acpi-pm1-cnt", base: PM1A_CNT_BLK, length: PM1_CNT_LEN, sizes: 2, handler: { read: () => this.control, write: (_p, _s, v) => this.writeCnt(v) } });
    io.register({ name: "acpi-pm-tmr", base: PM_TMR_BLK, length: PM_TMR_LEN, sizes: 4, handler: { read: (_p, _s: AccessSize) => this.counter(), write: () => {} } });
  }

  /** The 24-bit counter now. */
  counter(): number {
    return pmTicks(this.clock.now()) & TIMER_MASK;
  }

  private epoch(): number {
    return Math.floor(pmTicks(this.clock.now()) / TIMER_MSB_TICKS);
  }

  /** PM1_STS as read: the stored bits and TMR_STS. */
  private statusNow(): number {
    return this.status | (this.epoch() > this.timerEpoch ? PM1.TMR : 0);
  }

  private readEvt(port: number): number {
    return port === PM1A_EVT_BLK ? this.statusNow() : this.enable;
  }

  private writeEvt(port: number, value: number): void {
    if (port === PM1A_EVT_BLK) {
      if (value & PM1.TMR) this.timerEpoch = this.epoch();
      this.status &= ~(value & STS_MASK);
    } else this.enable = value & EN_MASK;
    this.update();
  }

  private writeCnt(value: number): void {
    this.control = (value & (PM1_CNT.BM_RLD | PM1_CNT.SLP_TYP_MASK)) | PM1_CNT.SCI_EN;
    // GBL_RLS would tell the BIOS; there is no BIOS side, so it is dropped.
    if (value & PM1_CNT.SLP_EN) this.onSleep?.((value & PM1_CNT.SLP_TYP_MASK) >>> PM1_CNT.SLP_TYP_SHIFT);
  }

  /** The SCI's level, and a timer for the next bit-23 change while TMR_EN waits for it. */
  private update(): void {
    const pending = (this.statusNow() & this.enable) !== 0;
    this.sci.set(pending);
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    if (this.enable & PM1.TMR && !(this.statusNow() & PM1.TMR)) {
      this.timer = this.clock.setTimer(pmTicksToNs((this.timerEpoch + 1) * TIMER_MSB_TICKS), () => {
        this.timer = 0;
        this.update();
      });
    }
  }

  reset(): void {
    this.status = 0;
    this.enable = 0;
    this.control = PM1_CNT.SCI_EN;
    this.timerEpoch = this.epoch();
    this.update();
  }

  saveState(): object {
    return { status: this.status, enable: this.enable, control: this.control, timerEpoch: this.timerEpoch };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const status = r.int("status", 0, STS_MASK);
    const enable = r.int("enable", 0, EN_MASK);
    const control = r.int("control", 0, 0xffff);
    const timerEpoch = r.int("timerEpoch", 0, Number.MAX_SAFE_INTEGER);
    this.status = status & ~PM1.TMR;
    this.enable = enable;
    this.control = control | PM1_CNT.SCI_EN;
    this.timerEpoch = timerEpoch;
    // The SCI line's level is the I/O APIC's and PIC's to restore; only the timer is re-armed.
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    this.sci.restore((this.statusNow() & this.enable) !== 0);
    if (this.enable & PM1.TMR && !(this.statusNow() & PM1.TMR)) {
      this.timer = this.clock.setTimer(pmTicksToNs((this.timerEpoch + 1) * TIMER_MSB_TICKS), () => {
        this.timer = 0;
        this.update();
      });
    }
  }
}
