// I/O APIC (82093AA-style, MMIO at 0xfec00000): 24 inputs, a redirection table, remote IRR.
//
// IOREGSEL at offset 0x00 selects a register, IOWIN at 0x10 reads or writes it: 0 = ID,
// 1 = version, 2 = arbitration, 0x10 + 2n / 0x11 + 2n = low / high half of redirection entry n.
// An edge-triggered input sends a message on each rising edge while unmasked; a level-triggered
// input sends one while asserted and unmasked with remote IRR clear, and sets remote IRR until
// the local APIC's EOI for that vector. Input levels are logical (asserted = true): the polarity
// bit is kept for the guest but does not invert, as interrupt lines here carry assertion, not
// voltage.

import type { AccessSize, BusHandler, Device, MmioBus } from "./bus.js";
import type { IrqSink } from "./irq.js";
import type { ApicMessageTarget } from "./lapic.js";
import { StateReader } from "./state.js";

export const IOAPIC_BASE = 0xfec00000;
export const IOAPIC_PINS = 24;

const MASKED = 0x10000;
const LEVEL = 0x8000;
const REMOTE_IRR = 0x4000;
/** Guest-writable bits of an entry's low half (vector, mode, dest mode, polarity, trigger, mask). */
const LOW_WRITABLE = 0x1afff;

export class IoApic implements Device, BusHandler, IrqSink {
  readonly name = "ioapic";
  private select = 0;
  private id = 0;
  private low = new Uint32Array(IOAPIC_PINS);
  private high = new Uint32Array(IOAPIC_PINS);
  /** Asserted inputs, one bit per pin. */
  private inputs = 0;

  constructor(private readonly target: ApicMessageTarget, readonly base = IOAPIC_BASE) {
    this.reset();
  }

  attach(mmio: MmioBus): void {
    mmio.register({ name: this.name, base: this.base, length: 0x1000, sizes: 4, handler: this });
  }

  reset(): void {
    this.select = 0;
    this.id = 0;
    this.low.fill(MASKED);
    this.high.fill(0);
  }

  /** Redirection entry `pin` as a (low, high) pair, for tests and traces. */
  entry(pin: number): [number, number] {
    return [this.low[pin], this.high[pin]];
  }

  setIrq(pin: number, level: boolean): void {
    if (pin < 0 || pin >= IOAPIC_PINS) return;
    const bit = 1 << pin;
    const rising = level && !(this.inputs & bit);
    if (level) this.inputs |= bit;
    else this.inputs &= ~bit;
    if (this.low[pin] & LEVEL) this.service(pin);
    else if (rising) this.send(pin);
  }

  /** The local APIC's EOI of a level-triggered `vector`: clear remote IRR and resend if still asserted. */
  endOfInterrupt(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      if ((this.low[pin] & 0xff) === vector && this.low[pin] & REMOTE_IRR) {
        this.low[pin] &= ~REMOTE_IRR;
        this.service(pin);
      }
    }
  }

  read(addr: number, _size: AccessSize): number {
    const off = addr - this.base;
    if (off === 0x00) return this.select;
    if (off !== 0x10) return 0;
    const reg = this.select;
    if (reg === 0) return (this.id << 24) >>> 0;
    if (reg === 1) return ((IOAPIC_PINS - 1) << 16) | 0x11;
    if (reg === 2) return (this.id << 24) >>> 0;
    const pin = (reg - 0x10) >> 1;
    if (reg < 0x10 || pin >= IOAPIC_PINS) return 0;
    return reg & 1 ? this.high[pin] : this.low[pin];
  }

  write(addr: number, _size: AccessSize, value: number): void {
    const off = addr - this.base;
    if (off === 0x00) {
      this.select = value & 0xff;
      return;
    }
    if (off !== 0x10) return;
    const reg = this.select;
    if (reg === 0) {
      this.id = (value >>> 24) & 0x0f;
      return;
    }
    const pin = (reg - 0x10) >> 1;
    if (reg < 0x10 || pin >= IOAPIC_PINS) return;
    if (reg & 1) {
      this.high[pin] = (value & 0xff000000) >>> 0;
      return;
    }
    this.low[pin] = ((this.low[pin] & ~LOW_WRITABLE) | (value & LOW_WRITABLE)) >>> 0;
    if (!(this.low[pin] & LEVEL)) this.low[pin] &= ~REMOTE_IRR;
    this.service(pin);
  }

  /** Level-triggered pins: send if asserted, unmasked and not awaiting EOI. */
  private service(pin: number): void {
    const low = this.low[pin];
    if (!(low & LEVEL) || low & (MASKED | REMOTE_IRR) || !(this.inputs & (1 << pin))) return;
    this.low[pin] |= REMOTE_IRR;
    this.send(pin);
  }

  private send(pin: number): void {
    const low = this.low[pin];
    if (low & MASKED) return;
    this.target.receiveMessage({
      vector: low & 0xff,
      deliveryMode: (low >> 8) & 7,
      levelTriggered: (low & LEVEL) !== 0,
      destination: this.high[pin] >>> 24,
      logical: (low & 0x800) !== 0,
    });
  }

  saveState(): object {
    return { select: this.select, id: this.id, low: [...this.low], high: [...this.high], inputs: this.inputs };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const select = r.int("select", 0, 255);
    const id = r.int("id", 0, 15);
    const low = r.ints("low", IOAPIC_PINS, 0, 0xffffffff);
    const high = r.ints("high", IOAPIC_PINS, 0, 0xffffffff);
    const inputs = r.int("inputs", 0, 2 ** IOAPIC_PINS - 1);
    this.select = select;
    this.id = id;
    this.low.set(low);
    this.high.set(high);
    this.inputs = inputs;
  }
}
