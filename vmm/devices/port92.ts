// System control port A (port 0x92): fast A20 (bit 1) and fast reset (bit 0, on a 0 → 1 write).

import { A20Gate } from "./a20.js";
import type { AccessSize, BusHandler, Device, IoBus } from "./bus.js";
import { StateReader } from "./state.js";

export class Port92 implements Device, BusHandler {
  readonly name = "port92";
  private value = 0;
  /** Called when the guest requests a reset through bit 0. */
  onReset: (() => void) | null = null;

  constructor(readonly a20: A20Gate = new A20Gate()) {}

  attach(io: IoBus): void {
    io.register({ name: this.name, base: 0x92, length: 1, sizes: 1, handler: this });
  }

  /** Fast A20 bit as last written. */
  get fastA20(): boolean {
    return (this.value & 2) !== 0;
  }

  reset(): void {
    this.value = 0;
    this.a20.set("fast", false);
  }

  read(_port: number, _size: AccessSize): number {
    return this.value;
  }

  write(_port: number, _size: AccessSize, v: number): void {
    const rising = v & 1 & ~this.value;
    this.value = v & 0xff;
    this.a20.set("fast", (v & 2) !== 0);
    if (rising) this.onReset?.();
  }

  saveState(): object {
    return { value: this.value };
  }

  loadState(state: unknown): void {
    const value = new StateReader(state, this.name).int("value", 0, 255);
    this.value = value;
    this.a20.set("fast", (value & 2) !== 0);
  }
}
