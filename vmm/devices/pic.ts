// Programmable interrupt controller pair (8259A master + slave cascaded on IRQ2, with ELCR).
//
// Ports: master 0x20/0x21, slave 0xa0/0xa1, edge/level control 0x4d0/0x4d1. Inputs are pins
// 0-15 (IrqSink); pin 2 is the cascade and ignores outside drivers. The vCPU side is
// hasInterrupt() (the INTR pin) and acknowledge() (the INTA cycle, returning the vector).

import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import type { IrqSink } from "./irq.js";
import { StateReader } from "./state.js";

/** Anything that raises INTR and answers INTA with a vector (the PIC pair, a local APIC). */
export interface InterruptController {
  hasInterrupt(): boolean;
  /** The INTA cycle: the vector to deliver; marks it in service. */
  acknowledge(): number;
}

/** Trigger-mode bits that may be level (ELCR): IRQ0-2 and IRQ8, IRQ13 are always edge. */
const ELCR_MASK = [0xf8, 0xde];

/** State of one 8259A, all bit masks over its eight inputs. */
interface ChipState {
  irr: number;
  isr: number;
  imr: number;
  /** Current level of each input (edge detection). */
  inputs: number;
  /** Level-triggered inputs (ELCR). */
  elcr: number;
  /** ICW2: vector of input 0. */
  vectorBase: number;
  /** 0 = operational; 2, 3, 4 = expecting that ICW next. */
  initStep: number;
  needIcw4: boolean;
  single: boolean;
  icw3: number;
  autoEoi: boolean;
  rotateOnAutoEoi: boolean;
  /** The input with the highest priority (rotation). */
  priorityBase: number;
  readIsr: boolean;
  poll: boolean;
  specialMask: boolean;
  specialFullyNested: boolean;
}

function chipReset(elcr: number): ChipState {
  return {
    irr: 0, isr: 0, imr: 0, inputs: 0, elcr, vectorBase: 0, initStep: 0, needIcw4: false, single: false,
    icw3: 0, autoEoi: false, rotateOnAutoEoi: false, priorityBase: 0, readIsr: false, poll: false,
    specialMask: false, specialFullyNested: false,
  };
}

/** Priority rank (0 = highest) of the best input in `mask`, or 8 if none. */
function bestRank(c: ChipState, mask: number): number {
  for (let rank = 0; rank < 8; rank++) {
    if (mask & (1 << ((rank + c.priorityBase) & 7))) return rank;
  }
  return 8;
}

/** The input this chip would signal on INT now, or -1. */
function pendingInput(c: ChipState, isMaster: boolean): number {
  const rank = bestRank(c, c.irr & ~c.imr);
  if (rank === 8) return -1;
  let inService = c.isr;
  if (c.specialMask) inService &= ~c.imr;
  if (isMaster && c.specialFullyNested) inService &= ~(1 << 2);
  return rank < bestRank(c, inService) ? (rank + c.priorityBase) & 7 : -1;
}

function setInput(c: ChipState, input: number, level: boolean): void {
  const bit = 1 << input;
  const wasHigh = (c.inputs & bit) !== 0;
  if (level) c.inputs |= bit;
  else c.inputs &= ~bit;
  if (c.elcr & bit) {
    if (level) c.irr |= bit;
    else c.irr &= ~bit;
  } else if (level && !wasHigh) {
    c.irr |= bit;
  }
}

/** The INTA (or poll) acknowledge of `input` on one chip. */
function acknowledgeInput(c: ChipState, input: number): void {
  const bit = 1 << input;
  if (!(c.elcr & bit)) c.irr &= ~bit;
  if (c.autoEoi) {
    if (c.rotateOnAutoEoi) c.priorityBase = (input + 1) & 7;
  } else {
    c.isr |= bit;
  }
}

function writeCommand(c: ChipState, v: number): void {
  if (v & 0x10) {
    // ICW1: start initialisation. IMR and ISR clear; edge inputs need a fresh rising edge.
    c.initStep = 2;
    c.needIcw4 = (v & 1) !== 0;
    c.single = (v & 2) !== 0;
    c.imr = 0;
    c.isr = 0;
    c.irr = c.inputs & c.elcr;
    c.priorityBase = 0;
    c.readIsr = false;
    c.poll = false;
    c.specialMask = false;
    c.autoEoi = false;
    c.rotateOnAutoEoi = false;
    c.specialFullyNested = false;
  } else if (v & 0x08) {
    // OCW3
    if (v & 0x04) c.poll = true;
    if (v & 0x02) c.readIsr = (v & 1) !== 0;
    if (v & 0x40) c.specialMask = (v & 0x20) !== 0;
  } else {
    // OCW2: bits 7-5 are R, SL, EOI; bits 2-0 the level for SL commands.
    const level = v & 7;
    switch (v >> 5) {
      case 0b001: // non-specific EOI
      case 0b101: { // rotate on non-specific EOI
        const rank = bestRank(c, c.isr);
        if (rank === 8) break;
        const input = (rank + c.priorityBase) & 7;
        c.isr &= ~(1 << input);
        if (v & 0x80) c.priorityBase = (input + 1) & 7;
        break;
      }
      case 0b011: // specific EOI
        c.isr &= ~(1 << level);
        break;
      case 0b111: // rotate on specific EOI
        c.isr &= ~(1 << level);
        c.priorityBase = (level + 1) & 7;
        break;
      case 0b110: // set priority: `level` becomes the lowest
        c.priorityBase = (level + 1) & 7;
        break;
      case 0b100:
        c.rotateOnAutoEoi = true;
        break;
      case 0b000:
        c.rotateOnAutoEoi = false;
        break;
      default: // 0b010: no operation
        break;
    }
  }
}

function writeData(c: ChipState, v: number): void {
  switch (c.initStep) {
    case 2:
      c.vectorBase = v & 0xf8;
      c.initStep = !c.single ? 3 : c.needIcw4 ? 4 : 0;
      break;
    case 3:
      c.icw3 = v;
      c.initStep = c.needIcw4 ? 4 : 0;
      break;
    case 4:
      c.autoEoi = (v & 2) !== 0;
      c.specialFullyNested = (v & 0x10) !== 0;
      c.initStep = 0;
      break;
    default:
      c.imr = v;
  }
}

export class PicPair implements Device, IrqSink, BusHandler, InterruptController {
  readonly name = "pic";
  private chips: [ChipState, ChipState];
  private intr = false;
  /** Told when the INTR output changes (the VMM recalls a running vCPU on a rise). */
  onIntr: ((level: boolean) => void) | null = null;

  constructor() {
    this.chips = [chipReset(0), chipReset(0)];
  }

  /** Claim ports 0x20-0x21, 0xa0-0xa1 and 0x4d0-0x4d1. */
  attach(io: IoBus): void {
    io.register({ name: "pic-master", base: 0x20, length: 2, sizes: 1, handler: this });
    io.register({ name: "pic-slave", base: 0xa0, length: 2, sizes: 1, handler: this });
    io.register({ name: "pic-elcr", base: 0x4d0, length: 2, sizes: 1, handler: this });
  }

  reset(): void {
    const inputs = [this.chips[0].inputs, this.chips[1].inputs];
    this.chips = [chipReset(0), chipReset(0)];
    this.chips[0].inputs = inputs[0];
    this.chips[1].inputs = inputs[1];
    this.update();
  }

  setIrq(pin: number, level: boolean): void {
    if (pin === 2 || pin < 0 || pin > 15) return;
    setInput(this.chips[pin >> 3], pin & 7, level);
    this.update();
  }

  hasInterrupt(): boolean {
    return this.intr;
  }

  acknowledge(): number {
    const [master, slave] = this.chips;
    const input = pendingInput(master, true);
    let vector: number;
    if (input < 0) {
      vector = master.vectorBase + 7; // spurious IRQ7: nothing goes in service
    } else {
      acknowledgeInput(master, input);
      if (input === 2 && !master.single) {
        const slaveInput = pendingInput(slave, false);
        if (slaveInput < 0) vector = slave.vectorBase + 7; // spurious IRQ15
        else {
          acknowledgeInput(slave, slaveInput);
          vector = slave.vectorBase + slaveInput;
        }
      } else {
        vector = master.vectorBase + input;
      }
    }
    this.update();
    return vector;
  }

  /** Interrupt Request Register of both chips (slave in bits 15-8). */
  get irr(): number {
    return this.chips[0].irr | (this.chips[1].irr << 8);
  }

  /** In-Service Register of both chips (slave in bits 15-8). */
  get isr(): number {
    return this.chips[0].isr | (this.chips[1].isr << 8);
  }

  /** Interrupt Mask Register of both chips (slave in bits 15-8). */
  get imr(): number {
    return this.chips[0].imr | (this.chips[1].imr << 8);
  }

  read(port: number, _size: AccessSize): number {
    if (port === 0x4d0 || port === 0x4d1) return this.chips[port & 1].elcr;
    const c = this.chips[port >= 0xa0 ? 1 : 0];
    if (c.poll) {
      c.poll = false;
      const input = pendingInput(c, c === this.chips[0]);
      if (input < 0) return 0;
      acknowledgeInput(c, input);
      this.update();
      return 0x80 | input;
    }
    if (port & 1) return c.imr;
    return c.readIsr ? c.isr : c.irr;
  }

  write(port: number, _size: AccessSize, value: number): void {
    if (port === 0x4d0 || port === 0x4d1) {
      const c = this.chips[port & 1];
      c.elcr = value & ELCR_MASK[port & 1];
      c.irr = (c.irr & ~c.elcr) | (c.inputs & c.elcr);
    } else {
      const c = this.chips[port >= 0xa0 ? 1 : 0];
      if (port & 1) writeData(c, value);
      else writeCommand(c, value);
    }
    this.update();
  }

  /** Propagate the slave's INT to master input 2 and the master's INT to INTR. */
  private update(): void {
    const [master, slave] = this.chips;
    setInput(master, 2, pendingInput(slave, false) >= 0);
    const intr = pendingInput(master, true) >= 0;
    if (intr !== this.intr) {
      this.intr = intr;
      this.onIntr?.(intr);
    }
  }

  saveState(): object {
    return { chips: this.chips.map((c) => ({ ...c })), intr: this.intr };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, "pic");
    const chips = r.records("chips", 2).map((c, i) => readChip(c, ELCR_MASK[i]));
    const intr = r.bool("intr");
    this.chips = [chips[0], chips[1]];
    this.intr = intr;
  }
}

function readChip(r: StateReader, elcrMask: number): ChipState {
  const byte = (k: string): number => r.int(k, 0, 255);
  const c: ChipState = {
    irr: byte("irr"), isr: byte("isr"), imr: byte("imr"), inputs: byte("inputs"), elcr: byte("elcr") & elcrMask,
    vectorBase: byte("vectorBase") & 0xf8, initStep: r.int("initStep", 0, 4), needIcw4: r.bool("needIcw4"),
    single: r.bool("single"), icw3: byte("icw3"), autoEoi: r.bool("autoEoi"), rotateOnAutoEoi: r.bool("rotateOnAutoEoi"),
    priorityBase: r.int("priorityBase", 0, 7), readIsr: r.bool("readIsr"), poll: r.bool("poll"),
    specialMask: r.bool("specialMask"), specialFullyNested: r.bool("specialFullyNested"),
  };
  return c;
}
