// Virtio over PCI (virtio 1.0 section 4.1): the modern register layout in a memory BAR, found
// through vendor capabilities, and for transitional devices also the legacy (0.9.5) I/O BAR.
//
// Memory BAR 4 (16 KiB), one 4 KiB region each:
//   0x0000 common configuration   0x1000 ISR status   0x2000 device configuration
//   0x3000 notifications (queue n at 0x3000 + 4n: queue_notify_off = n, multiplier 4)
// Legacy I/O BAR 0 (transitional only): host features, guest features, queue PFN, queue size,
// queue select, queue notify, status, ISR, then the device configuration at 0x14 (no MSI-X).
//
// Interrupts are INTx only (no MSI-X capability, so Linux falls back to INTA#): the line is high
// while the ISR is non-zero, and reading the ISR clears it. Queues are served synchronously when
// the driver notifies (during the MMIO or port write that notifies). A malformed ring sets
// DEVICE_NEEDS_RESET and raises a configuration interrupt; the device then ignores its queues
// until the driver resets it.

import type { AccessSize, BusHandler } from "../bus.js";
import { COMMAND_BUS_MASTER, PciDevice } from "../pci-device.js";
import { DeviceStateError, StateReader } from "../state.js";
import type { GuestRam } from "./guest-ram.js";
import { VirtioFeature, VirtioIsr, VirtioStatus, featureWords, hasFeature, type FeatureWords, type VirtioDeviceModel } from "./virtio.js";
import { Virtqueue, VirtqueueError } from "./virtqueue.js";

export const VIRTIO_PCI_VENDOR = 0x1af4;
export const MODERN_BAR = 4;
export const LEGACY_BAR = 0;
const MODERN_BAR_SIZE = 0x4000;
const REGION_SIZE = 0x1000;
const REGION = { COMMON: 0, ISR: 1, DEVICE: 2, NOTIFY: 3 } as const;
/** PCI device ids of transitional devices (virtio 1.1 4.1.2.1): not in device id order. */
const LEGACY_DEVICE_ID: Record<number, number> = { 1: 0x1000, 2: 0x1001, 5: 0x1002, 3: 0x1003, 8: 0x1004, 4: 0x1005, 9: 0x1009 };
const NOTIFY_MULTIPLIER = 4;
/** virtio_pci_cap cfg_type values. */
const CapType = { COMMON: 1, NOTIFY: 2, ISR: 3, DEVICE: 4 } as const;
const CAP_VENDOR = 0x09;
const NO_VECTOR = 0xffff;
const LEGACY_CONFIG = 0x14;

/** Common configuration fields: offset → width in bytes. */
const COMMON_FIELDS: ReadonlyMap<number, number> = new Map([
  [0x00, 4], [0x04, 4], [0x08, 4], [0x0c, 4], [0x10, 2], [0x12, 2], [0x14, 1], [0x15, 1],
  [0x16, 2], [0x18, 2], [0x1a, 2], [0x1c, 2], [0x1e, 2],
  [0x20, 4], [0x24, 4], [0x28, 4], [0x2c, 4], [0x30, 4], [0x34, 4],
]);
const COMMON_SIZE = 0x38;

/** Legacy I/O fields: offset → width. */
const LEGACY_FIELDS: ReadonlyMap<number, number> = new Map([
  [0x00, 4], [0x04, 4], [0x08, 4], [0x0c, 2], [0x0e, 2], [0x10, 2], [0x12, 1], [0x13, 1],
]);

export interface VirtioPciOptions {
  /** Transitional (device 0x1000 + id - 1, revision 0, legacy I/O BAR 0 too) or modern only (0x1040 + id). Default true. */
  transitional?: boolean;
}

export class VirtioPciDevice extends PciDevice {
  readonly queues: Virtqueue[];
  readonly transitional: boolean;
  /** Why the device last entered DEVICE_NEEDS_RESET (for traces), or null. */
  lastError: string | null = null;
  private readonly offered: FeatureWords;
  private readonly driverFeatures = new Uint32Array(2);
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private status = 0;
  private isr = 0;
  private queueSelect = 0;
  private configGeneration = 0;
  /** The device model heard the negotiated features (FEATURES_OK, or DRIVER_OK of a legacy driver). */
  private negotiated = false;

  constructor(
    readonly model: VirtioDeviceModel,
    ram: GuestRam,
    options: VirtioPciOptions = {},
  ) {
    const transitional = options.transitional ?? true;
    super(model.name, {
      vendorId: VIRTIO_PCI_VENDOR,
      deviceId: transitional ? (LEGACY_DEVICE_ID[model.deviceId] ?? 0x1000 + model.deviceId - 1) : 0x1040 + model.deviceId,
      revision: transitional ? 0 : 1,
      classCode: model.pciClass,
      subsystemVendorId: VIRTIO_PCI_VENDOR,
      subsystemId: transitional ? model.deviceId : 0x1100,
      interruptPin: 1,
    });
    this.transitional = transitional;
    const transport = featureWords(VirtioFeature.VERSION_1, VirtioFeature.RING_INDIRECT_DESC);
    this.offered = [(model.features[0] | transport[0]) >>> 0, (model.features[1] | transport[1]) >>> 0];
    this.queues = model.queueSizes.map((size, i) => new Virtqueue(i, size, ram));

    const modern: BusHandler = {
      read: (addr, size) => this.modernRead(addr - this.barAddress(MODERN_BAR), size),
      write: (addr, size, value) => this.modernWrite(addr - this.barAddress(MODERN_BAR), size, value),
    };
    this.defineBar(MODERN_BAR, { kind: "mem32", size: MODERN_BAR_SIZE, sizes: 1 | 2 | 4, handler: modern });
    if (transitional) {
      const legacy: BusHandler = {
        read: (addr, size) => this.legacyRead(addr - this.barAddress(LEGACY_BAR), size),
        write: (addr, size, value) => this.legacyWrite(addr - this.barAddress(LEGACY_BAR), size, value),
      };
      const size = Math.max(32, 2 ** Math.ceil(Math.log2(LEGACY_CONFIG + model.config.length)));
      this.defineBar(LEGACY_BAR, { kind: "io", size, sizes: 1 | 2 | 4, handler: legacy });
    }
    this.addVirtioCap(CapType.COMMON, REGION.COMMON * REGION_SIZE, COMMON_SIZE);
    this.addVirtioCap(CapType.ISR, REGION.ISR * REGION_SIZE, 1);
    this.addVirtioCap(CapType.DEVICE, REGION.DEVICE * REGION_SIZE, Math.max(1, model.config.length));
    this.addVirtioCap(CapType.NOTIFY, REGION.NOTIFY * REGION_SIZE, NOTIFY_MULTIPLIER * this.queues.length, NOTIFY_MULTIPLIER);
    this.reset();
  }

  /** Function reset (also what PciHost.reset does): configuration space and the virtio state. */
  override reset(): void {
    super.reset();
    // PciDevice's constructor calls reset() before this class's fields exist.
    if (this.queues === undefined) return;
    this.resetVirtio();
  }

  /** The device_status register (for tests and traces). */
  get deviceStatus(): number {
    return this.status;
  }

  /** The device configuration changed (e.g. a resized disk): tell the driver. */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
    if (this.status & VirtioStatus.DRIVER_OK) this.interrupt(VirtioIsr.CONFIG);
  }

  /** The driver notified `index`: serve it now. */
  notify(index: number): void {
    const q = this.queues[index];
    const live = VirtioStatus.DRIVER_OK | VirtioStatus.DEVICE_NEEDS_RESET;
    if (!q || !q.ready || (this.status & live) !== VirtioStatus.DRIVER_OK || !(this.command & COMMAND_BUS_MASTER)) return;
    q.indirect = hasFeature(this.driverFeatures, VirtioFeature.RING_INDIRECT_DESC);
    try {
      this.model.process(q);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.broken(e.message);
    } finally {
      if (q.takeSignal()) this.interrupt(VirtioIsr.QUEUE);
    }
  }

  /** The device type used buffers outside a notify (a balloon asking for stats): interrupt if the driver wants it. */
  signalUsed(): void {
    for (const q of this.queues) if (q.ready && q.takeSignal()) this.interrupt(VirtioIsr.QUEUE);
  }

  private resetVirtio(): void {
    this.driverFeatures.fill(0);
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.status = 0;
    this.isr = 0;
    this.queueSelect = 0;
    this.negotiated = false;
    this.lastError = null;
    for (const q of this.queues) q.reset();
    this.model.reset();
    this.setIrqLevel(false);
  }

  private addVirtioCap(type: number, offset: number, length: number, multiplier?: number): void {
    const body = new Uint8Array(multiplier === undefined ? 14 : 18);
    const view = new DataView(body.buffer);
    body[0] = body.length + 2; // cap_len
    body[1] = type;
    body[2] = MODERN_BAR;
    view.setUint32(6, offset, true);
    view.setUint32(10, length, true);
    if (multiplier !== undefined) view.setUint32(14, multiplier, true);
    this.addCapability(CAP_VENDOR, body);
  }

  private interrupt(bits: number): void {
    this.isr |= bits;
    this.setIrqLevel(true);
  }

  private broken(why: string): void {
    this.lastError = why;
    this.status |= VirtioStatus.DEVICE_NEEDS_RESET;
    if (this.status & VirtioStatus.DRIVER_OK) this.interrupt(VirtioIsr.CONFIG);
  }

  private readIsr(): number {
    const v = this.isr;
    this.isr = 0;
    this.setIrqLevel(false);
    return v;
  }

  private writeStatus(value: number, modern: boolean): void {
    if (value === 0) {
      this.resetVirtio();
      return;
    }
    let v = value & 0xff & ~VirtioStatus.DEVICE_NEEDS_RESET;
    if (v & VirtioStatus.FEATURES_OK && !(this.status & VirtioStatus.FEATURES_OK)) {
      if (this.featuresAcceptable(modern)) this.negotiate();
      else v &= ~VirtioStatus.FEATURES_OK;
    }
    const wasLive = (this.status & VirtioStatus.DRIVER_OK) !== 0;
    this.status = v | (this.status & VirtioStatus.DEVICE_NEEDS_RESET);
    if (v & VirtioStatus.DRIVER_OK && !wasLive) {
      // A legacy driver never sets FEATURES_OK: its features hold from DRIVER_OK on.
      if (!this.negotiated) this.negotiate();
      // Buffers made available before DRIVER_OK are served now.
      for (let i = 0; i < this.queues.length; i++) this.notify(i);
    }
  }

  /** The driver's features are a subset of the offer, and a modern driver took VERSION_1. */
  private featuresAcceptable(modern: boolean): boolean {
    const d = this.driverFeatures;
    if ((d[0] & ~this.offered[0]) !== 0 || (d[1] & ~this.offered[1]) !== 0) return false;
    return !modern || hasFeature(d, VirtioFeature.VERSION_1);
  }

  private negotiate(): void {
    this.negotiated = true;
    this.model.negotiated([this.driverFeatures[0], this.driverFeatures[1]]);
  }

  private get selected(): Virtqueue | undefined {
    return this.queues[this.queueSelect];
  }

  // ---- modern registers ---------------------------------------------------------------------

  private modernRead(offset: number, size: AccessSize): number {
    const region = offset >>> 12;
    const at = offset & (REGION_SIZE - 1);
    switch (region) {
      case REGION.COMMON:
        return fieldRead(COMMON_FIELDS, at, size, (field) => this.commonGet(field));
      case REGION.ISR:
        return at === 0 ? this.readIsr() : 0;
      case REGION.DEVICE:
        return configRead(this.model.config, at, size);
      default:
        return 0;
    }
  }

  private modernWrite(offset: number, size: AccessSize, value: number): void {
    const region = offset >>> 12;
    const at = offset & (REGION_SIZE - 1);
    switch (region) {
      case REGION.COMMON:
        if (COMMON_FIELDS.get(at) === size) this.commonSet(at, value);
        return;
      case REGION.DEVICE:
        if (at + size <= this.model.config.length) this.model.configWrite(at, size, value);
        return;
      case REGION.NOTIFY:
        if (at % NOTIFY_MULTIPLIER === 0) this.notify(at / NOTIFY_MULTIPLIER);
        return;
    }
  }

  private commonGet(field: number): number {
    const q = this.selected;
    switch (field) {
      case 0x00: return this.deviceFeatureSelect;
      case 0x04: return this.deviceFeatureSelect < 2 ? this.offered[this.deviceFeatureSelect] : 0;
      case 0x08: return this.driverFeatureSelect;
      case 0x0c: return this.driverFeatureSelect < 2 ? this.driverFeatures[this.driverFeatureSelect] : 0;
      case 0x10: return NO_VECTOR;
      case 0x12: return this.queues.length;
      case 0x14: return this.status;
      case 0x15: return this.configGeneration;
      case 0x16: return this.queueSelect;
      case 0x18: return q ? q.size : 0;
      case 0x1a: return NO_VECTOR;
      case 0x1c: return q?.ready ? 1 : 0;
      case 0x1e: return q ? q.index : 0;
      default: return q ? q.address[(field - 0x20) / 4] : 0;
    }
  }

  private commonSet(field: number, value: number): void {
    const q = this.selected;
    const open = q !== undefined && !q.ready;
    switch (field) {
      case 0x00: this.deviceFeatureSelect = value >>> 0; return;
      case 0x08: this.driverFeatureSelect = value >>> 0; return;
      case 0x0c:
        if (this.driverFeatureSelect < 2 && !(this.status & VirtioStatus.FEATURES_OK)) this.driverFeatures[this.driverFeatureSelect] = value;
        return;
      case 0x14: this.writeStatus(value, true); return;
      case 0x16: this.queueSelect = value; return;
      case 0x18: if (open) q.size = value; return;
      case 0x1c: if (open && value === 1) this.enableQueue(q); return;
      case 0x20: case 0x24: case 0x28: case 0x2c: case 0x30: case 0x34:
        if (open) q.address[(field - 0x20) / 4] = value;
        return;
      default: return; // MSI-X vectors: there is no MSI-X
    }
  }

  private enableQueue(q: Virtqueue): void {
    try {
      q.enable();
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.broken(e.message);
    }
  }

  // ---- legacy registers ---------------------------------------------------------------------

  private legacyRead(offset: number, size: AccessSize): number {
    if (offset >= LEGACY_CONFIG) return configRead(this.model.config, offset - LEGACY_CONFIG, size);
    return fieldRead(LEGACY_FIELDS, offset, size, (field) => this.legacyGet(field));
  }

  private legacyGet(field: number): number {
    const q = this.selected;
    switch (field) {
      case 0x00: return this.offered[0];
      case 0x04: return this.driverFeatures[0];
      case 0x08: return q?.ready ? Math.floor((q.address[0] + q.address[1] * 2 ** 32) / 4096) : 0;
      case 0x0c: return q ? q.maxSize : 0;
      case 0x0e: return this.queueSelect;
      case 0x12: return this.status;
      case 0x13: return this.readIsr();
      default: return 0;
    }
  }

  private legacyWrite(offset: number, size: AccessSize, value: number): void {
    if (offset >= LEGACY_CONFIG) {
      const at = offset - LEGACY_CONFIG;
      if (at + size <= this.model.config.length) this.model.configWrite(at, size, value);
      return;
    }
    if (LEGACY_FIELDS.get(offset) !== size) return;
    const q = this.selected;
    switch (offset) {
      case 0x04:
        if (!(this.status & VirtioStatus.DRIVER_OK)) {
          this.driverFeatures[0] = value;
          this.driverFeatures[1] = 0;
        }
        return;
      case 0x08:
        if (!q) return;
        if (value === 0) {
          q.reset();
          return;
        }
        if (q.ready) return;
        q.size = q.maxSize;
        q.setLegacyPfn(value);
        this.enableQueue(q);
        return;
      case 0x0e: this.queueSelect = value; return;
      case 0x10: this.notify(value); return;
      case 0x12: this.writeStatus(value, false); return;
    }
  }

  // ---- state --------------------------------------------------------------------------------

  override saveState(): object {
    return {
      pci: super.saveState(),
      virtio: {
        deviceFeatureSelect: this.deviceFeatureSelect,
        driverFeatureSelect: this.driverFeatureSelect,
        driverFeatures: Array.from(this.driverFeatures),
        status: this.status,
        isr: this.isr,
        queueSelect: this.queueSelect,
        configGeneration: this.configGeneration,
        negotiated: this.negotiated,
        queues: this.queues.map((q) => q.saveState()),
        model: this.model.saveState(),
      },
    };
  }

  override loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    r.record("pci");
    const v = r.record("virtio");
    const deviceFeatureSelect = v.int("deviceFeatureSelect", 0, 0xffffffff);
    const driverFeatureSelect = v.int("driverFeatureSelect", 0, 0xffffffff);
    const driverFeatures = v.ints("driverFeatures", 2, 0, 0xffffffff);
    const status = v.int("status", 0, 0xff);
    const isr = v.int("isr", 0, 3);
    const queueSelect = v.int("queueSelect", 0, 0xffff);
    const configGeneration = v.int("configGeneration", 0, 0xff);
    const negotiated = v.bool("negotiated");
    const queues = v.records("queues", this.queues.length).map((qr, i) => Virtqueue.readState(qr, this.queues[i].maxSize));
    const raw = state as { pci: unknown; virtio: { model: unknown } };
    if (!("model" in raw.virtio)) throw new DeviceStateError(`${this.name}.virtio.model`, "missing");
    const applyModel = this.model.readState(raw.virtio.model, `${this.name}.virtio.model`);
    super.loadState(raw.pci); // checks everything before it changes anything
    this.deviceFeatureSelect = deviceFeatureSelect;
    this.driverFeatureSelect = driverFeatureSelect;
    this.driverFeatures.set(driverFeatures);
    this.status = status;
    this.isr = isr;
    this.queueSelect = queueSelect;
    this.configGeneration = configGeneration;
    this.negotiated = negotiated;
    queues.forEach((apply, i) => apply(this.queues[i]));
    applyModel();
  }
}

/**
 * Read a register file: an access that matches a field is that field; any other access is
 * assembled byte by byte from the fields it covers (gaps read as zero).
 */
function fieldRead(fields: ReadonlyMap<number, number>, at: number, size: AccessSize, get: (field: number) => number): number {
  if (fields.get(at) === size) return get(at);
  let v = 0;
  for (let i = 0; i < size; i++) {
    for (const [start, width] of fields) {
      if (at + i >= start && at + i < start + width) {
        v += ((get(start) >>> (8 * (at + i - start))) & 0xff) * 2 ** (8 * i);
        break;
      }
    }
  }
  return v;
}

/** Little-endian read of the device configuration bytes; past the end reads zero. */
function configRead(config: Uint8Array, at: number, size: AccessSize): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (at + i < config.length ? config[at + i] : 0);
  return v;
}
