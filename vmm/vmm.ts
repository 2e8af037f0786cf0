// The virtual machine monitor: one component per VM. It gets guest RAM from the memory manager,
// maps it into the VM's PD, owns the vCPU's exit portals and the PC device models, and delivers
// interrupts. It reaches the console and the root task only through the portals it was granted.

import {
  CHUNK_FRAMES,
  ExitReason,
  EXIT_REASON_COUNT,
  InjectionType,
  InvalidStateCause,
  MemRights,
  Mtd,
  SpaceKind,
  Status,
  VcpuState,
  alignedRuns,
  crd,
  packBytes,
  unpackBytes,
  type GlobalEntry,
  type MemoryView,
  type ReplyToken,
  type Sys,
  type Utcb,
} from "../kernel/index.js";
import type { BootPlan } from "./boot/index.js";
import { PcPlatform } from "./devices/platform.js";
import { DeviceStateError } from "./devices/state.js";
import type { AccessSize } from "./devices/bus.js";
import { KernelDeviceClock } from "./device-clock.js";
import { BlockAttachError, FlatGuestRam, VirtioBalloon, VirtioBlk, VirtioBlkStatus, VirtioPciDevice, installVirtioPci, ipcBlockBackend, type BlockBackend, type GuestRam, type IpcBlockBackend } from "./devices/virtio/index.js";
import { ManualClock, type DeviceClock } from "./devices/clock.js";
import { ConsoleChannel } from "../drivers/console/protocol.js";
import { MemoryOp, MemoryStatus, memoryStatusName } from "../services/memory-protocol.js";
import { ParentOp, Published, VmEnd } from "../services/root-protocol.js";
import { encode } from "@msgpack/msgpack";
import { AttachForm, DirtyAction, MAX_CHANGED_PAGES, MAX_THROTTLE_PERCENT, PauseReason, STATE_PAGES, THROTTLE_PERIOD_NS, VmmControlOp, type VmState } from "./protocol.js";
import { copyVcpuState as copyState, RECORD_MTD, vcpuRecord } from "./vcpu-record.js";
import { DemandRam, GuestMemoryError, type GuestRamSource, type RamBacking } from "./demand-ram.js";
import { KVM_ENOSYS, KvmParavirt } from "./paravirt/kvm.js";
import { HvParavirt } from "./paravirt/hv-pv.js";
import { GrantPages } from "./paravirt/grant-pages.js";
import { HvError, HvVirq } from "./paravirt/hv-abi.js";
import { MAX_PEERS } from "./paravirt/peer-protocol.js";
import { MAX_CPUS, VcpuSlot, apicBaseOf, startAt, waitForSipiState, type Parked } from "./smp.js";

export type { GuestRamSource } from "./demand-ram.js";

/** Selectors the root task fills in the VMM's object space. */
export const VmmSel = {
  VM_PD: 1,
  PARENT: 2,
  MEMORY: 3,
  CONSOLE: 4,
  /** Block driver portal of drive i at BLOCK_BASE + i. */
  BLOCK_BASE: 8,
  /** The peer portal of channel k (the other VMM's, vmm/paravirt/peer-protocol.ts) at PEER_BASE + k. */
  PEER_BASE: 16,
} as const;

/** Where drive i appears: PCI slot, ISA IRQ (one each: ISA lines are not wired-OR), BARs. */
export function drivePlacement(i: number) {
  return { slot: 4 + i, irq: [11, 10, 9, 5][i], memBase: 0xfebf0000 - 0x4000 * i, ioBase: 0xc000 + 0x100 * i };
}
export const MAX_DRIVES = 4;
/** The memory balloon: a PCI function after the drives' IRQs, its BAR below theirs. */
const BALLOON_PLACEMENT = { slot: 3, irq: 15, memBase: 0xfebf0000 - 0x4000 * MAX_DRIVES, ioBase: 0xc000 + 0x100 * MAX_DRIVES };

/** Selectors the VMM uses for what it creates itself. */
const EXIT_EC = 32;
const INPUT_EC = 33;
const INPUT_PT = 34;
const TIMER_SM = 35;
const CONTROL_EC = 38;
const CONTROL_PT = 39;
/** An incoming migration's VM waits here for LOAD. */
const LOAD_SM = 36;
/** Bytes of a refused LOAD's, INACTIVATE's or RESUME's reason at most (one a UTCB word). */
const REFUSAL_REASON_BYTES = 400;
const PEER_EC = 40;
/** The peer portal this VMM serves for channel k: PEER_PT_BASE + k (its portal id k). */
const PEER_PT_BASE = 48;
/** vCPU i's exit portals: EXIT_PT_BASE + i * EXIT_REASON_COUNT + reason (portal id (i << 8) | reason). */
const EXIT_PT_BASE = 0x100;
/** vCPU i's EC at VCPU_BASE + 2i, its SC at VCPU_BASE + 2i + 1. */
const VCPU_BASE = 0x80;
const vcpuEc = (i: number) => VCPU_BASE + 2 * i;
const vcpuSc = (i: number) => VCPU_BASE + 2 * i + 1;
/** A vCPU's scheduling context: its priority (below the VMM's own threads) and quantum. */
export const VCPU_PRIORITY = 10;
export const VCPU_QUANTUM_NS = 10_000_000;
/**
 * The quantum of each vCPU of a multiprocessor VM: a vCPU that spins waiting for another (a lock,
 * an IPI's answer) spins at most this long before the other runs.
 */
export const SMP_QUANTUM_NS = 1_000_000;
/** vCPU i's exit portals in the VM PD's object space start at EVENT_BASE + i * EXIT_REASON_COUNT. */
export const EVENT_BASE = 0x100;
/** Where guest RAM and ROM frames arrive in the VMM's own memory space (page numbers): guest page p at base + p. */
const RAM_WINDOW = { base: 1 << 19, order: 19 };
/** Grant mapping (vmm/paravirt/grant-pages.ts): the export slots of this VM's grants, and the peers' pages it maps. */
const GRANT_EXPORTS = 1 << 18, GRANT_IMPORTS = (1 << 18) + (1 << 10);
/** Pages each drive's bounce region holds: the block driver reads and writes disk data there. */
export const BLOCK_BOUNCE_PAGES = 64;

export interface VmmConfig {
  memoryBytes: number;
  plan: BootPlan;
  /** Local APIC + I/O APIC (default false: Linux then runs on the 8259 PIC). */
  apic?: boolean;
  /**
   * vCPUs, 1 to MAX_CPUS (default 1). More than one needs `apic` (INIT/SIPI and IPIs go through
   * the local APICs); such a VM has no paravirtual interface (it is per-VM, built for one vCPU) and
   * cannot be paused or saved.
   */
  cpus?: number;
  /** fw_cfg, ACPI tables and PM registers, the HPET (default true; false: the PC as hv had it before). */
  acpi?: boolean;
  /** Unix time of the RTC at virtual time 0. */
  startTime?: number;
  /** isa-debug-exit port (QEMU's default 0xf4), or null for none. */
  debugExitPort?: number | null;
  /** Forward port 0xe9 output to the console driver's DEBUGCON channel. */
  debugcon?: boolean;
  vcpuPriority?: number;
  /**
   * virtio-blk disks, each served by the block driver through portal BLOCK_BASE + i. `inactive`:
   * another process may still write the image (an incoming migration's shared drive): attach it
   * without opening it, and open it at the first RESUME.
   */
  drives?: ReadonlyArray<{ readOnly?: boolean; serial?: string; inactive?: boolean }>;
  /** Virtual ns per TSC tick (the kernel's ns per instruction; default 1). */
  nsPerTscTick?: number;
  /**
   * Offer KVM's paravirtual interface (hypervisor CPUID leaves, kvm-clock, hypercalls), which an
   * unmodified Linux uses (default true; false hides it: a plain PC, VMCALL raises #UD).
   */
  pv?: boolean;
  /**
   * The VMs this one has channels to (our own PV ABI's peers 0, 1, ...), by name: the fleet grants
   * them, and the root task hands this VMM the peer portal of each (VmmSel.PEER_BASE + k).
   */
  peers?: readonly string[];
  /**
   * Resume a saved VM instead of booting: `plan` then holds the saved ROMs and vCPU state (its
   * TSC as of `state.vmTimeNs`) and no writes. Checked before the VMM starts (checkVmState).
   */
  resume?: { state: VmState; ram: GuestRamSource; eager?: boolean; /** `ram` is a template (a linked clone's): pages read from it are shared with other VMs'. */ share?: boolean };
  /**
   * An incoming migration's VM, built (RAM, ROMs, devices, portals) while its pages still come, so
   * that the stop costs only the state: it waits, paused, for the control op LOAD, which takes
   * `state()` (the VM's state and its vCPU's registers, checked by the host as a resume's are) and
   * the pages `ram` holds by then. `plan` holds the ROMs; its state and writes are not used.
   */
  incoming?: { ram: GuestRamSource; state: () => { state: VmState; vcpu: VcpuState } | null };
}


const IF = 0x200;
/** The NMI's vector (SDM vol. 3, 6.3.1). */
const NMI_VECTOR = 2;

/** Set the injection of exit record `v` (in place: the record's own; no error code). */
function setInjection(v: VcpuState, valid: boolean, vector: number, type: number, requestWindow: boolean): void {
  const inj = v.inj;
  inj.valid = valid;
  inj.vector = vector;
  inj.type = type;
  inj.errorCode = -1;
  inj.requestWindow = requestWindow;
}

/** Portal MTDs per exit reason: exactly what each handler reads or writes. */
const EXIT_MTD: Partial<Record<ExitReason, number>> = {
  [ExitReason.STARTUP]: Mtd.ALL,
  [ExitReason.PIO]: Mtd.QUAL,
  [ExitReason.MMIO]: Mtd.QUAL,
  [ExitReason.CPUID]: Mtd.QUAL,
  // A halt moves what its handler reads (IF, blocking, FERR#/IGNNE#, an injection not taken) and
  // the TSC a parked vCPU ticks on from; a snapshot or a start-up IPI reads the rest from the
  // vCPU, still stopped there (wholeState). A halted vCPU parks on every event: the whole state
  // was a twentieth of an event-channel round trip.
  [ExitReason.HLT]: Mtd.EFLAGS | Mtd.STA | Mtd.INJ | Mtd.TSC,
  // Where the vCPU may stop for long (paused), the VMM sees all of it: a snapshot needs it.
  [ExitReason.INTR_WINDOW]: Mtd.EFLAGS | Mtd.STA | Mtd.INJ,
  [ExitReason.RECALL]: Mtd.ALL & ~Mtd.QUAL,
  [ExitReason.EXCEPTION]: Mtd.QUAL | Mtd.EIP_LEN,
  [ExitReason.TRIPLE_FAULT]: Mtd.EIP_LEN | Mtd.CS_SS,
  [ExitReason.INVALID_STATE]: Mtd.QUAL | Mtd.EIP_LEN | Mtd.CS_SS | Mtd.CR | Mtd.EFLAGS,
  [ExitReason.FERR]: Mtd.STA,
  // The TSC at the access: a kvm-clock record pairs it with the VM's time.
  [ExitReason.MSR]: Mtd.QUAL | Mtd.TSC,
  // The hypercall's registers, and what the privilege level is made of (KVM refuses user mode).
  [ExitReason.VMCALL]: Mtd.QUAL | Mtd.GPR_ACDB | Mtd.GPR_BSD | Mtd.CS_SS | Mtd.CR | Mtd.EFLAGS,
};

/**
 * Whether the ACPI tables can go into RAM at their address: inside RAM, under no ROM (a firmware
 * image mapped over the BIOS area builds its own tables, from fw_cfg's files) and clear of the
 * boot plan's writes. The loaders leave the BIOS area alone (it is reserved in their memory maps).
 */
export function acpiFits(tables: { base: number; bytes: Uint8Array }, plan: BootPlan, memoryBytes: number): boolean {
  const start = tables.base;
  const end = start + tables.bytes.length;
  const clear = (r: { gpa: number; bytes: Uint8Array }) => r.gpa + r.bytes.length <= start || r.gpa >= end;
  return end <= memoryBytes && plan.roms.every(clear) && plan.writes.every(clear);
}

/** Every PCI function's INTA# route, for the DSDT's `_PRT`: the balloon's and each possible drive's. */
const PCI_IRQS = [BALLOON_PLACEMENT, ...Array.from({ length: MAX_DRIVES }, (_, i) => drivePlacement(i))].map((p) => ({ slot: p.slot, gsi: p.irq }));

/** The PC platform of a VM configured so (its drives come later, with installDrive). */
function platformFor(config: VmmConfig, clock: DeviceClock, hooks: { debugExit: (status: number) => void; debugConsole: (byte: number) => void }): PcPlatform {
  return new PcPlatform({
    clock,
    memoryBytes: config.memoryBytes,
    startTime: config.startTime ?? 1_700_000_000,
    apic: config.apic ?? false,
    acpi: config.acpi ?? true,
    cpus: config.cpus ?? 1,
    pciIrqs: PCI_IRQS,
    serialPorts: 1,
    debugExit: config.debugExitPort === null ? undefined : { onExit: hooks.debugExit, port: config.debugExitPort ?? 0xf4 },
    debugConsole: config.debugcon ? hooks.debugConsole : undefined,
  });
}

/** Drive i as a virtio-blk function on the platform. */
function installDrive(platform: PcPlatform, i: number, backend: BlockBackend, d: { serial?: string }, ram: GuestRam): void {
  const device = new VirtioPciDevice(new VirtioBlk(backend, { name: `virtio-blk${i}`, serial: d.serial ?? `hv-disk${i}` }), ram);
  installVirtioPci(platform, device, drivePlacement(i));
}

/** The memory balloon on the platform; pages the guest gives up go to `release`. */
function installBalloon(platform: PcPlatform, ram: GuestRam, release: (first: number, count: number) => number): { balloon: VirtioBalloon; device: VirtioPciDevice } {
  const balloon = new VirtioBalloon({ release });
  const device = new VirtioPciDevice(balloon, ram);
  installVirtioPci(platform, device, BALLOON_PLACEMENT);
  return { balloon, device };
}

/**
 * Check a saved VM's device records against the platform `config` describes, before anything
 * starts: the same devices are built on a scratch clock and load the records. Throws
 * DeviceStateError naming the field (the VMM loads them again, and would refuse them the same way).
 */
export function checkSavedDevices(config: VmmConfig, drives: ReadonlyArray<{ sectors: number; readOnly: boolean; serial?: string }>, platformRecord: unknown): void {
  checkPlatform(config, drives).loadState(platformRecord);
}

/** The devices' records of a VM of `config` just built (no drives): what a check can be tried on. */
export function freshDeviceRecords(config: VmmConfig): unknown {
  return checkPlatform(config, []).saveState();
}

/** A platform of `config` with these drives (that refuse I/O) and the balloon, for checks. */
function checkPlatform(config: VmmConfig, drives: ReadonlyArray<{ sectors: number; readOnly: boolean; serial?: string }>): PcPlatform {
  const platform = platformFor(config, new ManualClock(), { debugExit: () => {}, debugConsole: () => {} });
  const ram = new FlatGuestRam(new Uint8Array(0));
  const refuse = () => VirtioBlkStatus.IOERR;
  drives.forEach((d, i) => installDrive(platform, i, { sectors: d.sectors, readOnly: d.readOnly, read: refuse, write: refuse, flush: refuse }, d, ram));
  installBalloon(platform, ram, () => 0);
  return platform;
}

/** The VMM component: its body sets the VM up and then runs the device timers. */
export function vmmComponent(config: VmmConfig): GlobalEntry {
  return (sys) => new Vmm(sys, config).main();
}

class Vmm {
  private readonly clock: KernelDeviceClock;
  private readonly platform: PcPlatform;
  /** The vCPUs, the boot processor first. */
  private readonly cpus: VcpuSlot[];
  /** The boot processor: the one that runs the boot plan, and the one pauses and snapshots know. */
  private readonly bsp: VcpuSlot;
  /** VM time at which the boot processor's TSC was 0 (application processors start in step with it). */
  private tscZeroVm = 0;
  /** The vCPU stopped for a pause (at a recall, or at a resumed VM's start). */
  private pausedAt: Parked | null = null;
  private ended = false;
  /**
   * VM time is the vCPU's (the kernel's VM time: it passes while the vCPU runs or waits in HLT),
   * less this offset: a resumed VM goes on from its saved time. Before the vCPU starts: kernel time.
   */
  private hiddenNs = 0;
  private vcpuStarted = false;
  /** VM time when the current pause began (it stands still until RESUME). */
  private pauseVm = 0;
  /** A resumed VM that was saved halted: its first HLT exit parks as the saved vCPU. */
  private resumeHalted: VcpuState | null = null;
  /** The saved VM this one resumes (config.resume's, or what LOAD took), and its vCPU's registers. */
  private resumed: { state: VmState; vcpu: VcpuState } | null = null;
  /** An incoming migration's VM waits for LOAD (only QUERY, PAUSE and LOAD make sense until then). */
  private awaitingLoad = false;
  /** The control component holds all of RAM (a whole ATTACH); the pages ATTACH CHANGES found, for CHANGED. */
  private attachedWhole = false;
  private changedPages: number[] | null = null;
  /** LOAD's reply, once the vCPU stands at the state. */
  private loadReply: ReplyToken | null = null;
  /** Kernel time the current pause began, or null while running. */
  private pauseStart: number | null = null;
  /** A pause asked for while the vCPU runs: answered when it stopped. */
  private pauseReply: ReplyToken | null = null;
  /** A pause asked for at a VM time still to come. */
  private pauseAt: ReplyToken | null = null;
  /** An interrupt arrived while paused: deliver it on resume. */
  private kickPending = false;
  /** Guest RAM, backed on first touch (and a resumed VM's pages read from its snapshot then). */
  private ram!: DemandRam;
  /** The memory balloon, and its PCI function. */
  private balloon!: { balloon: VirtioBalloon; device: VirtioPciDevice };
  /** The VM stops for want of host memory at its next instruction boundary. */
  private memoryPause = false;
  /** The current pause is for want of host memory (QUERY says so). */
  private pausedForMemory = false;
  /** The state region (SAVE writes the encoded VmState here), and its first page in the VMM's space. */
  private stateView: MemoryView | null = null;
  private statePage = 0;
  /** Each drive's bounce region: its first page in the VMM's space. */
  private bouncePages: number[] = [];
  /** Each drive's connection to the block driver, by drive index. */
  private readonly driveBackends: IpcBlockBackend[] = [];
  /** Some drive is closed (attached inactive, or INACTIVATE): RESUME opens them first. */
  private drivesInactive = false;
  /** IGNNE# changed on a port F0h write: hand it to the vCPU at the recall that follows. */
  private ignneChanged = false;
  /** KVM's paravirtual interface, when offered. */
  private kvm: KvmParavirt | null = null;
  /** Our own paravirtual ABI (multicalls, event channels, grant copy), offered with KVM's. */
  private hv: HvParavirt | null = null;
  /** The hv upcall was raised and is not injected yet. */
  private upcallRaised = false;
  /** A vCPU record for the next park to hand the exit handler's UTCB (park and unpark move records, not copies). */
  private spareVcpu: VcpuState | null = null;
  /** The hv one-shot timer (SET_TIMER), when armed. */
  private hvTimer: ReturnType<DeviceClock["setTimer"]> | null = null;
  private serialOut: number[] = [];
  private debugOut: number[] = [];
  /**
   * Auto-converge (THROTTLE; the boot vCPU's, whose time is the VM's, as a pause stops it): percent
   * of each period it is held back (0: never); the timer
   * that ends its share of the period; a recall it asked for; and the vCPU while held back, with
   * the kernel time that ends it.
   */
  private throttle: { percent: number; timer: ReturnType<DeviceClock["setTimer"]> | null; due: boolean; held: { parked: Parked; until: number } | null } = { percent: 0, timer: null, due: false, held: null };

  constructor(
    private readonly sys: Sys,
    private readonly config: VmmConfig,
  ) {
    const cpus = config.cpus ?? 1;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS) throw new Error(`${cpus} vCPUs: must be 1 to ${MAX_CPUS}`);
    if (cpus > 1 && !config.apic) throw new Error("a VM with several vCPUs needs local APICs (apic)");
    this.cpus = Array.from({ length: cpus }, (_, i) => new VcpuSlot(i));
    this.bsp = this.cpus[0];
    this.clock = new KernelDeviceClock(
      () => this.vmNow(),
      () => void sys.up(TIMER_SM),
    );
    this.platform = platformFor(config, this.clock, {
      debugExit: (status) => this.end(status, VmEnd.DEBUG_EXIT),
      debugConsole: (byte) => {
        this.debugOut.push(byte);
        this.send(ConsoleChannel.DEBUGCON, this.debugOut);
      },
    });
    // Serial output leaves at once: a guest that prints and then polls for input must be seen.
    this.platform.uarts[0].onTransmit = (byte) => {
      this.serialOut.push(byte);
      this.send(ConsoleChannel.SERIAL0, this.serialOut);
    };
    this.platform.onIntr = (pending, cpu) => {
      if (pending) this.kick(this.cpus[cpu]);
    };
    this.platform.lapics.forEach((lapic, i) => {
      const cpu = this.cpus[i];
      lapic.onNmi = () => {
        cpu.nmiPending = true;
        this.kick(cpu);
      };
      lapic.onInit = () => this.init(cpu);
      lapic.onStartup = (vector) => this.startup(cpu, vector);
    });
    this.platform.onPowerOff = () => this.end(0, VmEnd.HALTED, "the guest powered off (ACPI S5)");
    // There is no reboot: a reset request ends the VM, as QEMU's -no-reboot does (status 0: the guest chose it).
    this.platform.onReset = (source) => this.end(0, VmEnd.RESET, `the guest asked for a reset (${source}); hv does not reboot, so the VM ended`);
    this.platform.fpuError.onIgnne = () => {
      if (this.ignneChanged) return;
      this.ignneChanged = true;
      this.sys.recall(vcpuEc(0));
    };
  }

  *main(): Generator<import("../kernel/index.js").Wait, void, Status> {
    const sys = this.sys;
    must(sys.createSm(TIMER_SM, 0), "create the timer semaphore");
    this.setUpMemory();
    this.attachDrives();
    this.balloon = installBalloon(this.platform, this.ram, (first, count) => this.ram.release(first, count));
    this.platform.fwCfg?.attachRam(this.ram);
    if (this.ended) return; // a drive was refused: the VM never starts
    if ((this.config.pv ?? true) && this.cpus.length === 1) {
      const platform = this.platform;
      this.kvm = new KvmParavirt({
        ram: this.ram,
        nsPerTscTick: this.config.nsPerTscTick ?? 1,
        vmNow: () => this.vmNow(),
        wallClock: () => platform.rtc.reference,
        lapic: platform.lapic,
      });
      this.hv = this.createHv();
    }
    if (this.config.resume) this.resumed = { state: this.config.resume.state, vcpu: this.config.plan.state };
    const incoming = this.config.incoming !== undefined && !this.config.resume;
    if (this.resumed) this.applyResumed(this.resumed.state);
    if (incoming) {
      // Everything but the state is built before it comes: the stop then costs only LOAD.
      must(sys.createSm(LOAD_SM, 0), "create the load semaphore");
      this.awaitingLoad = true;
      this.pauseStart = sys.now();
    }
    must(sys.createLocalEc(EXIT_EC, 0, () => (utcb, id) => this.onExit(utcb, id)), "create the exit handler");
    for (const cpu of this.cpus) {
      for (let r = 0; r < EXIT_REASON_COUNT; r++) {
        const mtd = EXIT_MTD[r as ExitReason];
        if (mtd === undefined) continue;
        const pt = EXIT_PT_BASE + cpu.index * EXIT_REASON_COUNT + r;
        must(sys.createPt(pt, EXIT_EC, mtd), "create an exit portal");
        must(sys.setPortalId(pt, (cpu.index << 8) | r), "name an exit portal");
        must(sys.delegate(VmmSel.VM_PD, crd(SpaceKind.OBJECT, pt, 0), EVENT_BASE + cpu.index * EXIT_REASON_COUNT + r), "hand an exit portal to the VM");
      }
    }
    // Console input arrives through a portal the root task passes on to the console driver.
    must(sys.createLocalEc(INPUT_EC, 0, () => (utcb) => this.onInput(utcb)), "create the input handler");
    must(sys.createPt(INPUT_PT, INPUT_EC), "create the input portal");
    this.publish(INPUT_PT, Published.CONSOLE_INPUT);
    this.servePeers();
    must(sys.createLocalEc(CONTROL_EC, 0, () => (utcb) => this.onControl(utcb)), "create the control handler");
    must(sys.createPt(CONTROL_PT, CONTROL_EC), "create the control portal");
    this.publish(CONTROL_PT, Published.VMM_CONTROL);

    // vCPUs of one priority take turns on virtual time, round robin in creation order: the boot
    // processor first. Application processors wait for INIT and SIPI (their STARTUP exit parks them).
    // A vCPU runs once it has its SC: an incoming VM's, once LOAD brought the state.
    const quantum = this.cpus.length > 1 ? SMP_QUANTUM_NS : VCPU_QUANTUM_NS;
    for (const cpu of this.cpus) must(sys.createVcpu(vcpuEc(cpu.index), VmmSel.VM_PD, EVENT_BASE + cpu.index * EXIT_REASON_COUNT), "create a vCPU");
    // LOAD took the state into the devices (and checked it so): the vCPU only waits for it.
    if (incoming) while (!this.resumed && !this.ended) yield sys.wait.down(LOAD_SM, Infinity);
    if (incoming && !this.resumed) return;
    for (const cpu of this.cpus) must(sys.createSc(vcpuSc(cpu.index), vcpuEc(cpu.index), this.config.vcpuPriority ?? VCPU_PRIORITY, quantum), "schedule a vCPU");

    // The timer thread: sleep until the next device deadline (or until an earlier one is armed).
    // A paused VM's devices stand still: no deadline is due until it resumes.
    // Held back by the throttle, the VM's time stands still too; the thread wakes when that ends.
    while (!this.ended) {
      const held = this.throttle.held;
      const next = this.pauseStart !== null || held ? Infinity : this.clock.nextDeadline();
      const wait = held ? Math.max(0, held.until - sys.now()) : next === Infinity ? Infinity : Math.max(0, next - this.vmNow());
      yield sys.wait.down(TIMER_SM, wait);
      const heldNow = this.throttle.held;
      if (heldNow && sys.now() >= heldNow.until) this.releaseThrottled();
      if (this.pauseStart === null) this.clock.fireDue(this.vmNow());
      this.flushConsole();
    }
  }

  /** A resumed VM starts paused at its saved time: its devices wait for RESUME like the vCPU. */
  private applyResumed(state: VmState): void {
    this.pauseVm = state.vmTimeNs;
    this.pauseStart = this.sys.now();
    this.platform.loadState(state.platform);
    this.ignneChanged = state.ignneChanged;
    if (state.kvm && this.kvm) this.kvm.loadState(state.kvm, "kvm");
    if (state.hv && this.hv) this.upcallRaised = this.hv.loadState(state.hv, "hv");
  }

  /** Our own paravirtual ABI, reaching peers through the portals the root task gave this VMM. */
  private createHv(): HvParavirt {
    const sys = this.sys;
    const peers = this.config.peers?.length ?? 0;
    if (peers > MAX_PEERS) throw new Error(`at most ${MAX_PEERS} channels`);
    const pages = new GrantPages(sys, this.ram, { vmPd: VmmSel.VM_PD, ramBase: RAM_WINDOW.base, exportBase: GRANT_EXPORTS, importBase: GRANT_IMPORTS, peerBase: VmmSel.PEER_BASE });
    return new HvParavirt({
      ram: this.ram,
      peers,
      raiseUpcall: () => {
        if (!this.hv || this.hv.upcallVector === 0) return;
        this.upcallRaised = true;
        this.kick(this.bsp);
      },
      peerCall: (peer, fill) => {
        const utcb = sys.utcb;
        if (utcb.items.length !== 0) utcb.items.length = 0; // setting a length is a runtime call
        utcb.untyped = fill(utcb.words);
        return sys.call(VmmSel.PEER_BASE + peer) === Status.SUCCESS ? utcb.words : null;
      },
      exports: pages,
      imports: pages,
      vmNow: () => this.vmNow(),
      setTimer: (at) => {
        if (this.hvTimer !== null) this.clock.cancelTimer(this.hvTimer);
        this.hvTimer = at === null ? null : this.clock.setTimer(at, () => {
          this.hvTimer = null;
          this.hv?.fireVirq(HvVirq.TIMER);
        });
      },
    });
  }

  /** One peer portal per channel, handed to the root task, which gives it to that peer's VMM only. */
  private servePeers(): void {
    const peers = this.config.peers?.length ?? 0;
    if (peers === 0) return;
    const sys = this.sys;
    must(sys.createLocalEc(PEER_EC, 0, () => (utcb, peer) => this.onPeer(utcb, peer)), "create the peer handler");
    for (let k = 0; k < peers; k++) {
      must(sys.createPt(PEER_PT_BASE + k, PEER_EC), "create a peer portal");
      must(sys.setPortalId(PEER_PT_BASE + k, k), "name a peer portal");
      this.publish(PEER_PT_BASE + k, Published.PEER_BASE + k);
    }
  }

  /** A request of peer `peer`'s VMM (the portal id says who). A VM without the ABI refuses all. */
  private onPeer(utcb: Utcb, peer: number): void {
    if (utcb.items.length !== 0) utcb.items.length = 0; // a MAP's reply carries the page (hv-pv.ts puts it here)
    if (this.hv && !this.ended) utcb.untyped = this.hv.servePeerInPlace(peer, utcb.words, utcb.untyped);
    else utcb.set(HvError.ENOSYS);
  }

  /** The VM's virtual time (it stands still during a pause). */
  private vmNow(): number {
    if (this.pauseStart !== null) return this.pauseVm;
    return (this.vcpuStarted ? this.sys.vmTime(vcpuEc(0))! : this.sys.now()) - this.hiddenNs;
  }

  /** Begin a pause: the VM's time stands still from here. */
  private beginPause(): void {
    this.pauseVm = this.vmNow();
    this.pauseStart = this.sys.now();
  }

  /** Hand a portal to the root task, which passes it where the boot description says. */
  /** A local EC handling portal `pt` with `handler`, published to the parent as `name`. */
  private publish(pt: number, name: number): void {
    const sys = this.sys;
    sys.utcb.set(ParentOp.PUBLISH, name);
    sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.OBJECT, pt, 0, 1), offset: name });
    sys.call(VmmSel.PARENT);
  }

  /**
   * Guest RAM comes from the memory manager on first touch (DemandRam); ROMs, the state region and
   * the drives' bounce regions now, each one contiguous run after RAM in the window. Applies the
   * boot plan.
   */
  private setUpMemory(): void {
    const sys = this.sys;
    const ramPages = Math.ceil(this.config.memoryBytes / 4096);
    this.ram = new DemandRam(this.config.memoryBytes, this.ramBacking(), this.config.resume?.ram ?? this.config.incoming?.ram ?? null, this.config.resume?.share ?? false);
    // An eager restore reads all of the saved RAM now (a full copy, as the scanner's benchmark wants).
    if (this.config.resume?.eager) this.ram.fillAll();
    let next = ramPages;
    const alloc = (pages: number): number => {
      const first = next;
      this.receiveRam();
      sys.utcb.items.length = 0;
      sys.utcb.set(MemoryOp.ALLOC, first, pages);
      must(sys.call(VmmSel.MEMORY), "call the memory manager");
      sys.utcb.receiveWindow[SpaceKind.MEMORY] = null;
      if (sys.utcb.words[0] !== MemoryStatus.OK || sys.utcb.words[1] !== pages)
        throw new Error(`the memory manager refused ${pages} pages (${memoryStatusName(sys.utcb.words[0])})`);
      next += pages;
      return RAM_WINDOW.base + first;
    };
    for (const rom of this.config.plan.roms) {
      const pages = Math.ceil(rom.bytes.length / 4096);
      const first = Math.floor(rom.gpa / 4096);
      // A ROM shadows RAM below it (the BIOS area below 1 MiB): those pages are not RAM.
      for (let p = first; p < Math.min(first + pages, ramPages); p++) this.ram.exclude(p);
      // In pieces of at most a chunk of frames: a contiguous run is never more.
      for (let done = 0; done < pages; done += CHUNK_FRAMES) {
        const n = Math.min(CHUNK_FRAMES, pages - done);
        const page = alloc(n);
        this.view(page, n).bytes.set(rom.bytes.subarray(done * 4096, (done + n) * 4096));
        mapRange(sys, page, first + done, n, MemRights.R | MemRights.X);
      }
    }
    for (const w of this.config.plan.writes) this.ram.write(w.gpa, w.bytes);
    // ACPI tables at 0xE0000 for a booted VM (a resumed one has them in its RAM), where no ROM is.
    const acpi = this.platform.acpiTables;
    if (acpi && !this.config.resume && !this.config.incoming && acpiFits(acpi, this.config.plan, this.config.memoryBytes)) this.ram.write(acpi.base, acpi.bytes);
    this.statePage = alloc(STATE_PAGES);
    this.stateView = this.view(this.statePage, STATE_PAGES);
    this.bouncePages = (this.config.drives ?? []).map(() => alloc(BLOCK_BOUNCE_PAGES));
  }

  /** The memory manager delegates into the RAM window (guest page p at RAM_WINDOW.base + p). */
  private receiveRam(): void {
    this.sys.utcb.receiveWindow[SpaceKind.MEMORY] = crd(SpaceKind.MEMORY, RAM_WINDOW.base, RAM_WINDOW.order);
  }

  /** How DemandRam backs a page: the memory manager's BACK, and mappings into the VM. */
  private ramBacking(): RamBacking {
    const sys = this.sys;
    return {
      back: (first, count, write) => {
        this.receiveRam();
        sys.utcb.items.length = 0;
        sys.utcb.set(MemoryOp.BACK, first, count, write ? 1 : 0);
        const called = sys.call(VmmSel.MEMORY);
        sys.utcb.receiveWindow[SpaceKind.MEMORY] = null;
        if (called !== Status.SUCCESS) return { status: MemoryStatus.BAD_REQUEST, pages: 0 };
        return { status: sys.utcb.words[0], pages: sys.utcb.words[1] };
      },
      share: (first, count) => {
        this.receiveRam();
        sys.utcb.items.length = 0;
        sys.utcb.set(MemoryOp.SHARE, first, count);
        const called = sys.call(VmmSel.MEMORY);
        sys.utcb.receiveWindow[SpaceKind.MEMORY] = null;
        return called === Status.SUCCESS && sys.utcb.words[0] === MemoryStatus.OK ? sys.utcb.words[1] : 0;
      },
      free: (first, count) => {
        sys.utcb.items.length = 0;
        sys.utcb.set(MemoryOp.FREE, first, count);
        return sys.call(VmmSel.MEMORY) === Status.SUCCESS && sys.utcb.words[0] === MemoryStatus.OK ? sys.utcb.words[1] : 0;
      },
      unmap: (page) => must(sys.revoke(crd(SpaceKind.MEMORY, RAM_WINDOW.base + page, 0)), "unmap a zero page"),
      map: (first, count, writable) => mapRange(sys, RAM_WINDOW.base + first, first, count, writable ? MemRights.ALL : MemRights.R | MemRights.X),
      view: (page, writable) => sys.memory(RAM_WINDOW.base + page, 1, writable),
      revocations: () => sys.memoryRevocations(),
      revokedSince: (since) => {
        const pages = sys.memoryRevokedSince(since);
        return pages && pages.filter((p) => p >= RAM_WINDOW.base && p < RAM_WINDOW.base + 2 ** RAM_WINDOW.order).map((p) => p - RAM_WINDOW.base);
      },
      traceCount: (name, value) => sys.traceCount(name, value),
      protect: (page, writable) => {
        const at = RAM_WINDOW.base + page;
        if (!writable) return void must(sys.revoke(crd(SpaceKind.MEMORY, at, 0, MemRights.W), true), "write-protect a guest page");
        // The VM's read-only mapping goes, a writable one comes (a delegation does not replace a mapping).
        must(sys.revoke(crd(SpaceKind.MEMORY, at, 0), true), "unmap a write-protected guest page");
        mapRange(sys, at, page, 1, MemRights.ALL);
      },
    };
  }

  /** One virtio-blk per drive, backed by the block driver, which reads and writes the drive's bounce region. */
  private attachDrives(): void {
    const drives = this.config.drives ?? [];
    if (drives.length > MAX_DRIVES) throw new Error(`at most ${MAX_DRIVES} drives`);
    drives.forEach((d, i) => {
      let backend;
      try {
        const page = this.bouncePages[i];
        backend = ipcBlockBackend(this.sys, VmmSel.BLOCK_BASE + i, this.view(page, BLOCK_BOUNCE_PAGES), page, d.inactive === true);
      } catch (error) {
        if (error instanceof BlockAttachError) {
          this.end(1, VmEnd.ERROR, `block driver refused drive ${i}: ${error.message}`);
          return;
        }
        throw error;
      }
      this.driveBackends[i] = backend;
      if (d.inactive) this.drivesInactive = true;
      installDrive(this.platform, i, backend, d, this.ram);
    });
  }

  /** A view of `pages` of the VMM's own memory: frames are contiguous when they came in one piece. */
  private view(page: number, pages: number): MemoryView {
    const v = this.sys.memory(page, pages);
    if (!v) throw new Error(`guest memory at VMM page ${page} (+${pages}) is not one contiguous writable range`);
    return v;
  }

  /** An exit of vCPU `id >> 8` for reason `id & 0xff` (the portal's id). */
  private onExit(utcb: Utcb, id: number): void {
    const cpu = this.cpus[id >> 8];
    const reason = (id & 0xff) as ExitReason;
    this.platform.cpu = cpu.index;
    try {
      this.handleExit(utcb, reason, cpu);
    } catch (error) {
      // The memory manager had no page for the guest or a device: the VM cannot go on.
      if (!(error instanceof GuestMemoryError)) throw error;
      this.end(1, VmEnd.ERROR, error.message);
      this.afterEnd(reason, utcb.vcpu!.qual);
    }
  }

  private handleExit(utcb: Utcb, reason: ExitReason, cpu: VcpuSlot): void {
    const v = utcb.vcpu!;
    const q = v.qual;
    if (this.ended) return this.afterEnd(reason, q);
    switch (reason) {
      case ExitReason.STARTUP:
        if (cpu !== this.bsp) return this.startApplicationProcessor(v, cpu);
        this.vcpuStarted = true;
        copyState(this.resumed?.vcpu ?? this.config.plan.state, v);
        // FERR# goes to IRQ 13 (port F0h logic), so the VMM wants to hear its changes.
        v.ferrExits = true;
        v.mtd |= Mtd.CTRL;
        if (!this.resumed) {
          // CPUID reports a local APIC only where the VM has one (the boot processor's: APIC ID 0).
          v.apicBase = this.platform.lapic ? apicBaseOf(0) : 0;
          v.apicId = 0;
          v.mtd |= Mtd.MSR;
        }
        if (this.cpus.length > 1) {
          // The TSCs of a multiprocessor count from one moment: the boot processor's 0 is now.
          this.tscZeroVm = this.vmNow();
          v.tsc = 0n;
          v.mtd |= Mtd.TSC;
        }
        if (this.resumed) this.resumeAtStartup(v);
        else this.offerPv(v);
        return;
      case ExitReason.FERR:
        // A falling FERR# drops IGNNE#: this reply carries it, no recall needed.
        this.ignneChanged = true;
        this.platform.fpuError.setFerr(v.ferr);
        this.passIgnne(v, 0);
        return;
      case ExitReason.PIO:
        if (q.write) this.platform.io.write(q.address, q.size as AccessSize, q.data);
        else q.data = this.platform.io.read(q.address, q.size as AccessSize);
        q.accessNs = this.platform.io.accessNs(q.address, q.write);
        return;
      case ExitReason.MMIO:
        this.mmio(q);
        return;
      case ExitReason.CPUID:
        // Only hypervisor leaves exit (the VMM asks for no others), and only while PV is offered.
        if (this.hv && HvParavirt.ownsLeaf(q.address)) this.hv.cpuid(q);
        else if (this.kvm) this.kvm.cpuid(q);
        else q.data = q.ebx = q.ecx = q.edx = 0;
        return;
      case ExitReason.MSR:
        q.refused = this.kvm === null || !this.kvm.msr(q, v.tsc);
        v.mtd = Mtd.QUAL;
        return;
      case ExitReason.VMCALL: {
        const writes = this.ram.writes;
        // Our ABI's numbers are a range of their own, far above KVM's.
        if (this.hv && HvParavirt.owns(v.eax)) q.data = this.hv.hypercall(v, cpl(v)) >>> 0;
        else q.data = (this.kvm ? this.kvm.hypercall(v, cpl(v)) : -KVM_ENOSYS) >>> 0;
        // Every write of guest RAM goes through the RAM's page hand-out: none, and the engine's
        // cached code stands (a peer's event writes the peer's RAM, not this VM's).
        q.ramUnchanged = this.ram.writes === writes;
        v.mtd = Mtd.QUAL;
        return;
      }
      case ExitReason.HLT:
        if (cpu.initPending) return this.toWaitForSipi(v, cpu);
        if (cpu.waitForSipi) return this.parkForSipi(v, cpu);
        if ((v.eflags & IF) === 0 && !cpu.nmiPending) {
          // Nothing but an NMI (or INIT, SIPI) can wake this CPU: when no CPU can run, the guest is off.
          const why = v.ferr && !v.ignne ? " (or froze on a pending x87 exception)" : "";
          if (this.cpus.length === 1) {
            this.end(0, VmEnd.HALTED, `the CPU halted with interrupts disabled${why}`);
            this.sys.deferReply();
            return;
          }
          cpu.off = true;
          cpu.halted = this.park(v, false);
          if (this.cpus.every((c) => c.stopped)) this.end(0, VmEnd.HALTED, `every CPU halted with interrupts disabled${why}`);
          this.flushConsole();
          return;
        }
        if (this.resumeHalted) {
          // A VM saved halted waits here as it was saved: its time and TSC go on from the save.
          this.hiddenNs = this.sys.vmTime(vcpuEc(0))! - this.pauseVm;
          cpu.halted = this.park(this.resumeHalted, true);
          this.resumeHalted = null;
        } else if ((this.interruptPending(cpu) || cpu.nmiPending) && this.pauseStart === null) {
          this.inject(v, cpu);
          this.passIgnne(v, v.mtd);
        } else {
          cpu.halted = this.park(v, false);
        }
        this.flushConsole();
        return;
      case ExitReason.RECALL:
        if (cpu.initPending) return this.toWaitForSipi(v, cpu);
        if (this.pauseReply || this.memoryPause) {
          this.pausedAt = this.park(v, false);
          this.beginPause();
          if (this.memoryPause) this.sayPausedForMemory();
          const token = this.pauseReply;
          this.pauseReply = null;
          if (!token) return;
          this.sys.utcb.set(Status.SUCCESS);
          this.sys.reply(token);
          return;
        }
        if (this.throttle.due && cpu === this.bsp) {
          // The vCPU used its share of the period: it stops for the rest, in host virtual time.
          this.throttle.due = false;
          this.throttle.held = { parked: this.park(v, false), until: this.sys.now() + (THROTTLE_PERIOD_NS * this.throttle.percent) / 100 };
          this.sys.up(TIMER_SM);
          return;
        }
        this.inject(v, cpu);
        this.passIgnne(v, v.mtd);
        return;
      case ExitReason.INTR_WINDOW:
        this.inject(v, cpu);
        this.passIgnne(v, v.mtd);
        return;
      case ExitReason.TRIPLE_FAULT:
        this.end(1, VmEnd.TRIPLE_FAULT, `triple fault at ${csEip(v)}`);
        this.sys.deferReply();
        return;
      case ExitReason.INVALID_STATE:
        this.end(1, VmEnd.ERROR, `the vCPU stopped at ${csEip(v)}: ${invalidCause(q)}`);
        this.sys.deferReply();
        return;
      default:
        this.end(1, VmEnd.ERROR, `vCPU exit ${ExitReason[reason]} at ${csEip(v)}`);
        this.sys.deferReply();
    }
  }

  /**
   * An exit after the VM ended (in the instruction that ended it, or because a recall is still to
   * come): nothing more happens. An access inside the instruction does nothing (reads see all
   * ones), and a boundary exit is never answered, so the vCPU stops there for good.
   */
  private afterEnd(reason: ExitReason, q: VcpuState["qual"]): void {
    if (reason === ExitReason.PIO || reason === ExitReason.MMIO) {
      if (!q.write) {
        q.data = q.size >= 4 ? 0xffffffff : (1 << (8 * q.size)) - 1;
        q.edx = 0xffffffff;
      }
      return;
    }
    if (reason === ExitReason.CPUID || reason === ExitReason.MSR || reason === ExitReason.VMCALL) return;
    this.sys.deferReply();
  }

  /** Reply with `mtd`, plus the STA group carrying IGNNE# when it changed (or FERR# just did). */
  private passIgnne(v: VcpuState, mtd: number): void {
    const ignne = this.platform.fpuError.ignne;
    if (this.ignneChanged || v.ignne !== ignne) {
      this.ignneChanged = false;
      v.ignne = ignne;
      mtd |= Mtd.STA;
    }
    v.mtd = mtd;
  }

  private mmio(q: VcpuState["qual"]): void {
    // First touch of a RAM page (or a write to a zero-backed one): back it, then do this access on it.
    if (this.ram.handles(q.address, q.write)) {
      this.ram.access(q);
      if (this.ram.low) this.pauseForMemory();
      return;
    }
    // A peer's page mapped here and revoked since (or not fetched since a restore): fetched again, the access is done on it.
    if (this.hv?.refault(q)) return;
    const bus = this.platform.mmio;
    if (q.size === 8) {
      if (q.write) {
        bus.write(q.address, 4, q.data >>> 0);
        bus.write(q.address + 4, 4, q.edx >>> 0);
      } else {
        q.data = bus.read(q.address, 4);
        q.edx = bus.read(q.address + 4, 4);
      }
    } else if (q.write) bus.write(q.address, q.size as AccessSize, q.data);
    else q.data = bus.read(q.address, q.size as AccessSize);
    q.accessNs = bus.accessNs(q.address, q.write);
  }

  /** Take a pending interrupt of `cpu` now if the guest can, else ask for an interrupt window. */
  private inject(v: VcpuState, cpu: VcpuSlot): void {
    v.mtd = Mtd.INJ;
    const ic = this.platform.interruptControllerOf(cpu.index);
    // An event handed over earlier and not delivered yet stays as it is; a pending NMI asks for the next window.
    if (v.inj.valid) {
      if (cpu.nmiPending) v.inj.requestWindow = true;
      return;
    }
    if (cpu.waitForSipi) {
      // Waiting for SIPI, a processor takes no interrupt, not even an NMI.
      cpu.nmiPending = false;
      setInjection(v, false, 0, 0, false);
    } else if (cpu.nmiPending) {
      // NMI first (vector 2). The vCPU holds it while NMIs are blocked (until the IRET of the last
      // one) and delivers it then; an external interrupt waits for the window after it.
      cpu.nmiPending = false;
      setInjection(v, true, NMI_VECTOR, InjectionType.NMI, this.interruptPending(cpu));
    } else if (!this.interruptPending(cpu)) {
      setInjection(v, false, 0, 0, false);
    } else if ((v.eflags & IF) !== 0 && (v.interruptibility & 3) === 0) {
      // The hv upcall goes first: it is an edge the VMM raised, not a line of the platform.
      const upcall = cpu === this.bsp && this.upcallRaised;
      const vector = upcall ? this.hv!.upcallVector : ic.acknowledge();
      if (upcall) this.upcallRaised = false;
      setInjection(v, true, vector, InjectionType.EXTERNAL, false);
    } else {
      setInjection(v, false, 0, 0, true);
    }
  }

  /** An interrupt waits for `cpu`: its interrupt controller's, or (the boot processor's) the hv upcall. */
  private interruptPending(cpu: VcpuSlot): boolean {
    return (cpu === this.bsp && this.upcallRaised) || this.platform.interruptControllerOf(cpu.index).hasInterrupt();
  }

  /** An interrupt became pending for `cpu`: wake it from HLT with it, or recall it if it runs (later, if paused). */
  private kick(cpu: VcpuSlot): void {
    if (this.ended) return;
    if (this.pauseStart !== null) {
      this.kickPending = true;
      return;
    }
    // Waiting for SIPI, or halted with interrupts off, only SIPI (or an NMI) wakes it.
    if (cpu.waitForSipi || (cpu.off && !cpu.nmiPending)) return;
    const halted = cpu.halted;
    if (halted) {
      cpu.halted = null;
      this.unpark(halted, cpu);
      return;
    }
    this.sys.recall(vcpuEc(cpu.index));
  }

  /**
   * An application processor's first exit: it waits for SIPI in the state INIT gives, its TSC in
   * step with the boot processor's.
   */
  private startApplicationProcessor(v: VcpuState, cpu: VcpuSlot): void {
    copyState(waitForSipiState(cpu.index), v);
    v.ferrExits = true;
    v.tsc = BigInt(Math.floor((this.vmNow() - this.tscZeroVm) / (this.config.nsPerTscTick ?? 1)));
    v.mtd = RECORD_MTD;
    cpu.waitForSipi = true;
  }

  /** INIT came while the vCPU ran: it takes the wait-for-SIPI state (keeping its TSC) and halts at once. */
  private toWaitForSipi(v: VcpuState, cpu: VcpuSlot): void {
    cpu.initPending = false;
    copyState(waitForSipiState(cpu.index), v);
    v.ferrExits = true;
    v.mtd = RECORD_MTD & ~Mtd.TSC;
    cpu.waitForSipi = true;
  }

  /** A processor waiting for SIPI halted: park it there; a SIPI that came first starts it now. */
  private parkForSipi(v: VcpuState, cpu: VcpuSlot): void {
    cpu.off = false;
    if (cpu.pendingSipi >= 0) {
      this.wholeState(v, cpu);
      startAt(v, cpu.pendingSipi);
      cpu.pendingSipi = -1;
      cpu.waitForSipi = false;
      v.mtd = RECORD_MTD & ~Mtd.TSC;
      return;
    }
    cpu.halted = this.park(v, false);
    if (this.cpus.every((c) => c.stopped)) this.end(0, VmEnd.HALTED, "every CPU halted with interrupts disabled");
  }

  /** INIT to `cpu` (an IPI): an application processor goes to wait-for-SIPI; the boot processor's INIT would restart firmware there is none of. */
  private init(cpu: VcpuSlot): void {
    if (cpu === this.bsp || this.ended || cpu.waitForSipi) return;
    const parked = cpu.halted;
    if (!parked) {
      // It takes the INIT state at its next exit (the recall's, or a HLT's before it); from now
      // on it takes no interrupt, and a SIPI waits for it to park.
      cpu.initPending = true;
      cpu.waitForSipi = true;
      this.sys.recall(vcpuEc(cpu.index));
      return;
    }
    cpu.halted = null;
    cpu.off = false;
    const state = waitForSipiState(cpu.index);
    state.ferrExits = true;
    state.tsc = parked.state.tsc;
    cpu.waitForSipi = true;
    this.unpark({ ...parked, state, fullReply: true }, cpu);
  }

  /** Start-up IPI to `cpu`: a processor waiting for SIPI starts in real mode at vector * 4096; any other ignores it. */
  private startup(cpu: VcpuSlot, vector: number): void {
    const parked = cpu.halted;
    if (this.ended || !cpu.waitForSipi) return;
    if (parked === null) {
      cpu.pendingSipi = vector; // it parks at its next exit, and starts then
      return;
    }
    cpu.halted = null;
    cpu.waitForSipi = false;
    this.wholeState(parked.state, cpu);
    startAt(parked.state, vector);
    this.unpark({ ...parked, fullReply: true }, cpu);
  }

  /** Hold the exit's reply back: the vCPU stays stopped with this state until `unpark`. */
  private park(v: VcpuState, fullReply: boolean): Parked {
    const utcb = this.sys.utcb;
    let state = v;
    if (utcb.vcpu === v) {
      // The exit's own record is what is parked (no copy: a halted vCPU parks on every event);
      // the handler's UTCB takes a spare one for the next exit.
      utcb.vcpu = this.spareVcpu ?? new VcpuState();
      this.spareVcpu = null;
    } else copyState(v, (state = new VcpuState()));
    return { token: this.sys.deferReply()!, state, vmTimeNs: this.vmNow(), fullReply };
  }

  /**
   * Fill in the groups of `v`, vCPU `cpu`'s record of the exit it is stopped in, that the exit did
   * not move (`v.mtd` says which it holds): from the vCPU, where they are as they were then.
   */
  private wholeState(v: VcpuState, cpu: VcpuSlot): void {
    const held = v.mtd;
    const missing = RECORD_MTD & ~held;
    if (missing === 0) return;
    const utcb = this.sys.utcb;
    const inUtcb = utcb.vcpu;
    utcb.vcpu = v;
    const status = this.sys.vcpuState(vcpuEc(cpu.index), missing);
    utcb.vcpu = inUtcb;
    if (status !== Status.SUCCESS) throw new Error(`vCPU ${cpu.index}: its state is not readable (${Status[status]})`);
    v.mtd = held | missing;
  }

  /** Let a parked vCPU go on, with any interrupt that can be taken now. */
  private unpark(p: Parked, cpu: VcpuSlot): void {
    cpu.off = false;
    // The parked record itself is the reply. It goes out of the UTCB of the EC running now, which
    // may be the exit handler in the middle of another vCPU's exit (an IPI's sender): that exit's
    // state comes back afterwards, and the parked record is the next park's spare.
    const utcb = this.sys.utcb;
    const inExit = utcb.vcpu;
    const v = (utcb.vcpu = p.state);
    const full = p.fullReply ? RECORD_MTD : 0;
    // The TSC goes with a full reply only (else the kernel moves it on by the time waited).
    if (full) v.tsc = this.tscAt(p, this.vmNow());
    // Waking from HLT ends STI/MOV SS blocking, not NMI blocking (bit 3): a handler that halts is still in its NMI.
    v.interruptibility = p.state.activity === 1 ? p.state.interruptibility & 8 : p.state.interruptibility;
    this.inject(v, cpu);
    this.passIgnne(v, v.mtd | full);
    this.sys.reply(p.token);
    if (inExit !== null && inExit !== p.state) {
      utcb.vcpu = inExit;
      this.spareVcpu ??= p.state;
    }
  }

  /** The TSC of a parked vCPU at VM time `vmTimeNs` (it ticks on while halted, not while paused). */
  private tscAt(p: Parked, vmTimeNs: number): bigint {
    return p.state.tsc + BigInt(Math.floor((vmTimeNs - p.vmTimeNs) / (this.config.nsPerTscTick ?? 1)));
  }

  /**
   * STARTUP of a resumed VM: the saved state, at the saved VM time, paused. It goes on with RESUME,
   * by the same path as a VM that was paused and saved, so that both run on alike.
   */
  private resumeAtStartup(v: VcpuState): void {
    const saved = this.resumed!.state;
    v.mtd = RECORD_MTD;
    this.offerPv(v);
    if (saved.halted) {
      // Halted: let the vCPU take the saved state and stop at once in HLT, where it waits (and its
      // time runs) as it did when saved; that exit parks it with this state.
      this.resumeHalted = new VcpuState();
      copyState(v, this.resumeHalted);
    } else {
      this.hiddenNs = this.sys.vmTime(vcpuEc(0))! - this.pauseVm;
      this.pausedAt = this.park(v, true);
    }
    // An incoming VM's LOAD is answered now: RESUME finds the vCPU as a resumed VM's.
    const loaded = this.loadReply;
    this.loadReply = null;
    if (loaded) {
      this.sys.utcb.set(Status.SUCCESS);
      this.sys.reply(loaded);
    }
  }

  /**
   * The paravirtual exits follow this VMM's configuration, not a saved record: the VM is offered
   * what its platform has.
   */
  private offerPv(v: VcpuState): void {
    v.hypervisorLeaves = v.msrExits = v.vmcallExits = this.kvm !== null;
  }

  private onControl(utcb: Utcb): void {
    const op = utcb.words[0];
    if (op === VmmControlOp.LOAD) return this.load(utcb);
    if (op === VmmControlOp.PAGES) {
      if (!this.awaitingLoad) return void utcb.set(Status.BAD_FEATURE);
      this.ram.takeSource();
      return void utcb.set(Status.SUCCESS);
    }
    // Before LOAD there is no vCPU: the VM is paused, and says so.
    if (this.awaitingLoad && op !== VmmControlOp.QUERY && op !== VmmControlOp.PAUSE) return void utcb.set(Status.BAD_FEATURE);
    switch (op) {
      case VmmControlOp.ATTACH:
        return this.attachControl(utcb);
      case VmmControlOp.PAUSE: {
        const at = utcb.untyped >= 3 ? utcb.words[1] + utcb.words[2] * 2 ** 32 : 0;
        if (this.pauseStart !== null || this.ended) return void utcb.set(Status.SUCCESS);
        // Pauses (and so snapshots and migration) stop one vCPU: a multiprocessor cannot be paused.
        if (this.pauseReply || this.pauseAt || this.cpus.length > 1) return void utcb.set(Status.BAD_FEATURE);
        if (this.bsp.halted && at <= this.vmNow()) {
          this.beginPause();
          return void utcb.set(Status.SUCCESS);
        }
        const token = this.sys.deferReply();
        if (!token) return void utcb.set(Status.BAD_FEATURE);
        if (at <= this.vmNow()) return this.pauseNow(token);
        // Stop when the VM's clock reaches `at`: the timer cuts the vCPU's run exactly there.
        this.pauseAt = token;
        this.clock.setTimer(at, () => {
          this.pauseAt = null;
          this.pauseNow(token);
        });
        return;
      }
      case VmmControlOp.RESUME: {
        // A VM never runs without its drives: those handed over open again first.
        const refused = this.pauseStart !== null && this.drivesInactive ? this.activateDrives() : null;
        if (refused !== null) return refuseWith(utcb, refused);
        this.resume();
        return void utcb.set(Status.SUCCESS);
      }
      case VmmControlOp.SAVE:
        return this.save(utcb);
      case VmmControlOp.INACTIVATE: {
        if (this.pauseStart === null || this.ended) return void utcb.set(Status.BAD_FEATURE);
        const why = this.inactivateDrives();
        return void (why === null ? utcb.set(Status.SUCCESS) : refuseWith(utcb, why));
      }
      case VmmControlOp.END:
        // Only a VM its host stopped: one that ran on would have gone on past its moved state.
        if (this.pauseStart === null && !this.ended) return void utcb.set(Status.BAD_FEATURE);
        this.end(0, VmEnd.MIGRATED, "the VM migrated away: it runs in another hv now");
        return void utcb.set(Status.SUCCESS);
      case VmmControlOp.DIRTY: {
        const action = utcb.untyped >= 2 ? utcb.words[1] : 0;
        if (action === DirtyAction.START) {
          this.ram.startDirtyLog();
          return void utcb.set(Status.SUCCESS, 0, 0);
        }
        if (action === DirtyAction.STOP) {
          this.ram.stopDirtyLog();
          return void utcb.set(Status.SUCCESS, 0, 0);
        }
        // LAST only from a paused VM: a running one would write pages no longer logged.
        const last = action === DirtyAction.LAST && this.pauseStart !== null;
        if ((action !== DirtyAction.COLLECT && !last) || !this.ram.logging) return void utcb.set(Status.BAD_PARAMETER, 0, 0);
        const written = this.ram.collectDirty(!last);
        const bitmap = this.stateView!.bytes.subarray(0, Math.ceil(written.length / 8));
        bitmap.fill(0);
        let pages = 0;
        for (let p = 0; p < written.length; p++) {
          if (!written[p]) continue;
          bitmap[p >> 3] |= 1 << (p & 7);
          pages++;
        }
        return void utcb.set(Status.SUCCESS, pages, bitmap.length);
      }
      case VmmControlOp.THROTTLE: {
        const percent = utcb.untyped >= 2 ? utcb.words[1] : -1;
        if (!Number.isInteger(percent) || percent < 0 || percent > MAX_THROTTLE_PERCENT) return void utcb.set(Status.BAD_PARAMETER);
        this.setThrottle(percent);
        return void utcb.set(Status.SUCCESS);
      }
      case VmmControlOp.BALLOON: {
        const { balloon, device } = this.balloon;
        const ramPages = Math.ceil(this.config.memoryBytes / 4096);
        if (utcb.untyped >= 3 && utcb.words[1] === 1) {
          balloon.target = ramPages - Math.min(utcb.words[2], ramPages);
          device.configChanged();
        }
        // Fresh statistics for the next look: hand the driver its stats buffer back.
        const asked = balloon.requestStats();
        if (asked) device.signalUsed();
        return void utcb.set(Status.SUCCESS, ramPages - Math.min(balloon.actual, ramPages), ramPages - balloon.target, asked ? 1 : 0, ramPages, balloon.counts.reported, balloon.counts.released);
      }
      case VmmControlOp.QUERY: {
        const t = this.vmNow();
        const held = this.memoryCall(MemoryOp.HELD);
        const host = this.memoryCall(MemoryOp.HOST);
        const why = this.pauseStart !== null && this.pausedForMemory ? PauseReason.MEMORY : PauseReason.HOST;
        const ram = this.ram.counts();
        return void utcb.set(Status.SUCCESS, this.pauseStart === null ? 1 : 0, t % 2 ** 32, Math.floor(t / 2 ** 32), why, held[1], held[2], held[3], host[1], host[2], ram.private + ram.zero, held[4], ...host.slice(4, 9), this.balloon.balloon.actual);
      }
    }
    utcb.set(Status.BAD_PARAMETER);
  }

  /** Hold the vCPU back `percent` of each THROTTLE_PERIOD_NS from now on (0: let it run). */
  private setThrottle(percent: number): void {
    const t = this.throttle;
    t.percent = percent;
    t.due = false;
    if (t.timer !== null) this.clock.cancelTimer(t.timer);
    t.timer = null;
    if (percent === 0) this.releaseThrottled();
    else if (!t.held) this.armThrottle();
  }

  /** End the vCPU's share of this period (100 - percent)% of it from now, in its own time: a recall stops it there. */
  private armThrottle(): void {
    const t = this.throttle;
    t.timer = this.clock.setTimer(this.vmNow() + (THROTTLE_PERIOD_NS * (100 - t.percent)) / 100, () => {
      t.timer = null;
      // Waiting in HLT, it runs nothing: its next share starts now.
      if (this.bsp.halted) return this.armThrottle();
      t.due = true;
      this.sys.recall(vcpuEc(0));
    });
  }

  /** A vCPU held back by the throttle goes on (and its next share of a period starts). */
  private releaseThrottled(): void {
    const t = this.throttle;
    const held = t.held;
    t.held = null;
    if (!held || this.ended) return;
    this.unpark(held.parked, this.bsp);
    if (t.percent > 0) this.armThrottle();
  }

  /** Pause now and answer `token` once stopped: a halted vCPU stays parked, a running one stops at its next instruction boundary. */
  private pauseNow(token: ReplyToken): void {
    if (!this.bsp.halted) {
      this.pauseReply = token;
      this.sys.recall(vcpuEc(0));
      return;
    }
    this.beginPause();
    this.sys.utcb.set(Status.SUCCESS);
    this.sys.reply(token);
  }

  /**
   * The memory manager gave the last pages from its reserve (host memory is at its limit): stop
   * the VM at its next instruction boundary, as a pause the host can resume once memory is free.
   */
  private pauseForMemory(): void {
    this.ram.low = false;
    // A multiprocessor runs on (it cannot be paused) until its memory runs out, which ends it.
    if (this.memoryPause || this.pauseStart !== null || this.ended || this.cpus.length > 1) return;
    this.memoryPause = true;
    if (!this.bsp.halted) return void this.sys.recall(vcpuEc(0));
    this.beginPause();
    this.sayPausedForMemory();
  }

  /** One word to the memory manager; its reply words (all zero when the call failed). */
  private memoryCall(op: number): number[] {
    const sys = this.sys;
    sys.utcb.items.length = 0;
    sys.utcb.set(op);
    if (sys.call(VmmSel.MEMORY) !== Status.SUCCESS) return new Array<number>(9).fill(0);
    return Array.from(sys.utcb.words.subarray(0, 9));
  }

  private sayPausedForMemory(): void {
    this.memoryPause = false;
    this.pausedForMemory = true;
    const text = "\r\n[hv] VM paused: the host memory limit is reached. Free memory (stop or shrink another VM), then resume it (hv ctl cont).\r\n";
    this.serialOut.push(...new TextEncoder().encode(text));
    this.send(ConsoleChannel.SERIAL0, this.serialOut);
  }

  /**
   * Give the caller guest RAM and the state region (into its memory window): all of it, or after
   * that (AttachForm) the list of pages whose frames changed since, then those pages.
   */
  private attachControl(utcb: Utcb): void {
    const form = utcb.untyped >= 2 ? utcb.words[1] : AttachForm.WHOLE;
    // The caller reads RAM in place: pages still in the snapshot, or taken away by the memory
    // manager (shared or zero now), come into the window first.
    this.ram.fillAll();
    const ramPages = Math.ceil(this.config.memoryBytes / 4096);
    if (form === AttachForm.CHANGES) {
      const changed = this.attachedWhole ? this.ram.takeRemapped(MAX_CHANGED_PAGES) : null;
      this.changedPages = changed;
      if (!changed) return void utcb.set(Status.SUCCESS, ramPages, STATE_PAGES, 1, 0);
      const bitmap = this.stateView!.bytes.subarray(0, Math.ceil(ramPages / 8));
      bitmap.fill(0);
      for (const p of changed) bitmap[p >> 3] |= 1 << (p & 7);
      return void utcb.set(Status.SUCCESS, ramPages, STATE_PAGES, 0, changed.length);
    }
    if (form === AttachForm.CHANGED) {
      const changed = this.changedPages;
      this.changedPages = null;
      if (!changed) return void utcb.set(Status.BAD_PARAMETER, 0, 0);
      // A page without a frame now (released) is zero: nothing to give. The count lets the caller check that all came.
      for (const p of changed) if (this.ram.mapped(p)) utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, RAM_WINDOW.base + p, 0, MemRights.ALL), offset: p });
      return void utcb.set(Status.SUCCESS, ramPages, STATE_PAGES, utcb.items.length);
    }
    if (form !== AttachForm.WHOLE) return void utcb.set(Status.BAD_PARAMETER, 0, 0);
    this.ram.takeRemapped(0);
    this.attachedWhole = true;
    for (const [offset, order] of alignedRuns(ramPages, [RAM_WINDOW.base, 0]))
      utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, RAM_WINDOW.base + offset, order, MemRights.ALL), offset });
    for (const [offset, order] of alignedRuns(STATE_PAGES, [this.statePage, ramPages]))
      utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, this.statePage + offset, order, MemRights.ALL), offset: ramPages + offset });
    utcb.set(Status.SUCCESS, ramPages, STATE_PAGES);
  }

  /**
   * LOAD: an incoming VM takes its state (config.incoming), and the pages that came; answered once
   * the vCPU stands at it. The devices check their records as they take them, all or none
   * (PcPlatform.loadState): one pass, where the host would otherwise build a platform of its own
   * to check them first, in the downtime. A record they refuse is BAD_PARAMETER with the reason
   * (UTF-8, a byte a word, after the status), and the VM, never run, waits on.
   */
  private load(utcb: Utcb): void {
    const got = this.awaitingLoad ? this.config.incoming!.state() : null;
    if (!got) return void utcb.set(this.awaitingLoad ? Status.BAD_PARAMETER : Status.BAD_FEATURE);
    try {
      this.applyResumed(got.state);
    } catch (error) {
      if (!(error instanceof DeviceStateError)) throw error;
      return refuseWith(utcb, error.message);
    }
    const token = this.sys.deferReply();
    if (!token) return void utcb.set(Status.BAD_FEATURE);
    this.ram.takeSource();
    this.awaitingLoad = false;
    this.resumed = got;
    this.loadReply = token;
    this.sys.up(LOAD_SM);
  }

  /** Open every drive's image again (an active one stays as it is); why one could not be, or null. */
  private activateDrives(): string | null {
    for (const [i, backend] of this.driveBackends.entries()) {
      try {
        backend?.activate();
      } catch (error) {
        if (!(error instanceof BlockAttachError)) throw error;
        return `drive ${i}: ${error.message}`;
      }
    }
    this.drivesInactive = false;
    return null;
  }

  /** INACTIVATE: each drive to disk and closed (the VM is paused: none of its requests is under way); why one failed, or null. */
  private inactivateDrives(): string | null {
    this.drivesInactive = true;
    let why: string | null = null;
    for (const [i, backend] of this.driveBackends.entries()) {
      if (backend && backend.inactivate() !== VirtioBlkStatus.OK) why ??= `drive ${i} could not be written to disk and closed`;
    }
    return why;
  }

  private resume(): void {
    if (this.pauseStart === null || this.ended) return;
    this.pausedForMemory = false;
    const sys = this.sys;
    // Stopped in an exit, the vCPU's time stood still by itself; waiting in HLT, it ran on: hide that.
    must(sys.hideTime(vcpuEc(0), sys.now() - this.pauseStart), "hide the pause from the vCPU");
    this.pauseStart = null;
    const parked = this.pausedAt;
    this.pausedAt = null;
    if (parked) this.unpark(parked, this.bsp);
    sys.up(TIMER_SM);
    // The throttle's recall went to the pause: ask again.
    if (this.throttle.due) sys.recall(vcpuEc(0));
    if (this.kickPending) {
      this.kickPending = false;
      this.kick(this.bsp);
    }
  }

  /** Encode the paused VM's state into the state region. */
  private save(utcb: Utcb): void {
    const parked = this.pausedAt ?? this.bsp.halted;
    if (this.pauseStart === null || !parked || this.cpus.length > 1) return void utcb.set(Status.BAD_FEATURE, 0);
    // The caller reads RAM in place: what is still in the snapshot this VM came from comes in first.
    this.ram.fillAll();
    const vmTimeNs = this.vmNow();
    const vcpu = new VcpuState();
    this.wholeState(parked.state, this.bsp);
    copyState(parked.state, vcpu);
    vcpu.tsc = this.tscAt(parked, vmTimeNs);
    const state: VmState = {
      vmTimeNs,
      vcpu: vcpuRecord(vcpu),
      halted: this.pausedAt === null,
      platform: this.platform.saveState() as Record<string, unknown>,
      ignneChanged: this.ignneChanged,
      ...(this.kvm ? { kvm: this.kvm.saveState() } : {}),
      ...(this.hv ? { hv: this.hv.saveState(this.upcallRaised) } : {}),
    };
    const bytes = encode(state);
    if (bytes.length > this.stateView!.length) return void utcb.set(Status.OUT_OF_QUOTA, bytes.length);
    this.stateView!.bytes.set(bytes);
    utcb.set(Status.SUCCESS, bytes.length);
  }

  private onInput(utcb: Utcb): void {
    const n = Math.min(utcb.words[0], 4 * (utcb.untyped - 1));
    this.platform.uarts[0].receive(unpackBytes(utcb.words, 1, n));
    this.hv?.fireVirq(HvVirq.CONSOLE);
    utcb.set(Status.SUCCESS);
  }

  private flushConsole(): void {
    this.send(ConsoleChannel.SERIAL0, this.serialOut);
    this.send(ConsoleChannel.DEBUGCON, this.debugOut);
  }

  private send(channel: number, bytes: number[]): void {
    if (bytes.length === 0) return;
    const sys = this.sys;
    for (let at = 0; at < bytes.length; at += 1024) {
      const chunk = bytes.slice(at, at + 1024);
      sys.utcb.words[0] = channel;
      sys.utcb.words[1] = chunk.length;
      sys.utcb.untyped = 2 + packBytes(chunk, sys.utcb.words, 2);
      sys.call(VmmSel.CONSOLE);
    }
    bytes.length = 0;
  }

  private end(status: number, why: VmEnd, message = ""): void {
    if (this.ended) return;
    this.ended = true;
    this.hv?.end();
    this.flushConsole();
    const sys = this.sys;
    sys.utcb.set(ParentOp.VM_EXITED, status, why, ...Array.from(new TextEncoder().encode(message.slice(0, 200))));
    sys.call(VmmSel.PARENT);
    sys.up(TIMER_SM);
    // The vCPUs stop after the instruction that ended the VM (a debug-exit write, a reset request):
    // the recall's exit is never answered. (Before the vCPUs exist this is a harmless BAD_CAPABILITY.)
    for (const cpu of this.cpus) sys.recall(vcpuEc(cpu.index));
  }
}

/** Delegate `pages` pages from the VMM's `from` to guest page `to` of the VM, in aligned blocks. */
function mapRange(sys: Sys, from: number, to: number, pages: number, rights: number): void {
  for (const [offset, order] of alignedRuns(pages, [from, to]))
    must(sys.delegate(VmmSel.VM_PD, crd(SpaceKind.MEMORY, from + offset, order, rights), to + offset), "map guest memory");
}

/** The privilege level of a vCPU state with the CR, EFLAGS and CS_SS groups (as the engine derives it). */
function cpl(v: VcpuState): number {
  if ((v.cr0 & 1) === 0) return 0;
  if (v.eflags & 0x20000) return 3; // virtual-8086 mode
  return (v.ss.attributes >> 5) & 3;
}

/** "CS:EIP" of a vCPU state, as in "triple fault at 0008:0010002a". */
function csEip(v: VcpuState): string {
  return `${v.cs.selector.toString(16).padStart(4, "0")}:${(v.eip >>> 0).toString(16).padStart(8, "0")}`;
}

/** Why the engine stopped with INVALID_STATE, from the exit's qualification. */
function invalidCause(q: VcpuState["qual"]): string {
  switch (q.address) {
    case InvalidStateCause.FETCH_OUTSIDE_RAM:
      return `code fetched outside RAM and ROM, at linear address 0x${(q.linear >>> 0).toString(16)}`;
    case InvalidStateCause.ENGINE_ERROR:
      return "the x86 core failed (an internal error, not the guest's)";
    default:
      return `invalid state (cause ${q.address})`;
  }
}

function must(s: Status, what: string): void {
  if (s !== Status.SUCCESS) throw new Error(`vmm: could not ${what}: ${Status[s]}`);
}

/** A refusal with its reason: [BAD_PARAMETER, reason...] (UTF-8, a byte a word, at most REFUSAL_REASON_BYTES). */
function refuseWith(utcb: Utcb, why: string): void {
  utcb.set(Status.BAD_PARAMETER, ...new TextEncoder().encode(why).subarray(0, REFUSAL_REASON_BYTES));
}
