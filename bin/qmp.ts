// QMP server: QEMU's machine protocol for the VMs this hv runs (the commands are in
// qmp-commands.ts, the Unix socket in qmp-socket.ts). A client gets the greeting, negotiates
// capabilities with `qmp_capabilities` (nothing else is accepted before it, as in QEMU), and then
// sends `{"execute": NAME, "arguments": {...}, "id": ANY}`; each gets `{"return": ...}` or
// `{"error": {"class", "desc"}}` with its id, in the order sent. Events go to every client past
// negotiation. Commands that reach a VM are queued for the control component and answered when its
// result comes back, between the kernel's slices of runVm's host loop.

import type { VmControl } from "./host-control.js";
import { JsonSplitter, type JsonPiece } from "./json-stream.js";
import { COMMANDS, NEGOTIATION_COMMANDS, QMP_VERSION, QmpError, type QmpCommand, type Param } from "./qmp-commands.js";
import type { SaveRequest } from "./snapshot.js";
import type { HostComponents } from "./vm-runner.js";

export { QMP_VERSION, QmpError, type QmpErrorClass } from "./qmp-commands.js";

/** A VM the server controls: its name, its number in the composition, and how a save of it is described. */
export interface QmpVm {
  name: string;
  index: number;
  /** `compress` absent: as `hv run --compress` says. */
  saveRequest(path: string, compress?: boolean): SaveRequest;
  /** Its live migration (a fleet's VMs each have one); absent: the server's `migration`. */
  migration?: QmpMigration;
}

/** One VM's live migration as QMP drives it (bin/migrate.ts's OutgoingMigration). */
export interface QmpMigration {
  start(vm: number, uri: string, inc?: boolean): void;
  cancel(): void;
  query(): Record<string, unknown>;
  readonly parameters: Record<string, number>;
  readonly capabilities: Record<string, boolean>;
  setParameters(values: Record<string, number | undefined>): void;
  setCapabilities(values: ReadonlyArray<{ capability: string; state: boolean }>): void;
  /** migrate-start-postcopy; a RangeError says why not. */
  startPostcopy(): void;
}

export interface QmpServerOptions {
  control: VmControl;
  vms: readonly QmpVm[];
  /** End hv, as Ctrl-A x does (the host loop stops at the end of its slice). */
  quit: () => void;
  /** Wall-clock time in ms since the epoch, for event timestamps (the explicit host time source). */
  now: () => number;
  /** Where relative snapshot paths point: hv's working directory. */
  cwd: string;
  /** Live migration of the one VM (a fleet's VMs have their own, QmpVm.migration; none: `migrate` is refused). */
  migration?: QmpMigration;
  /** Isolated components (`--isolate`), for `x-component-kill`; none: the command says there are none. */
  components?: HostComponents;
}

/** A client's connection as the server sees it. */
export interface QmpPeer {
  /** One reply or event, a line of JSON. */
  send(line: string): void;
  /** Stop and restart reading: a client that sends faster than its commands finish waits. */
  pause(): void;
  resume(): void;
  end(): void;
}

/** Commands read ahead of the one running before the client's input is paused. */
const MAX_WAITING = 8;

/** QEMU's SHUTDOWN reasons for how hv ends: the guest powered off, `quit` or Ctrl-A x (QEMU's mux calls quit too), or the host gave up. */
export type ShutdownCause = "guest-shutdown" | "host-qmp-quit" | "host-error";

export class QmpServer {
  private readonly sessions = new Set<QmpSession>();

  constructor(readonly options: QmpServerOptions) {}

  /** A new client: it is greeted at once. */
  connect(peer: QmpPeer): QmpSession {
    const session = new QmpSession(this, peer);
    this.sessions.add(session);
    return session;
  }

  disconnect(session: QmpSession): void {
    this.sessions.delete(session);
  }

  /** An event to every client past negotiation, stamped with the host's wall time as QEMU does. */
  emit(event: string, data?: Record<string, unknown>): void {
    const ms = this.options.now();
    const seconds = Math.floor(ms / 1000);
    const message = { timestamp: { seconds, microseconds: Math.floor((ms - seconds * 1000) * 1000) }, event, ...(data ? { data } : {}) };
    for (const session of this.sessions) if (session.negotiated) session.send(message);
  }

  /** The VM a command names with `vm` (the fleet's way), or the only one. */
  vm(name: string | undefined): QmpVm {
    const vms = this.options.vms;
    if (name === undefined) {
      if (vms.length === 1) return vms[0];
      throw new QmpError("GenericError", `Parameter 'vm' is missing: this hv runs ${vms.map((v) => v.name).join(", ")}`);
    }
    const found = vms.find((v) => v.name === name);
    if (!found) throw new QmpError("GenericError", `No VM named '${name}' (this hv runs ${vms.map((v) => v.name).join(", ")})`);
    return found;
  }

  /** The migration of the VM a command names (or the only one), or null when this hv cannot migrate it. */
  migrationOf(name: string | undefined): { vm: QmpVm; migration: QmpMigration | null } {
    const vm = this.vm(name);
    return { vm, migration: vm.migration ?? this.options.migration ?? null };
  }

  /**
   * hv is ending: wait until every client's commands are answered (the caller has closed the
   * control queue, so none waits on a VM any more), announce SHUTDOWN and end the connections.
   */
  async close(cause: ShutdownCause): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.idle()));
    this.emit("SHUTDOWN", { guest: cause === "guest-shutdown", reason: cause });
    for (const session of this.sessions) session.end();
    this.sessions.clear();
  }

  /** One message from a client: its reply, never a throw. */
  async execute(session: QmpSession, piece: JsonPiece): Promise<Record<string, unknown>> {
    if ("error" in piece) return { error: { class: "GenericError", desc: piece.error } };
    let request: unknown;
    try {
      request = JSON.parse(piece.text);
    } catch (error) {
      return { error: { class: "GenericError", desc: `JSON parse error, ${error instanceof Error ? error.message : String(error)}` } };
    }
    const id = isObject(request) && "id" in request ? { id: request.id } : {};
    try {
      const { name, args } = checkRequest(request);
      const command = (session.negotiated ? COMMANDS : NEGOTIATION_COMMANDS)[name];
      if (!command) {
        if (!session.negotiated) throw new QmpError("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
        throw new QmpError("CommandNotFound", `The command ${name} has not been found`);
      }
      const value = await command.run({ server: this, session }, checkArguments(command, args));
      return { return: value ?? {}, ...id };
    } catch (error) {
      if (error instanceof QmpError) return { error: { class: error.errorClass, desc: error.message }, ...id };
      return { error: { class: "GenericError", desc: error instanceof Error ? error.message : String(error) }, ...id };
    }
  }
}

/** One client: its negotiation state and its commands, run one at a time in the order they came. */
export class QmpSession {
  negotiated = false;
  private readonly splitter = new JsonSplitter();
  private readonly waiting: JsonPiece[] = [];
  /** Set and cleared synchronously by runWaiting, so that no command is left behind in between. */
  private busy = false;
  private running: Promise<void> = Promise.resolve();
  private paused = false;
  private ended = false;

  constructor(
    private readonly server: QmpServer,
    private readonly peer: QmpPeer,
  ) {
    this.send({ QMP: { version: QMP_VERSION, capabilities: [] } });
  }

  /** Text the client sent. */
  feed(text: string): void {
    if (this.ended) return;
    this.waiting.push(...this.splitter.push(text));
    if (this.waiting.length >= MAX_WAITING && !this.paused) {
      this.paused = true;
      this.peer.pause();
    }
    if (!this.busy && this.waiting.length > 0) this.running = this.runWaiting();
  }

  /** Settles when every command received so far is answered. */
  async idle(): Promise<void> {
    while (this.busy) await this.running;
  }

  send(message: Record<string, unknown>): void {
    if (!this.ended) this.peer.send(`${JSON.stringify(message)}\n`);
  }

  /** The client went away: what it sent is still carried out, nothing more is sent. */
  disconnect(): void {
    this.ended = true;
    this.server.disconnect(this);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.peer.end();
  }

  private async runWaiting(): Promise<void> {
    this.busy = true;
    try {
      for (let piece = this.waiting.shift(); piece; piece = this.waiting.shift()) {
        if (this.paused && this.waiting.length < MAX_WAITING) {
          this.paused = false;
          this.peer.resume();
        }
        this.send(await this.server.execute(this, piece));
      }
    } finally {
      this.busy = false;
    }
  }
}

/** QEMU's checks of a request object: `execute` (a string), `arguments` (an object) and `id`, nothing else. */
function checkRequest(request: unknown): { name: string; args: Record<string, unknown> } {
  if (!isObject(request)) throw new QmpError("GenericError", "QMP input must be a JSON object");
  for (const key of Object.keys(request)) {
    if (key === "execute") {
      if (typeof request.execute !== "string") throw new QmpError("GenericError", "QMP input member 'execute' must be a string");
    } else if (key === "arguments") {
      if (!isObject(request.arguments)) throw new QmpError("GenericError", "QMP input member 'arguments' must be an object");
    } else if (key !== "id") throw new QmpError("GenericError", `QMP input member '${key}' is unexpected`);
  }
  if (!("execute" in request)) throw new QmpError("GenericError", "QMP input lacks member 'execute'");
  return { name: request.execute as string, args: (request.arguments as Record<string, unknown> | undefined) ?? {} };
}

const TYPE_NAMES: Record<Param["type"], string> = { str: "string", bool: "boolean", int: "integer", "[str]": "array of strings", "[capability]": "array of {capability: string, state: boolean}" };
const HAS_TYPE: Record<Param["type"], (value: unknown) => boolean> = {
  str: (v) => typeof v === "string",
  bool: (v) => typeof v === "boolean",
  int: (v) => Number.isSafeInteger(v),
  "[str]": (v) => Array.isArray(v) && v.every((s) => typeof s === "string"),
  "[capability]": (v) => Array.isArray(v) && v.every((c) => typeof c === "object" && c !== null && typeof c.capability === "string" && typeof c.state === "boolean" && Object.keys(c).length === 2),
};

/** Every argument checked against the command's parameters before it runs: a refused call changes nothing. */
function checkArguments(command: QmpCommand, args: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(args)) if (!(key in command.params)) throw new QmpError("GenericError", `Parameter '${key}' is unexpected`);
  const checked: Record<string, unknown> = {};
  for (const [key, param] of Object.entries(command.params)) {
    const value = args[key];
    if (value === undefined) {
      if (!param.optional) throw new QmpError("GenericError", `Parameter '${key}' is missing`);
      continue;
    }
    if (!HAS_TYPE[param.type](value)) throw new QmpError("GenericError", `Invalid parameter type for '${key}', expected: ${TYPE_NAMES[param.type]}`);
    checked[key] = value;
  }
  return checked;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
