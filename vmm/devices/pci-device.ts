// PCI function plumbing: a type-0 configuration space with BAR sizing and mapping, the command
// and status registers, INTx and a capability list. Virtio-pci devices and the host bridge build
// on it.
//
// Writes go through per-byte masks: `writable` bits take the written value, `clearOnWrite` bits
// (status errors) clear where a 1 is written, everything else is read-only. A BAR's writable bits
// are its address bits, so writing all-ones and reading back gives the size as the PCI spec
// describes. A BAR is mapped on the I/O or MMIO bus while its address is set and its decode bit
// (command bit 0 for I/O, bit 1 for memory) is on; moving it re-registers the range.

import { BusConflictError, type AccessSize, type BusHandler, type BusRange, type Device, type IoBus, type MmioBus, type SizeMask } from "./bus.js";
import type { IrqLine } from "./irq.js";
import { DeviceStateError, StateReader } from "./state.js";

export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_BAR0 = 0x10;
export const PCI_CAPABILITIES = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const COMMAND_IO = 0x0001;
export const COMMAND_MEMORY = 0x0002;
export const COMMAND_BUS_MASTER = 0x0004;
export const COMMAND_INTX_DISABLE = 0x0400;
const STATUS_INTERRUPT = 0x0008;
const STATUS_CAPABILITIES = 0x0010;

export interface PciIds {
  vendorId: number;
  deviceId: number;
  /** Class code, subclass and programming interface: 0xCCSSPP. */
  classCode: number;
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** Header type byte (bit 7: multi-function). Default 0. */
  headerType?: number;
  /** 0 = no interrupt, 1-4 = INTA#-INTD#. */
  interruptPin?: number;
}

export interface BarDefinition {
  kind: "io" | "mem32";
  /** Size in bytes, a power of two (I/O at least 4, memory at least 16). */
  size: number;
  prefetchable?: boolean;
  /** Access sizes the handler takes natively. */
  sizes: SizeMask;
  handler: BusHandler;
}

/** A programming error in a device definition (not guest input). */
export class PciDefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PciDefinitionError";
  }
}

export class PciDevice implements Device {
  readonly config: Uint8Array = new Uint8Array(256);
  protected readonly writable = new Uint8Array(256);
  protected readonly clearOnWrite = new Uint8Array(256);
  private readonly bars: (BarDefinition | null)[] = [null, null, null, null, null, null];
  private readonly mapped: (BusRange | null)[] = [null, null, null, null, null, null];
  private io: IoBus | null = null;
  private mmio: MmioBus | null = null;
  private lastCapability = 0;
  private firstCapability = 0;
  private capabilityEnd = 0x40;
  /** Power-on contents of the capability area (0x40-0xff). */
  private readonly capabilityImage = new Uint8Array(256 - 0x40);
  private intx = false;
  /** The INTx line, wired by the VMM according to the slot's interrupt routing. */
  irq: IrqLine | null = null;
  /** BAR mappings that could not be made because the range was taken (for diagnostics). */
  conflicts = 0;

  constructor(readonly name: string, readonly ids: PciIds) {
    this.reset();
  }

  /** Power-on configuration: ids, read-only fields, writable masks. BAR and capability definitions survive. */
  reset(): void {
    const c = this.config;
    const ids = this.ids;
    c.fill(0);
    this.put(0x00, 2, ids.vendorId);
    this.put(0x02, 2, ids.deviceId);
    c[0x08] = ids.revision ?? 0;
    this.put(0x09, 3, ids.classCode);
    c[0x0e] = ids.headerType ?? 0;
    this.put(0x2c, 2, ids.subsystemVendorId ?? 0);
    this.put(0x2e, 2, ids.subsystemId ?? 0);
    c[PCI_INTERRUPT_PIN] = ids.interruptPin ?? 0;
    this.setMask(this.writable, PCI_COMMAND, 2, 0x0547);
    this.setMask(this.clearOnWrite, PCI_STATUS, 2, 0xf900);
    this.writable[0x0c] = 0xff; // cache line size
    this.writable[0x0d] = 0xff; // latency timer
    this.writable[PCI_INTERRUPT_LINE] = 0xff;
    c.set(this.capabilityImage, 0x40);
    if (this.lastCapability) {
      c[PCI_CAPABILITIES] = this.firstCapability;
      this.put(PCI_STATUS, 2, STATUS_CAPABILITIES);
    }
    for (let i = 0; i < 6; i++) {
      const bar = this.bars[i];
      if (bar) {
        this.setMask(this.writable, PCI_BAR0 + 4 * i, 4, barAddressMask(bar));
        this.put(PCI_BAR0 + 4 * i, 4, barFlags(bar));
      }
    }
    this.intx = false;
    this.irq?.set(false);
    this.remap();
  }

  /** Declare BAR `index` (0-5). Call before the device is attached. */
  defineBar(index: number, bar: BarDefinition): void {
    const min = bar.kind === "io" ? 4 : 16;
    if (index < 0 || index > 5 || this.bars[index]) throw new PciDefinitionError(`${this.name}: BAR ${index} unavailable`);
    if (bar.size < min || (bar.size & (bar.size - 1)) !== 0 || bar.size > 2 ** 31) {
      throw new PciDefinitionError(`${this.name}: BAR size ${bar.size} is not a power of two >= ${min}`);
    }
    this.bars[index] = bar;
    this.setMask(this.writable, PCI_BAR0 + 4 * index, 4, barAddressMask(bar));
    this.put(PCI_BAR0 + 4 * index, 4, barFlags(bar));
  }

  /**
   * Append a capability: `body` is its bytes after the ID and next-pointer. Returns its offset.
   * `writableMask` (same length as body) marks guest-writable bits.
   */
  addCapability(id: number, body: Uint8Array, writableMask?: Uint8Array): number {
    const start = this.lastCapability === 0 ? 0x40 : alignUp(this.capabilityEnd, 4);
    const end = start + 2 + body.length;
    if (end > 256) throw new PciDefinitionError(`${this.name}: no room for capability ${id}`);
    this.config[start] = id;
    this.config[start + 1] = 0;
    this.config.set(body, start + 2);
    if (writableMask) this.writable.set(writableMask, start + 2);
    this.capabilityImage.set(this.config.subarray(start, end), start - 0x40);
    if (this.lastCapability === 0) {
      this.firstCapability = start;
      this.config[PCI_CAPABILITIES] = start;
      this.put(PCI_STATUS, 2, this.get(PCI_STATUS, 2) | STATUS_CAPABILITIES);
    } else {
      this.config[this.lastCapability + 1] = start;
      this.capabilityImage[this.lastCapability + 1 - 0x40] = start;
    }
    this.lastCapability = start;
    this.capabilityEnd = end;
    return start;
  }

  /** Called by the host bridge when the function is placed on the bus. */
  connect(io: IoBus, mmio: MmioBus): void {
    this.io = io;
    this.mmio = mmio;
    this.remap();
  }

  /** Current address of BAR `index` (0 if unset). */
  barAddress(index: number): number {
    const bar = this.bars[index];
    if (!bar) return 0;
    return (this.get(PCI_BAR0 + 4 * index, 4) & barAddressMask(bar)) >>> 0;
  }

  /** Whether BAR `index` is currently mapped on its bus. */
  barMapped(index: number): boolean {
    return this.mapped[index] !== null;
  }

  get command(): number {
    return this.get(PCI_COMMAND, 2);
  }

  /** Drive INTx (level). The line follows unless command bit 10 disables it; status bit 3 shows it. */
  setIrqLevel(level: boolean): void {
    this.intx = level;
    this.updateIntx();
  }

  /** Configuration read of `size` bytes at `offset` (within one dword). Subclasses may override for live registers. */
  configRead(offset: number, size: AccessSize): number {
    return this.get(offset, size);
  }

  /** Configuration write of `size` bytes at `offset` (within one dword). */
  configWrite(offset: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      const v = Math.floor(value / 256 ** i) & 0xff;
      const keep = this.config[at] & ~this.writable[at];
      this.config[at] = (keep | (v & this.writable[at])) & ~(v & this.clearOnWrite[at]);
    }
    if (offset < 0x28 || (offset <= PCI_COMMAND + 1 && offset + size > PCI_COMMAND)) {
      this.remap();
      this.updateIntx();
    }
  }

  protected get(offset: number, size: number): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.config[offset + i];
    return v;
  }

  protected put(offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) this.config[offset + i] = Math.floor(value / 256 ** i) & 0xff;
  }

  private setMask(mask: Uint8Array, offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) mask[offset + i] = Math.floor(value / 256 ** i) & 0xff;
  }

  private updateIntx(): void {
    const status = this.get(PCI_STATUS, 2);
    this.put(PCI_STATUS, 2, this.intx ? status | STATUS_INTERRUPT : status & ~STATUS_INTERRUPT);
    this.irq?.set(this.intx && !(this.command & COMMAND_INTX_DISABLE));
  }

  /** Bring bus registrations in line with BAR addresses and decode enables. */
  private remap(): void {
    const command = this.command;
    for (let i = 0; i < 6; i++) {
      const bar = this.bars[i];
      if (!bar) continue;
      const bus = bar.kind === "io" ? this.io : this.mmio;
      const enabled = (command & (bar.kind === "io" ? COMMAND_IO : COMMAND_MEMORY)) !== 0;
      const address = this.barAddress(i);
      const limit = bar.kind === "io" ? 0x10000 : 2 ** 32;
      const want = bus !== null && enabled && address !== 0 && address + bar.size <= limit;
      const current = this.mapped[i];
      if (current && want && current.base === address) continue;
      if (current) {
        (bar.kind === "io" ? this.io : this.mmio)?.unregister(current);
        this.mapped[i] = null;
      }
      if (!want || !bus) continue;
      try {
        this.mapped[i] = bus.register({ name: `${this.name}.bar${i}`, base: address, length: bar.size, sizes: bar.sizes, handler: bar.handler });
      } catch (e) {
        if (!(e instanceof BusConflictError)) throw e;
        this.conflicts++;
      }
    }
  }

  saveState(): object {
    return { config: new Uint8Array(this.config), intx: this.intx };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const config = r.bytes("config", 256);
    const intx = r.bool("intx");
    // Read-only identity must match: a snapshot of another function is refused.
    for (const at of [0, 1, 2, 3, 0x0e]) {
      if (config[at] !== this.config[at]) throw new DeviceStateError(`${this.name}.config`, "vendor, device or header type differs");
    }
    this.config.set(config);
    this.intx = intx;
    this.remap();
    if (this.irq) this.irq.restore(intx && !(this.command & COMMAND_INTX_DISABLE));
  }
}

function barFlags(bar: BarDefinition): number {
  if (bar.kind === "io") return 0x1;
  return bar.prefetchable ? 0x8 : 0x0;
}

function barAddressMask(bar: BarDefinition): number {
  return (~(bar.size - 1) & (bar.kind === "io" ? ~0x3 : ~0xf)) >>> 0;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
