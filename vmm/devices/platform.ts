// The PC platform's device set, wired the standard way: ISA IRQ lines to the 8259 pair and the
// I/O APIC, the PIC behind the local APIC's LINT0, the APIC's level EOIs back to the I/O APIC,
// one A20 gate for the keyboard controller and port 0x92, and one reset callback for every
// reset source. The VMM component owns a PcPlatform and dispatches its VM exits to `io`/`mmio`.
// With `acpi` (the default) it is the PC of QEMU's pc machine: fw_cfg, the ACPI PM registers,
// the HPET (between the PIT/RTC and IRQ 0/8, for legacy replacement) and the ACPI tables, which
// the VMM places in guest RAM and fw_cfg serves as files.

import { buildAcpiTables, type AcpiTables, type PciIrqRoute } from "../boot/acpi.js";
import { pcMemoryMap } from "../boot/plan.js";
import { A20Gate } from "./a20.js";
import { ApicBus } from "./apic-bus.js";
import { AcpiPm, SCI_IRQ, SLP_TYP_S5 } from "./acpi-pm.js";
import { IoBus, MmioBus, type AccessSize, type BusHandler, type Device } from "./bus.js";
import type { DeviceClock } from "./clock.js";
import { DebugConsole, DebugExit } from "./debug-ports.js";
import { FpuErrorLogic } from "./fpu-error.js";
import { FwCfg } from "./fw-cfg.js";
import { HPET_PIT_INPUT, HPET_RTC_INPUT, Hpet } from "./hpet.js";
import { I8042 } from "./i8042.js";
import { IoApic } from "./ioapic.js";
import { IrqLine, SharedIrq } from "./irq.js";
import { LAPIC_BASE, LocalApic } from "./lapic.js";
import { PciHost } from "./pci.js";
import { PicPair, type InterruptController } from "./pic.js";
import { Pit } from "./pit.js";
import { Port92 } from "./port92.js";
import { Rtc } from "./rtc.js";
import { DeviceStateError, StateReader } from "./state.js";
import { Uart16550 } from "./uart.js";

/** COM1-COM4 base ports and ISA IRQs. */
export const SERIAL_PORTS: readonly { base: number; irq: number }[] = [
  { base: 0x3f8, irq: 4 },
  { base: 0x2f8, irq: 3 },
  { base: 0x3e8, irq: 4 },
  { base: 0x2e8, irq: 3 },
];

export interface PcPlatformOptions {
  clock: DeviceClock;
  /** Guest RAM in bytes (CMOS memory fields). */
  memoryBytes: number;
  /** Wall-clock time at virtual time clock.now(), Unix seconds (the RTC's start). */
  startTime: number;
  /** Local APIC + I/O APIC present (default true). Without them the PIC is the vCPU's controller. */
  apic?: boolean;
  /** Number of 16550A UARTs, COM1 first (default 1, at most 4). */
  serialPorts?: number;
  /** isa-debug-exit: called with (v << 1) | 1. Absent: no port. */
  debugExit?: { onExit: (status: number) => void; port?: number; length?: number };
  /** 0xe9 debug console sink. Absent: no port. */
  debugConsole?: (byte: number) => void;
  /** fw_cfg, ACPI (tables, PM registers) and the HPET (default true). */
  acpi?: boolean;
  /** vCPUs the ACPI tables and fw_cfg announce (default 1). */
  cpus?: number;
  /** How PCI slots' INTA# reach ISA IRQs (the DSDT's `_PRT`). */
  pciIrqs?: readonly PciIrqRoute[];
}

/** The e820 table as fw_cfg's "etc/e820" has it: packed { u64 address, u64 length, u32 type }, little-endian. */
export function e820File(memoryBytes: number): Uint8Array {
  const map = pcMemoryMap(memoryBytes);
  const out = new Uint8Array(map.length * 20);
  const v = new DataView(out.buffer);
  map.forEach((r, i) => {
    v.setBigUint64(i * 20, BigInt(r.base), true);
    v.setBigUint64(i * 20 + 8, BigInt(r.size), true);
    v.setUint32(i * 20 + 16, r.type, true);
  });
  return out;
}

/** The I/O APIC input an ISA IRQ arrives on: the timer is on pin 2 (the usual source override). */
export function isaIrqToGsi(irq: number): number {
  return irq === 0 ? 2 : irq;
}

export class PcPlatform {
  readonly io = new IoBus();
  readonly mmio = new MmioBus();
  readonly a20 = new A20Gate();
  readonly pic = new PicPair();
  readonly ioapic: IoApic | null;
  /** The boot processor's local APIC (lapics[0]). */
  readonly lapic: LocalApic | null;
  /** One local APIC per vCPU, by APIC ID (none without `apic`). */
  readonly lapics: LocalApic[] = [];
  /**
   * The vCPU whose access the buses carry now (the VMM sets it for each exit): the local APIC page
   * at 0xFEE00000 is that processor's own.
   */
  cpu = 0;
  /** ISA IRQ lines 0-15 (line 2 is the cascade and stays unused). */
  readonly isaIrq: IrqLine[] = [];
  readonly pit: Pit;
  readonly rtc: Rtc;
  readonly uarts: Uart16550[] = [];
  readonly i8042: I8042;
  readonly port92: Port92;
  /** FERR# → IRQ 13, port F0h → IGNNE#. */
  readonly fpuError: FpuErrorLogic;
  readonly pci: PciHost;
  readonly debugExit: DebugExit | null = null;
  readonly debugConsole: DebugConsole | null = null;
  readonly fwCfg: FwCfg | null = null;
  readonly acpiPm: AcpiPm | null = null;
  readonly hpet: Hpet | null = null;
  /** The ACPI tables for guest RAM (the VMM writes them at `base` when it boots the VM), or null. */
  readonly acpiTables: AcpiTables | null = null;
  /** ISA lines with more than one source (IRQ 9: the SCI and PCI INTx), by IRQ. */
  private readonly shared = new Map<number, SharedIrq>();
  /** Called for every guest reset request, with where it came from (keyboard controller, port 0x92, 0xcf9). */
  onReset: ((source: string) => void) | null = null;
  /** Called when the guest enters ACPI S5 (soft-off) through PM1 control. */
  onPowerOff: (() => void) | null = null;
  /** Told when vCPU `cpu`'s INTR (interruptControllerOf(cpu).hasInterrupt()) changes: recall it on a rise. */
  onIntr: ((pending: boolean, cpu: number) => void) | null = null;

  constructor(options: PcPlatformOptions) {
    const clock = options.clock;
    const apic = options.apic ?? true;
    const cpus = options.cpus ?? 1;
    if (apic) for (let id = 0; id < cpus; id++) this.lapics.push(new LocalApic(clock, id));
    this.lapic = this.lapics[0] ?? null;
    this.ioapic = this.lapic ? new IoApic(new ApicBus(this.lapics)) : null;
    for (let irq = 0; irq < 16; irq++) {
      const line = new IrqLine([{ sink: this.pic, pin: irq }]);
      if (this.ioapic && irq !== 2) line.connect({ sink: this.ioapic, pin: isaIrqToGsi(irq) });
      this.isaIrq.push(line);
    }
    if (this.lapic && this.ioapic) {
      const { lapic, ioapic } = this;
      lapic.extInt = this.pic;
      this.pic.onIntr = () => lapic.extIntChanged();
      this.lapics.forEach((l, cpu) => {
        l.onLevelEoi = (v) => ioapic.endOfInterrupt(v);
        l.onIntr = (pending) => this.onIntr?.(pending, cpu);
      });
    } else {
      this.pic.onIntr = (pending) => this.onIntr?.(pending, 0);
    }
    const reset = (source: string) => (): void => this.onReset?.(source);
    const acpi = options.acpi ?? true;
    let pitIrq = this.isaIrq[0];
    let rtcIrq = this.isaIrq[8];
    if (acpi) {
      const ioapic = this.ioapic;
      this.hpet = new Hpet(clock, { irq0: this.isaIrq[0], irq8: this.isaIrq[8], gsi: ioapic ? (pin, level) => ioapic.setIrq(pin, level) : undefined });
      // The PIT and the RTC reach IRQ 0 and 8 through the HPET, which takes the lines in legacy replacement mode.
      pitIrq = new IrqLine([{ sink: this.hpet, pin: HPET_PIT_INPUT }]);
      rtcIrq = new IrqLine([{ sink: this.hpet, pin: HPET_RTC_INPUT }]);
      const sci = new SharedIrq(this.isaIrq[SCI_IRQ]);
      this.shared.set(SCI_IRQ, sci);
      this.acpiPm = new AcpiPm(clock, sci.input());
      this.acpiPm.onSleep = (type) => {
        if (type === SLP_TYP_S5) this.onPowerOff?.();
      };
      this.fwCfg = new FwCfg({ memoryBytes: options.memoryBytes, cpus });
      this.acpiTables = buildAcpiTables({ cpus, apic: this.lapic !== null, ioapicId: 0, pciIrqs: options.pciIrqs });
      this.fwCfg.addFile("etc/acpi/rsdp", this.acpiTables.rsdp);
      this.fwCfg.addFile("etc/acpi/tables", this.acpiTables.tables);
      this.fwCfg.addFile("etc/e820", e820File(options.memoryBytes));
    }
    this.pit = new Pit(clock, pitIrq);
    this.rtc = new Rtc(clock, rtcIrq, { startTime: options.startTime, memoryBytes: options.memoryBytes });
    const serial = Math.min(Math.max(options.serialPorts ?? 1, 0), SERIAL_PORTS.length);
    for (let i = 0; i < serial; i++) {
      const { base, irq } = SERIAL_PORTS[i];
      this.uarts.push(new Uart16550(clock, this.isaIrq[irq], { base }));
    }
    this.i8042 = new I8042(this.isaIrq[1], this.isaIrq[12], this.a20);
    this.i8042.onReset = reset("the keyboard controller");
    this.port92 = new Port92(this.a20);
    this.port92.onReset = reset("port 0x92");
    this.fpuError = new FpuErrorLogic(this.isaIrq[13]);
    this.pci = new PciHost(this.io, this.mmio);
    this.pci.onReset = reset("port 0xcf9");
    if (options.debugExit) {
      const d = options.debugExit;
      this.debugExit = new DebugExit(d.onExit, d.port, d.length);
    }
    if (options.debugConsole) this.debugConsole = new DebugConsole(options.debugConsole);

    this.pic.attach(this.io);
    this.pit.attach(this.io);
    this.rtc.attach(this.io);
    for (const u of this.uarts) u.attach(this.io);
    this.i8042.attach(this.io);
    this.port92.attach(this.io);
    this.fpuError.attach(this.io);
    this.pci.attach(this.io);
    this.debugExit?.attach(this.io);
    this.debugConsole?.attach(this.io);
    if (this.lapic) this.mmio.register({ name: "lapic", base: LAPIC_BASE, length: 0x1000, sizes: 4, handler: this.lapicWindow() });
    this.ioapic?.attach(this.mmio);
    this.fwCfg?.attach(this.io);
    this.acpiPm?.attach(this.io);
    this.hpet?.attach(this.mmio);
  }

  /**
   * The line a level-triggered device (a PCI function's INTx) drives for ISA IRQ `irq`: its own
   * input where the IRQ is shared with another source, else the ISA line itself.
   */
  irqLine(irq: number): IrqLine {
    return this.shared.get(irq)?.input() ?? this.isaIrq[irq];
  }

  /** What the boot processor asks for INTR and INTA: its local APIC (which passes the PIC through), or the PIC. */
  get interruptController(): InterruptController {
    return this.interruptControllerOf(0);
  }

  /** What vCPU `cpu` asks for INTR and INTA. */
  interruptControllerOf(cpu: number): InterruptController {
    return this.lapics[cpu] ?? this.pic;
  }

  /** The local APIC page: each processor reaches its own APIC there. */
  private lapicWindow(): BusHandler {
    return {
      read: (addr: number, size: AccessSize) => this.lapics[this.cpu].read(addr, size),
      write: (addr: number, size: AccessSize, value: number) => this.lapics[this.cpu].write(addr, size, value),
    };
  }

  /** Every device, in save/load order. */
  devices(): Device[] {
    const list: Device[] = [this.pic, this.pit, this.rtc, ...this.uarts, this.i8042, this.port92, this.fpuError, this.pci];
    list.push(...this.lapics);
    if (this.ioapic) list.push(this.ioapic);
    if (this.debugExit) list.push(this.debugExit);
    if (this.debugConsole) list.push(this.debugConsole);
    if (this.fwCfg) list.push(this.fwCfg);
    if (this.acpiPm) list.push(this.acpiPm);
    if (this.hpet) list.push(this.hpet);
    return list;
  }

  /** Hardware reset of every device (CMOS time and NVRAM survive). */
  reset(): void {
    for (const d of this.devices()) d.reset();
  }

  /** All device states keyed by device name. */
  saveState(): object {
    const out: Record<string, object> = {};
    for (const d of this.devices()) out[d.name] = d.saveState();
    return out;
  }

  /** Restore every device; if one record is refused, the devices already loaded are put back. */
  loadState(state: unknown): void {
    new StateReader(state, "platform");
    const raw = state as Record<string, unknown>;
    const devices = this.devices();
    for (const d of devices) if (!(d.name in raw)) throw new DeviceStateError(`platform.${d.name}`, "missing");
    const backup = devices.map((d) => d.saveState());
    let done = 0;
    try {
      for (; done < devices.length; done++) devices[done].loadState(raw[devices[done].name]);
    } catch (e) {
      for (let i = 0; i < done; i++) devices[i].loadState(backup[i]);
      for (const s of this.shared.values()) s.resync();
      throw e;
    }
    for (const s of this.shared.values()) s.resync();
  }
}
