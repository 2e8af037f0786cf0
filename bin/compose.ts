// Composition: turns VM descriptions into the root task's boot modules. One memory manager and
// (when any VM has drives) one block driver serve every VM; each VM has its own console driver,
// its VM PD and its VMM. This file is where the components' selector layouts meet.

import { KernelMemoryCost, MAX_FRAMES, PdRights } from "../kernel/index.js";
import { BlockDriver, type DriveConfig } from "../drivers/block/component.js";
import { consoleInput, consoleOutput, type ConsoleHost } from "../drivers/console/console.js";
import { ConsoleSel } from "../drivers/console/protocol.js";
import { memoryManager } from "../services/memory-manager.js";
import { Published } from "../services/root-protocol.js";
import { ControlSel, controlThread, type ControlHost } from "../services/vm-control.js";
import { STATE_PAGES } from "../vmm/protocol.js";
import { LOW_ROM_WINDOW, MAX_ROM_SIZE } from "../vmm/boot/bios.js";
import type { BootModule } from "../services/root.js";
import { VCPU_PRIORITY, VCPU_QUANTUM_NS, vmmComponent, VmmSel, type VmmConfig } from "../vmm/vmm.js";

export interface VmDescription extends Omit<VmmConfig, "drives"> {
  /** Unique among the VMs: names its PDs ("NAME", "vmm:NAME", "console:NAME"). */
  name: string;
  console: ConsoleHost;
  /** Disk images in order: /dev/vda, /dev/vdb, ... */
  drives?: ReadonlyArray<DriveConfig & { serial?: string }>;
}

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
  blockDriver: BlockDriver | null;
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

/** Frames a VM needs: RAM, ROMs, and a few to spare. */
export function framesFor(vm: Pick<VmDescription, "memoryBytes" | "plan">): number {
  const romPages = vm.plan.roms.reduce((n, r) => n + Math.ceil(r.bytes.length / 4096), 0);
  return Math.ceil(vm.memoryBytes / 4096) + romPages + EXTRA_FRAMES;
}

const mib = (pages: number): string => `${Math.round((pages / 256) * 100) / 100} MiB`;

/** A VM layout the kernel cannot hold (RAM, drives, VMs): a refusal of the user's configuration, before anything starts. */
export class LayoutError extends RangeError {
  override name = "LayoutError";
}

/**
 * Refuse, before anything starts, a composition whose memory does not fit: the kernel's frames,
 * or the windows in which the block driver (one per drive) and the control component (one per
 * VM) see a VM's RAM, 2^order pages each in one 4 GiB memory space.
 */
function checkLayout(frames: number, ramPages: number, drives: number, windowOrder: number, vms: number, controlOrder: number | null): void {
  if (frames > MAX_FRAMES)
    throw new LayoutError(`guest RAM of ${mib(ramPages)} does not fit: with its ROMs and the VMM's state pages it needs ${mib(frames)}, and the kernel has at most ${mib(MAX_FRAMES)} of frames`);
  const driveWindows = SPACE_PAGES / 2 ** windowOrder;
  if (drives > driveWindows) {
    const fitAll = SPACE_PAGES / 2 ** Math.ceil(Math.log2(drives));
    throw new LayoutError(
      `${drives} drives do not fit with ${mib(ramPages)} of guest RAM: the block driver sees each drive's guest RAM in a window of ${mib(2 ** windowOrder)} of its 4 GiB space, so at most ${driveWindows} drives fit (${drives} with ${mib(fitAll)} of RAM or less)`,
    );
  }
  if (controlOrder !== null && vms > SPACE_PAGES / 2 ** controlOrder) throw new LayoutError(`${vms} VMs with ${mib(ramPages)} of RAM each do not fit the control component's 4 GiB space`);
}

/** Kernel memory for a space that maps `pages` pages once (mapping nodes), with room to spare. */
function spaceQuota(pages: number): number {
  return pages * KernelMemoryCost.MAPPING + (4 << 20);
}

/** What the host adds to the VMs: a control component (snapshots, pause, resume) it drives. */
export interface HostServices {
  control?: ControlHost;
}

export function compose(vms: readonly VmDescription[], services: HostServices = {}): Composition {
  const names = new Set(vms.map((v) => v.name));
  if (names.size !== vms.length) throw new LayoutError("every VM needs a name of its own");
  const frames = vms.reduce((n, vm) => n + framesFor(vm), 0);

  // Block driver clients are numbered across the VMs: VM i's drive k is client firstClient[i] + k.
  const drives = vms.flatMap((vm) => vm.drives ?? []);
  const firstClient = vms.map((_, i) => vms.slice(0, i).reduce((n, vm) => n + (vm.drives?.length ?? 0), 0));
  const maxRamPages = Math.max(...vms.map((vm) => Math.ceil(vm.memoryBytes / 4096)));
  const memory: BootModule & { portals: Record<string, { handler: string; id: number }> } = {
    name: "memory",
    quota: spaceQuota(frames),
    frames: true,
    handlers: { main: memoryManager(frames) },
    portals: {},
  };
  const modules: BootModule[] = [memory];
  const blockPortals: Record<string, { handler: string; id: number }> = {};
  const blockHandlers: Record<string, ReturnType<BlockDriver["entry"]>> = {};
  const vmModules: BootModule[] = [];
  // Client windows of the block driver hold a VM's RAM each (the driver reads and writes guest RAM in place).
  const windowOrder = Math.max(4, Math.ceil(Math.log2(maxRamPages)));
  const controlOrder = Math.ceil(Math.log2(maxRamPages + STATE_PAGES));
  checkLayout(frames, maxRamPages, drives.length, windowOrder, vms.length, services.control ? controlOrder : null);
  const blockDriver = drives.length > 0 ? new BlockDriver(new Map(drives.map((d, client) => [client, d])), { windowOrder }) : null;

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
        ]),
        threads: [{ entry: vmmComponent({ ...vm, drives: vm.drives?.map((d) => ({ readOnly: d.readOnly, serial: d.serial })) }), priority: 30, quantumNs: 1_000_000 }],
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
  };
}
