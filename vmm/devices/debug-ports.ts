// Debug ports for bare test kernels: QEMU's isa-debug-exit (default port 0xf4) and the 0xe9
// debug console. Neither has state worth a snapshot beyond its configuration.

import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import { StateReader } from "./state.js";

/** A write of v ends the VM with status (v << 1) | 1, as QEMU's isa-debug-exit does. */
export class DebugExit implements Device, BusHandler {
  readonly name = "debug-exit";

  /** `onExit` receives the exit status. `length` is the port range size (QEMU's iosize). */
  constructor(
    private readonly onExit: (status: number) => void,
    readonly base = 0xf4,
    readonly length = 4,
  ) {}

  attach(io: IoBus): void {
    io.register({ name: this.name, base: this.base, length: this.length, sizes: 1 | 2 | 4, handler: this });
  }

  reset(): void {}

  read(_port: number, _size: AccessSize): number {
    return 0;
  }

  write(_port: number, _size: AccessSize, value: number): void {
    this.onExit(((value << 1) | 1) >>> 0);
  }

  saveState(): object {
    return {};
  }

  loadState(state: unknown): void {
    new StateReader(state, this.name);
  }
}

/** Port 0xe9: bytes written go to `sink`; a read returns 0xe9 so guests can detect the port. */
export class DebugConsole implements Device, BusHandler {
  readonly name = "debugcon";

  constructor(private readonly sink: (byte: number) => void, readonly base = 0xe9) {}

  attach(io: IoBus): void {
    io.register({ name: this.name, base: this.base, length: 1, sizes: 1, handler: this });
  }

  reset(): void {}

  read(_port: number, _size: AccessSize): number {
    return 0xe9;
  }

  write(_port: number, _size: AccessSize, value: number): void {
    this.sink(value & 0xff);
  }

  saveState(): object {
    return {};
  }

  loadState(state: unknown): void {
    new StateReader(state, this.name);
  }
}
