// Programmable interval timer (8254) with the port 0x61 system control bits.
//
// Ports 0x40-0x42 are counters 0-2, 0x43 the control word. Counters run at 1.193182 MHz of
// virtual time: a counter's value and OUT are computed from the ticks elapsed since it started,
// not stepped. Counter 0's OUT drives IRQ0 (its transitions are timers on the device clock);
// counter 2's gate and OUT are bits 0 and 5 of port 0x61, which also shows the refresh toggle
// (bit 4) that firmware and old kernels poll. Modes 0-5 are modelled; BCD counting is not (the
// BCD bit is kept and reported by read-back, counting stays binary). A count written to a running
// mode-2/3 counter takes effect at once, not at the end of the current period.

import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import type { DeviceClock, TimerHandle } from "./clock.js";
import type { IrqLine } from "./irq.js";
import { StateReader } from "./state.js";

/** Counter input clock in Hz. */
export const PIT_HZ = 1193182;
/** Period of the refresh toggle on port 0x61 bit 4, in ns. */
const REFRESH_NS = 15085;

/** Ticks completed in `ns` ns of elapsed time: floor(ns * PIT_HZ / 1e9), exact for large ns. */
export function nsToTicks(ns: number): number {
  if (ns <= 0) return 0;
  const seconds = Math.floor(ns / 1e9);
  const rest = ns - seconds * 1e9;
  return seconds * PIT_HZ + Math.floor((rest * PIT_HZ) / 1e9);
}

/** The least elapsed ns after which `ticks` ticks have completed (inverse of nsToTicks). */
export function ticksToNs(ticks: number): number {
  const seconds = Math.floor(ticks / PIT_HZ);
  const rest = ticks - seconds * PIT_HZ;
  return seconds * 1e9 + Math.ceil((rest * 1e9) / PIT_HZ);
}

interface Channel {
  mode: number;
  /** 1 = low byte only, 2 = high byte only, 3 = low then high. */
  access: number;
  bcd: boolean;
  /** Initial count N, 1..0x10000 (a written 0 means 0x10000). */
  reload: number;
  /** Virtual ns of tick 0 of the current count. */
  startNs: number;
  /** A count is loaded and running (modes 1/5: triggered). */
  counting: boolean;
  /** Modes 1/5: a count is loaded, waiting for a gate rising edge. */
  armed: boolean;
  gate: boolean;
  /** Gate low in modes 0/2/3/4: counting is suspended at this many ticks; -1 = not suspended. */
  pausedTicks: number;
  /** OUT while not counting (set by the control word). */
  idleOut: boolean;
  /** lo/hi access: the low byte written, waiting for the high byte; -1 = none. */
  pendingLow: number;
  /** lo/hi access: the next unlatched read returns the high byte. */
  readHigh: boolean;
  /** Latched count (-1 = none) and whether its high byte is next (lo/hi access). */
  latchedCount: number;
  latchedHigh: boolean;
  /** Latched read-back status byte, -1 = none. */
  latchedStatus: number;
  nullCount: boolean;
}

function channelReset(): Channel {
  return {
    mode: 0, access: 3, bcd: false, reload: 0x10000, startNs: 0, counting: false, armed: false, gate: true,
    pausedTicks: -1, idleOut: false, pendingLow: -1, readHigh: false, latchedCount: -1, latchedHigh: false,
    latchedStatus: -1, nullCount: true,
  };
}

/** OUT of a counting channel `d` ticks into its count. */
function outAt(c: Channel, d: number): boolean {
  const n = c.reload;
  switch (c.mode) {
    case 0:
    case 1:
      return d >= n;
    case 2:
    case 6: {
      const m = Math.max(n, 2);
      return d % m !== m - 1;
    }
    case 3:
    case 7: {
      const m = Math.max(n, 2);
      return d % m < Math.ceil(m / 2);
    }
    default: // 4, 5: one-tick low strobe at terminal count
      return d !== n;
  }
}

/** The first tick after `d` at which OUT changes, or -1 if it never does. */
function nextChange(c: Channel, d: number): number {
  const n = c.reload;
  switch (c.mode) {
    case 0:
    case 1:
      return d < n ? n : -1;
    case 2:
    case 6: {
      const m = Math.max(n, 2);
      const p = d % m;
      return p < m - 1 ? d + (m - 1 - p) : d + 1;
    }
    case 3:
    case 7: {
      const m = Math.max(n, 2);
      const p = d % m;
      const high = Math.ceil(m / 2);
      return p < high ? d + (high - p) : d + (m - p);
    }
    default:
      return d < n ? n : d === n ? n + 1 : -1;
  }
}

/** The counter's value `d` ticks into its count (16 bits). */
function countAt(c: Channel, d: number): number {
  const n = c.reload;
  switch (c.mode) {
    case 2:
    case 6:
      return (n - (d % n)) & 0xffff;
    case 3:
    case 7: {
      const m = Math.max(n, 2);
      const p = d % m;
      const high = Math.ceil(m / 2);
      return (m - 2 * (p < high ? p : p - high)) & 0xfffe;
    }
    default:
      return (((n - d) % 0x10000) + 0x10000) % 0x10000;
  }
}

export class Pit implements Device, BusHandler {
  readonly name = "pit";
  private channels: Channel[] = [channelReset(), channelReset(), channelReset()];
  /** Port 0x61 bits 0-3 (gate 2, speaker data, parity and channel check enables). */
  private control61 = 0;
  /** Channel 0: the tick (into its count) of the next OUT change the IRQ timer will apply; -1 = none. */
  private irqTick = -1;
  private timer: TimerHandle = 0;

  /** Counter 0's OUT drives `irq0` (IRQ0 of the PIC, and pin 2 of an I/O APIC). */
  constructor(private readonly clock: DeviceClock, private readonly irq0: IrqLine) {
    this.reset();
  }

  /** Claim ports 0x40-0x43 and 0x61. */
  attach(io: IoBus): void {
    io.register({ name: "pit", base: 0x40, length: 4, sizes: 1, handler: this });
    io.register({ name: "system-control-b", base: 0x61, length: 1, sizes: 1, handler: this });
  }

  reset(): void {
    this.channels = [channelReset(), channelReset(), channelReset()];
    this.channels[2].gate = false;
    this.control61 = 0;
    this.rearm();
  }

  /** Speaker output state: gate 2 and speaker-data enable both set. */
  get speakerEnabled(): boolean {
    return (this.control61 & 3) === 3;
  }

  /** OUT of counter `n` now. */
  out(n: number): boolean {
    const c = this.channels[n];
    return this.outOf(c, this.elapsed(c));
  }

  /** Value of counter `n` now, as a read would return it (16 bits). */
  count(n: number): number {
    const c = this.channels[n];
    const d = this.elapsed(c);
    return d < 0 ? c.reload & 0xffff : countAt(c, d);
  }

  read(port: number, _size: AccessSize): number {
    if (port === 0x61) {
      const refresh = Math.floor(this.clock.now() / REFRESH_NS) & 1;
      return this.control61 | (refresh << 4) | (Number(this.out(2)) << 5);
    }
    if (port === 0x43) return 0xff; // the control word register is write-only
    const c = this.channels[port - 0x40];
    if (c.latchedStatus >= 0) {
      const s = c.latchedStatus;
      c.latchedStatus = -1;
      return s;
    }
    if (c.latchedCount >= 0) {
      const v = c.latchedCount;
      if (c.access === 1) c.latchedCount = -1;
      else if (c.access === 2) {
        c.latchedCount = -1;
        return v >> 8;
      } else if (!c.latchedHigh) {
        c.latchedHigh = true;
      } else {
        c.latchedCount = -1;
        c.latchedHigh = false;
        return v >> 8;
      }
      return v & 0xff;
    }
    const v = this.count(port - 0x40);
    if (c.access === 1) return v & 0xff;
    if (c.access === 2) return v >> 8;
    c.readHigh = !c.readHigh;
    return c.readHigh ? v & 0xff : v >> 8;
  }

  write(port: number, _size: AccessSize, value: number): void {
    if (port === 0x61) {
      this.control61 = value & 0x0f;
      this.setGate(2, (value & 1) !== 0);
      return;
    }
    if (port === 0x43) {
      this.writeControl(value);
      return;
    }
    const n = port - 0x40;
    const c = this.channels[n];
    switch (c.access) {
      case 1:
        this.load(n, value);
        break;
      case 2:
        this.load(n, value << 8);
        break;
      default:
        if (c.pendingLow < 0) {
          c.pendingLow = value;
          if (c.mode === 0) {
            // Writing the first byte in mode 0 stops the count.
            c.counting = false;
            c.idleOut = false;
            if (n === 0) this.rearm();
          }
        } else {
          const v = c.pendingLow | (value << 8);
          c.pendingLow = -1;
          this.load(n, v);
        }
    }
  }

  private writeControl(v: number): void {
    const select = v >> 6;
    if (select === 3) {
      // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 1-3 select counters.
      for (let n = 0; n < 3; n++) {
        if (!(v & (2 << n))) continue;
        if (!(v & 0x20)) this.latchCount(n);
        const c = this.channels[n];
        if (!(v & 0x10) && c.latchedStatus < 0) {
          c.latchedStatus = (Number(this.out(n)) << 7) | (Number(c.nullCount) << 6) | (c.access << 4) | (c.mode << 1) | Number(c.bcd);
        }
      }
      return;
    }
    const access = (v >> 4) & 3;
    if (access === 0) {
      this.latchCount(select);
      return;
    }
    const c = this.channels[select];
    c.access = access;
    c.mode = (v >> 1) & 7;
    if (c.mode >= 6) c.mode -= 4;
    c.bcd = (v & 1) !== 0;
    c.counting = false;
    c.armed = false;
    c.pausedTicks = -1;
    c.idleOut = c.mode !== 0;
    c.pendingLow = -1;
    c.readHigh = false;
    c.latchedCount = -1;
    c.latchedHigh = false;
    c.latchedStatus = -1;
    c.nullCount = true;
    if (select === 0) this.rearm();
  }

  private latchCount(n: number): void {
    const c = this.channels[n];
    if (c.latchedCount >= 0) return;
    c.latchedCount = this.count(n);
    c.latchedHigh = false;
  }

  private load(n: number, value: number): void {
    const c = this.channels[n];
    c.reload = value === 0 ? 0x10000 : value;
    c.nullCount = false;
    if (c.mode === 1 || c.mode === 5) {
      c.armed = true;
      c.counting = false;
      c.idleOut = true;
    } else {
      c.counting = true;
      c.startNs = this.clock.now();
      c.pausedTicks = c.gate ? -1 : 0;
    }
    if (n === 0) this.rearm();
  }

  /** Gate input of counter `n` (only counter 2's is wired to anything: port 0x61 bit 0). */
  private setGate(n: number, level: boolean): void {
    const c = this.channels[n];
    if (c.gate === level) return;
    const now = this.clock.now();
    const d = this.elapsed(c);
    c.gate = level;
    const retriggered = c.mode === 1 || c.mode === 5 || c.mode === 2 || c.mode === 3;
    if (level) {
      if (retriggered && (c.counting || c.armed)) {
        c.counting = true;
        c.armed = false;
        c.startNs = now;
        c.pausedTicks = -1;
      } else if (c.counting && c.pausedTicks >= 0) {
        c.startNs = now - ticksToNs(c.pausedTicks);
        c.pausedTicks = -1;
      }
    } else if (c.counting && c.mode !== 1 && c.mode !== 5) {
      c.pausedTicks = Math.max(d, 0);
    }
    if (n === 0) this.rearm();
  }

  /** Ticks into the current count, or -1 when the counter is not counting. */
  private elapsed(c: Channel): number {
    if (!c.counting) return -1;
    if (c.pausedTicks >= 0) return c.pausedTicks;
    return nsToTicks(this.clock.now() - c.startNs);
  }

  /** OUT of a channel at tick `d`, taking a suspended count into account. */
  private outOf(c: Channel, d: number): boolean {
    if (d < 0) return c.idleOut;
    if (c.pausedTicks >= 0 && (c.mode === 2 || c.mode === 3)) return true;
    return outAt(c, d);
  }

  /** Bring IRQ0 in line with counter 0's OUT now and arm the timer for its next change. */
  private rearm(): void {
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    const c = this.channels[0];
    const d = this.elapsed(c);
    this.irq0.set(this.outOf(c, d));
    this.irqTick = d >= 0 && c.pausedTicks < 0 ? nextChange(c, d) : -1;
    this.armTimer();
  }

  private armTimer(): void {
    if (this.irqTick < 0) return;
    const c = this.channels[0];
    this.timer = this.clock.setTimer(c.startNs + ticksToNs(this.irqTick), () => this.fire());
  }

  /** Apply the OUT change at `irqTick`, in order even if the timer ran late. */
  private fire(): void {
    this.timer = 0;
    const c = this.channels[0];
    const t = this.irqTick;
    this.irq0.set(outAt(c, t));
    this.irqTick = nextChange(c, t);
    this.armTimer();
  }

  saveState(): object {
    return {
      channels: this.channels.map((c) => ({ ...c })),
      control61: this.control61,
      irqTick: this.irqTick,
      irqLevel: this.irq0.level,
    };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, "pit");
    const channels = r.records("channels", 3).map(readChannel);
    const control61 = r.int("control61", 0, 15);
    const irqTick = r.int("irqTick", -1, Number.MAX_SAFE_INTEGER);
    const irqLevel = r.bool("irqLevel");
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    this.channels = channels;
    this.control61 = control61;
    this.irqTick = irqTick;
    this.irq0.restore(irqLevel);
    this.armTimer();
  }
}

function readChannel(r: StateReader): Channel {
  return {
    mode: r.int("mode", 0, 5), access: r.int("access", 1, 3), bcd: r.bool("bcd"), reload: r.int("reload", 1, 0x10000),
    startNs: r.num("startNs"), counting: r.bool("counting"), armed: r.bool("armed"), gate: r.bool("gate"),
    pausedTicks: r.int("pausedTicks", -1, Number.MAX_SAFE_INTEGER), idleOut: r.bool("idleOut"),
    pendingLow: r.int("pendingLow", -1, 255), readHigh: r.bool("readHigh"), latchedCount: r.int("latchedCount", -1, 0xffff),
    latchedHigh: r.bool("latchedHigh"), latchedStatus: r.int("latchedStatus", -1, 255), nullCount: r.bool("nullCount"),
  };
}
