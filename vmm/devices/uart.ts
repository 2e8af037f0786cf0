// 16550A UART: eight registers at a base port (0x3f8 for COM1), FIFOs, interrupts, loopback.
//
// Transmission is instant: a byte written to THR goes to the host's onTransmit() (or, in loopback,
// into the receive FIFO) and THR is empty again at once, so THRE is never stale. Host input
// waits in an unbounded host queue and moves into the 16-byte receive FIFO as room appears, so a
// paste never overruns; the receive timeout (FIFO mode) fires four character times after the last
// FIFO activity, using the programmed divisor and frame format. As on a PC, the interrupt output
// reaches the IRQ line only through OUT2 (MCR bit 3) and never in loopback mode.

import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import type { DeviceClock, TimerHandle } from "./clock.js";
import type { IrqLine } from "./irq.js";
import { StateReader } from "./state.js";

const IER_RDA = 0x01;
const IER_THRE = 0x02;
const IER_RLS = 0x04;
const IER_MS = 0x08;
const LCR_DLAB = 0x80;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const FCR_ENABLE = 0x01;
const FIFO_SIZE = 16;
const TRIGGER_LEVELS = [1, 4, 8, 14];
/** The divisor counts a 1.8432 MHz clock / 16. */
const BASE_BAUD = 115200;

/** Interrupt identification codes (IIR bits 3-0), highest priority first. */
export const IIR = { NONE: 0x01, LINE_STATUS: 0x06, RX_DATA: 0x04, RX_TIMEOUT: 0x0c, THR_EMPTY: 0x02, MODEM_STATUS: 0x00 } as const;

export interface UartOptions {
  /** First of the eight ports (default 0x3f8). */
  base?: number;
  /** Device name for traces (default "uart@<base>"). */
  name?: string;
  /** Gate the interrupt with OUT2 and loopback as PC wiring does (default true). */
  gateIrqWithOut2?: boolean;
}

export class Uart16550 implements Device, BusHandler {
  readonly name: string;
  readonly base: number;
  /** Receives every byte the guest transmits (not called in loopback). */
  onTransmit: ((byte: number) => void) | null = null;
  private readonly gated: boolean;
  private divisor = 12;
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private fcr = 0;
  private scr = 0;
  /** Pending line-status error bits (OE, PE, FE, BI), cleared by reading LSR. */
  private lineErrors = 0;
  /** Modem input lines when not in loopback (MSR bits 7-4: DCD, RI, DSR, CTS). */
  private modemLines = 0xb0;
  /** MSR delta bits 3-0, cleared by reading MSR. */
  private modemDelta = 0;
  private rx: number[] = [];
  private hostQueue: number[] = [];
  private thrEmptyPending = false;
  private timeoutPending = false;
  /** Virtual ns at which the receive timeout fires; -1 = not armed. */
  private timeoutAt = -1;
  private timer: TimerHandle = 0;

  constructor(private readonly clock: DeviceClock, private readonly irq: IrqLine, options: UartOptions = {}) {
    this.base = options.base ?? 0x3f8;
    this.name = options.name ?? `uart@${this.base.toString(16)}`;
    this.gated = options.gateIrqWithOut2 ?? true;
  }

  /** Claim the eight ports. */
  attach(io: IoBus): void {
    io.register({ name: this.name, base: this.base, length: 8, sizes: 1, handler: this });
  }

  reset(): void {
    this.divisor = 12;
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.fcr = 0;
    this.scr = 0;
    this.lineErrors = 0;
    this.modemDelta = 0;
    this.rx = [];
    this.thrEmptyPending = false;
    this.timeoutPending = false;
    this.rearmTimeout(-1);
    this.pump();
    this.updateIrq();
  }

  /** Host input: bytes the guest will read, in order. */
  receive(bytes: Iterable<number>): void {
    for (const b of bytes) this.hostQueue.push(b & 0xff);
    this.pump();
    this.updateIrq();
  }

  /** Bytes of host input not yet in the receive FIFO. */
  get queuedInput(): number {
    return this.hostQueue.length;
  }

  /** Set the modem input lines seen outside loopback (MSR bits 7-4 in their positions). */
  setModemLines(lines: number): void {
    const before = this.effectiveLines();
    this.modemLines = lines & 0xf0;
    this.noteLineChange(before);
    this.updateIrq();
  }

  /** Modem control outputs (MCR bits 4-0). */
  get modemControl(): number {
    return this.mcr;
  }

  read(port: number, _size: AccessSize): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (port - this.base) {
      case 0:
        return dlab ? this.divisor & 0xff : this.readRbr();
      case 1:
        return dlab ? this.divisor >> 8 : this.ier;
      case 2: {
        const id = this.identify();
        if (id === IIR.THR_EMPTY) {
          this.thrEmptyPending = false;
          this.updateIrq();
        }
        return id | (this.fifoOn() ? 0xc0 : 0);
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const v = (this.rx.length > 0 ? LSR_DR : 0) | this.lineErrors | LSR_THRE | LSR_TEMT;
        if (this.lineErrors) {
          this.lineErrors = 0;
          this.updateIrq();
        }
        return v;
      }
      case 6: {
        const v = this.effectiveLines() | this.modemDelta;
        if (this.modemDelta) {
          this.modemDelta = 0;
          this.updateIrq();
        }
        return v;
      }
      default:
        return this.scr;
    }
  }

  write(port: number, _size: AccessSize, value: number): void {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (port - this.base) {
      case 0:
        if (dlab) this.divisor = (this.divisor & 0xff00) | value;
        else this.transmit(value);
        break;
      case 1:
        if (dlab) {
          this.divisor = (this.divisor & 0xff) | (value << 8);
        } else {
          const enabling = value & ~this.ier & IER_THRE;
          this.ier = value & 0x0f;
          // A 16550A re-asserts THRE when the interrupt is enabled with THR empty.
          if (enabling) this.thrEmptyPending = true;
        }
        break;
      case 2:
        this.writeFcr(value);
        break;
      case 3:
        this.lcr = value;
        break;
      case 4: {
        const before = this.effectiveLines();
        const wasLoop = (this.mcr & MCR_LOOP) !== 0;
        this.mcr = value & 0x1f;
        this.noteLineChange(before);
        if (wasLoop && !(this.mcr & MCR_LOOP)) this.pump();
        break;
      }
      case 5:
      case 6:
        break; // LSR and MSR are read-only (factory test writes ignored)
      default:
        this.scr = value;
    }
    this.updateIrq();
  }

  private fifoOn(): boolean {
    return (this.fcr & FCR_ENABLE) !== 0;
  }

  private capacity(): number {
    return this.fifoOn() ? FIFO_SIZE : 1;
  }

  private triggerLevel(): number {
    return this.fifoOn() ? TRIGGER_LEVELS[this.fcr >> 6] : 1;
  }

  private writeFcr(value: number): void {
    const toggled = ((value ^ this.fcr) & FCR_ENABLE) !== 0;
    if (toggled || value & 0x02) {
      this.rx = [];
      this.timeoutPending = false;
      this.rearmTimeout(-1);
    }
    this.fcr = value & 0xc9;
    this.pump();
  }

  private readRbr(): number {
    const v = this.rx.length > 0 ? this.rx.shift()! : 0;
    this.timeoutPending = false;
    this.pump();
    this.restartTimeout();
    this.updateIrq();
    return v;
  }

  private transmit(byte: number): void {
    if (this.mcr & MCR_LOOP) this.pushRx(byte);
    else this.onTransmit?.(byte);
    // THR (and the shift register) are empty again at once.
    this.thrEmptyPending = true;
  }

  private pushRx(byte: number): void {
    if (this.rx.length >= this.capacity()) {
      this.lineErrors |= LSR_OE;
      return;
    }
    this.rx.push(byte);
    this.restartTimeout();
  }

  /** Move host input into the receive FIFO while there is room (not in loopback). */
  private pump(): void {
    if (this.mcr & MCR_LOOP) return;
    let moved = false;
    while (this.hostQueue.length > 0 && this.rx.length < this.capacity()) {
      this.rx.push(this.hostQueue.shift()!);
      moved = true;
    }
    if (moved) this.restartTimeout();
  }

  /** MSR bits 7-4: in loopback DCD=OUT2, RI=OUT1, DSR=DTR, CTS=RTS. */
  private effectiveLines(): number {
    if (!(this.mcr & MCR_LOOP)) return this.modemLines;
    const m = this.mcr;
    return ((m & 0x08) << 4) | ((m & 0x04) << 4) | ((m & 0x01) << 5) | ((m & 0x02) << 3);
  }

  private noteLineChange(before: number): void {
    const after = this.effectiveLines();
    const changed = before ^ after;
    if (changed & 0x10) this.modemDelta |= 0x01; // DCTS
    if (changed & 0x20) this.modemDelta |= 0x02; // DDSR
    if (before & 0x40 && !(after & 0x40)) this.modemDelta |= 0x04; // TERI: RI trailing edge
    if (changed & 0x80) this.modemDelta |= 0x08; // DDCD
  }

  /** The highest-priority pending interrupt (IIR bits 3-0). */
  private identify(): number {
    const ier = this.ier;
    if (ier & IER_RLS && this.lineErrors & 0x1e) return IIR.LINE_STATUS;
    if (ier & IER_RDA && this.rx.length >= this.triggerLevel()) return IIR.RX_DATA;
    if (ier & IER_RDA && this.timeoutPending && this.rx.length > 0) return IIR.RX_TIMEOUT;
    if (ier & IER_THRE && this.thrEmptyPending) return IIR.THR_EMPTY;
    if (ier & IER_MS && this.modemDelta) return IIR.MODEM_STATUS;
    return IIR.NONE;
  }

  private updateIrq(): void {
    const pending = this.identify() !== IIR.NONE;
    const wired = !this.gated || ((this.mcr & MCR_OUT2) !== 0 && (this.mcr & MCR_LOOP) === 0);
    this.irq.set(pending && wired);
  }

  /** One character time in ns at the current divisor and frame format. */
  private charNs(): number {
    const bits = 1 + 5 + (this.lcr & 3) + ((this.lcr & 0x08) >> 3) + (this.lcr & 0x04 ? 2 : 1);
    return Math.ceil((bits * Math.max(this.divisor, 1) * 1e9) / BASE_BAUD);
  }

  /** FIFO activity: the timeout is four character times from now, if data waits in FIFO mode. */
  private restartTimeout(): void {
    this.timeoutPending = false;
    this.rearmTimeout(this.fifoOn() && this.rx.length > 0 ? this.clock.now() + 4 * this.charNs() : -1);
  }

  private rearmTimeout(at: number): void {
    if (this.timer) this.clock.cancelTimer(this.timer);
    this.timer = 0;
    this.timeoutAt = at;
    if (at < 0) return;
    this.timer = this.clock.setTimer(at, () => {
      this.timer = 0;
      this.timeoutAt = -1;
      if (this.rx.length > 0) this.timeoutPending = true;
      this.updateIrq();
    });
  }

  saveState(): object {
    return {
      divisor: this.divisor, ier: this.ier, lcr: this.lcr, mcr: this.mcr, fcr: this.fcr, scr: this.scr,
      lineErrors: this.lineErrors, modemLines: this.modemLines, modemDelta: this.modemDelta,
      rx: Uint8Array.from(this.rx), hostQueue: Uint8Array.from(this.hostQueue),
      thrEmptyPending: this.thrEmptyPending, timeoutPending: this.timeoutPending, timeoutAt: this.timeoutAt,
      irqLevel: this.irq.level,
    };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const byte = (k: string): number => r.int(k, 0, 255);
    const s = {
      divisor: r.int("divisor", 0, 0xffff), ier: r.int("ier", 0, 0x0f), lcr: byte("lcr"), mcr: r.int("mcr", 0, 0x1f),
      fcr: byte("fcr") & 0xc9, scr: byte("scr"), lineErrors: r.int("lineErrors", 0, 0x1e), modemLines: byte("modemLines") & 0xf0,
      modemDelta: r.int("modemDelta", 0, 0x0f), rx: r.bytes("rx", -1, FIFO_SIZE), hostQueue: r.bytes("hostQueue", -1, 1 << 24),
      thrEmptyPending: r.bool("thrEmptyPending"), timeoutPending: r.bool("timeoutPending"), timeoutAt: r.num("timeoutAt", -1),
      irqLevel: r.bool("irqLevel"),
    };
    this.divisor = s.divisor;
    this.ier = s.ier;
    this.lcr = s.lcr;
    this.mcr = s.mcr;
    this.fcr = s.fcr;
    this.scr = s.scr;
    this.lineErrors = s.lineErrors;
    this.modemLines = s.modemLines;
    this.modemDelta = s.modemDelta;
    this.rx = [...s.rx];
    this.hostQueue = [...s.hostQueue];
    this.thrEmptyPending = s.thrEmptyPending;
    this.timeoutPending = s.timeoutPending;
    this.irq.restore(s.irqLevel);
    this.rearmTimeout(s.timeoutAt);
  }
}
