// Real-time clock and CMOS NVRAM (MC146818) at ports 0x70/0x71, interrupting on IRQ8.
//
// The time of day is derived from virtual time: `baseSeconds` (Unix seconds) held at virtual time
// `baseNs`, advancing one second every 1e9 ns; the host's wall clock enters only as the
// constructor's start time. While SET (register B bit 7) is on or the divider is held in reset,
// the time registers are plain storage; when the clock is let go again their contents become the
// new base. Register C's flags (periodic, alarm, update-ended) are accumulated lazily from the
// virtual time that has passed; a timer is armed only when an enabled flag could raise IRQ8.
// The update cycle is modelled as UIP high for the last 244 us before each second boundary and
// the update itself happening at the boundary.

import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import type { DeviceClock, TimerHandle } from "./clock.js";
import type { IrqLine } from "./irq.js";
import { StateReader } from "./state.js";

export const REG_A = 0x0a;
export const REG_B = 0x0b;
export const REG_C = 0x0c;
export const REG_D = 0x0d;
/** Century register (PC/AT convention), same encoding as the other time registers. */
export const REG_CENTURY = 0x32;

const A_UIP = 0x80;
const B_SET = 0x80;
const B_PIE = 0x40;
const B_AIE = 0x20;
const B_UIE = 0x10;
const B_BINARY = 0x04;
const B_24H = 0x02;
const C_IRQF = 0x80;
const C_PF = 0x40;
const C_AF = 0x20;
const C_UF = 0x10;
/** UIP is set this long before each update, in ns. */
const UIP_NS = 244_000;
const SECOND_NS = 1e9;

export interface RtcOptions {
  /** Wall-clock time at the device's creation (virtual time clock.now()), in Unix seconds. */
  startTime: number;
  /** Guest RAM in bytes, for the memory-size fields of the NVRAM (0x15-0x18, 0x30/0x31, 0x34/0x35, 0x5b-0x5d). */
  memoryBytes?: number;
}

/** Ticks of the 32.768 kHz time base in `ns`: floor(ns * 32768 / 1e9), exact for large ns. */
function nsToBaseTicks(ns: number): number {
  if (ns <= 0) return 0;
  const s = Math.floor(ns / SECOND_NS);
  return s * 32768 + Math.floor(((ns - s * SECOND_NS) * 32768) / SECOND_NS);
}

/** The least ns after which `ticks` base ticks have passed. */
function baseTicksToNs(ticks: number): number {
  const s = Math.floor(ticks / 32768);
  return s * SECOND_NS + Math.ceil(((ticks - s * 32768) * SECOND_NS) / 32768);
}

/** Periodic interrupt period in 32.768 kHz ticks for rate select `rs` (0 = off). */
export function periodicTicks(rs: number): number {
  if (rs === 0) return 0;
  return rs <= 2 ? 1 << (rs + 6) : 1 << (rs - 1);
}

/** Fill the standard memory-size fields and the checksum of a fresh NVRAM. */
function initNvram(cmos: Uint8Array, memoryBytes: number): void {
  const kib = Math.floor(memoryBytes / 1024);
  const put16 = (at: number, v: number): void => {
    cmos[at] = v & 0xff;
    cmos[at + 1] = (v >> 8) & 0xff;
  };
  cmos[0x14] = 0x02; // equipment: math coprocessor, no floppy, EGA/VGA display
  put16(0x15, Math.min(kib, 640));
  const extended = Math.min(Math.max(kib - 1024, 0), 0xffff);
  put16(0x17, extended);
  put16(0x30, extended);
  put16(0x34, Math.min(Math.max(Math.floor((memoryBytes - 16 * 2 ** 20) / 65536), 0), 0xffff));
  const above4g = Math.max(Math.floor((memoryBytes - 2 ** 32) / 65536), 0);
  cmos[0x5b] = above4g & 0xff;
  cmos[0x5c] = (above4g >> 8) & 0xff;
  cmos[0x5d] = (above4g >> 16) & 0xff;
  let sum = 0;
  for (let i = 0x10; i <= 0x2d; i++) sum += cmos[i];
  cmos[0x2e] = (sum >> 8) & 0xff;
  cmos[0x2f] = sum & 0xff;
}

export class Rtc implements Device, BusHandler {
  readonly name = "rtc";
  private cmos: Uint8Array = new Uint8Array(128);
  private index = 0;
  private nmiMask = false;
  /** Unix seconds shown at virtual time baseNs (while running). */
  private baseSeconds: number;
  private baseNs: number;
  /** Register C flags accumulated up to virtual time checkedNs. */
  private flags = 0;
  private checkedNs: number;
  /** Time registers are frozen storage (SET on, or divider in reset). */
  private halted = false;
  private timer: TimerHandle = 0;

  constructor(private readonly clock: DeviceClock, private readonly irq8: IrqLine, options: RtcOptions) {
    this.baseSeconds = Math.floor(options.startTime);
    this.baseNs = clock.now();
    this.checkedNs = this.baseNs;
    this.cmos[REG_A] = 0x26;
    this.cmos[REG_B] = B_24H;
    this.cmos[REG_D] = 0x80;
    initNvram(this.cmos, options.memoryBytes ?? 0);
  }

  /** Claim ports 0x70-0x71. */
  attach(io: IoBus): void {
    io.register({ name: "rtc", base: 0x70, length: 2, sizes: 1, handler: this });
  }

  /** NMI disabled by bit 7 of the last write to port 0x70. */
  get nmiMasked(): boolean {
    return this.nmiMask;
  }

  /** The clock's current time in Unix seconds (what the time registers show). */
  get time(): number {
    return this.halted ? this.decodeTime() : this.secondsAt(this.clock.now());
  }

  /**
   * The clock as a reference point: it read Unix time `seconds` at virtual time `atNs` (and runs
   * on from there at one second per 1e9 ns, unless frozen). What a paravirtual wall clock is made of.
   */
  get reference(): { seconds: number; atNs: number } {
    return this.halted ? { seconds: this.decodeTime(), atNs: this.clock.now() } : { seconds: this.baseSeconds, atNs: this.baseNs };
  }

  /** Byte `i` of the CMOS (time registers as last stored). For the VMM's boot-time set-up. */
  nvram(i: number): number {
    return this.cmos[i & 0x7f];
  }

  /** Set a CMOS byte without side effects (firmware set-up by the VMM before the guest runs). */
  setNvram(i: number, value: number): void {
    this.cmos[i & 0x7f] = value & 0xff;
  }

  /** Hardware reset: interrupt enables and flags clear; time and NVRAM survive. */
  reset(): void {
    this.accumulate();
    this.cmos[REG_B] &= ~(B_PIE | B_AIE | B_UIE | 0x08);
    this.flags = 0;
    this.updateIrq();
    this.reschedule();
  }

  read(port: number, _size: AccessSize): number {
    if (port === 0x70) return 0xff;
    const i = this.index;
    if (i <= 9 || i === REG_CENTURY) {
      if (!this.halted) this.storeTime(this.secondsAt(this.clock.now()));
      return this.cmos[i];
    }
    switch (i) {
      case REG_A: {
        const now = this.clock.now();
        const uip = !this.halted && this.nextUpdateNs(now) - now <= UIP_NS;
        return (this.cmos[REG_A] & 0x7f) | (uip ? A_UIP : 0);
      }
      case REG_C: {
        this.accumulate();
        const v = this.flags | (this.irqFlag() ? C_IRQF : 0);
        this.flags = 0;
        this.updateIrq();
        this.reschedule();
        return v;
      }
      case REG_D:
        return 0x80;
      default:
        return this.cmos[i];
    }
  }

  write(port: number, _size: AccessSize, value: number): void {
    if (port === 0x70) {
      this.index = value & 0x7f;
      this.nmiMask = (value & 0x80) !== 0;
      return;
    }
    const i = this.index;
    if (i <= 9 || i === REG_CENTURY) {
      if (!this.halted) this.storeTime(this.secondsAt(this.clock.now()));
      this.cmos[i] = value;
      if (!this.halted && i !== 1 && i !== 3 && i !== 5) {
        // Writing a running clock: keep the sub-second phase, move the seconds.
        const now = this.clock.now();
        this.baseSeconds = this.decodeTime() - Math.floor((now - this.baseNs) / SECOND_NS);
      }
      return;
    }
    switch (i) {
      case REG_A:
        this.accumulate();
        this.cmos[REG_A] = value & 0x7f;
        this.setHalted(this.shouldHalt(), (value & 0x70) === 0x20);
        break;
      case REG_B:
        this.accumulate();
        this.cmos[REG_B] = value & B_SET ? value & ~B_UIE : value;
        this.setHalted(this.shouldHalt(), false);
        break;
      case REG_C:
      case REG_D:
        return; // read-only
      default:
        this.cmos[i] = value;
        return;
    }
    this.updateIrq();
    this.reschedule();
  }

  private shouldHalt(): boolean {
    return (this.cmos[REG_B] & B_SET) !== 0 || (this.cmos[REG_A] & 0x60) === 0x60;
  }

  private dividerRunning(): boolean {
    return (this.cmos[REG_A] & 0x60) !== 0x60;
  }

  /** Enter or leave the frozen state; leaving takes the time registers as the new time. */
  private setHalted(halt: boolean, fromDividerReset: boolean): void {
    if (halt === this.halted) return;
    const now = this.clock.now();
    if (halt) {
      this.storeTime(this.secondsAt(now));
      this.halted = true;
    } else {
      this.halted = false;
      this.baseSeconds = this.decodeTime();
      // After a divider reset the first update comes half a second later.
      this.baseNs = fromDividerReset ? now - SECOND_NS / 2 : now;
      this.checkedNs = now;
    }
  }

  private secondsAt(ns: number): number {
    return this.baseSeconds + Math.floor((ns - this.baseNs) / SECOND_NS);
  }

  private nextUpdateNs(ns: number): number {
    return this.baseNs + (Math.floor((ns - this.baseNs) / SECOND_NS) + 1) * SECOND_NS;
  }

  /** Index of the last periodic boundary at or before `ns` (counted from baseNs). */
  private periodIndex(ns: number, period: number): number {
    return Math.floor(nsToBaseTicks(ns - this.baseNs) / period);
  }

  /** Fold into `flags` the events between checkedNs and now. */
  private accumulate(): void {
    const now = this.clock.now();
    const from = this.checkedNs;
    if (now <= from) return;
    this.checkedNs = now;
    const period = periodicTicks(this.cmos[REG_A] & 0x0f);
    if (period > 0 && this.dividerRunning() && this.periodIndex(now, period) > this.periodIndex(from, period)) {
      this.flags |= C_PF;
    }
    if (this.halted) return;
    const first = Math.floor((from - this.baseNs) / SECOND_NS) + 1;
    const last = Math.floor((now - this.baseNs) / SECOND_NS);
    if (last < first) return;
    this.flags |= C_UF;
    // Every time of day recurs within a day: looking at the last 86400 updates is enough.
    for (let k = Math.max(first, last - 86399); k <= last; k++) {
      if (this.alarmMatches(this.baseSeconds + k)) {
        this.flags |= C_AF;
        break;
      }
    }
  }

  private alarmMatches(seconds: number): boolean {
    const d = new Date(seconds * 1000);
    const fields: [number, number][] = [
      [1, this.encode(d.getUTCSeconds())],
      [3, this.encode(d.getUTCMinutes())],
      [5, this.encodeHour(d.getUTCHours())],
    ];
    return fields.every(([reg, v]) => (this.cmos[reg] & 0xc0) === 0xc0 || this.cmos[reg] === v);
  }

  private irqFlag(): boolean {
    const b = this.cmos[REG_B];
    return ((this.flags & C_PF) !== 0 && (b & B_PIE) !== 0) ||
      ((this.flags & C_AF) !== 0 && (b & B_AIE) !== 0) ||
      ((this.flags & C_UF) !== 0 && (b & B_UIE) !== 0);
  }

  private updateIrq(): void {
    this.irq8.set(this.irqFlag());
  }

  /** Arm a timer for the next event that could raise IRQ8 (none while IRQ8 is already up). */
  private reschedule(): void {
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    if (this.irq8.level) return;
    const b = this.cmos[REG_B];
    const from = this.checkedNs;
    let next = Infinity;
    const period = periodicTicks(this.cmos[REG_A] & 0x0f);
    if (b & B_PIE && period > 0 && this.dividerRunning()) {
      next = this.baseNs + baseTicksToNs((this.periodIndex(from, period) + 1) * period);
    }
    if (b & (B_UIE | B_AIE) && !this.halted) next = Math.min(next, this.nextUpdateNs(from));
    if (next === Infinity) return;
    this.timer = this.clock.setTimer(next, () => {
      this.timer = 0;
      this.accumulate();
      this.updateIrq();
      this.reschedule();
    });
  }

  private encode(v: number): number {
    return this.cmos[REG_B] & B_BINARY ? v : ((Math.floor(v / 10) % 10) << 4) | (v % 10);
  }

  private decode(v: number): number {
    return this.cmos[REG_B] & B_BINARY ? v : (v >> 4) * 10 + (v & 0x0f);
  }

  private encodeHour(h: number): number {
    if (this.cmos[REG_B] & B_24H) return this.encode(h);
    return this.encode(h % 12 || 12) | (h >= 12 ? 0x80 : 0);
  }

  private decodeHour(v: number): number {
    if (this.cmos[REG_B] & B_24H) return this.decode(v);
    return (this.decode(v & 0x7f) % 12) + (v & 0x80 ? 12 : 0);
  }

  /** Write `seconds` (Unix) into the time registers in the current format. */
  private storeTime(seconds: number): void {
    const d = new Date(seconds * 1000);
    const year = d.getUTCFullYear();
    this.cmos[0] = this.encode(d.getUTCSeconds());
    this.cmos[2] = this.encode(d.getUTCMinutes());
    this.cmos[4] = this.encodeHour(d.getUTCHours());
    this.cmos[6] = this.encode(d.getUTCDay() + 1);
    this.cmos[7] = this.encode(d.getUTCDate());
    this.cmos[8] = this.encode(d.getUTCMonth() + 1);
    this.cmos[9] = this.encode(year % 100);
    this.cmos[REG_CENTURY] = this.encode(Math.floor(year / 100));
  }

  /** The time the time registers hold, in Unix seconds. */
  private decodeTime(): number {
    const c = this.cmos;
    const year = this.decode(c[REG_CENTURY]) * 100 + this.decode(c[9]);
    const ms = Date.UTC(year, this.decode(c[8]) - 1, this.decode(c[7]), this.decodeHour(c[4]), this.decode(c[2]), this.decode(c[0]));
    return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0;
  }

  saveState(): object {
    return {
      cmos: new Uint8Array(this.cmos),
      index: this.index,
      nmiMask: this.nmiMask,
      baseSeconds: this.baseSeconds,
      baseNs: this.baseNs,
      flags: this.flags,
      checkedNs: this.checkedNs,
      halted: this.halted,
      irqLevel: this.irq8.level,
    };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, "rtc");
    const cmos = r.bytes("cmos", 128);
    const index = r.int("index", 0, 127);
    const nmiMask = r.bool("nmiMask");
    const baseSeconds = r.int("baseSeconds", -(2 ** 40), 2 ** 40);
    const baseNs = r.num("baseNs");
    const flags = r.int("flags", 0, 0x70);
    const checkedNs = r.num("checkedNs");
    const halted = r.bool("halted");
    const irqLevel = r.bool("irqLevel");
    this.cmos = cmos;
    this.index = index;
    this.nmiMask = nmiMask;
    this.baseSeconds = baseSeconds;
    this.baseNs = baseNs;
    this.flags = flags & (C_PF | C_AF | C_UF);
    this.checkedNs = checkedNs;
    this.halted = halted;
    this.irq8.restore(irqLevel);
    this.reschedule();
  }
}
