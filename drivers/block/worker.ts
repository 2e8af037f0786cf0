// The block driver in a worker thread of its own (`hv run --isolate`): the same BlockDriver, on a
// stand-in syscall handle that asks the main side for everything the kernel does (worker-link.ts).
// Client memory arrives as copies: the worker never holds a view of host frames.

import { workerData } from "node:worker_threads";
import { MemoryRevokedError, Utcb, serveLink, type Crd, type ReceivedItem, type Status } from "../../kernel/index.js";
import { BlockDriver, type ClientRegion, type DriveConfig, type DriverSys } from "./component.js";

/** What the main side gives the worker. */
export interface BlockWorkerData {
  mailbox: SharedArrayBuffer;
  drives: Array<[number, DriveConfig]>;
  windowOrder: number;
  /** Fault injection (like QEMU's blkdebug), for tests: what the worker does at its Nth request. */
  faults?: BlockWorkerFault[];
}

/** At the worker's `at`th request (counted from 1, per worker): throw, hang, allocate without end, or answer garbage. */
export interface BlockWorkerFault {
  at: number;
  what: "throw" | "hang" | "allocate" | "garbage";
}

function inject(fault: BlockWorkerFault): unknown {
  if (fault.what === "garbage") return { not: "words" };
  if (fault.what === "throw") throw new Error(`injected fault at request ${fault.at}`);
  const hoard: Uint8Array[] = [];
  // Hang, or hang while allocating until the heap limit ends the worker.
  for (;;) if (fault.what === "allocate") hoard.push(new Uint8Array(1 << 20).fill(1));
}

/** A portal call of client `client`, as it crosses the mailbox. */
export interface BlockWorkerCall {
  op: "call";
  client: number;
  portalId: number;
  words: number[];
  received: ReceivedItem[];
}

/** The worker's requests to the main side, made with client `client`'s EC. */
export type BlockWorkerHypercall =
  | { op: "revoke"; client: number; range: Crd; keepSelf: boolean }
  | { op: "region"; client: number; page: number; pages: number }
  | { op: "read"; client: number; page: number; pages: number; offset: number; length: number }
  | { op: "write"; client: number; page: number; pages: number; offset: number; data: Uint8Array };

/** The main side's answer to a read or write of a region the client revoked. */
export interface RevokedAnswer {
  revoked: number;
  why: "revoked" | "read-only";
}

function isRevoked(x: unknown): x is RevokedAnswer {
  return typeof x === "object" && x !== null && "revoked" in x;
}

function main(data: BlockWorkerData): never {
  // Metadata goes to the image after every write: a write this worker acknowledged outlives it.
  const driver = new BlockDriver(new Map(data.drives), { windowOrder: data.windowOrder, persistWrites: true });
  const handlers = new Map<number, { utcb: Utcb; handle: (utcb: Utcb, portalId: number) => void }>();
  let hypercall: (request: BlockWorkerHypercall) => unknown = () => {
    throw new Error("no call in progress");
  };

  const regionOf = (client: number, page: number, pages: number): ClientRegion => {
    const answered = (x: unknown): unknown => {
      if (isRevoked(x)) throw new MemoryRevokedError(x.revoked, x.why);
      return x;
    };
    return {
      length: pages * 4096,
      source: (offset, length) => answered(hypercall({ op: "read", client, page, pages, offset, length })) as Uint8Array,
      sink: (offset, length) => {
        const buffer = new Uint8Array(length);
        return { buffer, commit: () => void answered(hypercall({ op: "write", client, page, pages, offset, data: buffer })) };
      },
    };
  };

  const handlerOf = (client: number) => {
    let h = handlers.get(client);
    if (!h) {
      const utcb = new Utcb();
      const sys: DriverSys = {
        utcb,
        revoke: (range, keepSelf = false) => hypercall({ op: "revoke", client, range, keepSelf }) as Status,
        region: (page, pages) => (hypercall({ op: "region", client, page, pages }) === true ? regionOf(client, page, pages) : null),
      };
      h = { utcb, handle: driver.server(client)(sys) };
      handlers.set(client, h);
    }
    return h;
  };

  let requests = 0;
  serveLink(data.mailbox, (message, ask) => {
    const m = message as BlockWorkerCall | { op: "close" };
    requests++;
    for (const f of data.faults ?? []) if (f.at === requests) return inject(f);
    if (m.op === "close") {
      driver.close();
      return null;
    }
    hypercall = ask as typeof hypercall;
    const { utcb, handle } = handlerOf(m.client);
    utcb.set(...m.words);
    utcb.received = m.received;
    handle(utcb, m.portalId);
    if (utcb.items.length > 0) throw new Error("the block driver replies without typed items");
    return Array.from(utcb.words.subarray(0, utcb.untyped));
  });
}

main(workerData as BlockWorkerData);
