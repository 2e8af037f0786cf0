// Console driver: connects the guest's serial line to the host. Output arrives through its portal;
// input arrives from the host as an interrupt (GSI), and a thread of the driver forwards it to the
// VMM's input portal. The host side (a terminal, pipes, a test) is a ConsoleHost given at start.

import { Status, packBytes, unpackBytes, type GlobalEntry, type LocalEntry, type Utcb } from "../../kernel/index.js";
import { ConsoleSel } from "./protocol.js";

/** What the driver drives: written to by channel, read from when the host raised the GSI. */
export interface ConsoleHost {
  write(channel: number, bytes: Uint8Array): void;
  /** Bytes typed since the last call (empty when none). */
  takeInput(): Uint8Array;
}

/** The output portal's handler. */
export function consoleOutput(host: ConsoleHost): LocalEntry {
  return () => (utcb: Utcb) => {
    const channel = utcb.words[0];
    const n = Math.min(utcb.words[1], 4 * Math.max(0, utcb.untyped - 2));
    host.write(channel, unpackBytes(utcb.words, 2, n));
    utcb.set(Status.SUCCESS);
  };
}

/** The input thread: wait for the host's interrupt, then pass what was typed to the VMM. */
export function consoleInput(host: ConsoleHost): GlobalEntry {
  return (sys) =>
    (function* () {
      let pending = new Uint8Array(0);
      for (;;) {
        const s: Status = yield sys.wait.down(ConsoleSel.INPUT_IRQ);
        if (s !== Status.SUCCESS) return;
        const typed = host.takeInput();
        const all = new Uint8Array(pending.length + typed.length);
        all.set(pending);
        all.set(typed, pending.length);
        pending = all;
        while (pending.length > 0) {
          const chunk = pending.subarray(0, 1024);
          sys.utcb.words[0] = chunk.length;
          sys.utcb.untyped = 1 + packBytes(chunk, sys.utcb.words, 1);
          // Until the VMM registered its input portal, keep the bytes.
          if (sys.call(ConsoleSel.VMM_INPUT) !== Status.SUCCESS) break;
          pending = pending.slice(chunk.length);
        }
      }
    })();
}
