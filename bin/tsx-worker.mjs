// Starts a worker's TypeScript entry (workerData.entry) through tsx: for tests and `tsx bin/hv.ts`.
// The bundled `hv` starts its bundled worker scripts directly.
import { pathToFileURL } from "node:url";
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(pathToFileURL(workerData.entry).href);
