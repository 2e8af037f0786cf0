// Virtio block device (virtio 1.0 section 5.2): configuration space and request handling over a
// BlockBackend. A request is a 16-byte header (le32 type, le32 reserved, le64 sector) in
// device-readable buffers, data, and a status byte as the last device-writable byte; any framing
// of these across descriptors is accepted. Data moves between guest RAM views and the backend
// without copies unless a buffer is not a whole number of sectors (then it goes through a bounce
// buffer of at most MAX_BOUNCE_BYTES).

import { DeviceStateError, StateReader } from "../state.js";
import { type FeatureWords, VirtioDeviceId, featureWords } from "./virtio.js";
import type { VirtioDeviceModel } from "./virtio.js";
import { VirtqueueError, type DescriptorChain, type Virtqueue } from "./virtqueue.js";

export const SECTOR_BYTES = 512;

/** Request status byte (VIRTIO_BLK_S_*). */
export const VirtioBlkStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
export type VirtioBlkStatus = (typeof VirtioBlkStatus)[keyof typeof VirtioBlkStatus];

/** Request types (VIRTIO_BLK_T_*). */
export const VirtioBlkType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;

/** Device feature bits (VIRTIO_BLK_F_*). */
export const VirtioBlkFeature = { SIZE_MAX: 1, SEG_MAX: 2, GEOMETRY: 4, RO: 5, BLK_SIZE: 6, FLUSH: 9 } as const;

/** Bytes of the GET_ID answer (VIRTIO_BLK_ID_BYTES). */
export const VIRTIO_BLK_ID_BYTES = 20;
/** Largest request that may go through the bounce buffer (unaligned segments). */
export const MAX_BOUNCE_BYTES = 4 << 20;
const CONFIG_BYTES = 0x3c;

/** Where a virtio-blk device's sectors live: an image through the block driver, a service, RAM. */
export interface BlockBackend {
  /** Disk size in 512-byte sectors. */
  readonly sectors: number;
  readonly readOnly: boolean;
  /** Fill `buf` (a multiple of 512 bytes) from `sector` on. */
  read(sector: number, buf: Uint8Array): VirtioBlkStatus;
  /** Write `buf` (a multiple of 512 bytes) at `sector`. */
  write(sector: number, buf: Uint8Array): VirtioBlkStatus;
  /** Make written data durable. */
  flush(): VirtioBlkStatus;
  /** Optional: fill consecutive `segments` (each a multiple of 512 bytes) from `sector` on, in as few requests as it can. */
  readAll?(sector: number, segments: readonly Uint8Array[]): VirtioBlkStatus;
  /** Optional: write consecutive `segments` at `sector`, in as few requests as it can. */
  writeAll?(sector: number, segments: readonly Uint8Array[]): VirtioBlkStatus;
}

export interface VirtioBlkOptions {
  name?: string;
  /** Maximum queue size (default 256). */
  queueSize?: number;
  /** GET_ID answer, up to 20 bytes of ASCII (default "hv-virtio-blk"). */
  serial?: string;
}

export class VirtioBlk implements VirtioDeviceModel {
  readonly name: string;
  readonly deviceId = VirtioDeviceId.BLOCK;
  /** Mass storage, SCSI subclass: what QEMU's virtio-blk shows. */
  readonly pciClass = 0x010000;
  readonly features: FeatureWords;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(CONFIG_BYTES);
  private readonly serial: Uint8Array;
  private readonly header = new Uint8Array(16);
  private readonly headerView = new DataView(this.header.buffer);

  constructor(
    readonly backend: BlockBackend,
    options: VirtioBlkOptions = {},
  ) {
    this.name = options.name ?? "virtio-blk";
    const queueSize = options.queueSize ?? 256;
    this.queueSizes = [queueSize];
    const bits: number[] = [VirtioBlkFeature.SEG_MAX, VirtioBlkFeature.BLK_SIZE, VirtioBlkFeature.FLUSH];
    if (backend.readOnly) bits.push(VirtioBlkFeature.RO);
    this.features = featureWords(...bits);
    this.serial = new TextEncoder().encode(options.serial ?? "hv-virtio-blk").subarray(0, VIRTIO_BLK_ID_BYTES);
    const c = new DataView(this.config.buffer);
    c.setUint32(0x00, backend.sectors % 2 ** 32, true); // capacity, le64
    c.setUint32(0x04, Math.floor(backend.sectors / 2 ** 32), true);
    c.setUint32(0x0c, Math.max(1, queueSize - 2), true); // seg_max: the header and status take two descriptors
    c.setUint32(0x14, SECTOR_BYTES, true); // blk_size
  }

  configWrite(): void {
    // capacity, seg_max and blk_size are read-only; writeback needs CONFIG_WCE, not offered.
  }

  negotiated(): void {}

  reset(): void {}

  process(queue: Virtqueue): void {
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) queue.push(chain.head, this.request(queue, chain));
  }

  /** Serve one request; returns the bytes written into its device-writable buffers. */
  private request(queue: Virtqueue, chain: DescriptorChain): number {
    if (chain.readableBytes < 16) throw new VirtqueueError(queue.index, "virtio-blk request without a 16-byte header");
    const status = lastByte(chain.writable);
    if (status === null) throw new VirtqueueError(queue.index, "virtio-blk request without a status byte");
    gather(chain.readable, this.header);
    const type = this.headerView.getUint32(0, true);
    const sector = this.headerView.getUint32(8, true) + this.headerView.getUint32(12, true) * 2 ** 32;
    let written = 1;
    let result: VirtioBlkStatus;
    switch (type) {
      case VirtioBlkType.IN:
        result = this.transfer(false, sector, slices(chain.writable, 0, 1));
        written = chain.writableBytes;
        break;
      case VirtioBlkType.OUT:
        result = this.backend.readOnly ? VirtioBlkStatus.IOERR : this.transfer(true, sector, slices(chain.readable, 16, 0));
        break;
      case VirtioBlkType.FLUSH:
        result = this.backend.flush();
        break;
      case VirtioBlkType.GET_ID: {
        let at = 0;
        for (const seg of slices(chain.writable, 0, 1)) {
          const n = Math.min(seg.length, VIRTIO_BLK_ID_BYTES - at);
          if (n <= 0) break;
          seg.fill(0, 0, n);
          seg.set(this.serial.subarray(at, Math.min(this.serial.length, at + n)));
          at += n;
        }
        written = at + 1;
        result = VirtioBlkStatus.OK;
        break;
      }
      default:
        result = VirtioBlkStatus.UNSUPP;
    }
    status.view[status.at] = result;
    return written;
  }

  /** Move `segments` (views of guest RAM) to or from the disk at `sector`. */
  private transfer(write: boolean, sector: number, segments: Uint8Array[]): VirtioBlkStatus {
    const backend = this.backend;
    let total = 0;
    let aligned = true;
    for (const s of segments) {
      total += s.length;
      if (s.length % SECTOR_BYTES !== 0) aligned = false;
    }
    if (total % SECTOR_BYTES !== 0 || sector + total / SECTOR_BYTES > backend.sectors) return VirtioBlkStatus.IOERR;
    if (aligned) {
      const all = write ? backend.writeAll : backend.readAll;
      if (all) return all.call(backend, sector, segments);
      let at = sector;
      for (const s of segments) {
        if (s.length === 0) continue;
        const st = write ? backend.write(at, s) : backend.read(at, s);
        if (st !== VirtioBlkStatus.OK) return st;
        at += s.length / SECTOR_BYTES;
      }
      return VirtioBlkStatus.OK;
    }
    if (total > MAX_BOUNCE_BYTES) return VirtioBlkStatus.IOERR;
    const bounce = new Uint8Array(total);
    if (write) {
      gather(segments, bounce);
      return backend.write(sector, bounce);
    }
    const st = backend.read(sector, bounce);
    if (st === VirtioBlkStatus.OK) scatter(bounce, segments);
    return st;
  }

  saveState(): object {
    return { sectors: this.backend.sectors };
  }

  readState(state: unknown, path: string): () => void {
    const sectors = new StateReader(state, path).int("sectors", 0, Number.MAX_SAFE_INTEGER);
    if (sectors !== this.backend.sectors) throw new DeviceStateError(`${path}.sectors`, `saved disk has ${sectors} sectors, this one ${this.backend.sectors}`);
    return () => {};
  }
}

/** Copy the first `into.length` bytes of the concatenated `segments` into `into`. */
export function gather(segments: readonly Uint8Array[], into: Uint8Array): void {
  let at = 0;
  for (const s of segments) {
    if (at >= into.length) return;
    const n = Math.min(s.length, into.length - at);
    into.set(s.subarray(0, n), at);
    at += n;
  }
}

/** Copy `from` into the `segments`, one after the other. */
export function scatter(from: Uint8Array, segments: readonly Uint8Array[]): void {
  let at = 0;
  for (const s of segments) {
    s.set(from.subarray(at, at + s.length));
    at += s.length;
  }
}

/** Views of the concatenated `segments` without `front` bytes at the start and `back` at the end. */
function slices(segments: readonly Uint8Array[], front: number, back: number): Uint8Array[] {
  let total = 0;
  for (const s of segments) total += s.length;
  const end = total - back;
  const out: Uint8Array[] = [];
  let at = 0;
  for (const s of segments) {
    const from = Math.max(front, at);
    const to = Math.min(end, at + s.length);
    if (to > from) out.push(s.subarray(from - at, to - at));
    at += s.length;
  }
  return out;
}

/** The last byte of the concatenated segments, or null when they are empty. */
function lastByte(segments: readonly Uint8Array[]): { view: Uint8Array; at: number } | null {
  for (let i = segments.length - 1; i >= 0; i--) if (segments[i].length > 0) return { view: segments[i], at: segments[i].length - 1 };
  return null;
}
