// `--isolate`: the block driver in a worker thread. The driver's PD, ECs, portals and the memory
// its clients delegated stay in the kernel on this thread; only its code and its JS heap move to
// the worker. Each of its ECs runs a stand-in handler that forwards the portal call through a
// mailbox (kernel/worker-link.ts) and makes the worker's hypercalls with the EC's own handle.
//
// A worker that throws, stays silent past the watchdog, runs out of its heap limit or was killed
// is replaced: the new one gets every client's ATTACH again (their pages are still delegated to
// the PD), and the request that was in flight is answered RESTARTED, which the VMM sends again.

import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker, type ResourceLimits } from "node:worker_threads";
import { MemoryRevokedError, SpaceKind, UTCB_WORDS, WorkerLink, crd, newMailbox, type Crd, type LocalEntry, type MemoryView, type Sys } from "../kernel/index.js";
import { AttachFlags, BlockOp, BlockReply } from "../drivers/block/protocol.js";
import type { DriveConfig } from "../drivers/block/component.js";
import { lockPathFor } from "../drivers/block/lock.js";
import type { BlockWorkerCall, BlockWorkerData, BlockWorkerFault, BlockWorkerHypercall, RevokedAnswer } from "../drivers/block/worker.js";

export interface IsolateOptions {
  /** A request the worker does not answer within this (host ms) restarts it. Default 10 s. */
  watchdogMs?: number;
  /** The worker's heap limits (default: 256 MiB old generation). */
  resourceLimits?: ResourceLimits;
  /** Faults the first worker injects (tests; a restarted worker has none). */
  faults?: BlockWorkerFault[];
}

/** How long a worker may take to start (host ms): loading the driver's code. */
const START_MS = 60_000;

/** A worker that does not start, or one that keeps dying under the same request. */
export class IsolationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IsolationError";
  }
}

/** The block driver, running in a worker; `entry` and `close` as BlockDriver's. */
export class IsolatedBlockDriver {
  /** Times the worker was replaced. */
  restarts = 0;
  private worker: Worker | null = null;
  private link: WorkerLink | null = null;
  private dead = true;
  /** Each attached client's ATTACH (with its drive's state now: active or inactive), to send again to a new worker. */
  private readonly attaches = new Map<number, BlockWorkerCall>();
  private readonly watchdogMs: number;

  constructor(
    private readonly drives: ReadonlyMap<number, DriveConfig>,
    private readonly windowOrder: number,
    private readonly options: IsolateOptions = {},
  ) {
    this.watchdogMs = options.watchdogMs ?? 10_000;
    if (!(this.watchdogMs > 0)) throw new RangeError(`watchdog of ${this.watchdogMs} ms: must be above 0`);
    this.start();
  }

  /** The entry of the EC that serves client `id` (its portal id must be `id`). */
  entry(id: number): LocalEntry {
    const size = 2 ** this.windowOrder;
    const window = crd(SpaceKind.MEMORY, id * size, this.windowOrder);
    return (sys) => {
      sys.utcb.receiveWindow[SpaceKind.MEMORY] = window;
      const views = new Map<string, MemoryView>();
      return (utcb, portalId) => {
        const call: BlockWorkerCall = {
          op: "call",
          client: id,
          portalId,
          words: Array.from(utcb.words.subarray(0, utcb.untyped)),
          received: utcb.received.map((r) => ({ ...r })),
        };
        const words = this.forward(call, (h) => serveHypercall(sys, views, h));
        utcb.set(...words);
        if (call.words[0] === BlockOp.ATTACH && words[0] === BlockReply.OK) this.attaches.set(id, call);
        if (call.words[0] === BlockOp.DETACH) this.attaches.delete(id);
        // A new worker attaches the drive as it is now, active or not (a migration hands drives over).
        const attached = this.attaches.get(id);
        if (attached && words[0] === BlockReply.OK && (call.words[0] === BlockOp.ACTIVATE || call.words[0] === BlockOp.INACTIVATE)) {
          const flags = call.words[0] === BlockOp.INACTIVATE ? AttachFlags.INACTIVE : 0;
          this.attaches.set(id, { ...attached, words: [attached.words[0], attached.words[1], flags] });
        }
      };
    };
  }

  /** Kill the worker now, as a crash would (the next request finds it gone and restarts it). */
  kill(): void {
    void this.worker?.terminate();
    this.dead = true;
  }

  /** Flush and close every image, and end the worker. */
  close(): void {
    if (this.link && !this.dead) this.link.call({ op: "close" }, () => null, this.watchdogMs);
    void this.worker?.terminate();
    this.worker = null;
    this.dead = true;
  }

  /** Send `call` to the worker (a new one if it died); RESTARTED if it dies under it. */
  private forward(call: BlockWorkerCall, serve: (h: BlockWorkerHypercall) => unknown): number[] {
    if (this.dead) this.restart();
    const outcome = this.link!.call<unknown>(call, (h) => serve(h as BlockWorkerHypercall), this.watchdogMs);
    if (outcome.kind === "reply" && isReply(outcome.reply)) return outcome.reply;
    // Dead, silent, or talking nonsense: the worker is replaced all the same.
    this.restart();
    return [BlockReply.RESTARTED];
  }

  private start(): void {
    const mailbox = newMailbox();
    const data: BlockWorkerData = { mailbox, drives: [...this.drives], windowOrder: this.windowOrder, faults: this.restarts === 0 ? this.options.faults : undefined };
    const { url, entry } = workerScript();
    const worker = new Worker(url, {
      workerData: { ...data, entry },
      resourceLimits: this.options.resourceLimits ?? { maxOldGenerationSizeMb: 256 },
      // Descriptors are the process's: Node closes those the worker opened when it exits, killed or not
      // (the default since Node 14.6; said here because a restart relies on it).
      trackUnmanagedFds: true,
      stdout: false,
      stderr: false,
    });
    worker.unref();
    const link = new WorkerLink(mailbox);
    worker.on("exit", () => {
      if (this.worker === worker) this.dead = true;
    });
    worker.on("error", () => {
      if (this.worker === worker) this.dead = true;
    });
    if (!link.waitReady(START_MS)) {
      void worker.terminate();
      throw new IsolationError(`the block driver's worker did not start within ${START_MS / 1000} s`);
    }
    this.worker = worker;
    this.link = link;
    this.dead = false;
  }

  /** Replace the worker and attach every client again. */
  private restart(): void {
    void this.worker?.terminate();
    this.worker = null;
    this.restarts++;
    // The old worker's write locks are this process's: they go with it.
    for (const d of this.drives.values()) if (!d.readOnly) removeOwnLock(d.path);
    this.start();
    for (const call of this.attaches.values()) {
      const outcome = this.link!.call<number[]>(call, (h) => replayHypercall(h as BlockWorkerHypercall), this.watchdogMs);
      if (outcome.kind !== "reply" || outcome.reply[0] !== BlockReply.OK) this.attaches.delete(call.client);
    }
  }
}

/** A reply a portal can carry: at most UTCB_WORDS words, each a 32-bit unsigned integer. */
function isReply(x: unknown): x is number[] {
  return Array.isArray(x) && x.length <= UTCB_WORDS && x.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff);
}

/** A hypercall of the worker, made with the client EC's handle. */
function serveHypercall(sys: Sys, views: Map<string, MemoryView>, h: BlockWorkerHypercall): unknown {
  switch (h.op) {
    case "revoke":
      return sys.revoke(h.range, h.keepSelf);
    case "region": {
      const view = sys.memory(h.page, h.pages);
      if (view) views.set(`${h.page}:${h.pages}`, view);
      return view !== null;
    }
    case "read":
    case "write": {
      const view = views.get(`${h.page}:${h.pages}`);
      const length = h.op === "read" ? h.length : h.data.length;
      if (!view || !(Number.isInteger(h.offset) && h.offset >= 0 && length >= 0 && h.offset + length <= view.length)) return { revoked: h.page, why: "revoked" } satisfies RevokedAnswer;
      try {
        const bytes = view.bytes;
        if (h.op === "read") return bytes.slice(h.offset, h.offset + length);
        bytes.set(h.data, h.offset);
        return true;
      } catch (error) {
        if (error instanceof MemoryRevokedError) return { revoked: error.page, why: error.why } satisfies RevokedAnswer;
        throw error;
      }
    }
  }
}

/**
 * The hypercalls of an ATTACH sent again: the region was there at the first ATTACH, and the
 * client EC's stand-in keeps the view it took then, which is checked at each use (a region the
 * client revoked meanwhile fails there, BAD_BUFFER). Nothing else is done again.
 */
function replayHypercall(h: BlockWorkerHypercall): unknown {
  return h.op === "region" ? true : 0;
}

/** Remove `imagePath`'s write lock if this process holds it. */
function removeOwnLock(imagePath: string): void {
  try {
    const lock = lockPathFor(imagePath);
    if (Number.parseInt(fs.readFileSync(lock, "utf8"), 10) === process.pid) fs.rmSync(lock, { force: true });
  } catch {
    // No lock, or no image: nothing to remove.
  }
}

/** The worker's script: the bundled one beside this file, or the source through tsx (tests, tsx). */
function workerScript(): { url: URL; entry: string | null } {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return { url: new URL("./block-worker.js", here), entry: null };
  return { url: new URL("./tsx-worker.mjs", here), entry: fileURLToPath(new URL("../drivers/block/worker.ts", here)) };
}
