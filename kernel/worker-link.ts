// A portal call carried into a worker thread, and the worker's hypercalls carried back.
//
// A component may run in a worker (hard isolation: its own JS heap, its own thread that can be
// killed). The kernel stays on the main thread: there, the component's EC runs a stand-in handler
// that puts the message into a shared mailbox and waits on it (Atomics.wait). The worker takes
// it, runs the real handler, and may ask the main side for hypercalls meanwhile (revoke, reading
// and writing memory it holds): the main side makes them with the EC's own syscall handle, so
// capability checks stay in the kernel. The worker never sees host memory it was not handed a
// copy of. Messages are msgpack (see ../shared/DESIGN.md, rule 6).
//
// The mailbox is one SharedArrayBuffer: a state word, a length word, and the payload.

import { Encoder, decode } from "@msgpack/msgpack";

/** Whose turn it is (word 0). */
const enum Turn {
  /** Nothing in flight: the worker waits for a call. */
  IDLE = 0,
  /** Main → worker: a call. */
  CALL = 1,
  /** Worker → main: a hypercall of the call in progress. */
  HYPERCALL = 2,
  /** Main → worker: the hypercall's result. */
  RESULT = 3,
  /** Worker → main: the call's reply. */
  REPLY = 4,
  /** Worker → main: the handler threw; the payload is the message. */
  CRASH = 5,
  /** Worker → main: the worker is up (before its first call). */
  READY = 6,
}

const HEADER = 8;
/** Payload bytes of a mailbox: a message and up to 1 MiB of data. */
export const MAILBOX_PAYLOAD = (1 << 20) + 64 * 1024;

/** What the main side's wait for a reply ended in. */
export type CallOutcome<R> = { kind: "reply"; reply: R } | { kind: "crash"; message: string } | { kind: "timeout" };

/** A new mailbox (give its buffer to the worker, e.g. as workerData). */
export function newMailbox(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER + MAILBOX_PAYLOAD);
}

class Mailbox {
  private readonly state: Int32Array;
  private readonly bytes: Uint8Array;
  /** Encodes into a buffer of its own that it reuses (the bytes are copied into the mailbox at once). */
  private readonly encoder = new Encoder();

  constructor(buffer: SharedArrayBuffer) {
    this.state = new Int32Array(buffer, 0, 2);
    this.bytes = new Uint8Array(buffer, HEADER);
  }

  put(turn: Turn, value: unknown): void {
    const data = this.encoder.encodeSharedRef(value);
    if (data.length > this.bytes.length) throw new RangeError(`worker message of ${data.length} bytes: a mailbox holds ${this.bytes.length}`);
    this.bytes.set(data);
    Atomics.store(this.state, 1, data.length);
    Atomics.store(this.state, 0, turn);
    Atomics.notify(this.state, 0);
  }

  /** The message in the mailbox (decoded from a copy: the next put may overwrite the payload). */
  take(): unknown {
    return decode(this.bytes.slice(0, Atomics.load(this.state, 1)));
  }

  turn(): Turn {
    return Atomics.load(this.state, 0);
  }

  /** Nothing in flight any more. */
  clear(): void {
    Atomics.store(this.state, 0, Turn.IDLE);
  }

  /** Wait until it is `turn`'s turn. */
  waitFor(turn: Turn): void {
    for (let now = this.turn(); now !== turn; now = this.turn()) Atomics.wait(this.state, 0, now);
  }

  /** Wait until the turn is no longer `from`, at most `ms` (Infinity: no limit); the turn then. */
  waitWhile(from: Turn, ms: number): Turn {
    const deadline = performance.now() + ms;
    for (;;) {
      const now = this.turn();
      if (now !== from) return now;
      const left = deadline - performance.now();
      if (left <= 0) return now;
      Atomics.wait(this.state, 0, from, Math.min(left, 1000));
    }
  }
}

/** The main side of a mailbox: calls into the worker, serving its hypercalls meanwhile. */
export class WorkerLink {
  private readonly box: Mailbox;

  constructor(buffer: SharedArrayBuffer) {
    this.box = new Mailbox(buffer);
  }

  /** Wait (at most `ms`) for the worker to say it is up. */
  waitReady(ms: number): boolean {
    return this.box.waitWhile(Turn.IDLE, ms) === Turn.READY;
  }

  /**
   * Send `message` and wait for the reply, answering each hypercall with `serve`. Gives up when
   * the worker is silent for `watchdogMs` (a hypercall restarts the count).
   */
  call<R>(message: unknown, serve: (hypercall: unknown) => unknown, watchdogMs: number): CallOutcome<R> {
    this.box.put(Turn.CALL, message);
    let waitingOn = Turn.CALL;
    for (;;) {
      const turn = this.box.waitWhile(waitingOn, watchdogMs);
      if (turn === waitingOn) return { kind: "timeout" };
      if (turn === Turn.HYPERCALL) {
        let result: unknown;
        try {
          result = serve(this.box.take());
        } catch (error) {
          // The worker waits for an answer it will not get: it is as good as crashed.
          return { kind: "crash", message: `serving its hypercall: ${error instanceof Error ? error.message : String(error)}` };
        }
        this.box.put(Turn.RESULT, result);
        waitingOn = Turn.RESULT;
        continue;
      }
      const payload = this.box.take();
      this.box.clear();
      if (turn === Turn.REPLY) return { kind: "reply", reply: payload as R };
      return { kind: "crash", message: String(payload) };
    }
  }
}

/** The worker side: say it is up, then serve calls forever (this thread does nothing else). */
export function serveLink(buffer: SharedArrayBuffer, handle: (message: unknown, hypercall: (request: unknown) => unknown) => unknown): never {
  const box = new Mailbox(buffer);
  const hypercall = (request: unknown): unknown => {
    box.put(Turn.HYPERCALL, request);
    box.waitWhile(Turn.HYPERCALL, Infinity);
    return box.take();
  };
  box.put(Turn.READY, null);
  for (;;) {
    box.waitFor(Turn.CALL);
    let reply: unknown;
    try {
      reply = handle(box.take(), hypercall);
    } catch (error) {
      box.put(Turn.CRASH, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
      continue;
    }
    box.put(Turn.REPLY, reply);
  }
}
