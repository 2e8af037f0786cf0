// Split virtqueue (virtio 1.0 section 2.4) over guest RAM: descriptor table, available ring, used ring.
//
//   descriptor (16 bytes): le64 addr, le32 len, le16 flags (NEXT 1, WRITE 2, INDIRECT 4), le16 next
//   available ring:        le16 flags (NO_INTERRUPT 1), le16 idx, le16 ring[size]
//   used ring:             le16 flags, le16 idx, { le32 id, le32 len } ring[size]
//
// Indices are free-running 16-bit counters. EVENT_IDX is not offered, so `used_event` and
// `avail_event` are not used. Rings and buffers are guest memory the guest may change at any
// time: every index and address is checked when it is read, and anything malformed (a loop, an
// index past the table, a buffer outside RAM, nested indirection) throws VirtqueueError, after
// which the device refuses to use the queue until it is reset.

import type { GuestRam } from "./guest-ram.js";
import { DeviceStateError, type StateReader } from "../state.js";

const DESC_NEXT = 1;
const DESC_WRITE = 2;
const DESC_INDIRECT = 4;
const AVAIL_NO_INTERRUPT = 1;
/** Largest queue size the split format allows. */
export const MAX_QUEUE_SIZE = 32768;

/** The driver broke the virtqueue format; the device must stop using the queue until reset. */
export class VirtqueueError extends Error {
  constructor(readonly queue: number, problem: string) {
    super(`virtqueue ${queue}: ${problem}`);
    this.name = "VirtqueueError";
  }
}

/** One request: its buffers in chain order, split into driver-written and device-written parts. */
export interface DescriptorChain {
  /** Index of the head descriptor (what goes back in the used ring). */
  readonly head: number;
  /** Buffers the device reads, as views of guest RAM. */
  readonly readable: Uint8Array[];
  /** Buffers the device writes, as views of guest RAM; they all follow the readable ones. */
  readonly writable: Uint8Array[];
  readableBytes: number;
  writableBytes: number;
  /** Every buffer's guest-physical address and length, in chain order. */
  readonly ranges: Array<{ gpa: number; length: number; writable: boolean }>;
}

export class Virtqueue {
  /** Size the driver chose (a power of two, at most maxSize). */
  size: number;
  /** queue_enable (modern) or a non-zero PFN (legacy). */
  ready = false;
  /** Ring addresses as 32-bit halves: desc lo/hi, driver (avail) lo/hi, device (used) lo/hi. */
  readonly address = new Uint32Array(6);
  /** Next available-ring entry the device takes. */
  lastAvail = 0;
  /** Next used-ring entry the device fills. */
  usedIdx = 0;
  /** VIRTIO_F_RING_INDIRECT_DESC was negotiated. */
  indirect = false;
  /** Used entries were added since the transport last asked whether to interrupt. */
  private signal = false;
  private desc = 0;
  private avail = 0;
  private used = 0;

  constructor(
    readonly index: number,
    readonly maxSize: number,
    private readonly ram: GuestRam,
  ) {
    if (maxSize < 1 || maxSize > MAX_QUEUE_SIZE || (maxSize & (maxSize - 1)) !== 0) throw new RangeError(`bad virtqueue size ${maxSize}`);
    this.size = maxSize;
  }

  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.address.fill(0);
    this.lastAvail = 0;
    this.usedIdx = 0;
    this.indirect = false;
    this.signal = false;
  }

  /** Set the ring addresses the legacy way: one page frame, rings laid out with 4 KiB alignment. */
  setLegacyPfn(pfn: number): void {
    const base = pfn * 4096;
    const avail = base + 16 * this.size;
    const used = Math.ceil((avail + 6 + 2 * this.size) / 4096) * 4096;
    this.setAddress(0, base);
    this.setAddress(2, avail);
    this.setAddress(4, used);
  }

  /** Start using the rings; throws VirtqueueError when they are misplaced (the driver's fault). */
  enable(): void {
    this.ready = true;
    this.check();
  }

  /**
   * Take the next available chain, or null when the driver has made none available. With `views`
   * false the buffers are not touched (no views of them are made: a device that only needs their
   * addresses, like a balloon's free page reports, must not make their pages real).
   */
  pop(views = true): DescriptorChain | null {
    this.check();
    const ram = this.ram;
    const availIdx = ram.u16(this.avail + 2);
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending === 0) return null;
    if (pending > this.size) this.fail(`available index ${availIdx} is ${pending} entries ahead (queue size ${this.size})`);
    const head = ram.u16(this.avail + 4 + 2 * (this.lastAvail & (this.size - 1)));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return this.walk(head, views);
  }

  /** Hand chain `head` back to the driver with `written` bytes written into its device-writable buffers. */
  push(head: number, written: number): void {
    this.check();
    const slot = this.used + 4 + 8 * (this.usedIdx & (this.size - 1));
    this.ram.setU32(slot, head);
    this.ram.setU32(slot + 4, written);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.ram.setU16(this.used + 2, this.usedIdx);
    this.signal = true;
  }

  /** Whether used entries were added and the driver wants an interrupt for them; resets the former. */
  takeSignal(): boolean {
    if (!this.signal) return false;
    this.signal = false;
    return (this.ram.u16(this.avail) & AVAIL_NO_INTERRUPT) === 0;
  }

  private setAddress(at: number, gpa: number): void {
    this.address[at] = gpa % 2 ** 32;
    this.address[at + 1] = Math.floor(gpa / 2 ** 32);
  }

  /** Rings inside RAM and aligned as virtio 1.0 requires (16, 2, 4). */
  private check(): void {
    if (!this.ready) this.fail("used before it was enabled");
    const size = this.size;
    if (size < 1 || size > this.maxSize || (size & (size - 1)) !== 0) this.fail(`queue size ${size} is not a power of two up to ${this.maxSize}`);
    const a = this.address;
    const desc = a[0] + a[1] * 2 ** 32;
    const avail = a[2] + a[3] * 2 ** 32;
    const used = a[4] + a[5] * 2 ** 32;
    if (desc % 16 || avail % 2 || used % 4) this.fail("rings are misaligned");
    const ram = this.ram;
    if (!ram.contains(desc, 16 * size) || !ram.contains(avail, 4 + 2 * size) || !ram.contains(used, 4 + 8 * size)) {
      this.fail(`rings at 0x${desc.toString(16)}/0x${avail.toString(16)}/0x${used.toString(16)} are outside RAM`);
    }
    this.desc = desc;
    this.avail = avail;
    this.used = used;
  }

  /** Follow the chain from `head`, through at most one indirect table. */
  private walk(head: number, views: boolean): DescriptorChain {
    const chain: DescriptorChain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0, ranges: [] };
    const ram = this.ram;
    let i = head;
    for (let n = 1; ; n++) {
      if (i >= this.size) this.fail(`descriptor index ${i} past the table (size ${this.size})`);
      if (n > this.size) this.fail(`descriptor chain from ${head} loops`);
      const at = this.desc + 16 * i;
      const flags = ram.u16(at + 12);
      if (flags & DESC_INDIRECT) {
        if (!this.indirect) this.fail("indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC");
        if (flags & DESC_NEXT) this.fail("indirect descriptor with NEXT set");
        this.walkIndirect(chain, this.address64(at), ram.u32(at + 8), views);
        return chain;
      }
      this.add(chain, this.address64(at), ram.u32(at + 8), (flags & DESC_WRITE) !== 0, views);
      if (!(flags & DESC_NEXT)) return chain;
      i = ram.u16(at + 14);
    }
  }

  private walkIndirect(chain: DescriptorChain, table: number, length: number, views: boolean): void {
    const ram = this.ram;
    if (length === 0 || length % 16 !== 0) this.fail(`indirect table length ${length} is not a multiple of 16`);
    if (!ram.contains(table, length)) this.fail(`indirect table at 0x${table.toString(16)} is outside RAM`);
    const entries = length / 16;
    let i = 0;
    for (let n = 1; ; n++) {
      if (i >= entries) this.fail(`indirect descriptor index ${i} past the table (${entries} entries)`);
      if (n > entries) this.fail("indirect descriptor chain loops");
      const at = table + 16 * i;
      const flags = ram.u16(at + 12);
      if (flags & DESC_INDIRECT) this.fail("nested indirect descriptor");
      this.add(chain, this.address64(at), ram.u32(at + 8), (flags & DESC_WRITE) !== 0, views);
      if (!(flags & DESC_NEXT)) return;
      i = ram.u16(at + 14);
    }
  }

  private add(chain: DescriptorChain, gpa: number, length: number, writable: boolean, withViews: boolean): void {
    if (!this.ram.contains(gpa, length)) this.fail(`buffer at 0x${gpa.toString(16)}+0x${length.toString(16)} is outside RAM`);
    chain.ranges.push({ gpa, length, writable });
    const views = withViews ? this.ram.segments(gpa, length) : [];
    if (views === null) this.fail(`buffer at 0x${gpa.toString(16)}+0x${length.toString(16)} is outside RAM`);
    if (writable) {
      chain.writable.push(...views);
      chain.writableBytes += length;
    } else {
      if (chain.writable.length > 0) this.fail("a device-readable buffer follows a device-writable one");
      chain.readable.push(...views);
      chain.readableBytes += length;
    }
  }

  private address64(at: number): number {
    return this.ram.u32(at) + this.ram.u32(at + 4) * 2 ** 32;
  }

  private fail(problem: string): never {
    throw new VirtqueueError(this.index, problem);
  }

  saveState(): object {
    return { size: this.size, ready: this.ready, address: Array.from(this.address), lastAvail: this.lastAvail, usedIdx: this.usedIdx, indirect: this.indirect, signal: this.signal };
  }

  /** Read a record made by saveState() without changing anything; apply it with the returned function. */
  static readState(r: StateReader, maxSize: number): (q: Virtqueue) => void {
    const size = r.int("size", 1, maxSize);
    if ((size & (size - 1)) !== 0) throw new DeviceStateError(`${r.path}.size`, "not a power of two");
    const ready = r.bool("ready");
    const address = r.ints("address", 6, 0, 0xffffffff);
    const lastAvail = r.int("lastAvail", 0, 0xffff);
    const usedIdx = r.int("usedIdx", 0, 0xffff);
    const indirect = r.bool("indirect");
    const signal = r.bool("signal");
    return (q) => {
      q.size = size;
      q.ready = ready;
      q.address.set(address);
      q.lastAvail = lastAvail;
      q.usedIdx = usedIdx;
      q.indirect = indirect;
      q.signal = signal;
    };
  }
}
