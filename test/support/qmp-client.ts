// A QMP client over a Unix socket for tests and benchmarks that drive a child hv: negotiate, then
// one command at a time; events are kept.

import { connect } from "node:net";

export interface QmpClient {
  /** Run `execute`; its `return`, or a thrown Error naming the command and its error. */
  run(execute: string, args?: object): Promise<unknown>;
  /** The events that came so far. */
  events: Array<{ event: string; data?: Record<string, unknown> }>;
  close(): void;
}

export async function qmpClient(path: string): Promise<QmpClient> {
  const socket = connect(path);
  let buffer = "";
  const waiting: Array<(line: Record<string, unknown>) => void> = [];
  const events: QmpClient["events"] = [];
  socket.on("data", (b: Buffer) => {
    buffer += b.toString();
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
      buffer = buffer.slice(nl + 1);
      if ("event" in line) events.push(line as QmpClient["events"][number]);
      else waiting.shift()?.(line);
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => waiting.splice(0).forEach((w) => w({ error: { class: "Closed", desc: "the QMP socket closed" } })));
  const next = () => new Promise<Record<string, unknown>>((resolve) => waiting.push(resolve));
  await next();
  const run = async (execute: string, args?: object) => {
    const reply = next();
    socket.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + "\n");
    const r = await reply;
    if ("error" in r) throw new Error(`${execute}: ${JSON.stringify(r.error)}`);
    return r.return;
  };
  await run("qmp_capabilities");
  return { run, events, close: () => socket.destroy() };
}
