// The incoming migration's connection, in a worker thread of its own (bin/incoming-link.ts starts
// it): it listens, takes the source's connection and passes its bytes to the main thread as they
// come. After a post-copy switch it reads the source's frames itself and writes the pages into
// the shared table (services/migration/postcopy.ts) where the main thread's vCPU waits for them:
// the main thread may be blocked in Atomics.wait then, and cannot read a socket.

import { createServer, type Socket } from "node:net";
import { parentPort, workerData } from "node:worker_threads";
import { FrameType, encodeFrame } from "../services/migration/stream.js";
import { PostcopyReceiver, RemotePages, encodeRequest, MAX_REQUEST_PAGES } from "../services/migration/postcopy.js";

/** Main thread → worker. */
export type ToIncomingWorker =
  | { type: "write"; bytes: Uint8Array }
  | { type: "end"; bytes: Uint8Array }
  | { type: "postcopy"; buffer: SharedArrayBuffer; pages: number }
  | { type: "request"; pages: number[] }
  | { type: "close" };

/** Worker → main thread. */
export type FromIncomingWorker =
  | { type: "listening" }
  | { type: "listen-error"; message: string }
  | { type: "connection" }
  | { type: "data"; bytes: Uint8Array }
  | { type: "error"; message: string }
  | { type: "close" }
  | { type: "postcopy-complete"; pages: number }
  | { type: "postcopy-failed"; message: string; remaining: number };

export interface IncomingWorkerData {
  host: string;
  port: number;
}

const port = parentPort!;
const post = (m: FromIncomingWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const { host, port: tcpPort } = workerData as IncomingWorkerData;

let socket: Socket | null = null;
/** After the switch: the table, the source's frames as this worker reads them, and whether it is over. */
let table: RemotePages | null = null;
let reader: PostcopyReceiver | null = null;
let over = false;

const server = createServer();
server.once("error", (error) => post({ type: "listen-error", message: error.message }));
server.listen(tcpPort, host, () => post({ type: "listening" }));
server.once("connection", (s) => {
  server.close();
  socket = s;
  // No Nagle: the ACK, an ABORT and a page request leave at once.
  s.setNoDelay(true);
  post({ type: "connection" });
  s.on("data", (chunk: Buffer) => {
    if (reader) return postcopyData(chunk);
    // A copy of its own, handed over without another.
    const bytes = new Uint8Array(chunk);
    post({ type: "data", bytes }, [bytes.buffer]);
  });
  s.on("error", (error) => (table ? fail(error.message) : post({ type: "error", message: error.message })));
  s.on("close", () => (table ? fail("the source closed the connection") : post({ type: "close" })));
});

/** The source's frames after the switch: pages (each remote, each once), then END; anything else breaks it. */
function postcopyData(chunk: Buffer): void {
  if (over) return;
  try {
    if (!reader!.push(new Uint8Array(chunk))) return;
    over = true;
    socket!.end(encodeFrame(FrameType.ACK));
    post({ type: "postcopy-complete", pages: table!.total });
  } catch (error) {
    const message = (error as Error).message;
    // The source hears why (as before the switch), and the connection ends.
    socket?.end(encodeFrame(FrameType.ABORT, new TextEncoder().encode(message.slice(0, 500))));
    fail(message);
  }
}

function fail(message: string): void {
  if (over) return;
  over = true;
  table!.fail();
  post({ type: "postcopy-failed", message, remaining: table!.remaining });
  socket?.destroy();
}

port.on("message", (m: ToIncomingWorker) => {
  if (m.type === "write") socket?.write(m.bytes);
  else if (m.type === "end") {
    // After the switch the connection stays open (requests, pages): the ACK that the VM runs is written.
    if (table) socket?.write(m.bytes);
    else socket?.end(m.bytes);
  } else if (m.type === "postcopy") {
    table = new RemotePages(m.buffer, m.pages);
    reader = new PostcopyReceiver(table);
  } else if (m.type === "request") {
    if (over || !socket) return;
    for (let i = 0; i < m.pages.length; i += MAX_REQUEST_PAGES) socket.write(encodeFrame(FrameType.REQUEST, encodeRequest(m.pages.slice(i, i + MAX_REQUEST_PAGES))));
  } else if (m.type === "close") {
    over = true;
    server.close();
    // An ended connection (its last word, an ACK or ABORT, on its way) closes once the peer has it
    // (a second at most): a destroy would drop it. Then this worker ends.
    if (!socket || socket.closed) return port.close();
    if (!socket.writableEnded) socket.destroy();
    socket.once("close", () => port.close());
    setTimeout(() => socket?.destroy(), 1000);
  }
});
