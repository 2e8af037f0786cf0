// `hv fleet FILE`: several VMs on one kernel, described in a JSON file. They share the memory
// manager, the block driver and the control component (and one QMP socket, with VM names); each
// has its own VMM, console and drives. A VM that ends or faults ends alone; the others run on.
//
//   { "qmp": "unix:/tmp/fleet.qmp",                      optional
//     "vms": [ { "name": "web",                          required, unique: [A-Za-z0-9_.-]{1,32}
//                "mem": "128M",                          default 128M
//                "kernel": "bzImage", "initrd": "...", "append": "...",  or "bios": "rom.bin",
//                                                        or "restore": "vm.hvsnap" (with "clone": true, a
//                                                        linked clone of it); none: the default guest
//                "drives": ["file=a.qcow2,format=qcow2"], hv run's --drive spelling
//                "console": "file:web.log" | "unix:/tmp/web.sock",   default file:NAME.log
//                "apic": false, "acpi": true, "debugExit": false,
//                "smp": 1,                               vCPUs, 1 to 8 (more than 1: local APICs, no PV, no snapshots)
//                "pv": true,                             KVM's and our paravirtual interfaces (false: hidden)
//                "group": 0 } ],                         trust group: VMs share equal pages only within one (default 0)
//     "channels": [["web", "db"]] }                      optional: pairs of VMs connected by an hv PV
//                                                        channel (event channels, grant copy); no other
//                                                        pair can reach each other

import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { resolve } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { FileConsole, SocketConsole } from "../drivers/console/attach.js";
import type { DriveConfig } from "../drivers/block/component.js";
import { ensureDefaultGuest } from "../services/guest/index.js";
import { SnapshotError } from "../services/snapshot/file.js";
import { BootImageError } from "../vmm/boot/index.js";
import { createX86Engine } from "../vmm/x86/index.js";
import { MAX_VM_MEMORY, peersOf } from "./compose.js";
import { HostControl } from "./host-control.js";
import { OutgoingMigration, downtimeSteps, migrationSummary } from "./migrate.js";
import type { QmpListener } from "./qmp-socket.js";
import { HostFileError, checkDrives, readInputFile } from "./host-files.js";
import { parseQmpAddress, shutdownCause, startQmp } from "./qmp-socket.js";
import { parseCpus, parseDrive, parseSize } from "./run-command.js";
import { MAX_CPUS } from "../vmm/smp.js";
import { openSavedVm, platformConfig, type RestoredVm, type SaveRequest } from "./snapshot.js";
import { bootPlanFor, exitVerdict, runFleet, type FleetVm, type HostComponents } from "./vm-runner.js";

/** One VM of the file, checked. */
export interface FleetEntry {
  name: string;
  memoryBytes: number;
  kernel?: string;
  initrd?: string;
  append?: string;
  bios?: string;
  restore?: string;
  /** With restore: a linked clone of the snapshot (overlays NAME-vdX.qcow2 in the working directory). */
  clone: boolean;
  drives: DriveConfig[];
  console: { kind: "file" | "unix"; path: string };
  apic: boolean;
  acpi: boolean;
  debugExit: boolean;
  /** vCPUs (default 1). */
  smp: number;
  /** Offer KVM's paravirtual interface (default true). */
  pv: boolean;
  /** Trust group: VMs share equal pages only within one. */
  group: number;
}

export interface FleetFile {
  qmp?: string;
  vms: FleetEntry[];
  /** Pairs of VM names connected by an hv PV channel. */
  channels: Array<[string, string]>;
}

const KEYS = new Set(["name", "mem", "kernel", "initrd", "append", "bios", "restore", "clone", "drives", "console", "apic", "acpi", "debugExit", "pv", "group", "smp"]);
/** VMs one fleet may hold (the consoles' interrupt lines and the kernel's frames bound it long before). */
const MAX_FLEET = 64;

/** The fleet file's VMs, every field checked; throws InvalidArgumentError naming the VM and field. */
export function parseFleet(text: string, where: string): FleetFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError(`${where}: not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!isRecord(raw)) throw new InvalidArgumentError(`${where}: must be an object with "vms"`);
  for (const k of Object.keys(raw)) if (k !== "vms" && k !== "qmp" && k !== "channels") throw new InvalidArgumentError(`${where}: unknown key '${k}' (vms, qmp, channels)`);
  if (!Array.isArray(raw.vms) || raw.vms.length === 0 || raw.vms.length > MAX_FLEET) throw new InvalidArgumentError(`${where}: "vms" must be a list of 1 to ${MAX_FLEET} VMs`);
  if (raw.qmp !== undefined && typeof raw.qmp !== "string") throw new InvalidArgumentError(`${where}: "qmp" must be a string like unix:PATH`);
  const names = new Set<string>();
  const vms = raw.vms.map((v: unknown, i: number) => {
    const at = `${where}: vms[${i}]`;
    if (!isRecord(v)) throw new InvalidArgumentError(`${at}: must be an object`);
    for (const k of Object.keys(v)) if (!KEYS.has(k)) throw new InvalidArgumentError(`${at}: unknown key '${k}'`);
    const str = (k: string): string | undefined => {
      if (v[k] === undefined) return undefined;
      if (typeof v[k] !== "string" || v[k] === "") throw new InvalidArgumentError(`${at}.${k}: must be a non-empty string`);
      return v[k] as string;
    };
    const bool = (k: string, absent = false): boolean => {
      if (v[k] === undefined) return absent;
      if (typeof v[k] !== "boolean") throw new InvalidArgumentError(`${at}.${k}: must be true or false`);
      return v[k] as boolean;
    };
    const name = str("name");
    if (!name || !/^[A-Za-z0-9_.-]{1,32}$/.test(name)) throw new InvalidArgumentError(`${at}.name: 1 to 32 of A-Z a-z 0-9 _ . -`);
    if (names.has(name)) throw new InvalidArgumentError(`${at}.name: '${name}' is taken by another VM`);
    names.add(name);
    const mem = str("mem");
    let memoryBytes = 128 << 20;
    if (mem !== undefined) {
      try {
        memoryBytes = parseSize(mem);
      } catch (error) {
        throw new InvalidArgumentError(`${at}.mem: ${(error as Error).message}`);
      }
      if (memoryBytes < 2 << 20 || memoryBytes > MAX_VM_MEMORY) throw new InvalidArgumentError(`${at}.mem: must be between 2M and ${MAX_VM_MEMORY / 2 ** 20}M`);
    }
    if (v.drives !== undefined && (!Array.isArray(v.drives) || v.drives.some((d) => typeof d !== "string"))) throw new InvalidArgumentError(`${at}.drives: must be a list of file=PATH[,format=...][,readonly=on] strings`);
    let drives: DriveConfig[] = [];
    for (const d of (v.drives as string[] | undefined) ?? []) {
      try {
        drives = parseDrive(d, drives);
      } catch (error) {
        throw new InvalidArgumentError(`${at}.drives: ${(error as Error).message}`);
      }
    }
    const sources = ["kernel", "bios", "restore"].filter((k) => v[k] !== undefined);
    if (sources.length > 1) throw new InvalidArgumentError(`${at}: give one of kernel, bios, restore, not ${sources.join(" and ")}`);
    const restore = str("restore");
    if (v.clone !== undefined && !restore) throw new InvalidArgumentError(`${at}.clone: only with restore`);
    if (restore && (v.initrd !== undefined || v.append !== undefined || drives.length > 0)) throw new InvalidArgumentError(`${at}: restore takes the VM from the file (no initrd, append or drives)`);
    const smp = cpusOf(v.smp, at);
    if (smp > 1 && restore) throw new InvalidArgumentError(`${at}.smp: a restored VM has the vCPUs it was saved with (snapshots hold one)`);
    if (smp > 1 && v.acpi === false) throw new InvalidArgumentError(`${at}.smp: several vCPUs need ACPI (its MADT lists the processors)`);
    const consoleSpec = str("console") ?? `file:${name}.log`;
    const m = /^(file|unix):(.+)$/.exec(consoleSpec);
    if (!m) throw new InvalidArgumentError(`${at}.console: file:PATH or unix:PATH, not '${consoleSpec}'`);
    return {
      name,
      memoryBytes,
      kernel: str("kernel"),
      initrd: str("initrd"),
      append: str("append"),
      bios: str("bios"),
      restore,
      clone: bool("clone"),
      drives,
      console: { kind: m[1] as "file" | "unix", path: m[2] },
      apic: bool("apic"),
      acpi: v.acpi === undefined ? true : bool("acpi"),
      debugExit: bool("debugExit"),
      smp,
      pv: bool("pv", true),
      group: trustGroup(v.group, at),
    };
  });
  const consoles = new Set<string>();
  for (const vm of vms) {
    const path = resolve(vm.console.path);
    if (consoles.has(path)) throw new InvalidArgumentError(`${where}: VM ${vm.name}'s console ${vm.console.path} is another VM's too`);
    consoles.add(path);
  }
  return { qmp: raw.qmp as string | undefined, vms, channels: parseChannels(raw.channels, vms, where) };
}

/** "smp": a whole number of vCPUs (default 1). */
function cpusOf(raw: unknown, at: string): number {
  if (raw === undefined) return 1;
  if (typeof raw !== "number") throw new InvalidArgumentError(`${at}.smp: must be a number of vCPUs, 1 to ${MAX_CPUS}`);
  try {
    return parseCpus(String(raw));
  } catch (error) {
    throw new InvalidArgumentError(`${at}.smp: ${(error as Error).message}`);
  }
}

/** "channels": pairs of names of this fleet's VMs, each pair once (compose's peersOf checks them). */
function parseChannels(raw: unknown, vms: readonly { name: string }[], where: string): Array<[string, string]> {
  if (raw === undefined) return [];
  const pair = (c: unknown): c is [string, string] => Array.isArray(c) && c.length === 2 && c.every((n) => typeof n === "string");
  if (!Array.isArray(raw) || !raw.every(pair)) throw new InvalidArgumentError(`${where}: "channels" must be a list of pairs of VM names, like [["a", "b"]]`);
  try {
    peersOf(vms, raw);
  } catch (error) {
    throw new InvalidArgumentError(`${where}: "channels": ${(error as Error).message}`);
  }
  return raw.map(([a, b]) => [a, b]);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A fleet entry's "group": a whole number from 0 to 1000 (default 0). */
function trustGroup(value: unknown, at: string): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 1000) throw new InvalidArgumentError(`${at}.group: a whole number from 0 to 1000`);
  return value;
}

export function registerFleetCommand(program: Command): void {
  program
    .command("fleet")
    .description("run several VMs on one kernel, described in a JSON file (see the README: each has a name, a boot source or a snapshot, RAM, drives and a console)")
    .argument("<file>", "the fleet file (JSON)")
    .option("--qmp <address>", "one QMP socket for all the VMs (unix:PATH); commands name a VM with the argument vm")
    .option("--timeout <seconds>", "stop after this much virtual time", Number)
    .option("--host-mem <size>", "host memory all the VMs' frames may take together, e.g. 1G (guest RAM is backed when written; at the limit a VM pauses)", parseSize)
    .option("--isolate", "run the block driver in a worker thread of its own: if it throws, hangs (10 s watchdog) or passes its heap limit (256 MiB), it is restarted and the guest's disk I/O goes on (each request costs a copy)", false)
    .option("--no-wasm", "no WebAssembly tier for hot guest code: guest RAM then lives in JS memory, and frames the VM frees (balloon, free page reporting) go back to the OS; the tier's shared memory keeps them for reuse. Costs about a fifth more CPU on the default guest's boot (HV_WASM=0 does the same)")
    .action(async (file: string, opts: FleetOpts) => {
      process.exitCode = await fleet(file, opts);
    });
}

interface FleetOpts {
  qmp?: string;
  timeout?: number;
  hostMem?: number;
  isolate: boolean;
  /** False with --no-wasm. */
  wasm: boolean;
}

async function fleet(file: string, opts: FleetOpts): Promise<number> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new InvalidArgumentError(`fleet file '${file}' cannot be read`);
  }
  if (opts.timeout !== undefined && !(opts.timeout > 0 && opts.timeout <= 1e6)) throw new InvalidArgumentError("--timeout: a number of seconds above 0, at most 1,000,000");
  const spec = parseFleet(text, file);
  const restored: (RestoredVm | undefined)[] = [];
  const consoles: (FileConsole | SocketConsole)[] = [];
  const control = new HostControl();
  let quit = false;
  let raiseInput: (vm: number) => void = () => {};
  try {
    const vms: FleetVm[] = [];
    const saveRequests: ((path: string, compress?: boolean) => SaveRequest)[] = [];
    for (const [i, e] of spec.vms.entries()) {
      const at = `VM ${e.name}`;
      const r = e.restore ? openSavedVm(e.restore, { clone: e.clone ? { dir: process.cwd(), name: e.name } : undefined }) : undefined;
      restored.push(r);
      let kernel = e.kernel, initrd = e.initrd, append = e.append;
      if (!kernel && !e.bios && !r) {
        const guest = await ensureDefaultGuest({});
        kernel = guest.kernel;
        initrd ??= guest.initrd;
        append ??= guest.append;
      }
      const memoryBytes = r?.memoryBytes ?? e.memoryBytes;
      const plan =
        r?.plan ??
        bootPlanFor({
          memoryBytes,
          kernelImage: kernel ? readInputFile(kernel, `${at}: kernel`, memoryBytes, "its RAM") : undefined,
          kernelName: kernel,
          initrd: initrd ? readInputFile(initrd, `${at}: initrd`, memoryBytes, "its RAM") : undefined,
          append,
          bios: e.bios ? readInputFile(e.bios, `${at}: bios`, 16 << 20, "the flash window") : undefined,
        });
      const drives = r?.drives ?? e.drives;
      const platform = r?.platform ?? { apic: e.apic || e.smp > 1, acpi: e.acpi, debugcon: false, debugExitPort: e.debugExit ? 0xf4 : -1, pv: e.pv };
      const console = e.console.kind === "file" ? new FileConsole(e.console.path) : await SocketConsole.listen(e.console.path, () => raiseInput(i));
      consoles.push(console);
      vms.push({ name: e.name, memoryBytes, plan, console, drives, trustGroup: e.group, ...platformConfig(platform), cpus: e.smp, resume: r ? { state: r.state, ram: r.reader, share: r.clone } : undefined });
      saveRequests.push((path, compress = false) => ({ path, name: e.name, memoryBytes, platform, roms: plan.roms, drives, compress }));
      if (r) control.resume(i).catch((error: Error) => process.stderr.write(`hv: ${e.name}: ${error.message}\n`));
    }
    checkDrives(vms.flatMap((vm) => vm.drives ?? []));
    const address = opts.qmp ?? spec.qmp;
    let socketPath: string | null = null;
    try {
      socketPath = address === undefined ? null : parseQmpAddress(address);
    } catch (error) {
      throw new InvalidArgumentError(`qmp: ${(error as Error).message}`);
    }
    // The isolated components exist once the fleet runs (onStart).
    let hostComponents: HostComponents | null = null;
    const components: HostComponents = { kill: (component) => hostComponents?.kill(component) ?? false };
    // QMP `migrate` with a VM's name: that VM goes to another hv; once it runs there, it ends here alone (the others run on).
    let qmp: QmpListener | null = null;
    const migrations = spec.vms.map((e, index) => {
      const moved = (r: Parameters<typeof migrationSummary>[0]) => {
        process.stderr.write(`hv: ${e.name}: ${migrationSummary(r)}; the VM runs at the destination now\nhv: ${e.name}: downtime: ${downtimeSteps(r)}\n`);
        control.end(index).catch((error: Error) => process.stderr.write(`hv: ${e.name}: ${error.message}\n`));
      };
      const { path: _path, ...request } = saveRequests[index]("");
      const migration = new OutgoingMigration(control, () => request, (host, port) => connect(port, host), moved, (info) => qmp?.emit("MIGRATION", { vm: e.name, ...info }));
      migration.postcopyAllowed = false;
      migration.blockDrives = () => request.drives.map((_, k) => hostComponents?.drive?.(index, k) ?? null);
      return migration;
    });
    qmp = socketPath
      ? await startQmp(socketPath, { control, vms: spec.vms.map((e, index) => ({ name: e.name, index, saveRequest: saveRequests[index], migration: migrations[index] })), quit: () => (quit = true), components }).catch((error: Error) => {
          throw new InvalidArgumentError(`qmp: ${error.message}`);
        })
      : null;
    process.stderr.write(`hv: fleet of ${vms.length}: ${spec.vms.map((e) => `${e.name} (console ${e.console.kind}:${e.console.path})`).join(", ")}\n`);
    const onSignal = () => (quit = true);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      const result = await runFleet(vms, {
        engine: createX86Engine,
        channels: spec.channels,
        control,
        maxVirtualNs: opts.timeout ? opts.timeout * 1e9 : undefined,
        hostMemoryBytes: opts.hostMem,
        isolate: opts.isolate ? {} : null,
        wasm: opts.wasm && process.env.HV_WASM !== "0",
        pace: { now: () => performance.now() * 1e6 },
        // While a VM moves, the host acts between short slices (the stop, frames, the ACK).
        quick: { clock: { now: () => performance.now() * 1e6 }, active: () => migrations.some((m) => m.status === "active") },
        onStart: (_k, raise, started) => {
          hostComponents = started;
          raiseInput = raise.input;
          control.raise = raise.control;
          raise.control();
        },
        stopRequested: () => quit,
      });
      control.close("the fleet has ended");
      await qmp?.close(shutdownCause(result.stop));
      let status = 0;
      for (const [i, outcome] of result.vms.entries()) {
        const tail = String.fromCharCode(...consoles[i].tail.slice(-4096));
        const verdict = outcome.ended ? exitVerdict({ stop: "ended", why: outcome.why, status: outcome.status, message: outcome.message }, tail) : { status: 0, message: `still running when the fleet stopped (${result.stop})` };
        process.stderr.write(`hv: ${spec.vms[i].name}: status ${verdict.status}${verdict.message ? `: ${verdict.message}` : ""}\n`);
        if (status === 0) status = verdict.status;
      }
      return status;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      await qmp?.close("host-error");
    }
  } catch (error) {
    if (error instanceof BootImageError || error instanceof SnapshotError || error instanceof HostFileError) throw new InvalidArgumentError(error.message);
    throw error;
  } finally {
    control.close("hv has stopped");
    for (const c of consoles) await c.close();
    for (const r of restored) r?.reader.close();
  }
}
