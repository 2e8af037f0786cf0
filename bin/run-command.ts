// `hv run`: boot a VM. With no --kernel and no --bios it boots the default guest (Debian's i686
// kernel and a busybox initramfs, fetched and built on first use).
import { readFileSync, statSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { TerminalConsole } from "../drivers/console/host.js";
import { ChromeTrace } from "../services/chrome-trace.js";
import { ensureDefaultGuest } from "../services/guest/index.js";
import { bootPlanFor, exitVerdict, runVm, type VmRunOptions } from "./vm-runner.js";
import { openSavedVm, type RestoredVm, type SaveRequest } from "./snapshot.js";
import { HostControl, saveFromConsole } from "./host-control.js";
import { parseQmpAddress, shutdownCause, startQmp } from "./qmp-socket.js";
import { SnapshotError } from "../services/snapshot/file.js";
import { createX86Engine } from "../vmm/x86/index.js";
import { BootImageError } from "../vmm/boot/index.js";
import { MAX_DRIVES } from "../vmm/vmm.js";
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

function readInput(path: string, what: string, limit: number): Uint8Array {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new InvalidArgumentError(`${what} '${path}' cannot be read (no such file?)`);
  }
  if (size > limit) throw new InvalidArgumentError(`${what} '${path}' is ${size} bytes, more than the ${limit} a VM of this size can take`);
  return readFileSync(path);
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
  pace?: boolean;
  timeout?: number;
  bootOk: boolean;
  restore?: string;
  ignoreDriveChanges: boolean;
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
    .addOption(new Option("--mem <size>", "guest RAM, e.g. 512M or 1G").argParser(parseSize).default(128 * 1024 * 1024, "128M"))
    .addOption(new Option("--smp <n>", "virtual CPUs (only 1 is supported)").default(1).argParser((v) => {
      if (v !== "1") throw new InvalidArgumentError("only --smp 1 is supported");
      return 1;
    }))
    .option("--bios <file>", "firmware or test ROM, mapped below 4 GiB and at 0xE0000; the CPU starts at the reset vector")
    .option("--debugcon <where>", "port 0xe9 output: stdio or file:PATH")
    .option("--debug-exit", "isa-debug-exit at port 0xf4: a write of v ends hv with status (v << 1) | 1", false)
    .option("--drive <spec>", "a disk as virtio-blk (/dev/vda, vdb, ...): file=PATH[,format=raw|qcow2|vpc|vmdk][,readonly=on]; repeatable", parseDrive, [])
    .option("--apic", "give the VM a local APIC and an I/O APIC (default: 8259 PIC only)", false)
    .option("--trace <file>", "write a Chrome trace of the run in host time (kernel IPC, VM exits by reason, device time in exit handlers)")
    .option("--pace", "hold virtual time back to wall time (default on a terminal)")
    .option("--no-pace", "run virtual time as fast as the host can")
    .option("--timeout <seconds>", "stop after this much virtual time", (v) => {
      const n = Number(v);
      if (!(n > 0)) throw new InvalidArgumentError(`'${v}' is not a positive number of seconds`);
      return n;
    })
    .option("--boot-ok", "default guest only: print BOOT-OK <uptime> and power off", false)
    .option("--restore <file>", "resume the VM saved in a snapshot file (RAM, devices, drives and --mem come from the file)")
    .option("--ignore-drive-changes", "with --restore: take drives that changed since the save as they are", false)
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
  if (opts.restore && (opts.kernel || opts.bios || opts.initrd || opts.append || opts.drive.length > 0 || opts.bootOk))
    throw new InvalidArgumentError("--restore takes the VM from the file: --kernel, --initrd, --append, --bios, --drive and --boot-ok cannot be given with it");
  let restored: RestoredVm | undefined;
  try {
    restored = opts.restore ? openSavedVm(opts.restore, { ignoreDriveChanges: opts.ignoreDriveChanges }) : undefined;
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

async function runOrResume(opts: RunOpts, restored: RestoredVm | undefined): Promise<number> {
  let debugcon: "stdio" | { file: string } | null = null;
  if (opts.debugcon) {
    if (opts.debugcon === "stdio") debugcon = "stdio";
    else if (opts.debugcon.startsWith("file:") && opts.debugcon.length > 5) debugcon = { file: opts.debugcon.slice(5) };
    else throw new InvalidArgumentError(`--debugcon takes stdio or file:PATH, not '${opts.debugcon}'`);
  }
  if (opts.mem < 2 * 1024 * 1024 || opts.mem > 3 * 1024 ** 3) throw new InvalidArgumentError("--mem must be between 2M and 3G");
  let kernelPath = opts.kernel;
  let initrdPath = opts.initrd;
  let append = opts.append;
  if (!kernelPath && !opts.bios && !restored) {
    const guest = await ensureDefaultGuest({ bootOk: opts.bootOk });
    kernelPath = guest.kernel;
    initrdPath ??= guest.initrd;
    append ??= guest.append;
  }
  const limit = opts.mem;
  const kernelImage = kernelPath ? readInput(kernelPath, "kernel", limit) : undefined;
  const initrd = initrdPath ? readInput(initrdPath, "initrd", limit) : undefined;
  const bios = opts.bios ? readInput(opts.bios, "BIOS image", 16 * 1024 * 1024) : undefined;

  const memoryBytes = restored?.memoryBytes ?? opts.mem;
  const drives = restored?.drives ?? opts.drive;
  const platform = restored?.platform ?? { apic: opts.apic, debugcon: debugcon !== null, debugExitPort: opts.debugExit ? 0xf4 : -1 };
  const vmOptions = { memoryBytes, kernelImage, kernelName: kernelPath, initrd, append, bios };
  let plan: VmRunOptions["plan"];
  try {
    plan = restored?.plan ?? bootPlanFor(vmOptions);
  } catch (error) {
    if (error instanceof BootImageError) throw new InvalidArgumentError(error.message);
    throw error;
  }
  const name = restored?.name ?? "vm";
  const saveRequest = (path: string, compress = opts.compress): SaveRequest => ({ path, name, memoryBytes, platform, roms: plan!.roms, drives, compress });
  // The console (Ctrl-A s) and the QMP socket share one queue of commands to the VM.
  const control = new HostControl();
  if (restored) control.resume(0).catch((error: Error) => process.stderr.write(`hv: ${error.message}\n`));

  let quit = false;
  const qmp = opts.qmp ? await startQmp(opts.qmp, { control, vms: [{ name, index: 0, saveRequest }], quit: () => (quit = true) }).catch((error: Error) => {
    throw new InvalidArgumentError(`--qmp: ${error.message}`);
  }) : null;
  // Host time: the trace shows where the run's real time goes (IPC, device models in exit handlers).
  const trace = opts.trace ? new ChromeTrace({ hostClock: () => performance.now() * 1e6 }) : null;
  const console = new TerminalConsole({ debugcon, onInput: () => raise(), onQuit: () => (quit = true), onSave: () => saveFromConsole(control, 0, saveRequest(`hv-${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.hvsnap`)) });
  let raise = () => {};
  const pace = opts.pace ?? process.stdin.isTTY === true;
  try {
    const result = await runVm({
      ...vmOptions,
      name,
      plan,
      resume: restored ? { plan: restored.plan, state: restored.state, ram: restored.reader } : undefined,
      control,
      console,
      engine: createX86Engine,
      drives,
      debugExitPort: platform.debugExitPort >= 0 ? platform.debugExitPort : null,
      debugcon: platform.debugcon,
      apic: platform.apic,
      trace,
      pace: pace ? { now: () => performance.now() * 1e6 } : null,
      maxVirtualNs: opts.timeout ? opts.timeout * 1e9 : undefined,
      onStart: (_k, raiseOn) => {
        raise = raiseOn.input;
        control.raise = raiseOn.control;
        raiseOn.control();
      },
      stopRequested: () => quit,
    });
    if (trace && opts.trace) trace.write(opts.trace);
    control.close("the VM has ended");
    await qmp?.close(shutdownCause(result.stop));
    const verdict = exitVerdict(result, String.fromCharCode(...console.tail.slice(-4096)));
    if (verdict.message) process.stderr.write(`\nhv: ${verdict.message}\n`);
    return verdict.status;
  } catch (error) {
    if (error instanceof BootImageError) throw new InvalidArgumentError(error.message);
    throw error;
  } finally {
    control.close("hv has stopped");
    await qmp?.close("host-error");
    console.close();
  }
}
