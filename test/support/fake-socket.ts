// A stand-in for the TCP socket of an incoming migration: tests emit the stream into it as data
// events, in pieces of their choosing, and read what the destination sent back at its end.
import { EventEmitter } from "node:events";

export class FakeSocket extends EventEmitter {
  sent: Uint8Array | null = null;
  end(bytes: Uint8Array): void {
    this.sent = bytes;
  }

  /** `bytes` as data events of the sizes in `cuts`, and the rest in one more. */
  emitInPieces(bytes: Uint8Array, cuts: readonly number[]): void {
    let at = 0;
    for (const n of cuts) {
      if (at >= bytes.length) break;
      this.emit("data", Buffer.from(bytes.subarray(at, at + n)));
      at += n;
    }
    if (at < bytes.length) this.emit("data", Buffer.from(bytes.subarray(at)));
  }
}
