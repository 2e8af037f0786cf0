// Helpers shared by the device tests: a recording interrupt sink and a msgpack round trip.

import { decode, encode } from "@msgpack/msgpack";
import type { IrqSink } from "./irq.js";

/** Records the level of each input pin and counts rising edges. */
export class RecordingSink implements IrqSink {
  readonly levels = new Map<number, boolean>();
  readonly rises = new Map<number, number>();

  setIrq(pin: number, level: boolean): void {
    if (level && !this.levels.get(pin)) this.rises.set(pin, (this.rises.get(pin) ?? 0) + 1);
    this.levels.set(pin, level);
  }

  level(pin = 0): boolean {
    return this.levels.get(pin) ?? false;
  }

  risesOf(pin = 0): number {
    return this.rises.get(pin) ?? 0;
  }
}

/** A state record as it comes back from a snapshot: through msgpack and back. */
export function throughMsgpack(state: object): unknown {
  return decode(encode(state));
}
