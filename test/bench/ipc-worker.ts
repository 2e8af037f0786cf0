// The server of bench:ipc's cross-worker round trips: it adds the request's two words and the
// portal id, like the in-process handler, in a worker thread (started through bin/tsx-worker.mjs).
import { workerData } from "node:worker_threads";
import { serveLink } from "../../kernel/index.js";

serveLink(workerData.mailbox as SharedArrayBuffer, (message) => {
  const [a, b, id] = message as [number, number, number];
  return (a + b + id) >>> 0;
});
