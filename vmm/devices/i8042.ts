// Keyboard controller (i8042) at ports 0x60 (data) and 0x64 (status / command), with a minimal
// PS/2 keyboard behind it and an empty aux (mouse) port.
//
// Enough for Linux's i8042 and atkbd probes: controller self test (0xAA → 0x55), interface tests,
// the command byte, output port (A20, reset), aux loopback, keyboard reset/identify/LEDs. The
// aux port exists but has nothing attached: bytes sent to it (0xD4) come back as 0xFE with the
// timeout status bit, so a mouse probe fails at once. A pulse of the reset line (0xFE and the
// other 0xF0-0xFE commands with bit 0 clear) calls onReset. Host key bytes are delivered as given
// (set-1 codes when the guest keeps translation on).

import { A20Gate } from "./a20.js";
import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import type { IrqLine } from "./irq.js";
import { StateReader } from "./state.js";

const STATUS_OBF = 0x01;
const STATUS_SYS = 0x04;
const STATUS_CMD = 0x08;
const STATUS_UNLOCKED = 0x10;
const STATUS_AUX = 0x20;
const STATUS_TIMEOUT = 0x40;
const CTR_KBD_INT = 0x01;
const CTR_AUX_INT = 0x02;
const CTR_SYS = 0x04;
const CTR_KBD_DISABLE = 0x10;
const CTR_AUX_DISABLE = 0x20;
const CTR_XLATE = 0x40;
/** Queue entry flags above the data byte. */
const FROM_AUX = 0x100;
const TIMED_OUT = 0x200;
const ACK = 0xfa;

export class I8042 implements Device, BusHandler {
  readonly name = "i8042";
  /** Called when the guest pulses the CPU reset line. */
  onReset: (() => void) | null = null;
  /** Controller RAM; byte 0 is the command byte. */
  private ram: Uint8Array = new Uint8Array(32);
  /** Bytes waiting for the guest, head = output buffer; bit 8 = from aux, bit 9 = timeout. */
  private out: number[] = [];
  /** Last byte read (a read of an empty buffer returns it again). */
  private lastRead = 0;
  private pendingCommand = -1;
  private keyboardCommand = -1;
  private scanning = true;
  private outputPort = 0x03;
  private lastWasCommand = false;
  private keys: number[] = [];

  constructor(
    private readonly keyboardIrq: IrqLine,
    private readonly auxIrq: IrqLine,
    readonly a20: A20Gate = new A20Gate(),
  ) {
    this.reset();
  }

  attach(io: IoBus): void {
    io.register({ name: "i8042-data", base: 0x60, length: 1, sizes: 1, handler: this });
    io.register({ name: "i8042-command", base: 0x64, length: 1, sizes: 1, handler: this });
  }

  reset(): void {
    this.ram.fill(0);
    this.ram[0] = CTR_XLATE | CTR_SYS | CTR_KBD_INT;
    this.out = [];
    this.lastRead = 0;
    this.pendingCommand = -1;
    this.keyboardCommand = -1;
    this.scanning = true;
    this.lastWasCommand = false;
    this.setOutputPort(0x03);
    this.updateIrq();
  }

  /** Host key bytes (scancodes as the guest should see them). */
  keyboardInput(bytes: Iterable<number>): void {
    for (const b of bytes) this.keys.push(b & 0xff);
    this.refill();
    this.updateIrq();
  }

  /** The command byte (controller RAM 0). */
  get commandByte(): number {
    return this.ram[0];
  }

  read(port: number, _size: AccessSize): number {
    if (port === 0x64) return this.status();
    if (this.out.length > 0) this.lastRead = this.out.shift()! & 0xff;
    // OBF drops with the read; the next byte is a new edge on IRQ1/IRQ12.
    this.keyboardIrq.set(false);
    this.auxIrq.set(false);
    this.refill();
    this.updateIrq();
    return this.lastRead;
  }

  write(port: number, _size: AccessSize, value: number): void {
    if (port === 0x64) {
      this.lastWasCommand = true;
      this.pendingCommand = -1;
      this.command(value);
    } else {
      this.lastWasCommand = false;
      const cmd = this.pendingCommand;
      this.pendingCommand = -1;
      if (cmd >= 0) this.commandData(cmd, value);
      else this.keyboardByte(value);
    }
    this.refill();
    this.updateIrq();
  }

  private status(): number {
    const head = this.out.length > 0 ? this.out[0] : -1;
    let s = STATUS_UNLOCKED | (this.ram[0] & CTR_SYS ? STATUS_SYS : 0) | (this.lastWasCommand ? STATUS_CMD : 0);
    if (head >= 0) {
      s |= STATUS_OBF;
      if (head & FROM_AUX) s |= STATUS_AUX;
      if (head & TIMED_OUT) s |= STATUS_TIMEOUT;
    }
    return s;
  }

  private reply(byte: number, flags = 0): void {
    this.out.push((byte & 0xff) | flags);
  }

  private command(cmd: number): void {
    if (cmd >= 0x20 && cmd <= 0x3f) {
      this.reply(this.ram[cmd & 0x1f]);
      return;
    }
    if ((cmd >= 0x60 && cmd <= 0x7f) || (cmd >= 0xd1 && cmd <= 0xd4)) {
      this.pendingCommand = cmd;
      return;
    }
    if (cmd >= 0xf0) {
      if (!(cmd & 1)) this.onReset?.();
      return;
    }
    switch (cmd) {
      case 0xa7: // disable aux interface
        this.ram[0] |= CTR_AUX_DISABLE;
        break;
      case 0xa8:
        this.ram[0] &= ~CTR_AUX_DISABLE;
        break;
      case 0xa9: // aux interface test: no error
      case 0xab: // keyboard interface test: no error
        this.reply(0x00);
        break;
      case 0xaa: // controller self test
        this.ram[0] |= CTR_SYS;
        this.reply(0x55);
        break;
      case 0xad:
        this.ram[0] |= CTR_KBD_DISABLE;
        break;
      case 0xae:
        this.ram[0] &= ~CTR_KBD_DISABLE;
        break;
      case 0xc0: // input port: keyboard not inhibited
        this.reply(0x80);
        break;
      case 0xd0: {
        const head = this.out.length > 0 ? this.out[0] : -1;
        const obf = head < 0 ? 0 : head & FROM_AUX ? 0x20 : 0x10;
        this.reply((this.outputPort & 0xcf) | obf);
        break;
      }
      case 0xdd:
        this.setOutputPort(this.outputPort & ~2);
        break;
      case 0xdf:
        this.setOutputPort(this.outputPort | 2);
        break;
      case 0xe0: // test inputs
        this.reply(0x00);
        break;
      default: // unknown commands are ignored
        break;
    }
  }

  private commandData(cmd: number, v: number): void {
    if (cmd >= 0x60 && cmd <= 0x7f) {
      this.ram[cmd & 0x1f] = v;
      return;
    }
    switch (cmd) {
      case 0xd1:
        this.setOutputPort(v);
        if (!(v & 1)) this.onReset?.();
        break;
      case 0xd2:
        this.reply(v);
        break;
      case 0xd3:
        this.reply(v, FROM_AUX);
        break;
      default: // 0xd4: to the aux device, of which there is none
        this.reply(0xfe, FROM_AUX | TIMED_OUT);
    }
  }

  private setOutputPort(v: number): void {
    this.outputPort = v | 1; // the reset line is a pulse, it reads back high
    this.a20.set("keyboard-controller", (v & 2) !== 0);
  }

  /** A byte for the keyboard itself. */
  private keyboardByte(v: number): void {
    const pending = this.keyboardCommand;
    this.keyboardCommand = -1;
    if (pending >= 0) {
      this.reply(ACK);
      if (pending === 0xf0 && v === 0) this.reply(this.ram[0] & CTR_XLATE ? 0x41 : 0x02);
      return;
    }
    switch (v) {
      case 0xed: // LEDs, an argument follows
      case 0xf0: // scancode set
      case 0xf3: // typematic rate
        this.keyboardCommand = v;
        this.reply(ACK);
        break;
      case 0xee:
        this.reply(0xee);
        break;
      case 0xf2: // identify: MF2 keyboard, the second byte as translation shows it
        this.reply(ACK);
        this.reply(0xab);
        this.reply(this.ram[0] & CTR_XLATE ? 0x41 : 0x83);
        break;
      case 0xf4:
        this.scanning = true;
        this.reply(ACK);
        break;
      case 0xf5:
        this.scanning = false;
        this.reply(ACK);
        break;
      case 0xf6:
        this.scanning = true;
        this.reply(ACK);
        break;
      case 0xff: // reset and self test passed
        this.scanning = true;
        this.reply(ACK);
        this.reply(0xaa);
        break;
      default:
        this.reply(v >= 0xf7 ? ACK : 0xfe);
    }
  }

  /** Load host key bytes into the output buffer when it is free and the keyboard may send. */
  private refill(): void {
    if (this.out.length === 0 && this.keys.length > 0 && this.scanning && !(this.ram[0] & CTR_KBD_DISABLE)) {
      this.out.push(this.keys.shift()!);
    }
  }

  private updateIrq(): void {
    const head = this.out.length > 0 ? this.out[0] : -1;
    this.keyboardIrq.set(head >= 0 && !(head & FROM_AUX) && (this.ram[0] & CTR_KBD_INT) !== 0);
    this.auxIrq.set(head >= 0 && (head & FROM_AUX) !== 0 && (this.ram[0] & CTR_AUX_INT) !== 0);
  }

  saveState(): object {
    return {
      ram: new Uint8Array(this.ram), out: this.out.slice(), lastRead: this.lastRead, pendingCommand: this.pendingCommand,
      keyboardCommand: this.keyboardCommand, scanning: this.scanning, outputPort: this.outputPort,
      lastWasCommand: this.lastWasCommand, keys: Uint8Array.from(this.keys),
      keyboardIrq: this.keyboardIrq.level, auxIrq: this.auxIrq.level,
    };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const ram = r.bytes("ram", 32);
    const out = r.intList("out", 1 << 16, 0, 0x3ff);
    const lastRead = r.int("lastRead", 0, 255);
    const pendingCommand = r.int("pendingCommand", -1, 255);
    const keyboardCommand = r.int("keyboardCommand", -1, 255);
    const scanning = r.bool("scanning");
    const outputPort = r.int("outputPort", 0, 255);
    const lastWasCommand = r.bool("lastWasCommand");
    const keys = r.bytes("keys", -1, 1 << 24);
    const keyboardIrq = r.bool("keyboardIrq");
    const auxIrq = r.bool("auxIrq");
    this.ram = ram;
    this.out = out;
    this.lastRead = lastRead;
    this.pendingCommand = pendingCommand;
    this.keyboardCommand = keyboardCommand;
    this.scanning = scanning;
    this.lastWasCommand = lastWasCommand;
    this.keys = [...keys];
    this.setOutputPort(outputPort);
    this.keyboardIrq.restore(keyboardIrq);
    this.auxIrq.restore(auxIrq);
  }
}
