// `hv run`: boot a VM. With no --kernel and no --bios it boots the default guest (Debian's i686
// kernel and a busybox initramfs, fetched and built on first use).
import { connect, createServer, type Socket } from "node:net";
import { IncomingLink } from "./incoming-link.js";
import { ExitStatus } from "./exit-status.js";
import { OutgoingMigration, downtimeSteps, migrationSummary, parseTcpUri, receiveMigration, type IncomingOptions, type IncomingStream, type IncomingVm, type MigrationSocket } from "./migrate.js";
import { VcpuState } from "../kernel/index.js";
import type { VmState } from "../vmm/protocol.js";
import { MigrationError } from "../services/migration/stream.js";
import { type Command, InvalidArgumentError, Option } from "commander";
import { TerminalConsole } from "../drivers/console/host.js";
import { ChromeTrace } from "../services/chrome-trace.js";
import { ensureDefaultGuest } from "../services/guest/index.js";
import { bootPlanFor, exitVerdict, runVm, type HostComponents, type VmRunOptions } from "./vm-runner.js";
import { openSavedVm, platformConfig, warmChecks, type CheckedSetup, type RestoredVm, type SaveRequest } from "./snapshot.js";
import { ControlError, HostControl, saveFromConsole } from "./host-control.js";
import { parseQmpAddress, shutdownCause, startQmp, type QmpListener } from "./qmp-socket.js";
import { SnapshotError } from "../services/snapshot/file.js";
import { createX86Engine } from "../vmm/x86/index.js";
import { BootImageError } from "../vmm/boot/index.js";
import { MAX_DRIVES } from "../vmm/vmm.js";
import { MAX_CPUS } from "../vmm/smp.js";
import { MAX_ROM_SIZE } from "../vmm/boot/bios.js";
import { MAX_VM_MEMORY, type VmDrive } from "./compose.js";
import { OutputFile, checkDrives, identityOf, readInputFile, type FileIdentity } from "./host-files.js";
import type { DriveConfig } from "../drivers/block/component.js";
import type { FormatName } from "../drivers/block/image.js";

/** Parses sizes like 128M, 1G, 65536K or a byte count. */
export function parseSize(value: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`'${value}' is not a size (try 128M or 1G)`);
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as "" | "K" | "M" | "G"];
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`'${value}' is not a usable size`);
  return bytes;
}

/** Guest RAM `hv run` accepts: 2 MiB up to what the kernel's frames hold with the largest ROM. */
const MIN_MEM = 2 * 1024 * 1024;
const MEM_RANGE = `2M to ${MAX_VM_MEMORY / 2 ** 20}M`;

/** Longest time limit, in seconds (11.6 days): virtual ns stay exact integers far beyond it. */
const MAX_SECONDS = 1_000_000;
/** How often an incoming VM takes note of the pages that came (ms): what is left for the END is at most this long's worth. */
const TAKE_PAGES_MS = 10;

/** Parses a time limit in seconds: a finite decimal number, more than 0 and at most MAX_SECONDS. */
export function parseSeconds(value: string): number {
  if (!/^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value)) throw new InvalidArgumentError(`'${value}' is not a number of seconds`);
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`'${value}' is not a finite number of seconds`);
  if (!(n > 0)) throw new InvalidArgumentError(`'${value}': the limit must be more than 0 seconds`);
  if (n > MAX_SECONDS) throw new InvalidArgumentError(`'${value}': the limit can be at most ${MAX_SECONDS} seconds (11.6 days)`);
  return n;
}

/** Parses a number of vCPUs (`--smp`, fleet `smp`): a whole number from 1 to MAX_CPUS. */
export function parseCpus(value: string): number {
  if (!/^\s*\d+\s*$/.test(value)) throw new InvalidArgumentError(`'${value}' is not a whole number of vCPUs`);
  const n = Number(value);
  if (n < 1 || n > MAX_CPUS) throw new InvalidArgumentError(`'${value}': a VM has 1 to ${MAX_CPUS} vCPUs`);
  return n;
}

/** Parses `file=PATH[,format=FMT][,readonly=on|off]` (QEMU's -drive spelling, the keys we support). */
export function parseDrive(value: string, previous: DriveConfig[] = []): DriveConfig[] {
  const drive: { path?: string; format?: FormatName; readOnly?: boolean } = {};
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? "" : part.slice(eq + 1);
    if (key === "file" && v) drive.path = v;
    else if (key === "format") {
      const f = v === "vhd" ? "vpc" : v;
      if (!["raw", "qcow2", "vpc", "vmdk"].includes(f)) throw new InvalidArgumentError(`--drive format '${v}' is not one of raw, qcow2, vpc (vhd), vmdk`);
      drive.format = f as FormatName;
    } else if (key === "readonly" && ["on", "off"].includes(v)) drive.readOnly = v === "on";
    else throw new InvalidArgumentError(`--drive: '${part}' is not understood (file=PATH[,format=FMT][,readonly=on|off])`);
  }
  if (!drive.path) throw new InvalidArgumentError("--drive needs file=PATH");
  if (previous.length >= MAX_DRIVES) throw new InvalidArgumentError(`at most ${MAX_DRIVES} drives`);
  return [...previous, { path: drive.path, format: drive.format, readOnly: drive.readOnly }];
}

interface RunOpts {
  drive: DriveConfig[];
  kernel?: string;
  initrd?: string;
  append?: string;
  mem: number;
  smp: number;
  bios?: string;
  debugcon?: string;
  debugExit: boolean;
  trace?: string;
  apic: boolean;
  pv: boolean;
  acpi: boolean;
  pace?: boolean;
  timeout?: number;
  wallTimeout?: number;
  hostMem?: number;
  isolate: boolean;
  /** False with --no-wasm. */
  wasm: boolean;
  bootOk: boolean;
  restore?: string;
  incoming?: string;
  postcopyRam: boolean;
  ignoreDriveChanges: boolean;
  clone: boolean;
  compress: boolean;
  qmp?: string;
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("boot a VM: the default Debian guest, a Linux bzImage or Multiboot kernel (--kernel), or a ROM (--bios)")
    .option("--kernel <file>", "Linux bzImage (boot protocol 2.x) or Multiboot v1 kernel")
    .option("--initrd <file>", "initial ramdisk (a Multiboot kernel gets it as its first module)")
    .option("--append <cmdline>", "kernel command line")
    .addOption(new Option("--mem <size>", `guest RAM, ${MEM_RANGE}, e.g. 512M or 1G`).argParser(parseSize).default(128 * 1024 * 1024, "128M"))
    .addOption(new Option("--smp <n>", `virtual CPUs, 1 to ${MAX_CPUS} (more than 1: with local APICs, without the paravirtual interface, no snapshots)`).default(1).argParser(parseCpus))
    .option("--bios <file>", "firmware or test ROM, mapped below 4 GiB and at 0xE0000; the CPU starts at the reset vector")
    .option("--debugcon <where>", "port 0xe9 output: stdio or file:PATH")
    .option("--debug-exit", "isa-debug-exit at port 0xf4: a write of v ends hv with status (v << 1) | 1", false)
    .option("--drive <spec>", "a disk as virtio-blk (/dev/vda, vdb, ...): file=PATH[,format=raw|qcow2|vpc|vmdk][,readonly=on]; repeatable", parseDrive, [])
    .option("--isolate", "run the block driver in a worker thread of its own: if it throws, hangs (10 s watchdog) or passes its heap limit (256 MiB), it is restarted and the guest's disk I/O goes on (each request costs a copy)", false)
    .option("--no-wasm", "no WebAssembly tier for hot guest code: guest RAM then lives in JS memory, and frames the VM frees (balloon, free page reporting) go back to the OS; the tier's shared memory keeps them for reuse. Costs about a fifth more CPU on the default guest's boot (HV_WASM=0 does the same)")
    .option("--host-mem <size>", "host memory the VM's frames may take, e.g. 64M: guest RAM is backed when written, so --mem may be more; at the limit the VM pauses", parseSize)
    .option("--apic", "give the VM a local APIC and an I/O APIC (default: 8259 PIC only)", false)
    .option("--no-pv", "hide KVM's paravirtual interface (kvm-clock, hypercalls) that Linux uses by default")
    .option("--no-acpi", "no ACPI tables, ACPI PM timer, HPET or fw_cfg (the PC as hv had it before)")
    .option("--trace <file>", "write a Chrome trace of the run in host time (kernel IPC, VM exits by reason, device time in exit handlers)")
    .option("--pace", "hold virtual time back to wall time (default on a terminal)")
    .option("--no-pace", "run virtual time as fast as the host can")
    .option("--timeout <seconds>", "stop after this much virtual time (status 124)", parseSeconds)
    .option("--wall-timeout <seconds>", "stop after this much real (wall-clock) time (status 124)", parseSeconds)
    .option("--boot-ok", "default guest only: print BOOT-OK <uptime> and power off", false)
    .option("--incoming <uri>", "wait for a VM migrated from another hv (tcp:HOST:PORT, as QEMU's -incoming); it runs here once it arrived. With --postcopy-ram, a post-copy migration (the source's migrate-start-postcopy) runs here before all of its RAM came: the rest comes on first touch; if the connection breaks after that switch, the VM pauses (postcopy-paused) and hv ends with status 4: the VM is lost (no post-copy recovery). With a block migration (migrate inc=true), --drive file=PATH names where each block-migrated drive's new qcow2 overlay goes here, in order (default: the source's path)")
    .option("--postcopy-ram", "with --incoming: take a post-copy migration (QEMU's postcopy-ram capability, which a destination sets too); without it the source's migrate-start-postcopy is refused and the source keeps its VM. The connection is then read by a worker thread", false)
    .option("--restore <file>", "resume the VM saved in a snapshot file (RAM, devices, drives and --mem come from the file)")
    .option("--ignore-drive-changes", "with --restore: take drives that changed since the save as they are", false)
    .option("--clone", "with --restore: the snapshot is a template; run a linked clone whose disk writes go to new qcow2 overlays (NAME-vda.qcow2, ...) in the working directory", false)
    .option("--compress", "snapshots saved with Ctrl-A s are Brotli-compressed", false)
    .option("--qmp <address>", "a QMP control socket, unix:PATH (QEMU's protocol; hv ctl PATH COMMAND talks to it)", (v) => {
      try {
        return parseQmpAddress(v);
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message);
      }
    })
    .action(async (opts: RunOpts) => {
      process.exitCode = await run(opts);
    });
}

async function run(opts: RunOpts): Promise<number> {
  if (opts.smp > 1 && (opts.restore || opts.incoming))
    throw new InvalidArgumentError(`--smp ${opts.smp}: a resumed or migrated VM has the vCPUs it was saved with (snapshots hold one)`);
  if (opts.smp > 1 && !opts.acpi) throw new InvalidArgumentError(`--smp ${opts.smp} needs ACPI (its MADT lists the processors): leave out --no-acpi`);
  if (opts.restore && (opts.kernel || opts.bios || opts.initrd || opts.append || opts.drive.length > 0 || opts.bootOk))
    throw new InvalidArgumentError("--restore takes the VM from the file: --kernel, --initrd, --append, --bios, --drive and --boot-ok cannot be given with it");
  if (opts.postcopyRam && !opts.incoming) throw new InvalidArgumentError("--postcopy-ram goes with --incoming (the source sets the capability over QMP)");
  if (opts.incoming) return runIncoming(opts);
  let restored: RestoredVm | undefined;
  try {
    if (opts.clone && !opts.restore) throw new InvalidArgumentError("--clone needs --restore TEMPLATE");
    const clone = opts.clone ? { dir: process.cwd() } : undefined;
    restored = opts.restore ? openSavedVm(opts.restore, { ignoreDriveChanges: opts.ignoreDriveChanges, clone }) : undefined;
  } catch (error) {
    if (error instanceof SnapshotError) throw new InvalidArgumentError(error.inFile(opts.restore!).message);
    throw error;
  }
  try {
    return await runOrResume(opts, restored);
  } finally {
    restored?.reader.close();
  }
}

/** `--incoming tcp:HOST:PORT`: wait for one migration, check it, and run the VM that came. */
async function runIncoming(opts: RunOpts): Promise<number> {
  if (opts.restore || opts.kernel || opts.bios || opts.initrd || opts.append || opts.bootOk)
    throw new InvalidArgumentError("--incoming takes the VM from the stream: --restore, --kernel, --initrd, --append, --bios and --boot-ok cannot be given with it");
  // --drive names where the overlays of block-migrated drives (migrate inc) go here: new qcow2 files over the source's backing files.
  for (const d of opts.drive)
    if ((d.format && d.format !== "qcow2") || d.readOnly) throw new InvalidArgumentError(`--incoming: --drive file=${d.path} names a block-migrated drive's overlay here, a new qcow2 file (no other format, not read-only)`);
  if (opts.isolate && opts.drive.length > 0) throw new InvalidArgumentError("--incoming: block-migrated drives are written by the host into the block driver: not with --isolate");
  let address;
  try {
    address = parseTcpUri(opts.incoming!);
  } catch (error) {
    throw new InvalidArgumentError(`--incoming: ${(error as Error).message}`);
  }
  if (opts.postcopyRam) {
    // A worker thread owns the connection: after a post-copy switch the vCPU waits for a page
    // (Atomics.wait, on this thread) while the worker reads it off the connection. Only then: the
    // hop through the worker cost a pre-copy's downtime (1 Gbit/s bench, 3 alternated runs on a
    // busy machine: 38.3 ms median without it, 81.7 with it; its frames' arrival 3 ms after the
    // source sent them, against 2 to 87 ms).
    const link = await IncomingLink.listen(address.host, address.port).catch((error: Error) => {
      throw new InvalidArgumentError(`--incoming: cannot listen on ${opts.incoming}: ${error.message}`);
    });
    try {
      process.stderr.write(`hv: waiting for a migration on ${opts.incoming}\n`);
      await link.connected();
      return await receiveIncoming(opts, link.socket, (remote, pages) => link.postcopy(remote, pages));
    } finally {
      await link.close();
    }
  }
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new InvalidArgumentError(`--incoming: cannot listen on ${opts.incoming}: ${error.message}`)));
    server.listen(address.port, address.host, resolve);
  });
  process.stderr.write(`hv: waiting for a migration on ${opts.incoming}\n`);
  const socket = await new Promise<Socket>((resolve) => server.once("connection", resolve));
  server.close();
  // No Nagle: the ACK (or an ABORT) leaves at once.
  socket.setNoDelay(true);
  return receiveIncoming(opts, socket, undefined);
}

async function receiveIncoming(opts: RunOpts, socket: MigrationSocket, postcopy: IncomingOptions["postcopy"]): Promise<number> {
  const stream = receiveMigration(socket, { blockTargets: opts.drive.map((d) => d.path), devicesCheckedByLoad: true, postcopy });
  // Whoever waits for the VM hears what went wrong; no one else need.
  stream.vm.catch(() => {});
  const refused = (error: unknown) => {
    if (error instanceof MigrationError || error instanceof SnapshotError || error instanceof ControlError) return new InvalidArgumentError(`incoming migration refused: ${error.message}`);
    return error;
  };
  let setup: CheckedSetup;
  try {
    // The VM is built from the hello's setup while its pages come; END brings the state.
    const s = await stream.setup;
    if (!s) {
      // An older source, or a stream that failed already: what ended it is the answer.
      const why = new MigrationError("META", "the hello does not say how the VM is set up (ROMs, drives, platform)");
      stream.refuse(why);
      throw await stream.vm.then(() => why, (error: unknown) => error);
    }
    setup = s;
    warmChecks(setup);
  } catch (error) {
    throw refused(error);
  }
  const timeline = stream.timeline;
  let arrived: IncomingVm | null = null;
  try {
    return await runOrResume(opts, undefined, {
      mark: (name) => timeline.mark(name),
      started: () => {
        arrived?.accept();
        timeline.mark("resumed");
        timeline.close();
        process.stderr.write(`hv: the migrated VM runs: ${timeline.describe("end")}\nhv: the migrated VM's start took ${timeline.describeCpu("end")}\n`);
      },
      early: { setup, stream, arrived: (vm) => (arrived = vm) },
    });
  } catch (error) {
    throw refused(error);
  } finally {
    timeline.close();
    (arrived as IncomingVm | null)?.vm.reader.close();
  }
}

/**
 * An incoming VM's hooks: `started` the moment it resumes, `mark` at the steps before (a timeline);
 * `early`: the VM is built from the setup now and takes its state (LOAD) once the stream brought it.
 */
interface Arrival {
  started: () => void;
  mark: (step: string) => void;
  early?: { setup: CheckedSetup; stream: IncomingStream; arrived: (vm: IncomingVm) => void };
}

async function runOrResume(opts: RunOpts, restored: RestoredVm | undefined, arrival?: Arrival): Promise<number> {
  let debugconFile: string | null = null;
  if (opts.debugcon && opts.debugcon !== "stdio") {
    if (opts.debugcon.startsWith("file:") && opts.debugcon.length > 5) debugconFile = opts.debugcon.slice(5);
    else throw new InvalidArgumentError(`--debugcon takes stdio or file:PATH, not '${opts.debugcon}'`);
  }
  if (opts.mem < MIN_MEM || opts.mem > MAX_VM_MEMORY) throw new InvalidArgumentError(`--mem ${opts.mem / 2 ** 20}M is outside ${MEM_RANGE} (the kernel's frames hold 2 GiB: RAM, ROMs and the VMM's state)`);
  let kernelPath = opts.kernel;
  let initrdPath = opts.initrd;
  let append = opts.append;
  const early = arrival?.early?.setup;
  if (!kernelPath && !opts.bios && !restored && !early) {
    const guest = await ensureDefaultGuest({ bootOk: opts.bootOk });
    kernelPath = guest.kernel;
    initrdPath ??= guest.initrd;
    append ??= guest.append;
  }
  // What is read is capped by what the VM can hold: --mem for a kernel or an initrd, the flash window for a ROM.
  const ramLimit = `bytes that --mem ${opts.mem / 2 ** 20}M can hold`;
  const kernelImage = kernelPath ? readInputFile(kernelPath, opts.kernel ? "--kernel" : "the default guest's kernel", opts.mem, ramLimit) : undefined;
  const initrd = initrdPath ? readInputFile(initrdPath, opts.initrd ? "--initrd" : "the default guest's initrd", opts.mem, ramLimit) : undefined;
  const bios = opts.bios ? readInputFile(opts.bios, "--bios", MAX_ROM_SIZE, "bytes of the flash window below 4 GiB") : undefined;

  const memoryBytes = restored?.memoryBytes ?? early?.memoryBytes ?? opts.mem;
  // An incoming VM's shared drives are the source's until its stop: attached inactive, opened as the VM starts here.
  const drives: VmDrive[] = restored?.drives ?? early?.drives.map((d, i) => ({ ...d, inactive: !arrival!.early!.stream.blockMigrated(i) })) ?? opts.drive;
  // Drives and outputs are checked and opened before the VM starts: a bad one is an error now, not later.
  const read: Array<[string | undefined, string]> = [[kernelPath, "the kernel"], [initrdPath, "the initrd"], [opts.bios, "the ROM (--bios)"], [opts.restore, "the snapshot (--restore)"]];
  const inputs: FileIdentity[] = [...checkDrives(drives), ...read.flatMap(([path, what]) => identityOf(path, what) ?? [])];
  return runWith(opts, restored, { kernelPath, kernelImage, initrd, append, bios, memoryBytes, drives, debugconFile, inputs }, arrival);
}

/** What runOrResume checked and read. */
interface RunInputs {
  kernelPath?: string;
  kernelImage?: Uint8Array;
  initrd?: Uint8Array;
  append?: string;
  bios?: Uint8Array;
  memoryBytes: number;
  drives: VmDrive[];
  debugconFile: string | null;
  /** The files the run reads, which no output may be. */
  inputs: FileIdentity[];
}

/** Opens the outputs (debug console file, trace), once everything else was found good: each must be writable now. */
function openOutputs(opts: RunOpts, debugconFile: string | null, inputs: FileIdentity[]): { debugconOut: OutputFile | null; traceOut: OutputFile | null } {
  const reportLater = (message: string) => void process.stderr.write(`\r\nhv: ${message}\r\n`);
  const debugconOut = debugconFile ? OutputFile.open(debugconFile, "--debugcon", "append", inputs, reportLater) : null;
  try {
    const debugconId = identityOf(debugconFile, "the --debugcon file");
    const avoid = debugconId ? [...inputs, debugconId] : inputs;
    const traceOut = opts.trace ? OutputFile.open(opts.trace, "--trace", "truncate", avoid, reportLater) : null;
    return { debugconOut, traceOut };
  } catch (error) {
    debugconOut?.close();
    throw error;
  }
}

async function runWith(opts: RunOpts, restored: RestoredVm | undefined, inputs: RunInputs, arrival?: Arrival): Promise<number> {
  const { kernelPath, kernelImage, initrd, append, bios, memoryBytes, drives } = inputs;
  // Several vCPUs need local APICs (INIT/SIPI, IPIs): --smp implies --apic.
  const early = arrival?.early;
  const platform = restored?.platform ?? early?.setup.platform ?? { apic: opts.apic || opts.smp > 1, acpi: opts.acpi, debugcon: opts.debugcon !== undefined, debugExitPort: opts.debugExit ? 0xf4 : -1, pv: opts.pv };
  const vmOptions = { memoryBytes, kernelImage, kernelName: kernelPath, initrd, append, bios };
  let plan: VmRunOptions["plan"];
  try {
    // An incoming VM is built from its ROMs; its registers come with LOAD.
    plan = restored?.plan ?? (early ? { writes: [], roms: early.setup.roms, state: new VcpuState(), memoryMap: [] } : bootPlanFor(vmOptions));
  } catch (error) {
    if (error instanceof BootImageError) throw new InvalidArgumentError(error.message);
    throw error;
  }
  const { debugconOut, traceOut } = openOutputs(opts, inputs.debugconFile, inputs.inputs);
  const debugcon = opts.debugcon === "stdio" ? "stdio" : debugconOut;
  const name = restored?.name ?? early?.setup.name ?? "vm";
  const saveRequest = (path: string, compress = opts.compress): SaveRequest => ({ path, name, memoryBytes, platform, roms: plan!.roms, drives, compress });
  // The console (Ctrl-A s) and the QMP socket share one queue of commands to the VM.
  const control = new HostControl();
  // A migrated VM: the source hears that it runs here (and lets its VM go) the moment it resumes.
  if (restored) control.resume(0, arrival?.started).catch((error: Error) => process.stderr.write(`hv: ${error.message}\n`));
  let quit = false;
  // An incoming VM, built now: at the END it takes its state (LOAD) and runs; anything refused before ends hv (the source keeps the VM).
  let loaded: { state: VmState; vcpu: VcpuState } | null = null;
  let started = false;
  let refusal: unknown = null;
  /** An incoming VM's VMM answers its control portal: it is built, and waits for its state. */
  let vmmBuilt = false;
  if (early) control.query(0).then(() => (vmmBuilt = true), () => {});
  /** A post-copy migration broke after the switch (here: the VM cannot go on without the pages still at the source). */
  let postcopyBroken: string | null = null;
  // While the pages come, the VM takes note of them now and then: at the END, LOAD has only the last
  // ones to take (the 10,000 of the bench's guest took 2 ms of its downtime).
  const takingPages = early ? setInterval(() => {
    if (vmmBuilt && control.idle) control.takePages(0).catch(() => {});
  }, TAKE_PAGES_MS) : null;
  takingPages?.unref();
  early?.stream.vm
    .then(async (incoming) => {
      if (takingPages) clearInterval(takingPages);
      early.arrived(incoming);
      incoming.postcopy?.done.then(
        ({ pages, requested }) => process.stderr.write(`\r\nhv: post-copy: all ${pages} pages that stayed at the source came (${requested} asked for on first touch), each once; the migration is complete\r\n`),
        (error: Error) => {
          // QEMU's postcopy-paused: the VM stops rather than run with pages missing (and hv cannot recover it).
          postcopyBroken = `${error.message}; ${incoming.postcopy!.table.remaining} of its pages are still at the source`;
          process.stderr.write(`\r\nhv: post-copy migration broke after the switch (postcopy-paused): ${postcopyBroken}\r\n`);
          control.pause(0).catch(() => {}).finally(() => (quit = true));
        },
      );
      // The block-migrated disks' last chunks, into the overlays the VM has open.
      incoming.writeBlocks();
      loaded = { state: incoming.vm.state, vcpu: incoming.vm.plan.state };
      // Queued together: the control component takes both in one go.
      const loading = control.load(0);
      const resuming = control.resumeLoaded(0, () => {
        started = true;
        arrival!.started();
      });
      await Promise.all([loading, resuming]);
    })
    .catch((error: unknown) => {
      if (takingPages) clearInterval(takingPages);
      refusal ??= error;
      early.stream.refuse(error instanceof Error ? error : new Error(String(error)));
      quit = true;
    });

  // QMP `migrate`: the VM goes to another hv; once it runs there, this one ends (status 0).
  const migration = new OutgoingMigration(control, () => ({ name, memoryBytes, platform, roms: plan!.roms, drives }), (host, port) => connect(port, host), (r) => {
    process.stderr.write(`\r\nhv: ${migrationSummary(r)}; the VM runs at the destination now\r\nhv: downtime: ${downtimeSteps(r)}\r\n`);
    quit = true;
  }, (info) => qmp?.emit("MIGRATION", info));
  migration.onPostcopyPaused = (error) =>
    process.stderr.write(`\r\nhv: ${error.message}: the VM is split between the two hosts, so it cannot run here again; this hv keeps its pages, paused (postcopy-paused); hv has no post-copy recovery: quit ends it (status ${ExitStatus.VM_FAILED})\r\n`);
  migration.blockDrives = () => drives.map((_, index) => hostComponents?.drive?.(0, index) ?? null);
  // The isolated components exist once the VM runs (onStart).
  let hostComponents: HostComponents | null = null;
  const components: HostComponents = { kill: (component) => hostComponents?.kill(component) ?? false };
  let qmp: QmpListener | null = null;
  qmp = opts.qmp ? await startQmp(opts.qmp, { control, vms: [{ name, index: 0, saveRequest }], quit: () => (quit = true), migration, components }).catch((error: Error) => {
    throw new InvalidArgumentError(`--qmp: ${error.message}`);
  }) : null;
  // Host time: the trace shows where the run's real time goes (IPC, device models in exit handlers).
  const trace = opts.trace ? new ChromeTrace({ hostClock: () => performance.now() * 1e6 }) : null;
  const console = new TerminalConsole({ debugcon, onInput: () => raise(), onQuit: () => (quit = true), onSave: () => {
    // Snapshots hold one vCPU's state: the VMM refuses to pause a multiprocessor; say why here.
    if (!restored && opts.smp > 1) return void process.stderr.write(`\r\nhv: a VM with --smp ${opts.smp} cannot be saved (snapshots hold one vCPU)\r\n`);
    saveFromConsole(control, 0, saveRequest(`hv-${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.hvsnap`));
  } });
  let raise = () => {};
  const pace = opts.pace ?? process.stdin.isTTY === true;
  try {
    const result = await runVm({
      ...vmOptions,
      name,
      plan,
      resume: restored ? { plan: restored.plan, state: restored.state, ram: restored.reader, share: restored.clone } : undefined,
      incoming: early ? { ram: early.stream.ram, state: () => loaded } : undefined,
      control,
      console,
      engine: createX86Engine,
      drives,
      ...platformConfig(platform),
      cpus: restored ? 1 : opts.smp,
      trace,
      pace: pace ? { now: () => performance.now() * 1e6 } : null,
      // An incoming VM waiting for its state has nothing to run but timers: not a busy loop beside the source.
      holdBack: { clock: { now: () => performance.now() * 1e6 }, active: () => migration.holdsTime || (early !== undefined && !started) },
      // While the VM moves, the host acts between short slices (the stop, frames, the ACK).
      quick: { clock: { now: () => performance.now() * 1e6 }, active: () => migration.status === "active" },
      // The source after its stop, and the destination (its VMM built) until the state comes, wait
      // for each other only: the kernel's timers (the memory scanner) would take a core from them.
      idle: () => control.idle && (migration.waitsForDestination || (vmmBuilt && !started)),
      maxVirtualNs: opts.timeout ? opts.timeout * 1e9 : undefined,
      hostMemoryBytes: opts.hostMem,
      isolate: opts.isolate ? {} : null,
      wasm: opts.wasm && process.env.HV_WASM !== "0",
      wallTimeout: opts.wallTimeout ? { clock: { now: () => performance.now() * 1e6 }, ns: opts.wallTimeout * 1e9 } : null,
      onStart: (_k, raiseOn, isolated) => {
        hostComponents = isolated;
        early?.stream.attachBlocks((index) => isolated.drive?.(0, index) ?? null);
        arrival?.mark("kernel");
        raise = raiseOn.input;
        control.raise = raiseOn.control;
        raiseOn.control();
      },
      stopRequested: () => quit,
    });
    if (refusal) throw refusal;
    if (migration.status === "postcopy-paused") {
      control.close("the VM has ended");
      await qmp?.close("host-error");
      process.stderr.write(`\nhv: ended with the VM split by a broken post-copy migration (${migration.query()["error-desc"]})\n`);
      return ExitStatus.VM_FAILED;
    }
    if (postcopyBroken !== null) {
      process.stderr.write(`\nhv: the migrated VM is paused for good: part of its RAM stayed at the source, which cannot be reached; hv has no post-copy recovery, so the VM is lost (status ${ExitStatus.VM_FAILED})\n`);
      control.close("the VM has ended");
      await qmp?.close("host-error");
      return ExitStatus.VM_FAILED;
    }
    // A trace that cannot be written is reported (by traceOut) and changes nothing else: the status is the guest's.
    if (trace && traceOut) writeTrace(trace, traceOut);
    control.close("the VM has ended");
    await qmp?.close(shutdownCause(result.stop));
    const verdict = exitVerdict(result, String.fromCharCode(...console.tail.slice(-4096)));
    if (verdict.message) process.stderr.write(`\nhv: ${verdict.message}\n`);
    return verdict.status;
  } catch (error) {
    if (error instanceof BootImageError) throw new InvalidArgumentError(error.message);
    throw error;
  } finally {
    if (takingPages) clearInterval(takingPages);
    control.close("hv has stopped");
    await qmp?.close("host-error");
    console.close();
    debugconOut?.close();
    traceOut?.close();
  }
}

function writeTrace(trace: ChromeTrace, out: OutputFile): void {
  let json: string;
  try {
    json = JSON.stringify(trace.toJSON());
  } catch (error) {
    process.stderr.write(`\nhv: --trace: the trace could not be encoded (${error instanceof Error ? error.message : String(error)})\n`);
    return;
  }
  out.write(json);
}
