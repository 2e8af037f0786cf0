// `hv ctl PATH COMMAND [ARGS]`: one QMP command to a running hv (`hv run --qmp unix:PATH`), for
// people. It connects, negotiates, sends the command, prints what came back (readable, or --json)
// and exits 1 with the error's desc when it was refused. Any QMP client does the same job.
// `migrate` goes on until the migration ended: a progress bar on a terminal (from query-migrate,
// polled), then how it went; exit 1 when it failed or was cancelled.

import { createRequire } from "node:module";
import { connect, type Socket } from "node:net";
import { resolve } from "node:path";
import type { Command } from "commander";
import { JsonSplitter } from "./json-stream.js";

/** Where the command writes; tests pass their own. */
export interface CtlIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  setExitCode: (code: number) => void;
  cwd: () => string;
  /** A person watches (stdout is a terminal): `migrate` draws its progress bar on stderr. */
  isTTY?: () => boolean;
}

const defaultIo = (): CtlIo => ({
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  setExitCode: (c) => {
    process.exitCode = c;
  },
  cwd: () => process.cwd(),
  isTTY: () => process.stdout.isTTY === true,
});

export function registerCtlCommand(program: Command, io: CtlIo = defaultIo()): void {
  program
    .command("ctl")
    .description("send one QMP command to a running hv (hv run --qmp unix:PATH): stop, cont, query-status, hv-snapshot-save file=F, quit, ...")
    .argument("<socket>", "the QMP socket: PATH or unix:PATH")
    .argument("<command>", "a QMP command (query-commands lists them)")
    .argument("[args...]", "arguments as key=value (true, false and integers are taken as such), or one JSON object")
    .option("--json", "print the return value as JSON")
    .action(async (socket: string, command: string, args: string[], opts: { json?: boolean }) => {
      const path = socket.startsWith("unix:") ? socket.slice(5) : socket;
      let argumentsObject: Record<string, unknown>;
      try {
        argumentsObject = parseArguments(args);
      } catch (error) {
        io.stderr(`hv: ${(error as Error).message}\n`);
        return io.setExitCode(1);
      }
      // A relative file is the caller's, not hv's: hv may run in another directory.
      if (command === "hv-snapshot-save" && typeof argumentsObject.file === "string" && argumentsObject.file !== "") argumentsObject.file = resolve(io.cwd(), argumentsObject.file);
      let client: QmpClient;
      try {
        client = await QmpClient.connect(path);
      } catch (error) {
        io.stderr(`hv: cannot talk to '${path}': ${(error as Error).message} (is hv running with --qmp unix:${path}?)\n`);
        return io.setExitCode(1);
      }
      try {
        const reply = await client.execute(command, argumentsObject);
        if ("error" in reply) {
          io.stderr(`hv: ${reply.error.desc}\n`);
          return io.setExitCode(1);
        }
        if (command === "migrate") return await followMigration(client, io, opts.json === true, typeof argumentsObject.vm === "string" ? argumentsObject.vm : undefined);
        io.stdout(opts.json ? `${JSON.stringify(reply.return, null, 2)}\n` : render(command, argumentsObject, reply.return));
      } catch (error) {
        io.stderr(`hv: ${(error as Error).message}\n`);
        io.setExitCode(1);
      } finally {
        client.close();
      }
    });
}

/** How often `hv ctl migrate` asks how the migration goes (ms). */
const MIGRATION_POLL_MS = 200;

/** QEMU's MigrationInfo, the part `hv ctl migrate` shows. */
interface MigrationInfo {
  status?: string;
  ram?: { transferred: number; remaining: number; "dirty-sync-count": number };
  "cpu-throttle-percentage"?: number;
  downtime?: number;
  "total-time"?: number;
  "error-desc"?: string;
}

/**
 * After `migrate` (of VM `vm` of a fleet, or the one VM): poll query-migrate until it completed, failed or was cancelled (a source hv ends
 * once its VM runs at the destination: then its MIGRATION event says so before the connection
 * goes). A bar on stderr for a person; then one line (or --json, the last MigrationInfo).
 */
async function followMigration(client: QmpClient, io: CtlIo, json: boolean, vm: string | undefined): Promise<void> {
  let last: MigrationInfo = {};
  client.onEvent = (event, data) => {
    // A fleet's events name their VM: only this one's count.
    if (event === "MIGRATION" && data && (data.vm === undefined || data.vm === vm)) {
      const { vm: _vm, ...info } = data;
      last = info as MigrationInfo;
    }
  };
  const bar = !json && io.isTTY?.() === true ? migrationBar() : null;
  try {
    // Post-copy: the VM runs at the destination, and the migration goes on until every page is there.
    const goesOn = (status: string | undefined) => status === undefined || status === "active" || status === "postcopy-active";
    while (goesOn(last.status) || last.status === "none") {
      let reply: Reply;
      try {
        reply = await client.execute("query-migrate", vm === undefined ? {} : { vm });
      } catch (error) {
        // The source ended: its MIGRATION event (kept in `last`) came first and says how.
        if (!goesOn(last.status)) break;
        throw error;
      }
      if ("error" in reply) throw new Error(reply.error.desc);
      // An event that came meanwhile may say more than the answer to a question asked before it.
      const info = reply.return as MigrationInfo;
      if (goesOn(last.status)) last = info;
      if (last.status === undefined || last.status === "none") throw new Error("no migration runs (it ended before hv ctl could look)");
      bar?.update(last);
      if (goesOn(last.status)) await new Promise((resolve) => setTimeout(resolve, MIGRATION_POLL_MS));
    }
    if (last.status === "completed") bar?.update(last);
  } finally {
    bar?.stop();
  }
  if (json) io.stdout(`${JSON.stringify(last, null, 2)}\n`);
  if (last.status !== "completed") {
    io.stderr(`hv: the migration ${last.status === "cancelled" ? "was cancelled" : `failed: ${last["error-desc"] ?? "(no reason given)"}`}\n`);
    return io.setExitCode(1);
  }
  if (!json) {
    const ram = last.ram;
    const sent = ram ? `, ${(ram.transferred / 2 ** 20).toFixed(1)} MiB sent in ${ram["dirty-sync-count"]} passes` : "";
    io.stdout(`migration completed${sent}, downtime ${last.downtime ?? "?"} ms; the VM runs at the destination\n`);
  }
}

/** The part of cli-progress we use (the package ships no types). */
interface CliProgress {
  SingleBar: new (options: Record<string, unknown>, preset: unknown) => {
    start(total: number, value: number, payload: Record<string, unknown>): void;
    update(value: number, payload: Record<string, unknown>): void;
    stop(): void;
  };
  Presets: { shades_classic: unknown };
}

/** A bar on stderr: all that was sent against that and what is left, the pass, the throttle. */
function migrationBar(): { update(info: MigrationInfo): void; stop(): void } {
  const cliProgress = createRequire(import.meta.url)("cli-progress") as CliProgress;
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: "migrating [{bar}] {percentage}% | pass {pass} | {sent} MiB sent, {left} MiB left | throttle {throttle}%", hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(info) {
      const ram = info.ram ?? { transferred: 0, remaining: 0, "dirty-sync-count": 0 };
      const total = ram.transferred + ram.remaining;
      const payload = { pass: ram["dirty-sync-count"] || 1, sent: (ram.transferred / 2 ** 20).toFixed(1), left: (ram.remaining / 2 ** 20).toFixed(1), throttle: info["cpu-throttle-percentage"] ?? 0 };
      const percent = info.status === "completed" ? 100 : total > 0 ? Math.floor((100 * ram.transferred) / total) : 0;
      if (!started) bar.start(100, percent, payload);
      else bar.update(percent, payload);
      started = true;
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/**
 * `key=value ...` or one JSON object; throws an Error naming the problem. Values `true`, `false` and
 * integers are taken as JSON, anything else as a string (a string that looks like a number needs the JSON form).
 */
export function parseArguments(args: readonly string[]): Record<string, unknown> {
  if (args.length === 1 && args[0].trimStart().startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(args[0]);
    } catch (error) {
      throw new Error(`the arguments are not JSON: ${(error as Error).message}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("the arguments must be a JSON object");
    return parsed as Record<string, unknown>;
  }
  const out: Record<string, unknown> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new Error(`'${arg}' is not key=value (or give one JSON object)`);
    const value = arg.slice(eq + 1);
    out[arg.slice(0, eq)] = value === "true" ? true : value === "false" ? false : /^-?\d{1,15}$/.test(value) ? Number(value) : value;
  }
  return out;
}

/** The return value for a person: the commands we know read as sentences, the rest as key: value lines. */
function render(command: string, args: Record<string, unknown>, value: unknown): string {
  const v = value as Record<string, unknown>;
  if (command === "query-status") return `VM status: ${String(v.status)}\n`;
  if (command === "hv-snapshot-save") return `saved the VM to ${String(args.file)}\n`;
  if (command === "query-version") {
    const q = v.qemu as Record<string, number>;
    return `${String(v.package)} (QMP of QEMU ${q.major}.${q.minor}.${q.micro})\n`;
  }
  if (command === "query-commands") return (value as { name: string }[]).map((c) => `${c.name}\n`).join("");
  if (typeof value === "string") return value.replace(/\r\n/g, "\n");
  if (typeof value === "object" && value !== null && !Array.isArray(value)) return Object.entries(v).map(([key, x]) => `${key}: ${typeof x === "string" ? x : JSON.stringify(x)}\n`).join("");
  return `${JSON.stringify(value)}\n`;
}

type Reply = { return: unknown } | { error: { class: string; desc: string } };

/** A minimal QMP client: greeting, negotiation, one command at a time; events are skipped. */
export class QmpClient {
  private readonly splitter = new JsonSplitter();
  private readonly messages: Record<string, unknown>[] = [];
  private wake: (() => void) | null = null;
  private failure: Error | null = null;
  private nextId = 1;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      try {
        for (const piece of this.splitter.push(text)) {
          if ("error" in piece) throw new Error(piece.error);
          const message: unknown = JSON.parse(piece.text);
          if (typeof message !== "object" || message === null) throw new Error(`it sent ${piece.text.slice(0, 40)}`);
          this.messages.push(message as Record<string, unknown>);
        }
      } catch (error) {
        this.fail(new Error(`this is not a QMP server (${(error as Error).message})`));
        socket.destroy();
      }
      this.wake?.();
    });
    socket.on("error", (error) => this.fail(error));
    socket.on("close", () => this.fail(new Error("hv closed the connection before it answered")));
  }

  /** Connects and negotiates capabilities. */
  static async connect(path: string): Promise<QmpClient> {
    const socket = connect(path);
    await new Promise<void>((done, reject) => socket.once("connect", done).once("error", (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message))));
    const client = new QmpClient(socket);
    const greeting = await client.next();
    if (!("QMP" in greeting)) throw new Error("this is not a QMP server (no greeting)");
    const reply = await client.execute("qmp_capabilities", {});
    if ("error" in reply) throw new Error(`capabilities negotiation failed: ${reply.error.desc}`);
    return client;
  }

  /** Events that come while a command waits for its answer (the rest are skipped). */
  onEvent: (event: string, data: Record<string, unknown> | undefined) => void = () => {};

  async execute(command: string, args: Record<string, unknown>): Promise<Reply> {
    const id = `hv-ctl-${this.nextId++}`;
    this.socket.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    for (;;) {
      const message = await this.next();
      if (message.id === id) return message as Reply;
      if (typeof message.event === "string") this.onEvent(message.event, message.data as Record<string, unknown> | undefined);
    }
  }

  close(): void {
    this.socket.end();
  }

  private async next(): Promise<Record<string, unknown>> {
    for (;;) {
      const message = this.messages.shift();
      if (message) return message;
      if (this.failure) throw this.failure;
      await new Promise<void>((done) => (this.wake = done));
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.wake?.();
  }
}
