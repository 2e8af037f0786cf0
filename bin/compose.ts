// Composition: turns VM descriptions into the root task's boot modules. One memory manager and
// (when any VM has drives) one block driver serve every VM; each VM has its own console driver,
// its VM PD and its VMM. This file is where the components' selector layouts meet.

import { KernelMemoryCost, MAX_FRAMES, PdRights } from "../kernel/index.js";
import { BlockDriver, type DriveConfig } from "../drivers/block/component.js";
import { IsolatedBlockDriver, type IsolateOptions } from "./isolate.js";
import { consoleInput, consoleOutput, type ConsoleHost } from "../drivers/console/console.js";
import { ConsoleSel } from "../drivers/console/protocol.js";
import { MemoryManager, MemoryManagerSel } from "../services/memory-manager.js";
import { Published } from "../services/root-protocol.js";
import { ControlSel, controlThread, type ControlHost } from "../services/vm-control.js";
import { STATE_PAGES } from "../vmm/protocol.js";
import { RESERVE_PAGES } from "../services/memory-protocol.js";
import { LOW_ROM_WINDOW, MAX_ROM_SIZE } from "../vmm/boot/bios.js";
import type { BootModule } from "../services/root.js";
import { MAX_PEERS } from "../vmm/paravirt/peer-protocol.js";
import { BLOCK_BOUNCE_PAGES, VCPU_PRIORITY, VCPU_QUANTUM_NS, vmmComponent, VmmSel, type VmmConfig } from "../vmm/vmm.js";

export interface VmDescription extends Omit<VmmConfig, "drives"> {
  /** Unique among the VMs: names its PDs ("NAME", "vmm:NAME", "console:NAME"). */
  name: string;
  /** VMs share equal pages only within one trust group (shared pages leak timing between VMs). Default 0. */
  trustGroup?: number;
  console: ConsoleHost;
  /** Disk images in order: /dev/vda, /dev/vdb, ... */
  drives?: ReadonlyArray<VmDrive>;
}

/** A VM's disk image. `inactive`: another process may still write it (an incoming migration's shared drive): the VMM opens it at the VM's first resume. */
export type VmDrive = DriveConfig & { serial?: string; inactive?: boolean };

export interface Composition {
  modules: BootModule[];
  /** Memory frames the kernel must have. */
  frames: number;
  /** Kernel memory quota the root task needs for the modules. */
  rootQuota: number;
  /** Host interrupt line of VM i's console input (raise it when input arrived). */
  consoleGsi: number[];
  /** Interrupt lines the kernel must have. */
  gsis: number;
  /** Host interrupt line of the control component (raise it when a command was queued), if any. */
  controlGsi: number | null;
  /** The block driver (close it when the run ends), if any VM has drives. */
  blockDriver: BlockDriver | IsolatedBlockDriver | null;
  /** The memory manager (its scanner's counts, for benchmarks and tests). */
  memory: MemoryManager;
}

/** The first host interrupt line of the consoles; VM i's is CONSOLE_GSI_BASE + i. */
const CONSOLE_GSI_BASE = 4;
/** The control component's host interrupt line. */
const CONTROL_GSI = 3;
/** Spare kernel memory the root keeps for itself (its own EC, parent ECs and portals, the boot mappings of its interrupt lines). */
const ROOT_SPARE = 16 << 20;

/** Frames a VM needs beyond its RAM and ROMs: its state region and a few to spare. */
const EXTRA_FRAMES = STATE_PAGES + 16;
/** Pages of a memory space (4 GiB): the block driver's and the control component's windows share one. */
const SPACE_PAGES = 2 ** 20;

/**
 * Most guest RAM one VM can have, whatever it boots (a 16 MiB ROM is mapped twice, at the top of
 * 4 GiB and its last 128 KiB below 1 MiB): the kernel's frames (MAX_FRAMES, 2 GiB) hold the RAM,
 * the ROM and the VMM's state region. Whole MiB.
 */
export const MAX_VM_MEMORY = Math.floor((MAX_FRAMES - (MAX_ROM_SIZE + LOW_ROM_WINDOW) / 4096 - EXTRA_FRAMES) / 256) * 2 ** 20;

/** Most frames a VM may hold: all its RAM written, its ROMs, its state and bounce regions, and a few to spare. */
export function framesFor(vm: Pick<VmDescription, "memoryBytes" | "plan" | "drives">): number {
  return Math.ceil(vm.memoryBytes / 4096) + fixedFramesFor(vm);
}

/** Frames a VM holds from its start whatever its guest does: ROMs, state and bounce regions. */
function fixedFramesFor(vm: Pick<VmDescription, "plan" | "drives">): number {
  const romPages = vm.plan.roms.reduce((n, r) => n + Math.ceil(r.bytes.length / 4096), 0);
  return romPages + EXTRA_FRAMES + (vm.drives?.length ?? 0) * BLOCK_BOUNCE_PAGES;
}

const mib = (pages: number): string => `${Math.round((pages / 256) * 100) / 100} MiB`;

/** A VM layout the kernel cannot hold (RAM, drives, VMs): a refusal of the user's configuration, before anything starts. */
export class LayoutError extends RangeError {
  override name = "LayoutError";
}

/**
 * Refuse, before anything starts, a composition whose memory does not fit: the kernel's frames,
 * or the windows in which the control component sees each VM's RAM, 2^order pages each in one
 * 4 GiB memory space.
 */
function checkLayout(frames: number, ramPages: number, vms: number, controlOrder: number | null): void {
  if (frames > MAX_FRAMES) throw new LayoutError(`host memory of ${mib(frames)} is more than a kernel can have (${mib(MAX_FRAMES)})`);
  if (controlOrder !== null && vms > SPACE_PAGES / 2 ** controlOrder) throw new LayoutError(`${vms} VMs with ${mib(ramPages)} of RAM each do not fit the control component's 4 GiB space`);
}

/** Kernel memory for a space that maps `pages` pages once (mapping nodes), with room to spare. */
function spaceQuota(pages: number): number {
  return pages * KernelMemoryCost.MAPPING + (4 << 20);
}

/** What the host adds to the VMs: a control component (snapshots, pause, resume) it drives. */
export interface HostServices {
  control?: ControlHost;
  /**
   * Host memory for all VMs together, in bytes (`--host-mem`). Guest RAM is backed on first write,
   * so the VMs may be given more than this (overcommit); a VM that would pass it is paused. Default:
   * enough for every VM to write all of its RAM.
   */
  hostMemoryBytes?: number;
  /** Pages the memory manager's scanner looks at per second of virtual time, for equal and all-zero pages; 0: no scanner. */
  scanRate?: number;
  /** A host clock (ns) the scanner's own time is measured with (its share of the host's CPU); none: not measured. */
  hostClock?: () => number;
  /**
   * Pairs of VMs (by name) connected by a channel of the hv PV ABI (event channels, grant copy).
   * Only these pairs can reach each other: each VMM is handed the other's peer portal, nothing else.
   */
  channels?: ReadonlyArray<readonly [string, string]>;
  /** Run the block driver in a worker thread of its own (`--isolate`), with these limits; null or absent: in-process. */
  isolate?: IsolateOptions | null;
}

/**
 * Each VM's peers, in channel order (a VM's channel k is its k-th pair in `channels`). Throws
 * RangeError for a name that is no VM, a VM paired with itself, a pair given twice, too many channels.
 */
export function peersOf(vms: readonly { name: string }[], channels: ReadonlyArray<readonly [string, string]>): Map<string, string[]> {
  const peers = new Map(vms.map((vm) => [vm.name, [] as string[]]));
  for (const [a, b] of channels) {
    const pa = peers.get(a), pb = peers.get(b);
    if (!pa || !pb) throw new RangeError(`channel ${a} - ${b}: '${!pa ? a : b}' is not a VM of this fleet`);
    if (a === b) throw new RangeError(`channel ${a} - ${b}: a VM cannot have a channel to itself (it has HV_PEER_SELF)`);
    if (pa.includes(b)) throw new RangeError(`channel ${a} - ${b}: given twice`);
    pa.push(b);
    pb.push(a);
    if (pa.length > MAX_PEERS || pb.length > MAX_PEERS) throw new RangeError(`channel ${a} - ${b}: a VM may have at most ${MAX_PEERS} channels`);
  }
  return peers;
}

/** The scanner's default rate, pages per second of virtual time. */
export const DEFAULT_SCAN_RATE = 20_000;
/** The scanner runs above the vCPUs (its work per tick is bounded), below the VMMs' own threads. */
const SCANNER_PRIORITY = 15;

export function compose(vms: readonly VmDescription[], services: HostServices = {}): Composition {
  const names = new Set(vms.map((v) => v.name));
  if (names.size !== vms.length) throw new LayoutError("every VM needs a name of its own");
  // The pool: frame 0 is the zero frame, and each VM has a reserve to finish an instruction at the limit.
  const overhead = 1 + vms.length * RESERVE_PAGES;
  const needed = vms.reduce((n, vm) => n + framesFor(vm), 0) + overhead;
  const fixed = vms.reduce((n, vm) => n + fixedFramesFor(vm), 0) + overhead;
  // Without a limit, the host holds what the VMs could write, up to what a kernel can have.
  const frames = services.hostMemoryBytes === undefined ? Math.min(needed, MAX_FRAMES) : Math.floor(services.hostMemoryBytes / 4096);
  if (frames < fixed + 256)
    throw new LayoutError(`host memory of ${mib(frames)} is too small: the VMs' ROMs, state and bounce regions and the memory manager's reserve alone take ${mib(fixed)}, and each VM needs RAM beyond that`);

  // Block driver clients are numbered across the VMs: VM i's drive k is client firstClient[i] + k.
  const drives = vms.flatMap((vm) => vm.drives ?? []);
  const firstClient = vms.map((_, i) => vms.slice(0, i).reduce((n, vm) => n + (vm.drives?.length ?? 0), 0));
  const maxRamPages = Math.max(...vms.map((vm) => Math.ceil(vm.memoryBytes / 4096)));
  const mm = new MemoryManager(frames, {
    limits: new Map(vms.map((vm, i) => [i + 1, framesFor(vm)])),
    groups: new Map(vms.map((vm, i) => [i + 1, vm.trustGroup ?? 0])),
    scanRate: services.scanRate ?? DEFAULT_SCAN_RATE,
    hostClock: services.hostClock,
  });
  const scanner = mm.scannerThread();
  const memory: BootModule & { portals: Record<string, { handler: string; id: number }> } = {
    name: "memory",
    quota: spaceQuota(frames),
    frames: true,
    grants: [{ sel: MemoryManagerSel.PARENT, parent: true }],
    handlers: { main: mm.handler() },
    portals: {},
    maxPriority: SCANNER_PRIORITY,
    threads: scanner ? [{ entry: scanner, priority: SCANNER_PRIORITY, quantumNs: 1_000_000 }] : [],
  };
  const modules: BootModule[] = [memory];
  const blockPortals: Record<string, { handler: string; id: number }> = {};
  const blockHandlers: Record<string, ReturnType<BlockDriver["entry"]>> = {};
  const vmModules: BootModule[] = [];
  // Client windows of the block driver hold a drive's bounce region each.
  const windowOrder = Math.ceil(Math.log2(BLOCK_BOUNCE_PAGES));
  const controlOrder = Math.ceil(Math.log2(maxRamPages + STATE_PAGES));
  checkLayout(frames, maxRamPages, vms.length, services.control ? controlOrder : null);
  const peers = peersOf(vms, services.channels ?? []);
  const driveMap = new Map(drives.map((d, client) => [client, d]));
  const blockDriver = drives.length === 0 ? null : services.isolate ? new IsolatedBlockDriver(driveMap, windowOrder, services.isolate) : new BlockDriver(driveMap, { windowOrder });

  vms.forEach((vm, i) => {
    const vmPages = framesFor(vm);
    memory.portals[vm.name] = { handler: "main", id: i + 1 };
    const blockGrants = (vm.drives ?? []).map((_, k) => {
      const client = firstClient[i] + k;
      blockHandlers[`c${client}`] = blockDriver!.entry(client);
      blockPortals[`c${client}`] = { handler: `c${client}`, id: client };
      return { sel: VmmSel.BLOCK_BASE + k, portal: `block.c${client}` };
    });
    const gsi = CONSOLE_GSI_BASE + i;
    // Channel k's peer portal goes to the peer's VMM, at the selector of this VM's channel there.
    const mine = peers.get(vm.name)!;
    const peerRoutes = mine.map((peer, k) => [Published.PEER_BASE + k, { module: `vmm:${peer}`, sel: VmmSel.PEER_BASE + peers.get(peer)!.indexOf(vm.name) }] as const);
    vmModules.push(
      {
        name: `console:${vm.name}`,
        quota: 1 << 20,
        handlers: { out: consoleOutput(vm.console) },
        portals: { out: { handler: "out", id: 0 } },
        grants: [{ sel: ConsoleSel.INPUT_IRQ, gsi }],
        threads: [{ entry: consoleInput(vm.console), priority: 20, quantumNs: 1_000_000 }],
      },
      { name: vm.name, quota: spaceQuota(vmPages), vm: true },
      {
        name: `vmm:${vm.name}`,
        quota: spaceQuota(vmPages),
        // The VMM schedules its vCPU itself, below its own threads.
        maxPriority: vm.vcpuPriority ?? VCPU_PRIORITY,
        maxQuantumNs: VCPU_QUANTUM_NS,
        grants: [
          { sel: VmmSel.VM_PD, pd: vm.name, rights: PdRights.CREATE_EC | PdRights.DELEGATE },
          { sel: VmmSel.PARENT, parent: true },
          { sel: VmmSel.MEMORY, portal: `memory.${vm.name}` },
          { sel: VmmSel.CONSOLE, portal: `console:${vm.name}.out` },
          ...blockGrants,
        ],
        routes: Object.fromEntries([
          [Published.CONSOLE_INPUT, { module: `console:${vm.name}`, sel: ConsoleSel.VMM_INPUT }],
          ...(services.control ? [[Published.VMM_CONTROL, { module: "control", sel: ControlSel.VM_BASE + i }]] : []),
          ...peerRoutes,
        ]),
        threads: [{ entry: vmmComponent({ ...vm, peers: mine, drives: vm.drives?.map((d) => ({ readOnly: d.readOnly, serial: d.serial, inactive: d.inactive })) }), priority: 30, quantumNs: 1_000_000 }],
      },
    );
  });
  if (blockDriver) {
    modules.push({ name: "block", quota: drives.length * spaceQuota(2 ** windowOrder), handlers: blockHandlers, portals: blockPortals });
  }
  modules.push(...vmModules);
  // The control component sees each VM's RAM and state region in a window of its own (controlOrder).
  if (services.control) {
    modules.push({
      name: "control",
      quota: vms.length * spaceQuota(2 ** controlOrder),
      grants: [{ sel: ControlSel.IRQ, gsi: CONTROL_GSI }],
      threads: [{ entry: controlThread(services.control, controlOrder), priority: 25, quantumNs: 1_000_000 }],
    });
  }
  const rootQuota = modules.reduce((n, m) => n + m.quota, 0) + frames * KernelMemoryCost.MAPPING + ROOT_SPARE;
  return {
    modules,
    frames,
    rootQuota,
    consoleGsi: vms.map((_, i) => CONSOLE_GSI_BASE + i),
    gsis: Math.max(24, CONSOLE_GSI_BASE + vms.length),
    controlGsi: services.control ? CONTROL_GSI : null,
    blockDriver,
    memory: mm,
  };
}
