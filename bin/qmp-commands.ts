// The QMP commands hv answers, one record each: its parameters (checked by the server before it
// runs) and a handler. QEMU's names where QEMU has the command; `hv-snapshot-save` is ours, since
// QEMU's `snapshot-save` makes internal snapshots in qcow2 images as a job, and ours writes one
// external file and answers when it is written. Every VM command takes an optional `vm` (its name):
// the one VM of `hv run` needs none, a fleet names it.

import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { QmpMigration, QmpServer, QmpSession, QmpVm } from "./qmp.js";

/** The QEMU error classes hv answers with (QEMU has a few more, for devices and KVM). */
export type QmpErrorClass = "GenericError" | "CommandNotFound";

/** A refused command: the class and desc of its `{"error": ...}` reply. */
export class QmpError extends Error {
  constructor(
    readonly errorClass: QmpErrorClass,
    desc: string,
  ) {
    super(desc);
    this.name = "QmpError";
  }
}

/** The QEMU version we answer to (the protocol of QEMU 8), and ours. */
export const QMP_VERSION = { qemu: { micro: 0, minor: 0, major: 8 }, package: "hv 0.1.0" } as const;

export interface Param {
  type: "str" | "bool" | "[str]" | "int" | "[capability]";
  optional?: true;
}

export interface CommandContext {
  server: QmpServer;
  session: QmpSession;
}

export interface QmpCommand {
  params: Record<string, Param>;
  /** Arguments arrive checked against `params`; the value is the reply's `return` ({} for none). */
  run(context: CommandContext, args: Record<string, unknown>): unknown;
}

const VM: Record<string, Param> = { vm: { type: "str", optional: true } };

/** QEMU's migration parameters hv has (bytes/s, ms, auto-converge's percentages). */
const MIGRATION_PARAMETERS = ["max-bandwidth", "downtime-limit", "throttle-trigger-threshold", "cpu-throttle-initial", "cpu-throttle-increment", "max-cpu-throttle"];

/** Start or change the named VM's migration (`vm`, or the only VM); a RangeError becomes the command's GenericError. */
function onMigration(server: QmpServer, args: Record<string, unknown>, change: (m: QmpMigration, vm: QmpVm) => void): Record<string, never> {
  const { vm, migration } = server.migrationOf(args.vm as string | undefined);
  if (!migration) throw new QmpError("GenericError", "this hv cannot migrate its VMs");
  try {
    change(migration, vm);
  } catch (error) {
    throw new QmpError("GenericError", (error as Error).message);
  }
  return {};
}

/** What the named VM's migration says (`ask`), {} or [] when this hv has none. */
function askMigration<T>(server: QmpServer, args: Record<string, unknown>, ask: (m: QmpMigration) => T, none: T): T {
  const { migration } = server.migrationOf(args.vm as string | undefined);
  return migration ? ask(migration) : none;
}

const qmpCapabilities: QmpCommand = {
  params: { enable: { type: "[str]", optional: true } },
  run({ session }, args) {
    if (session.negotiated) throw new QmpError("CommandNotFound", "Capabilities negotiation is already complete, command ignored");
    // We offer no capabilities (QEMU's only one is out-of-band execution).
    for (const capability of (args.enable as string[] | undefined) ?? []) throw new QmpError("GenericError", `Capability '${capability}' not available`);
    session.negotiated = true;
  },
};

/** Commands of a client in negotiation mode: only this one, as in QEMU. */
export const NEGOTIATION_COMMANDS: Record<string, QmpCommand> = { qmp_capabilities: qmpCapabilities };

/** Kill an isolated component's worker as a crash would (isolation tests): the next request restarts it. */
const componentKill: QmpCommand = {
  params: { component: { type: "str" } },
  run({ server }, args) {
    const name = args.component as string;
    if (!server.options.components?.kill(name)) throw new QmpError("GenericError", `no isolated component '${name}' (hv run --isolate runs 'block' in a worker)`);
    return {};
  },
};

export const COMMANDS: Record<string, QmpCommand> = {
  qmp_capabilities: qmpCapabilities,
  "query-commands": { params: {}, run: () => Object.keys(COMMANDS).map((name) => ({ name })) },
  "query-version": { params: {}, run: () => QMP_VERSION },
  "query-name": { params: {}, run: ({ server }) => ({ name: server.vm(undefined).name }) },
  "query-status": { params: VM, run: ({ server }, args) => queryStatus(server, server.vm(args.vm as string | undefined)) },
  balloon: {
    params: { value: { type: "int" }, ...VM },
    run: ({ server }, args) => balloon(server, server.vm(args.vm as string | undefined), args.value as number),
  },
  "query-balloon": { params: VM, run: ({ server }, args) => queryBalloon(server, server.vm(args.vm as string | undefined)) },
  migrate: {
    // QEMU's historical block migration: `inc` sends the overlays (backing files shared), `blk` whole disks (not in hv).
    params: { uri: { type: "str" }, inc: { type: "bool", optional: true }, blk: { type: "bool", optional: true }, ...VM },
    run: ({ server }, args) =>
      onMigration(server, args, (m, vm) => {
        if (args.blk === true) throw new RangeError("blk: hv does not copy whole disks; with qcow2 overlays over shared backing files, use inc");
        m.start(vm.index, args.uri as string, args.inc === true);
      }),
  },
  "query-migrate": { params: VM, run: ({ server }, args) => askMigration(server, args, (m) => m.query(), {}) },
  migrate_cancel: { params: VM, run: ({ server }, args) => askMigration(server, args, (m) => void m.cancel(), undefined) },
  "migrate-set-parameters": {
    params: { ...Object.fromEntries(MIGRATION_PARAMETERS.map((n) => [n, { type: "int", optional: true } as Param])), ...VM },
    run: ({ server }, args) => onMigration(server, args, (m) => m.setParameters(Object.fromEntries(MIGRATION_PARAMETERS.map((n) => [n, args[n] as number | undefined])))),
  },
  "query-migrate-parameters": { params: VM, run: ({ server }, args) => askMigration(server, args, (m) => ({ ...m.parameters }), {}) },
  "migrate-set-capabilities": {
    params: { capabilities: { type: "[capability]" }, ...VM },
    run: ({ server }, args) => onMigration(server, args, (m) => m.setCapabilities(args.capabilities as Array<{ capability: string; state: boolean }>)),
  },
  // QEMU's: switch the running migration (postcopy-ram set before it began) to post-copy.
  "migrate-start-postcopy": { params: VM, run: ({ server }, args) => onMigration(server, args, (m) => m.startPostcopy()) },
  "query-migrate-capabilities": {
    params: VM,
    run: ({ server }, args) => askMigration(server, args, (m) => Object.entries(m.capabilities).map(([capability, state]) => ({ capability, state })), []),
  },
  "query-memory": { params: VM, run: ({ server }, args) => queryMemory(server, server.vm(args.vm as string | undefined)) },
  stop: { params: VM, run: ({ server }, args) => stop(server, server.vm(args.vm as string | undefined)) },
  cont: { params: VM, run: ({ server }, args) => cont(server, server.vm(args.vm as string | undefined)) },
  quit: { params: {}, run: ({ server }) => void server.options.quit() },
  "hv-snapshot-save": {
    params: { file: { type: "str" }, compress: { type: "bool", optional: true }, ...VM },
    run: ({ server }, args) => save(server, server.vm(args.vm as string | undefined), args.file as string, args.compress as boolean | undefined),
  },
  "human-monitor-command": {
    params: { "command-line": { type: "str" }, "cpu-index": { type: "int", optional: true } },
    run: (context, args) => humanMonitor(context.server, args["command-line"] as string),
  },
  "x-component-kill": componentKill,
};

/** QEMU's StatusInfo; `reason` (ours) says why a paused VM waits: "host-memory" when the host's memory limit paused it. */
async function queryStatus(server: QmpServer, vm: QmpVm): Promise<{ status: "running" | "paused"; running: boolean; singlestep: false; reason?: "host-memory" }> {
  const { running, pausedFor } = await server.options.control.query(vm.index);
  return { status: running ? "running" : "paused", running, singlestep: false, ...(!running && pausedFor === "memory" ? { reason: "host-memory" as const } : {}) };
}

/** QEMU's `balloon`: `value` is the RAM the guest should have, in bytes (its balloon takes the rest). */
async function balloon(server: QmpServer, vm: QmpVm, value: number): Promise<void> {
  if (!Number.isSafeInteger(value) || value <= 0) throw new QmpError("GenericError", "Parameter 'value' expects a size of more than 0 bytes");
  await server.options.control.balloon(vm.index, Math.ceil(value / 4096));
}

/** QEMU's BalloonInfo: `actual`, the RAM the guest has now (its RAM less what its balloon holds), in bytes. */
async function queryBalloon(server: QmpServer, vm: QmpVm): Promise<{ actual: number }> {
  const b = await server.options.control.balloon(vm.index);
  return { actual: b.actual * 4096 };
}

/** Our own: the VM's memory as the memory manager counts it, and the host's, in bytes. */
async function queryMemory(server: QmpServer, vm: QmpVm) {
  const { memory: m } = await server.options.control.query(vm.index);
  return {
    vm: { "private-bytes": m.private * 4096, "zero-pages": m.zero, "shared-pages": m.shared, "touched-pages": m.touched, "ballooned-pages": m.ballooned, "limit-bytes": m.limit * 4096 },
    host: { "total-bytes": m.hostTotal * 4096, "free-bytes": m.hostFree * 4096, "shared-frames": m.scanner.sharedFrames },
    scanner: { scanned: m.scanner.scanned, merged: m.scanner.merged, zeroed: m.scanner.zeroed, broken: m.scanner.broken },
  };
}

/** `stop`: STOP goes out only when the VM ran, and before the reply, as in QEMU. */
async function stop(server: QmpServer, vm: QmpVm): Promise<void> {
  const { wasRunning } = await server.options.control.pause(vm.index);
  if (wasRunning) server.emit("STOP");
}

async function cont(server: QmpServer, vm: QmpVm): Promise<void> {
  const { wasRunning } = await server.options.control.resume(vm.index);
  if (!wasRunning) server.emit("RESUME");
}

/**
 * Save to `file` (relative to hv's working directory); a regular file there is replaced, anything
 * else is refused before the VM is touched. The reply waits until the file is written.
 */
async function save(server: QmpServer, vm: QmpVm, file: string, compress: boolean | undefined): Promise<void> {
  if (file === "") throw new QmpError("GenericError", "Parameter 'file' is empty");
  const path = resolve(server.options.cwd, file);
  const existing = statOrNull(path);
  if (existing && !existing.isFile()) throw new QmpError("GenericError", `'${path}' exists and is not a regular file`);
  if (!existing && !statOrNull(dirname(path))?.isDirectory()) throw new QmpError("GenericError", `cannot write '${path}': '${dirname(path)}' is not a directory`);
  await server.options.control.save(vm.index, vm.saveRequest(path, compress));
}

function statOrNull(path: string): ReturnType<typeof statSync> | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

const HMP_HELP = ["stop", "cont|c", "info status", "info version", "savevm NAME  (writes NAME.hvsnap in hv's working directory)", "quit|q"];

/**
 * QEMU's `human-monitor-command`: the few monitor commands that map onto ours. Output is text with
 * CRLF line ends, errors included, as QEMU's human monitor gives it.
 */
async function humanMonitor(server: QmpServer, line: string): Promise<string> {
  const [name = "", ...rest] = line.trim().split(/\s+/);
  const vm = server.vm(undefined);
  try {
    if (name === "stop" && rest.length === 0) await stop(server, vm);
    else if ((name === "cont" || name === "c") && rest.length === 0) await cont(server, vm);
    else if ((name === "quit" || name === "q") && rest.length === 0) server.options.quit();
    else if (name === "info" && rest.join(" ") === "status") return `VM status: ${(await queryStatus(server, vm)).status}\r\n`;
    else if (name === "info" && rest.join(" ") === "version") return `${QMP_VERSION.qemu.major}.${QMP_VERSION.qemu.minor}.${QMP_VERSION.qemu.micro} (${QMP_VERSION.package})\r\n`;
    else if (name === "savevm" && rest.length === 1) await save(server, vm, rest[0].endsWith(".hvsnap") ? rest[0] : `${rest[0]}.hvsnap`, undefined);
    else if (name === "help" || name === "?") return HMP_HELP.map((h) => `${h}\r\n`).join("");
    else if (name === "") return "";
    else return `unknown command: '${line.trim()}'\r\n`;
  } catch (error) {
    return `Error: ${error instanceof Error ? error.message : String(error)}\r\n`;
  }
  return "";
}
