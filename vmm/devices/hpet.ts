// High Precision Event Timer (IA-PC HPET 1.0a) at 0xFED00000, as QEMU's: 3 timers, a 64-bit main
// counter at 100 MHz (period 10 ns = 0x00989680 fs), legacy replacement routing.
//
// The main counter is computed from virtual time while ENABLE_CNF is set (`counterAt`), not
// stepped. Each timer's comparator match is a timer on the device clock. One-shot timers fire
// once when the counter reaches the comparator (a 32-bit timer again after its 32-bit wrap);
// periodic timers add their period to the comparator at each match. Edge-triggered timers pulse
// their line; level-triggered ones set their GINTR_STA bit and hold the line until the guest
// writes 1 to that bit. With LEG_RT_CNF, timer 0 drives ISA IRQ 0 and timer 1 IRQ 8 in place of
// the PIT and the RTC (whose outputs come in through `setIrq` and are passed on otherwise);
// without it, a timer drives the I/O APIC input its Tn_INT_ROUTE_CNF names. The registers are
// 64 bits wide; the MMIO bus hands them over as 32-bit halves.

import type { AccessSize, BusHandler, Device, MmioBus } from "./bus.js";
import type { DeviceClock, TimerHandle } from "./clock.js";
import type { IrqLine, IrqSink } from "./irq.js";
import { DeviceStateError, StateReader } from "./state.js";

export const HPET_BASE = 0xfed00000;
export const HPET_SIZE = 0x400;
export const HPET_TIMERS = 3;
/** Counter period in femtoseconds (10 ns), and the resulting ns per tick. */
export const HPET_PERIOD_FS = 0x00989680;
/**
 * VM time (ns) a register read takes, as on a PC's chipset (writes are posted). Linux's
 * calibration of its hpet character device polls the counter for 1 ms; free reads made that
 * 154,000 reads and comparator writes. Short enough for its clockevent's minimum delta (1.92 µs:
 * 192 ticks, of which two reads may use 128).
 */
export const HPET_READ_NS = 500;
const NS_PER_TICK = HPET_PERIOD_FS / 1e6;
export const HPET_VENDOR_INTEL = 0x8086;

/** Register offsets. */
export const HpetReg = {
  CAPABILITIES: 0x000,
  CONFIG: 0x010,
  INT_STATUS: 0x020,
  COUNTER: 0x0f0,
  /** Timer n's registers: TIMER_BASE + n * TIMER_STRIDE + (CONF | COMPARATOR | FSB). */
  TIMER_BASE: 0x100,
  TIMER_STRIDE: 0x20,
  TIMER_CONF: 0x00,
  TIMER_COMPARATOR: 0x08,
  TIMER_FSB: 0x10,
} as const;

/** General configuration bits. */
export const HPET_CFG = { ENABLE: 1 << 0, LEGACY: 1 << 1 } as const;

/** Tn_CONF_CAP bits. */
export const HPET_TN = {
  LEVEL: 1 << 1,
  INT_ENABLE: 1 << 2,
  PERIODIC: 1 << 3,
  PERIODIC_CAP: 1 << 4,
  SIZE_64_CAP: 1 << 5,
  SET_VALUE: 1 << 6,
  MODE_32: 1 << 8,
  ROUTE_SHIFT: 9,
  ROUTE_MASK: 0x1f << 9,
  FSB_ENABLE: 1 << 14,
} as const;
/** Writable Tn_CONF_CAP bits (FSB delivery is not offered: FSB_ENABLE stays clear). */
const TN_WRITABLE = HPET_TN.LEVEL | HPET_TN.INT_ENABLE | HPET_TN.PERIODIC | HPET_TN.SET_VALUE | HPET_TN.MODE_32 | HPET_TN.ROUTE_MASK;
/** I/O APIC inputs a timer may be routed to (QEMU pc: 2, 8 and 16-23), the high half of Tn_CONF_CAP. */
export const HPET_ROUTE_CAP = (1 << 2) | (1 << 8) | (0xff << 16);

/** Low half of the capabilities register: revision 1, 3 timers, 64-bit counter, legacy capable, Intel. */
export const HPET_CAP_LOW = (HPET_VENDOR_INTEL << 16) | (1 << 15) | (1 << 13) | ((HPET_TIMERS - 1) << 8) | 1;

const TWO_32 = 2 ** 32;
const TWO_64 = 2n ** 64n;

interface HpetTimer {
  config: number;
  /** Comparator and period, in counter ticks (bigint: the registers are 64 bits). */
  comparator: bigint;
  period: bigint;
  handle: TimerHandle;
}

/** Where a timer's interrupt goes: an ISA line (legacy replacement) or an I/O APIC input. */
export interface HpetOutputs {
  /** ISA IRQ 0 and IRQ 8 as the platform wires them (PIC and I/O APIC). */
  irq0: IrqLine;
  irq8: IrqLine;
  /** I/O APIC input `gsi` set to `level` (absent without an I/O APIC). */
  gsi?: (gsi: number, level: boolean) => void;
}

/** Legacy inputs of setIrq: the PIT's OUT0 and the RTC's IRQ output. */
export const HPET_PIT_INPUT = 0;
export const HPET_RTC_INPUT = 8;

export class Hpet implements Device, BusHandler, IrqSink {
  readonly name = "hpet";
  private config = 0;
  private intStatus = 0;
  /** Counter value at `counterSinceNs` while enabled; the frozen value while disabled. */
  private counterBase = 0n;
  private counterSinceNs = 0;
  private readonly timers: HpetTimer[] = [];
  /** Levels of the PIT and RTC outputs coming in (passed on unless in legacy mode). */
  private pitLevel = false;
  private rtcLevel = false;
  /** Level currently driven per timer (level-triggered delivery), to drop it when the route changes. */
  private driven: boolean[] = [];
  /** Interrupts delivered per timer (for tests and traces). */
  readonly fired: number[] = new Array<number>(HPET_TIMERS).fill(0);

  constructor(
    private readonly clock: DeviceClock,
    private readonly out: HpetOutputs,
    readonly base = HPET_BASE,
  ) {
    for (let i = 0; i < HPET_TIMERS; i++) this.timers.push({ config: 0, comparator: 0n, period: 0n, handle: 0 });
    this.reset();
  }

  attach(mmio: MmioBus): void {
    mmio.register({ name: this.name, base: this.base, length: HPET_SIZE, sizes: 4, handler: this, readNs: HPET_READ_NS });
  }

  private get enabled(): boolean {
    return (this.config & HPET_CFG.ENABLE) !== 0;
  }

  private get legacy(): boolean {
    return (this.config & HPET_CFG.LEGACY) !== 0;
  }

  /** The main counter at virtual time `ns`. */
  counterAt(ns: number): bigint {
    if (!this.enabled) return this.counterBase;
    const ticks = Math.floor(Math.max(0, ns - this.counterSinceNs) / NS_PER_TICK);
    return (this.counterBase + BigInt(ticks)) % TWO_64;
  }

  /** Virtual ns at which the enabled counter reaches `value` (>= the counter now). */
  private nsAtCounter(value: bigint): number {
    return this.counterSinceNs + Number(value - this.counterBase) * NS_PER_TICK;
  }

  // ---- the interrupt side: legacy pass-through and timer delivery

  setIrq(pin: number, level: boolean): void {
    if (pin === HPET_PIT_INPUT) {
      this.pitLevel = level;
      if (!this.legacy) this.out.irq0.set(level);
    } else if (pin === HPET_RTC_INPUT) {
      this.rtcLevel = level;
      if (!this.legacy) this.out.irq8.set(level);
    }
  }

  /** Timer n's output: the ISA line in legacy mode (timers 0 and 1), else its routed I/O APIC input. */
  private setTimerLine(n: number, level: boolean): void {
    if (this.legacy && n < 2) (n === 0 ? this.out.irq0 : this.out.irq8).set(level);
    else this.out.gsi?.((this.timers[n].config & HPET_TN.ROUTE_MASK) >>> HPET_TN.ROUTE_SHIFT, level);
    this.driven[n] = level;
  }

  /** Timer n matched: deliver (if enabled) and, if periodic, move the comparator on. */
  private fire(n: number): void {
    const t = this.timers[n];
    t.handle = 0;
    const now = this.clock.now();
    if (t.config & HPET_TN.INT_ENABLE) {
      this.fired[n]++;
      if (t.config & HPET_TN.LEVEL) {
        this.intStatus |= 1 << n;
        this.setTimerLine(n, true);
      } else {
        this.setTimerLine(n, false);
        this.setTimerLine(n, true);
        this.setTimerLine(n, false);
      }
    }
    if (t.config & HPET_TN.PERIODIC && t.period > 0n) {
      // Catch up past `now` in whole periods (a late timer callback does not fire a burst).
      const counter = this.counterAt(now);
      let next = t.comparator + t.period;
      if (next <= counter) next += ((counter - next) / t.period + 1n) * t.period;
      t.comparator = this.wrap(n, next);
    }
    this.arm(n);
  }

  private wrap(n: number, value: bigint): bigint {
    return this.timers[n].config & HPET_TN.MODE_32 ? value & 0xffffffffn : value % TWO_64;
  }

  /** Arm timer n's comparator match on the clock (enabled counter only). */
  private arm(n: number): void {
    const t = this.timers[n];
    if (t.handle) this.clock.cancelTimer(t.handle);
    t.handle = 0;
    if (!this.enabled) return;
    const counter = this.counterAt(this.clock.now());
    let target: bigint;
    if (t.config & HPET_TN.MODE_32) {
      const delta = (t.comparator - (counter & 0xffffffffn) + BigInt(TWO_32)) % BigInt(TWO_32);
      target = counter + (delta === 0n ? BigInt(TWO_32) : delta);
    } else {
      // A 64-bit comparator already passed matches again only after the counter wraps: never, in practice.
      if (t.comparator <= counter) return;
      target = t.comparator;
    }
    t.handle = this.clock.setTimer(this.nsAtCounter(target), () => this.fire(n));
  }

  private armAll(): void {
    for (let n = 0; n < HPET_TIMERS; n++) this.arm(n);
  }

  // ---- registers

  read(addr: number, _size: AccessSize): number {
    const offset = addr - this.base;
    const high = (offset & 4) !== 0;
    const reg = offset & ~7;
    const half = (v: bigint) => Number(high ? (v >> 32n) & 0xffffffffn : v & 0xffffffffn);
    switch (reg) {
      case HpetReg.CAPABILITIES:
        return high ? HPET_PERIOD_FS : HPET_CAP_LOW >>> 0;
      case HpetReg.CONFIG:
        return high ? 0 : this.config;
      case HpetReg.INT_STATUS:
        return high ? 0 : this.intStatus;
      case HpetReg.COUNTER:
        return half(this.counterAt(this.clock.now()));
    }
    const timer = this.timerAt(reg);
    if (timer === null) return 0;
    const t = this.timers[timer.n];
    switch (timer.reg) {
      case HpetReg.TIMER_CONF:
        return high ? HPET_ROUTE_CAP >>> 0 : (t.config | HPET_TN.PERIODIC_CAP | HPET_TN.SIZE_64_CAP) >>> 0;
      case HpetReg.TIMER_COMPARATOR:
        return half(t.comparator);
      default:
        return 0;
    }
  }

  write(addr: number, _size: AccessSize, value: number): void {
    const offset = addr - this.base;
    const high = (offset & 4) !== 0;
    const reg = offset & ~7;
    value >>>= 0;
    const merge = (old: bigint) => (high ? (old & 0xffffffffn) | (BigInt(value) << 32n) : (old & ~0xffffffffn) | BigInt(value));
    switch (reg) {
      case HpetReg.CONFIG:
        if (!high) this.writeConfig(value & (HPET_CFG.ENABLE | HPET_CFG.LEGACY));
        return;
      case HpetReg.INT_STATUS:
        if (!high) {
          const cleared = value & this.intStatus;
          this.intStatus &= ~cleared;
          for (let n = 0; n < HPET_TIMERS; n++) if (cleared & (1 << n)) this.setTimerLine(n, false);
        }
        return;
      case HpetReg.COUNTER:
        // Writable while halted (the spec leaves writes to a running counter undefined; they are dropped).
        if (!this.enabled) this.counterBase = merge(this.counterBase);
        return;
    }
    const timer = this.timerAt(reg);
    if (timer === null) return;
    const n = timer.n;
    const t = this.timers[n];
    if (timer.reg === HpetReg.TIMER_CONF) {
      if (high) return;
      const old = t.config;
      t.config = value & TN_WRITABLE;
      // A level interrupt held on the old route, or no longer enabled, is dropped there.
      if (this.driven[n] && ((old ^ t.config) & (HPET_TN.ROUTE_MASK | HPET_TN.LEVEL | HPET_TN.INT_ENABLE)) !== 0) {
        t.config = old;
        this.setTimerLine(n, false);
        t.config = value & TN_WRITABLE;
        this.intStatus &= ~(1 << n);
      }
      if (t.config & HPET_TN.MODE_32) {
        t.comparator &= 0xffffffffn;
        t.period &= 0xffffffffn;
      }
    } else if (timer.reg === HpetReg.TIMER_COMPARATOR) {
      // As QEMU: a periodic timer's comparator is set only with SET_VALUE; otherwise the write sets its period.
      const periodic = (t.config & HPET_TN.PERIODIC) !== 0;
      const setComparator = !periodic || (t.config & HPET_TN.SET_VALUE) !== 0;
      if (t.config & HPET_TN.MODE_32) {
        if (high) return;
        if (setComparator) t.comparator = BigInt(value);
        if (periodic) t.period = BigInt(value);
      } else if (!high) {
        if (setComparator) t.comparator = merge(t.comparator);
        if (periodic) t.period = merge(t.period);
      } else if (setComparator) t.comparator = merge(t.comparator);
      else t.period = merge(t.period);
      t.config &= ~HPET_TN.SET_VALUE;
    } else return;
    this.arm(n);
  }

  private writeConfig(value: number): void {
    const now = this.clock.now();
    const wasEnabled = this.enabled;
    const wasLegacy = this.legacy;
    const counter = this.counterAt(now);
    this.config = value;
    if (wasEnabled !== this.enabled) {
      // Start or freeze the counter where it is.
      this.counterBase = counter;
      this.counterSinceNs = now;
    }
    if (wasLegacy !== this.legacy) {
      // The ISA lines switch sources: timer 0/1 output or the PIT/RTC level.
      for (let n = 0; n < 2; n++) if (this.driven[n]) {
        this.config ^= HPET_CFG.LEGACY;
        this.setTimerLine(n, false);
        this.config ^= HPET_CFG.LEGACY;
      }
      this.out.irq0.set(this.legacy ? false : this.pitLevel);
      this.out.irq8.set(this.legacy ? false : this.rtcLevel);
    }
    this.armAll();
  }

  /** Timer index and register within it for a register offset, or null. */
  private timerAt(reg: number): { n: number; reg: number } | null {
    if (reg < HpetReg.TIMER_BASE) return null;
    const n = Math.floor((reg - HpetReg.TIMER_BASE) / HpetReg.TIMER_STRIDE);
    if (n >= HPET_TIMERS) return null;
    return { n, reg: (reg - HpetReg.TIMER_BASE) % HpetReg.TIMER_STRIDE };
  }

  reset(): void {
    for (const t of this.timers) {
      if (t.handle) this.clock.cancelTimer(t.handle);
      t.config = 0;
      t.comparator = 0xffffffffffffffffn;
      t.period = 0n;
      t.handle = 0;
    }
    this.config = 0;
    this.intStatus = 0;
    this.counterBase = 0n;
    this.counterSinceNs = this.clock.now();
    this.driven = new Array<boolean>(HPET_TIMERS).fill(false);
  }

  saveState(): object {
    // 64-bit values as decimal strings: msgpack numbers are not exact above 2^53.
    return {
      config: this.config,
      intStatus: this.intStatus,
      // The counter as base + ticks since a VM time (like the PIT's start times): a restored HPET keeps the sub-tick phase.
      counterBase: this.counterBase.toString(),
      counterSinceNs: this.counterSinceNs,
      pitLevel: this.pitLevel,
      rtcLevel: this.rtcLevel,
      timers: this.timers.map((t, n) => ({ config: t.config, comparator: t.comparator.toString(), period: t.period.toString(), driven: this.driven[n] })),
    };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const config = r.int("config", 0, HPET_CFG.ENABLE | HPET_CFG.LEGACY);
    const intStatus = r.int("intStatus", 0, (1 << HPET_TIMERS) - 1);
    const counterBase = u64(r, "counterBase");
    const counterSinceNs = r.num("counterSinceNs");
    const pitLevel = r.bool("pitLevel");
    const rtcLevel = r.bool("rtcLevel");
    const timers = r.records("timers", HPET_TIMERS).map((t) => ({
      config: t.int("config", 0, TN_WRITABLE),
      comparator: u64(t, "comparator"),
      period: u64(t, "period"),
      driven: t.bool("driven"),
    }));
    for (const t of this.timers) if (t.handle) this.clock.cancelTimer(t.handle);
    this.config = config;
    this.intStatus = intStatus;
    this.counterBase = counterBase;
    this.counterSinceNs = counterSinceNs;
    this.pitLevel = pitLevel;
    this.rtcLevel = rtcLevel;
    timers.forEach((t, n) => {
      Object.assign(this.timers[n], { config: t.config, comparator: t.comparator, period: t.period, handle: 0 });
      this.driven[n] = t.driven;
    });
    // The ISA lines' levels are the controllers' to restore (they saved their own inputs).
    this.out.irq0.restore(this.legacy ? this.driven[0] : pitLevel);
    this.out.irq8.restore(this.legacy ? this.driven[1] : rtcLevel);
    this.armAll();
  }
}

/** A 64-bit unsigned value saved as a decimal string. */
function u64(r: StateReader, key: string): bigint {
  const s = r.str(key, 20);
  if (!/^\d{1,20}$/.test(s) || BigInt(s) >= TWO_64) throw new DeviceStateError(`${r.path}.${key}`, "not a 64-bit unsigned decimal");
  return BigInt(s);
}
