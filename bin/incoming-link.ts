// The destination's end of a migration's connection, owned by a worker thread (bin/incoming-worker.ts):
// to the main thread it is a MigrationSocket until a post-copy switch; after it, a table of the
// pages still at the source, which the vCPU's first touch reads synchronously (it asks the source
// and waits in Atomics.wait while the worker takes the page off the connection).

import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { MemoryStatus } from "../services/memory-protocol.js";
import { RemotePages } from "../services/migration/postcopy.js";
import { FrameType, encodeFrame } from "../services/migration/stream.js";
import { GuestMemoryError } from "../vmm/demand-ram.js";
import type { FromIncomingWorker, IncomingWorkerData, ToIncomingWorker } from "./incoming-worker.js";
import type { MigrationSocket, PostcopyLink } from "./migrate.js";

/** How long the fault path waits for a page between looks at whether the connection failed (ms). */
const PAGE_WAIT_SLICE_MS = 100;

/** A page still at the source cannot come (the connection broke after the post-copy switch): the VM cannot go on (its exit handler ends it with this). */
export class PostcopyPageError extends GuestMemoryError {
  constructor(page: number, why: string) {
    super(MemoryStatus.BAD_REQUEST, page);
    this.name = "PostcopyPageError";
    this.message = `guest page 0x${page.toString(16)} is still at the migration's source, and cannot come (postcopy-paused: ${why})`;
  }
}

/** The incoming connection through its worker. */
export class IncomingLink {
  readonly socket: MigrationSocket;
  private readonly worker: Worker;
  private readonly events = new EventEmitter();
  private failure = "";

  private constructor(host: string, port: number) {
    const { url, entry } = workerScript();
    const data: IncomingWorkerData = { host, port };
    this.worker = new Worker(url, { workerData: { ...data, entry }, stdout: false, stderr: false });
    this.worker.on("message", (m: FromIncomingWorker) => this.events.emit(m.type, m));
    this.worker.on("error", (error) => {
      this.failure = error.message;
      this.events.emit("listen-error", { type: "listen-error", message: error.message });
      this.events.emit("error", { type: "error", message: `the migration's connection worker failed: ${error.message}` });
      this.events.emit("postcopy-failed", { type: "postcopy-failed", message: `the migration's connection worker failed: ${error.message}`, remaining: -1 });
    });
    const events = this.events;
    const post = (m: ToIncomingWorker) => this.worker.postMessage(m);
    this.socket = {
      on(event: "data" | "error" | "close", listener: (arg: never) => void) {
        if (event === "data") events.on("data", (m: { bytes: Uint8Array }) => (listener as (b: Buffer) => void)(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.length)));
        else if (event === "error") events.on("error", (m: { message: string }) => (listener as (e: Error) => void)(new Error(m.message)));
        else events.on("close", () => (listener as () => void)());
        return this;
      },
      end: (bytes: Uint8Array) => post({ type: "end", bytes }),
    } as MigrationSocket;
  }

  /** Listen on `host`:`port` (in the worker); rejects with the reason it cannot. */
  static listen(host: string, port: number): Promise<IncomingLink> {
    const link = new IncomingLink(host, port);
    return new Promise((resolve, reject) => {
      link.events.once("listening", () => resolve(link));
      link.events.once("listen-error", (m: { message: string }) => {
        void link.close();
        reject(new Error(m.message));
      });
    });
  }

  /** The source connected. */
  connected(): Promise<void> {
    return new Promise((resolve) => this.events.once("connection", () => resolve()));
  }

  /** The post-copy switch came with `remote` (a checked POSTCOPY bitmap): the worker takes the connection's frames from here on. */
  postcopy(remote: Uint8Array, pages: number): PostcopyLink {
    const table = RemotePages.create(remote, pages);
    const post = (m: ToIncomingWorker) => this.worker.postMessage(m);
    post({ type: "postcopy", buffer: table.buffer, pages });
    let requested = 0;
    const done = new Promise<{ pages: number; requested: number }>((resolve, reject) => {
      this.events.once("postcopy-complete", (m: { pages: number }) => resolve({ pages: m.pages, requested }));
      this.events.once("postcopy-failed", (m: { message: string }) => {
        this.failure = m.message;
        reject(new Error(m.message));
      });
    });
    done.catch(() => {});
    const fetch = (first: number, into: readonly Uint8Array[]) => {
      const wanted = into.map((_, i) => first + i);
      const ask = table.ask(wanted);
      if (ask.length > 0) {
        requested += ask.length;
        post({ type: "request", pages: ask });
      }
      for (const [i, p] of wanted.entries()) {
        // Blocks this thread: the worker fills the page (or says the connection failed).
        while (!table.wait(p, PAGE_WAIT_SLICE_MS)) if (table.failed) throw new PostcopyPageError(p, this.failure || "the connection to the source broke");
        table.copy(p, into[i]);
      }
    };
    return {
      table,
      accept: () => post({ type: "end", bytes: ACK }),
      read: (page, into) => fetch(page, [into]),
      readRun: fetch,
      done,
    };
  }

  /** End the connection (its last word sent first, a second at most) and the worker. */
  async close(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.postMessage({ type: "close" } satisfies ToIncomingWorker);
    await Promise.race([exited, new Promise<void>((resolve) => setTimeout(resolve, 1500).unref())]);
    this.worker.unref();
  }
}

const ACK = encodeFrame(FrameType.ACK);

/** The worker's script: the bundled one beside this file, or the source through tsx (tests, tsx). */
function workerScript(): { url: URL; entry: string | null } {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return { url: new URL("./incoming-worker.js", here), entry: null };
  return { url: new URL("./tsx-worker.mjs", here), entry: fileURLToPath(new URL("./incoming-worker.ts", here)) };
}
