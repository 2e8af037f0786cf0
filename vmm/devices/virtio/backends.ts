// Block backends for virtio-blk that live in the VMM itself: a RAM disk, and an in-process block
// service (drivers/block BlockService, matched by shape so the VMM does not import the driver).

import { SECTOR_BYTES, VirtioBlkStatus, type BlockBackend } from "./blk.js";

/** A disk held in `bytes` (a whole number of sectors). */
export function memoryBlockBackend(bytes: Uint8Array, options: { readOnly?: boolean } = {}): BlockBackend {
  const sectors = Math.floor(bytes.length / SECTOR_BYTES);
  const inside = (sector: number, buf: Uint8Array): boolean =>
    Number.isSafeInteger(sector) && sector >= 0 && buf.length % SECTOR_BYTES === 0 && sector + buf.length / SECTOR_BYTES <= sectors;
  return {
    sectors,
    readOnly: options.readOnly ?? false,
    read(sector, buf) {
      if (!inside(sector, buf)) return VirtioBlkStatus.IOERR;
      buf.set(bytes.subarray(sector * SECTOR_BYTES, sector * SECTOR_BYTES + buf.length));
      return VirtioBlkStatus.OK;
    },
    write(sector, buf) {
      if (this.readOnly || !inside(sector, buf)) return VirtioBlkStatus.IOERR;
      bytes.set(buf, sector * SECTOR_BYTES);
      return VirtioBlkStatus.OK;
    },
    flush: () => VirtioBlkStatus.OK,
  };
}

/** The shape of drivers/block's BlockService that a backend needs. */
export interface SectorService {
  readonly sectors: number;
  readonly readOnly: boolean;
  handle(req: { op: "read" | "write" | "flush"; sector: number; count: number; buffer?: Uint8Array }): { status: number };
}

/** Serve the disk from a block service in this process (no IPC): each request is one handle() call. */
export function serviceBlockBackend(service: SectorService): BlockBackend {
  const status = (s: number): VirtioBlkStatus => (s === 0 ? VirtioBlkStatus.OK : s === 2 ? VirtioBlkStatus.UNSUPP : VirtioBlkStatus.IOERR);
  return {
    get sectors() {
      return service.sectors;
    },
    get readOnly() {
      return service.readOnly;
    },
    read: (sector, buffer) => status(service.handle({ op: "read", sector, count: buffer.length / SECTOR_BYTES, buffer }).status),
    write: (sector, buffer) => status(service.handle({ op: "write", sector, count: buffer.length / SECTOR_BYTES, buffer }).status),
    flush: () => status(service.handle({ op: "flush", sector: 0, count: 0 }).status),
  };
}
