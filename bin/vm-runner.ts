// Runs VMs on the kernel from the host's point of view: builds the boot plan (refusing bad files
// before anything starts), boots the root task, and drives the kernel in slices of virtual
// time, yielding to the host's event loop between slices so console input can arrive. With
// `pace`, virtual time is held back to wall time (through the explicit host time source); with
// `wallTimeout`, the run stops when that much wall time has passed (same source of host time).

import type { ScannerStats } from "../services/memory-manager.js";
import { Kernel, type HostTimeSource, type TraceSink, type VcpuEngineFactory } from "../kernel/index.js";
import { loadBios, loadKernel, type BootPlan } from "../vmm/boot/index.js";
import type { ConsoleHost } from "../drivers/console/console.js";
import { BlockDriver, type HostDrive } from "../drivers/block/component.js";
import { VmEnd } from "../services/root-protocol.js";
import { rootTask } from "../services/root.js";
import { MAX_DRIVES, type VmmConfig } from "../vmm/vmm.js";
import type { ControlHost } from "../services/vm-control.js";
import { compose, type VmDrive } from "./compose.js";
import { IsolatedBlockDriver, type IsolateOptions } from "./isolate.js";
import { ExitStatus } from "./exit-status.js";
import { StorageCollector } from "./host-memory.js";

/** How the VM ended, as its VMM reported it to the root task. */
export interface VmOutcome {
  ended: boolean;
  status: number;
  why: VmEnd | 0;
  message: string;
}

export interface VmRunOptions {
  name?: string;
  memoryBytes: number;
  /** A Linux bzImage or a Multiboot kernel (like QEMU's -kernel). */
  kernelImage?: Uint8Array;
  kernelName?: string;
  initrd?: Uint8Array;
  append?: string;
  /** A firmware/test ROM started at the reset vector (used alone when there is no kernel). */
  bios?: Uint8Array;
  console: ConsoleHost;
  engine: VcpuEngineFactory;
  debugExitPort?: number | null;
  debugcon?: boolean;
  apic?: boolean;
  /** vCPUs (default 1; more need `apic`). */
  cpus?: number;
  /** Offer KVM's paravirtual interface (default true). */
  pv?: boolean;
  /** fw_cfg, ACPI and the HPET (default true). */
  acpi?: boolean;
  trace?: TraceSink | null;
  /** Hold virtual time back to this host clock (interactive use); absent: run as fast as possible. */
  pace?: HostTimeSource | null;
  /**
   * Without `pace`: while `active()` says so, virtual time may not run ahead of `clock` (counted
   * from when it began). A migration's throttle holds the vCPU back in virtual time; this makes
   * that cost host time too, so that the guest writes less per second of the link's.
   */
  holdBack?: { clock: HostTimeSource; active: () => boolean } | null;
  /**
   * While `active()` says so (a live migration runs), slices shrink so that one takes about
   * QUICK_SLICE_TARGET_NS of host time on `clock`: the host acts between slices (a command reaches
   * the VM, a frame goes out, the destination's answer is read), so a busy guest's 10 ms slice
   * would otherwise hold each step of the migration that long, or longer on a slow guest.
   */
  quick?: { clock: HostTimeSource; active: () => boolean } | null;
  /**
   * While this says so, the kernel has nothing the host waits for (a migration's source after its
   * stop, a destination before the VM's state came): no slice runs until input or a command comes
   * (or this says otherwise), so that the timers of what is left (the memory scanner, a paused
   * VM's devices) take no core from the two ends of the migration in its downtime.
   */
  idle?: () => boolean;
  /** Give up after this much virtual time (ns). */
  maxVirtualNs?: number;
  /**
   * Give up after `ns` of host time on `clock`: virtual time alone does not bound a run's real
   * length (a guest that loops on slow instructions, or waits for input that never comes).
   */
  wallTimeout?: { clock: HostTimeSource; ns: number } | null;
  /** Virtual time per guest instruction. */
  nsPerInstruction?: number;
  /** Host memory for all the VMs' frames, in bytes (`--host-mem`); default: all of their RAM. */
  hostMemoryBytes?: number;
  /** Pages the memory manager's scanner looks at per VM second (default DEFAULT_SCAN_RATE; 0: no scanner). */
  scanRate?: number;
  /** Disk images, in order: /dev/vda, /dev/vdb, ... (virtio-blk through the block driver component). */
  drives?: ReadonlyArray<VmDrive>;
  /** The boot plan, when the caller made it already (otherwise made from kernelImage/bios). */
  plan?: BootPlan;
  /** Resume a saved VM: its plan (saved ROMs and vCPU state, no writes) replaces the boot plan. */
  resume?: { plan: BootPlan } & NonNullable<VmmConfig["resume"]>;
  /** An incoming migration's VM: built from `plan` (its ROMs) now, its state taken with the control op LOAD (VmmConfig.incoming). */
  incoming?: VmmConfig["incoming"];
  /** The host's control of the VM (pause, resume, save), through the control component. */
  control?: ControlHost;
  /** Run the block driver in a worker thread (`--isolate`), with these limits; null or absent: in-process. */
  isolate?: IsolateOptions | null;
  /**
   * The x86 core's WebAssembly tier (vmm/x86/wasm), which needs guest RAM in one shared wasm memory
   * that never gives memory back to the OS (frames freed are reused, not returned). Default on,
   * unless HV_WASM=0.
   */
  wasm?: boolean;
  /**
   * Called once the kernel exists: raise the console GSI when input arrived, the control GSI when
   * a command was queued; `components.kill(name)` kills an isolated component's worker, as a crash
   * would (false: no such isolated component).
   */
  onStart?: (kernel: Kernel, raise: { input: () => void; control: () => void }, components: HostComponents) => void;
  /** Called between slices of virtual time (tests use it to act at a time). */
  onSlice?: (kernel: Kernel) => void;
  /** Polled between slices: stop when it returns true (Ctrl-A x). */
  stopRequested?: () => boolean;
}

/** The components the host can reach from outside the kernel (isolated ones, in workers). */
export interface HostComponents {
  /** Kill the worker of isolated component `name` ("block"); false when there is no such worker. */
  kill(name: string): boolean;
  /** VM `vm`'s drive `index` as the host reaches it (block migration); null when the block driver runs in a worker (`--isolate`) or there is no such drive. */
  drive?(vm: number, index: number): HostDrive | null;
}

export interface VmRunResult extends VmOutcome {
  kernel: Kernel;
  /** Why the host loop stopped: the VM ended, the virtual or the wall time limit, nothing left to run, the host asked. */
  stop: "ended" | "timeout" | "wall-timeout" | "idle" | "quit";
}

/** The boot plan for the options; throws BootImageError naming the problem. */
export function bootPlanFor(o: Pick<VmRunOptions, "memoryBytes" | "kernelImage" | "kernelName" | "initrd" | "append" | "bios">): BootPlan {
  if (o.kernelImage) return loadKernel(o.kernelImage, { memSize: o.memoryBytes, cmdline: o.append ?? "", initrd: o.initrd, name: o.kernelName });
  if (o.bios) return loadBios(o.bios, { memSize: o.memoryBytes });
  throw new Error("nothing to boot: give a kernel or a BIOS image");
}

/** Virtual time the kernel runs between two looks at the host (input, limits, the event loop). */
const SLICE_NS = 10_000_000;
/** With a wall-time limit, slices shrink so that one takes about this much host time (ns)... */
const WALL_SLICE_TARGET_NS = 20_000_000;
/** ...but never below this much virtual time. */
const MIN_SLICE_NS = 100_000;
/** While VmRunOptions.idle says so, how long the host loop naps before it looks again (ms); input or a command ends the nap at once. */
const IDLE_NAP_MS = 10;
/** While VmRunOptions.quick is active, a slice takes about this much host time (ns). */
const QUICK_SLICE_TARGET_NS = 2_000_000;

/** Exit status when a time limit (virtual or wall) ran out, as timeout(1) has it; never an isa-debug-exit status (those are odd). */
export const TIMEOUT_STATUS = ExitStatus.TIMEOUT;

/**
 * The exit status of `hv run` for how the VM ended, given the last console output: 0 for a
 * poweroff (the CPU halted with interrupts off), a reset request (there is no reboot) or a quit;
 * the isa-debug-exit value (its low 8 bits, as a process status has them, always odd); VM_FAILED for
 * a panic (the panic text is on the console), a triple fault or an error; 124 when a time limit
 * ran out. Every status but the debug-exit one is even (see ExitStatus).
 */
export function exitVerdict(result: Pick<VmRunResult, "stop" | "why" | "status" | "message">, consoleTail: string): { status: number; message: string } {
  if (result.stop === "quit") return { status: 0, message: "" };
  if (result.stop === "timeout") return { status: TIMEOUT_STATUS, message: "stopped at the virtual time limit (--timeout)" };
  if (result.stop === "wall-timeout") return { status: TIMEOUT_STATUS, message: "stopped at the wall-clock limit (--wall-timeout)" };
  if (result.stop === "idle") return { status: ExitStatus.VM_FAILED, message: "the VM stopped: nothing can run and nothing will wake it" };
  if (result.why === VmEnd.DEBUG_EXIT) return { status: result.status & 0xff, message: "" };
  // Whatever its console said, the VM goes on elsewhere: its end here is no failure.
  if (result.why === VmEnd.MIGRATED) return { status: 0, message: result.message };
  if (/Kernel panic/.test(consoleTail)) return { status: ExitStatus.VM_FAILED, message: "the guest panicked" };
  if (result.why === VmEnd.ERROR || result.why === VmEnd.TRIPLE_FAULT) return { status: ExitStatus.VM_FAILED, message: result.message };
  if (result.why === VmEnd.HALTED) return { status: 0, message: "" };
  if (result.why === VmEnd.RESET) return { status: 0, message: result.message };
  // Any other end (a component fault) is a failure; its raw status could be odd, so it is not passed on.
  return { status: result.status === 0 ? ExitStatus.OK : ExitStatus.VM_FAILED, message: result.message ? `VM ended: ${result.message}` : "" };
}

export async function runVm(o: VmRunOptions): Promise<VmRunResult> {
  const plan = o.resume?.plan ?? o.plan ?? bootPlanFor(o);
  const { debugExitPort, debugcon, apic, cpus, acpi, pv, console, drives } = o;
  const resume = o.resume ? { state: o.resume.state, ram: o.resume.ram, share: o.resume.share } : undefined;
  const { kernel, stop, vms } = await runFleet([{ name: o.name ?? "vm", memoryBytes: o.memoryBytes, plan, console, debugExitPort, debugcon, apic, cpus, acpi, pv, drives, resume, incoming: o.incoming }], {
    ...o,
    onStart: o.onStart ? (k, raise, components) => o.onStart!(k, { input: () => raise.input(0), control: raise.control }, components) : undefined,
  });
  return { ...vms[0], kernel, stop: stop === "ended" ? "ended" : stop };
}

/** One VM of a fleet: what it boots (or resumes), its console and drives. */
export interface FleetVm {
  name: string;
  /** VMs share equal pages only within one trust group (default 0). */
  trustGroup?: number;
  memoryBytes: number;
  plan: BootPlan;
  console: ConsoleHost;
  drives?: ReadonlyArray<VmDrive>;
  debugExitPort?: number | null;
  debugcon?: boolean;
  apic?: boolean;
  cpus?: number;
  pv?: boolean;
  acpi?: boolean;
  resume?: VmmConfig["resume"];
  incoming?: VmmConfig["incoming"];
}

/** What the whole run shares: the engine, time, limits and the host's hooks. */
export type FleetOptions = Pick<VmRunOptions, "engine" | "trace" | "pace" | "holdBack" | "quick" | "idle" | "maxVirtualNs" | "wallTimeout" | "nsPerInstruction" | "hostMemoryBytes" | "scanRate" | "control" | "onSlice" | "stopRequested" | "isolate" | "wasm"> & {
  /** A host clock (ns) that times the scanner (FleetResult.scanner.hostNs). */
  scanClock?: () => number;
  /** Pairs of VMs connected by an hv PV channel (compose's HostServices.channels). */
  channels?: ReadonlyArray<readonly [string, string]>;
  /** Raise VM i's console interrupt when its input arrived, the control interrupt when a command was queued. */
  onStart?: (kernel: Kernel, raise: { input: (vm: number) => void; control: () => void }, components: HostComponents) => void;
};

export interface FleetResult {
  kernel: Kernel;
  /** Why the host loop stopped: every VM ended, a time limit, nothing left to run, the host asked. */
  stop: VmRunResult["stop"];
  /** How each VM ended (those still running when the loop stopped: ended false). */
  vms: VmOutcome[];
  /** What the memory manager's scanner did. */
  scanner: ScannerStats;
}

/**
 * Run several VMs on one kernel, sharing the memory manager, the block driver and the control
 * component. A VM that ends, or whose components fault, ends alone; the others run on. A fault of
 * a shared component ends them all.
 */
export async function runFleet(vms: readonly FleetVm[], o: FleetOptions): Promise<FleetResult> {
  for (const vm of vms) if ((vm.drives?.length ?? 0) > MAX_DRIVES) throw new RangeError(`VM ${vm.name}: at most ${MAX_DRIVES} drives`);
  const nsPerTscTick = o.nsPerInstruction ?? 1;
  const composition = compose(
    vms.map((vm) => ({ ...vm, drives: vm.drives ?? [], nsPerTscTick })),
    { control: o.control, hostMemoryBytes: o.hostMemoryBytes, scanRate: o.scanRate, hostClock: o.scanClock, channels: o.channels, isolate: o.isolate },
  );
  try {
    const kernel = new Kernel({
      vcpuEngine: o.engine,
      memoryMiB: composition.frames / 256,
      // The x86 core's WebAssembly tier (vmm/x86/wasm) needs guest RAM in a wasm memory; HV_WASM=0
      // turns both off. On: the default guest's boot to BOOT-OK took 64.2 and 66.9 s of CPU
      // instead of 82.6 and 79.0 (alternated, one busy machine), the XZ decompressor 17-18 s
      // instead of 28-29, for 10-20 MiB more peak RSS (compiled modules; arena memory is not given back).
      wasmArena: o.wasm ?? process.env.HV_WASM !== "0",
      trace: o.trace ?? null,
      nsPerInstruction: o.nsPerInstruction ?? 1,
      // No component is given host I/O ports (guest port I/O is emulated through VM exits): the
      // root needs none, and 65,536 boot mappings were a third of a restore's kernel set-up.
      ioPorts: 0,
      gsis: composition.gsis,
      rootQuota: composition.rootQuota,
    });
    const outcomes: VmOutcome[] = vms.map(() => ({ ended: false, status: 0, why: 0, message: "" }));
    const byModule = new Map(vms.flatMap((vm, i) => [vm.name, `vmm:${vm.name}`, `console:${vm.name}`].map((m) => [m, i] as const)));
    const end = (i: number, status: number, why: VmEnd, message: string) => {
      if (!outcomes[i].ended) Object.assign(outcomes[i], { ended: true, status, why, message });
    };
    const host = { vmEnded: (module: string, status: number, why: VmEnd, message: string) => end(byModule.get(module) ?? -1, status, why, message) };
    kernel.boot(rootTask(composition.modules, { frames: composition.frames }, host));
    const block = composition.blockDriver;
    const firstClient = vms.map((_, i) => vms.slice(0, i).reduce((n, vm) => n + (vm.drives?.length ?? 0), 0));
    const components: HostComponents = {
      kill: (name) => name === "block" && block instanceof IsolatedBlockDriver && (block.kill(), true),
      drive: (vm, index) => (block instanceof BlockDriver && vm >= 0 && vm < vms.length && index >= 0 && index < (vms[vm].drives?.length ?? 0) ? block.hostDrive(firstClient[vm] + index) : null),
    };
    return { ...(await hostLoop(kernel, o, outcomes, byModule, composition.consoleGsi, composition.controlGsi, components)), scanner: composition.memory.scanner };
  } finally {
    composition.blockDriver?.close();
  }
}

/** Drives the kernel in slices until every VM ended, the host asks to stop, or time runs out. */
async function hostLoop(kernel: Kernel, o: FleetOptions, outcomes: VmOutcome[], byModule: ReadonlyMap<string, number>, consoleGsi: readonly number[], controlGsi: number | null, components: HostComponents): Promise<Omit<FleetResult, "scanner">> {
  const inputPending = consoleGsi.map(() => false);
  let controlPending = false;
  // A wait for the host ends early when input or a command arrives: an idle VM answers at once.
  let wake: (() => void) | null = null;
  const nap = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => ((wake = null), resolve()), ms);
      wake = () => ((wake = null), clearTimeout(timer), resolve());
    });
  o.onStart?.(kernel, { input: (vm) => void ((inputPending[vm] = true), wake?.()), control: () => void ((controlPending = true), wake?.()) }, components);
  const startHost = o.pace?.now() ?? 0;
  const wall = o.wallTimeout ?? null;
  const wallStart = wall?.clock.now() ?? 0;
  let sliceNs = wall ? MIN_SLICE_NS : SLICE_NS;
  /** The virtual length of a quick slice (VmRunOptions.quick), fitted to the rate the last one ran. */
  let quickNs = MIN_SLICE_NS;
  /** Since when (host and virtual ns) holdBack holds virtual time back, or null. */
  let heldSince: { host: number; virtual: number } | null = null;
  let faultsSeen = 0;
  const storage = new StorageCollector();
  const result = (stop: FleetResult["stop"]) => ({ kernel, stop, vms: outcomes });
  for (;;) {
    storage.check(kernel.memory.residentBytes);
    o.onSlice?.(kernel);
    // An interrupt raised before its driver enabled it stays pending until it can be delivered.
    inputPending.forEach((pending, i) => void (pending && (inputPending[i] = !kernel.raiseGsi(consoleGsi[i]))));
    if (controlPending && controlGsi !== null) controlPending = !kernel.raiseGsi(controlGsi);
    if (o.idle?.() && !controlPending && !inputPending.includes(true)) {
      if (o.stopRequested?.()) return result("quit");
      await nap(IDLE_NAP_MS);
      continue;
    }
    const quick = o.quick?.active() ? o.quick.clock : null;
    const sliceStart = wall?.clock.now() ?? 0;
    const quickStart = quick?.now() ?? 0;
    const virtualStart = kernel.clock.now;
    const r = kernel.run({ untilNs: kernel.clock.now + (quick ? Math.min(sliceNs, quickNs) : sliceNs) });
    if (wall) sliceNs = nextSlice(kernel.clock.now - virtualStart, wall.clock.now() - sliceStart, WALL_SLICE_TARGET_NS);
    if (quick) quickNs = nextSlice(kernel.clock.now - virtualStart, quick.now() - quickStart, QUICK_SLICE_TARGET_NS);
    for (; faultsSeen < kernel.faults.length; faultsSeen++) {
      const f = kernel.faults[faultsSeen];
      const message = `component fault in ${f.pd}/${f.ec}: ${f.error instanceof Error ? f.error.stack ?? f.error.message : String(f.error)}`;
      const vm = byModule.get(f.pd);
      for (const [i, outcome] of outcomes.entries())
        if (!outcome.ended && (vm === undefined || vm === i)) Object.assign(outcome, { ended: true, status: 1, why: VmEnd.ERROR, message });
    }
    if (outcomes.every((v) => v.ended)) return result("ended");
    if (o.stopRequested?.()) return result("quit");
    if (o.maxVirtualNs !== undefined && kernel.clock.now >= o.maxVirtualNs) return result("timeout");
    if (wall && wall.clock.now() - wallStart >= wall.ns) return result("wall-timeout");
    if (r === "idle" && !o.pace) {
      // Nothing can run and nothing will time out: only host input can change that.
      if (!o.onStart) return result("idle");
      await nap(10);
      continue;
    }
    const hold = o.holdBack;
    heldSince = !o.pace && hold?.active() ? (heldSince ?? { host: hold.clock.now(), virtual: kernel.clock.now }) : null;
    // How far virtual time is ahead of the host clock it is held to (ms), if it is held.
    const aheadMs = o.pace
      ? (kernel.clock.now - (o.pace.now() - startHost)) / 1e6
      : hold && heldSince ? (kernel.clock.now - heldSince.virtual - (hold.clock.now() - heldSince.host)) / 1e6 : null;
    if (aheadMs !== null) {
      await nap(Math.max(0, Math.min(aheadMs, 50)));
    } else {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/**
 * The next slice's virtual length, so that it takes about `targetNs` of host time at the rate the
 * last one ran: slow guest code (x87, MMIO) then cannot outrun a wall-time limit by much, nor hold
 * a migration's steps.
 */
function nextSlice(virtualNs: number, hostNs: number, targetNs: number): number {
  if (!(hostNs > 0) || !(virtualNs > 0)) return SLICE_NS;
  return Math.min(SLICE_NS, Math.max(MIN_SLICE_NS, Math.floor((virtualNs * targetNs) / hostNs)));
}
