// Block service: serves sector requests (read, write, flush) from a VMM against one opened image.
import { ImageError } from "./errors.js";
import type { BlockImage, FormatName } from "./image.js";
import { openImage } from "./open.js";

export const SECTOR_SIZE = 512;

/** Request status, numbered like virtio-blk (OK 0, IOERR 1, UNSUPP 2). */
export const BlockStatus = {
  OK: 0,
  IO_ERROR: 1,
  UNSUPPORTED: 2,
} as const;
export type BlockStatus = (typeof BlockStatus)[keyof typeof BlockStatus];

/**
 * One request. `buffer` is a view of the caller's memory (e.g. guest RAM): reads fill it in place,
 * writes take their bytes from it; nothing is copied on the way.
 */
export interface BlockRequest {
  op: "read" | "write" | "flush";
  /** First sector (512 bytes each). */
  sector: number;
  /** Number of sectors. */
  count: number;
  buffer?: Uint8Array;
}

export interface BlockResponse {
  status: BlockStatus;
  /** Why a request failed (absent on success). */
  reason?: string;
}

export interface BlockServiceOptions {
  format?: FormatName;
  readOnly?: boolean;
  /**
   * Write the image's metadata after every write (no fsync): an acknowledged write then survives
   * the death of the thread that served it. For a driver in a worker (`--isolate`).
   */
  persistWrites?: boolean;
}

/**
 * Serves one image. Opening it for writing takes the image's write lock (by real path, with a lock
 * file), so a second writer, in this process or another, is refused with LOCKED.
 * handle() validates a request completely before touching the image and never throws.
 */
export class BlockService {
  private closed = false;

  private constructor(
    private readonly image: BlockImage,
    private readonly persistWrites: boolean,
  ) {}

  static open(path: string, options: BlockServiceOptions = {}): BlockService {
    return new BlockService(openImage(path, { format: options.format, writable: options.readOnly !== true }), options.persistWrites === true);
  }

  get sectors(): number {
    return Math.floor(this.image.virtualSize / SECTOR_SIZE);
  }

  get readOnly(): boolean {
    return !this.image.writable;
  }

  /** The opened image (its whole chain), for the host's block migration: it reads and writes it between the driver's requests. */
  get opened(): BlockImage {
    return this.image;
  }

  handle(req: BlockRequest): BlockResponse {
    const problem = this.validate(req);
    if (problem) return problem;
    try {
      this.perform(req);
      return { status: BlockStatus.OK };
    } catch (err) {
      if (err instanceof ImageError) return { status: BlockStatus.IO_ERROR, reason: `${err.code}: ${err.message}` };
      return { status: BlockStatus.IO_ERROR, reason: String(err) };
    }
  }

  private validate(req: BlockRequest): BlockResponse | null {
    const bad = (reason: string, status: BlockStatus = BlockStatus.IO_ERROR): BlockResponse => ({ status, reason });
    if (this.closed) return bad("service is closed");
    if (req.op !== "read" && req.op !== "write" && req.op !== "flush") return bad(`unknown operation ${String(req.op)}`, BlockStatus.UNSUPPORTED);
    if (req.op === "flush") return null;
    if (!Number.isSafeInteger(req.sector) || !Number.isSafeInteger(req.count) || req.sector < 0 || req.count < 0) {
      return bad("sector and count must be non-negative integers");
    }
    if (req.sector + req.count > this.sectors) return bad(`sectors ${req.sector}+${req.count} beyond the disk (${this.sectors} sectors)`);
    if (!(req.buffer instanceof Uint8Array) || req.buffer.byteLength < req.count * SECTOR_SIZE) {
      return bad(`buffer must hold ${req.count * SECTOR_SIZE} bytes`);
    }
    if (req.op === "write" && this.readOnly) return bad("disk is read-only", BlockStatus.UNSUPPORTED);
    return null;
  }

  private perform(req: BlockRequest): void {
    if (req.op === "flush") {
      this.image.flush();
      return;
    }
    const view = req.buffer!.subarray(0, req.count * SECTOR_SIZE);
    if (req.op === "read") this.image.read(req.sector * SECTOR_SIZE, view);
    else {
      this.image.write(req.sector * SECTOR_SIZE, view);
      if (this.persistWrites) this.image.persist();
    }
  }

  /** Write metadata, release the write lock and close the image chain. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.image.close();
  }
}
