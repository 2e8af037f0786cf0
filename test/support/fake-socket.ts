// A stand-in for the TCP socket of an incoming migration: tests emit the stream into it as data
// events, in pieces of their choosing, and read what the destination sent back at its end.
import { EventEmitter } from "node:events";
import { receiveMigration, type IncomingOptions, type IncomingVm } from "../../bin/migrate.js";

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

/**
 * Feed `bytes` to an incoming migration (receiveMigration with `options`) in pieces of the given
 * sizes, then close: what it arrived at (the VM, its snapshot reader closed, or what it threw) and
 * what it sent back.
 */
export async function feed(bytes: Uint8Array, cuts: number[], options: IncomingOptions = {}): Promise<{ error: unknown; vm: IncomingVm | null; sent: Uint8Array | null }> {
  const socket = new FakeSocket();
  const done = receiveMigration(socket, options).vm.then(
    (vm) => {
      vm.vm.reader.close();
      return { error: null, vm };
    },
    (error: unknown) => ({ error, vm: null }),
  );
  socket.emitInPieces(bytes, cuts);
  socket.emit("close");
  return { ...(await done), sent: socket.sent };
}
