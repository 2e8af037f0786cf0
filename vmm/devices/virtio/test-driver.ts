// Test support: a virtio-pci driver written the way Linux's virtio_pci and virtio_blk work, so the
// device tests talk to the device only through PCI configuration cycles, its BARs and guest RAM.

import { IoBus, MmioBus, type AccessSize } from "../bus.js";
import { IrqLine } from "../irq.js";
import { PciHost } from "../pci.js";
import { RecordingSink } from "../test-support.js";
import { FlatGuestRam } from "./guest-ram.js";
import { VirtioPciDevice, type VirtioPciOptions } from "./pci-transport.js";
import type { VirtioDeviceModel } from "./virtio.js";

export const SLOT = 3;
export const MEM_BAR_BASE = 0xfebf0000;
export const IO_BAR_BASE = 0xc000;
/** Where the test driver puts the rings of queue 0, and where it allocates buffers. */
export const RING_BASE = 0x1000;
export const BUFFER_BASE = 0x8000;

export interface DmaBuffer {
  gpa: number;
  len: number;
  /** Device-writable. */
  write?: boolean;
}

/** A bus with a host bridge, one virtio function at slot 3 with INTA# on a recorded line, and RAM. */
export function virtioMachine(model: VirtioDeviceModel, options: VirtioPciOptions & { ramBytes?: number; ram?: Uint8Array } = {}) {
  const io = new IoBus();
  const mmio = new MmioBus();
  const host = new PciHost(io, mmio);
  host.attach(io);
  const ram = options.ram ?? new Uint8Array(options.ramBytes ?? 1 << 20);
  const device = new VirtioPciDevice(model, new FlatGuestRam(ram), options);
  const sink = new RecordingSink();
  device.irq = new IrqLine([{ sink, pin: 11 }]);
  host.add(device, SLOT);
  return { io, mmio, host, ram, device, sink, driver: new TestDriver(io, mmio, ram) };
}

export interface VirtioCaps {
  common: number;
  isr: number;
  device: number;
  notify: number;
  multiplier: number;
}

export class TestDriver {
  readonly view: DataView;
  caps: VirtioCaps | null = null;
  legacy = false;
  /** Queue 0 as the driver set it up. */
  queueSize = 0;
  desc = 0;
  avail = 0;
  used = 0;
  private freeDesc = 0;
  private availIdx = 0;
  private lastUsed = 0;
  private nextBuffer = BUFFER_BASE;

  constructor(readonly io: IoBus, readonly mmio: MmioBus, readonly ram: Uint8Array) {
    this.view = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  }

  // ---- PCI configuration ----

  cfgRead(reg: number, size: AccessSize = 4): number {
    this.io.write(0xcf8, 4, (0x80000000 | (SLOT << 11) | (reg & 0xfc)) >>> 0);
    return this.io.read(0xcfc + (reg & 3), size);
  }

  cfgWrite(reg: number, size: AccessSize, value: number): void {
    this.io.write(0xcf8, 4, (0x80000000 | (SLOT << 11) | (reg & 0xfc)) >>> 0);
    this.io.write(0xcfc + (reg & 3), size, value);
  }

  /** What firmware does: program BAR 0 (I/O) and BAR 4 (memory), enable decoding and bus mastering. */
  assignBars(): void {
    this.cfgWrite(0x10, 4, IO_BAR_BASE);
    this.cfgWrite(0x20, 4, MEM_BAR_BASE);
    this.cfgWrite(0x04, 2, 0x0007);
  }

  /** Walk the capability list the way vp_modern_probe does. */
  findCaps(): VirtioCaps | null {
    const found: Partial<Record<number, { bar: number; offset: number; length: number; at: number }>> = {};
    if (!(this.cfgRead(0x06, 2) & 0x10)) return null;
    for (let at = this.cfgRead(0x34, 1), n = 0; at !== 0 && n < 48; at = this.cfgRead(at + 1, 1), n++) {
      if (this.cfgRead(at, 1) !== 0x09) continue;
      const type = this.cfgRead(at + 3, 1);
      found[type] ??= { bar: this.cfgRead(at + 4, 1), offset: this.cfgRead(at + 8), length: this.cfgRead(at + 12), at };
    }
    const barBase = (bar: number): number => (this.cfgRead(0x10 + 4 * bar) & ~0xf) >>> 0;
    const where = (type: number): number => (found[type] ? barBase(found[type]!.bar) + found[type]!.offset : 0);
    if (!found[1] || !found[2] || !found[3]) return null;
    if (found[1].length < 0x38) return null;
    this.caps = { common: where(1), isr: where(3), device: where(4), notify: where(2), multiplier: this.cfgRead(found[2].at + 16) };
    return this.caps;
  }

  // ---- modern registers ----

  common(offset: number, size: AccessSize): number {
    return this.mmio.read(this.caps!.common + offset, size);
  }

  setCommon(offset: number, size: AccessSize, value: number): void {
    this.mmio.write(this.caps!.common + offset, size, value);
  }

  status(): number {
    return this.legacy ? this.io.read(IO_BAR_BASE + 0x12, 1) : this.common(0x14, 1);
  }

  setStatus(v: number): void {
    if (this.legacy) this.io.write(IO_BAR_BASE + 0x12, 1, v);
    else this.setCommon(0x14, 1, v);
  }

  deviceFeatures(): [number, number] {
    this.setCommon(0x00, 4, 0);
    const lo = this.common(0x04, 4);
    this.setCommon(0x00, 4, 1);
    return [lo, this.common(0x04, 4)];
  }

  setDriverFeatures(f: readonly [number, number]): void {
    this.setCommon(0x08, 4, 0);
    this.setCommon(0x0c, 4, f[0]);
    this.setCommon(0x08, 4, 1);
    this.setCommon(0x0c, 4, f[1]);
  }

  /** Device configuration read (modern region, or legacy at 0x14 of the I/O BAR). */
  config(offset: number, size: AccessSize): number {
    return this.legacy ? this.io.read(IO_BAR_BASE + 0x14 + offset, size) : this.mmio.read(this.caps!.device + offset, size);
  }

  readIsr(): number {
    return this.legacy ? this.io.read(IO_BAR_BASE + 0x13, 1) : this.mmio.read(this.caps!.isr, 1);
  }

  /**
   * Linux's modern bring-up: reset (and wait for 0), ACKNOWLEDGE, DRIVER, features, FEATURES_OK
   * (read back), queue 0 set up through the common configuration, queue_enable, DRIVER_OK.
   * Returns false where Linux would give up.
   */
  initModern(accept: (offered: [number, number]) => [number, number], queueSize?: number): boolean {
    this.assignBars();
    if (!this.findCaps()) return false;
    this.setStatus(0);
    if (this.status() !== 0) return false;
    this.setStatus(1);
    this.setStatus(1 | 2);
    this.setDriverFeatures(accept(this.deviceFeatures()));
    this.setStatus(1 | 2 | 8);
    if (!(this.status() & 8)) return false;
    this.setCommon(0x16, 2, 0);
    const max = this.common(0x18, 2);
    if (max === 0 || this.common(0x1c, 2) !== 0) return false;
    const size = queueSize ?? max;
    this.layoutQueue(size, false);
    this.setCommon(0x18, 2, size);
    this.setCommon(0x20, 4, this.desc);
    this.setCommon(0x24, 4, 0);
    this.setCommon(0x28, 4, this.avail);
    this.setCommon(0x2c, 4, 0);
    this.setCommon(0x30, 4, this.used);
    this.setCommon(0x34, 4, 0);
    this.setCommon(0x1c, 2, 1);
    this.setStatus(1 | 2 | 8 | 4);
    return true;
  }

  /** Linux's legacy bring-up through I/O BAR 0 (virtio_pci_legacy). */
  initLegacy(accept: (offered: number) => number): boolean {
    this.assignBars();
    this.legacy = true;
    const io = this.io;
    this.setStatus(0);
    this.setStatus(1);
    this.setStatus(1 | 2);
    io.write(IO_BAR_BASE + 0x04, 4, accept(io.read(IO_BAR_BASE + 0x00, 4)));
    io.write(IO_BAR_BASE + 0x0e, 2, 0);
    const size = io.read(IO_BAR_BASE + 0x0c, 2);
    if (size === 0 || io.read(IO_BAR_BASE + 0x08, 4) !== 0) return false;
    this.layoutQueue(size, true);
    io.write(IO_BAR_BASE + 0x08, 4, this.desc / 4096);
    this.setStatus(1 | 2 | 4);
    return true;
  }

  private layoutQueue(size: number, legacy: boolean): void {
    this.queueSize = size;
    this.desc = RING_BASE;
    this.avail = RING_BASE + 16 * size;
    this.used = legacy ? Math.ceil((this.avail + 6 + 2 * size) / 4096) * 4096 : Math.ceil((this.avail + 6 + 2 * size) / 4) * 4;
    this.ram.fill(0, RING_BASE, this.used + 6 + 8 * size);
    this.freeDesc = 0;
    this.availIdx = 0;
    this.lastUsed = 0;
  }

  // ---- buffers and the queue ----

  /** A fresh buffer of `len` bytes in RAM (a bump allocator), optionally filled. */
  alloc(len: number, fill?: Uint8Array): number {
    const gpa = this.nextBuffer;
    this.nextBuffer = Math.ceil((gpa + len) / 16) * 16;
    if (fill) this.ram.set(fill, gpa);
    return gpa;
  }

  /** Write descriptor `i`. */
  writeDesc(i: number, b: DmaBuffer, next: number | null, table = this.desc, indirect = false): void {
    const at = table + 16 * i;
    this.view.setUint32(at, b.gpa, true);
    this.view.setUint32(at + 4, 0, true);
    this.view.setUint32(at + 8, b.len, true);
    this.view.setUint16(at + 12, (next !== null ? 1 : 0) | (b.write ? 2 : 0) | (indirect ? 4 : 0), true);
    this.view.setUint16(at + 14, next ?? 0, true);
  }

  /** Post a chain of buffers (or one indirect descriptor pointing at a table of them); returns the head. */
  post(buffers: readonly DmaBuffer[], options: { indirect?: boolean } = {}): number {
    const head = this.freeDesc % this.queueSize;
    if (options.indirect) {
      const table = this.alloc(16 * buffers.length);
      buffers.forEach((b, i) => this.writeDesc(i, b, i + 1 < buffers.length ? i + 1 : null, table));
      this.writeDesc(head, { gpa: table, len: 16 * buffers.length }, null, this.desc, true);
      this.freeDesc++;
    } else {
      buffers.forEach((b, i) => {
        const idx = (this.freeDesc + i) % this.queueSize;
        this.writeDesc(idx, b, i + 1 < buffers.length ? (idx + 1) % this.queueSize : null);
      });
      this.freeDesc += buffers.length;
    }
    this.makeAvailable(head);
    return head;
  }

  /** Put `head` in the available ring and publish the new index. */
  makeAvailable(head: number): void {
    this.view.setUint16(this.avail + 4 + 2 * (this.availIdx % this.queueSize), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.view.setUint16(this.avail + 2, this.availIdx, true);
  }

  notify(queue = 0): void {
    if (this.legacy) this.io.write(IO_BAR_BASE + 0x10, 2, queue);
    else this.mmio.write(this.caps!.notify + queue * this.caps!.multiplier, 2, queue);
  }

  /** Used entries the device added since the last call. */
  takeUsed(): Array<{ id: number; len: number }> {
    const out: Array<{ id: number; len: number }> = [];
    const idx = this.view.getUint16(this.used + 2, true);
    while (this.lastUsed !== idx) {
      const at = this.used + 4 + 8 * (this.lastUsed % this.queueSize);
      out.push({ id: this.view.getUint32(at, true), len: this.view.getUint32(at + 4, true) });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}
