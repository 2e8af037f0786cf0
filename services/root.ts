// Root task: boots one VM from its description. It creates the memory manager, the console
// driver, the VM's PD and its VMM, and hands each exactly the capabilities it needs:
//   memory manager: the RAM frames;             console driver: its interrupt, the VMM's input portal;
//   VMM: the VM PD, its memory-manager portal, the console output portal, the parent portal.

import { Kernel, KernelMemoryCost, Sel, Status, alignedRuns, SpaceKind, crd, MemRights, PdRights, PtRights, SmRights, type Sys, type Utcb } from "../kernel/index.js";
import { consoleInput, consoleOutput, ConsoleSel, type ConsoleHost } from "../drivers/console/console.js";
import { vmmComponent, VmmSel, type VmmConfig } from "../vmm/vmm.js";
import type { BlockDriver } from "../drivers/block/component.js";
import { memoryManager } from "./memory-manager.js";
import { ParentOp, VmEnd } from "./protocols.js";

export interface VmDescription extends VmmConfig {
  name: string;
  console: ConsoleHost;
  /** Serves the VM's drives (client id = drive index); required when `drives` is not empty. */
  blockDriver?: BlockDriver;
  /** GSI the host raises when console input arrives. */
  consoleGsi?: number;
}

/** How the VM ended, filled in by the root task's parent portal. */
export interface VmOutcome {
  ended: boolean;
  status: number;
  why: VmEnd | 0;
  message: string;
}

// Root selectors.
const MM_PD = 16, MM_EC = 17, MM_PT_VMM = 18;
const CON_PD = 20, CON_OUT_EC = 21, CON_OUT_PT = 22, CON_IN_EC = 23, CON_IN_SC = 24;
const VM_PD = 30, VMM_PD = 31, VMM_EC = 32, VMM_SC = 33;
const PARENT_EC = 40, PARENT_PT = 41;
const RECEIVED_INPUT_PT = 48;
const BLK_PD = 50, BLK_EC = 200, BLK_PT = 216; // above the GSI semaphores (Sel.GSI_BASE + gsi)

export const CONSOLE_GSI = 4;

/** Kernel memory quota the root task needs to boot a VM over `frames` frames (three spaces hold them all). */
export function rootQuotaFor(frames: number, drives = 0): number {
  return (4 + drives) * (frames * KernelMemoryCost.MAPPING + (4 << 20)) + 0x10000 * KernelMemoryCost.MAPPING + (16 << 20);
}

/** Kernel memory frames needed for a VM of `memoryBytes` with ROMs of `romBytes`. */
export function framesNeeded(memoryBytes: number, romBytes: number): number {
  return Math.ceil(memoryBytes / 4096) + Math.ceil(romBytes / 4096) + 16;
}

export function rootTask(kernel: Kernel, vm: VmDescription, outcome: VmOutcome) {
  return function* root(sys: Sys) {
    const frames = kernel.memory.frames;
    // Kernel memory for a space that holds every frame once (mapping nodes), with room to spare.
    const spaceQuota = frames * KernelMemoryCost.MAPPING + (4 << 20);
    // Memory manager: all frames (as aligned blocks), and one portal for the one VMM client.
    must(sys.createPd(MM_PD, spaceQuota, { name: "memory" }), "create the memory manager PD");
    for (const [base, order] of alignedRuns(frames, [0])) must(sys.delegate(MM_PD, crd(SpaceKind.MEMORY, base, order, MemRights.ALL), base), "give frames to the memory manager");
    must(sys.createLocalEc(MM_EC, MM_PD, memoryManager(frames)), "create the memory manager");
    must(sys.createPt(MM_PT_VMM, MM_EC), "create the memory portal");
    must(sys.setPortalId(MM_PT_VMM, 1), "name the memory portal");

    // Console driver: output portal, input thread on the console interrupt.
    must(sys.createPd(CON_PD, 1 << 20, { name: "console" }), "create the console PD");
    must(sys.createLocalEc(CON_OUT_EC, CON_PD, consoleOutput(vm.console)), "create the console output EC");
    must(sys.createPt(CON_OUT_PT, CON_OUT_EC), "create the console portal");
    const gsi = vm.consoleGsi ?? CONSOLE_GSI;
    must(sys.assignGsi(Sel.GSI_BASE + gsi), "enable the console interrupt");
    must(sys.delegate(CON_PD, crd(SpaceKind.OBJECT, Sel.GSI_BASE + gsi, 0, SmRights.DOWN), ConsoleSel.INPUT_IRQ), "give the console its interrupt");
    must(sys.createGlobalEc(CON_IN_EC, CON_PD, consoleInput(vm.console)), "create the console input thread");
    must(sys.createSc(CON_IN_SC, CON_IN_EC, 20, 1_000_000), "schedule the console input thread");

    // The parent portal: VMMs report here (input portal registration, the end of the VM).
    must(
      sys.createLocalEc(PARENT_EC, 0, (self) => {
        self.utcb.receiveWindow[SpaceKind.OBJECT] = crd(SpaceKind.OBJECT, RECEIVED_INPUT_PT, 0);
        return (utcb: Utcb) => onParent(self, utcb, outcome);
      }),
      "create the parent EC",
    );
    must(sys.createPt(PARENT_PT, PARENT_EC), "create the parent portal");

    // The VM and its monitor.
    must(sys.createPd(VM_PD, spaceQuota, { name: `${vm.name}`, vm: true }), "create the VM PD");
    must(sys.createPd(VMM_PD, spaceQuota, { name: `vmm:${vm.name}` }), "create the VMM PD");
    must(sys.delegate(VMM_PD, crd(SpaceKind.OBJECT, VM_PD, 0, PdRights.CREATE_EC | PdRights.DELEGATE), VmmSel.VM_PD), "give the VMM its VM");
    must(sys.delegate(VMM_PD, crd(SpaceKind.OBJECT, PARENT_PT, 0, PtRights.CALL), VmmSel.PARENT), "give the VMM its parent");
    must(sys.delegate(VMM_PD, crd(SpaceKind.OBJECT, MM_PT_VMM, 0, PtRights.CALL), VmmSel.MEMORY), "give the VMM its memory");
    must(sys.delegate(VMM_PD, crd(SpaceKind.OBJECT, CON_OUT_PT, 0, PtRights.CALL), VmmSel.CONSOLE), "give the VMM the console");
    // Block driver: one portal per drive (its id names the drive); the VMM shares guest RAM at attach.
    const drives = vm.drives?.length ?? 0;
    if (drives > 0) {
      if (!vm.blockDriver) throw new Error("root: drives without a block driver");
      must(sys.createPd(BLK_PD, drives * spaceQuota, { name: "block" }), "create the block driver PD");
      for (let i = 0; i < drives; i++) {
        must(sys.createLocalEc(BLK_EC + i, BLK_PD, vm.blockDriver.entry(i)), "create a block driver EC");
        must(sys.createPt(BLK_PT + i, BLK_EC + i), "create a block portal");
        must(sys.setPortalId(BLK_PT + i, i), "name a block portal");
        must(sys.delegate(VMM_PD, crd(SpaceKind.OBJECT, BLK_PT + i, 0, PtRights.CALL), VmmSel.BLOCK_BASE + i), "give the VMM a drive");
      }
    }
    must(sys.createGlobalEc(VMM_EC, VMM_PD, vmmComponent(vm)), "create the VMM");
    must(sys.createSc(VMM_SC, VMM_EC, 30, 1_000_000), "schedule the VMM");
  };
}

function onParent(sys: Sys, utcb: Utcb, outcome: VmOutcome): void {
  switch (utcb.words[0]) {
    case ParentOp.REGISTER_INPUT: {
      // The VMM's input portal arrived in our window; pass it on to the console driver.
      const got = utcb.received.find((r) => r.kind === "delegated");
      if (got && got.kind === "delegated") sys.delegate(CON_PD, crd(SpaceKind.OBJECT, got.crd.base, 0, PtRights.CALL), ConsoleSel.VMM_INPUT);
      break;
    }
    case ParentOp.VM_EXITED: {
      const bytes = Array.from(utcb.words.subarray(3, utcb.untyped), (w) => w & 0xff);
      Object.assign(outcome, { ended: true, status: utcb.words[1], why: utcb.words[2] as VmEnd, message: new TextDecoder().decode(new Uint8Array(bytes)) });
      break;
    }
  }
  utcb.set(Status.SUCCESS);
}


function must(s: Status, what: string): void {
  if (s !== Status.SUCCESS) throw new Error(`root: could not ${what}: ${Status[s]}`);
}
