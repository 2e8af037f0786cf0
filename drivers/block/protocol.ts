// Block driver portal protocol: the words a client (a VMM) and the block driver component exchange.
//
// One portal per client; the portal id names the client. Data never travels in UTCB words: at
// ATTACH the client delegates memory pages to the driver (typed delegate items into the driver's
// window for that client), and both sides then see the same bytes through `sys.memory()` views.
// Requests name a byte offset in that shared region. Pure constants: no imports, so the VMM can
// use them without pulling in the driver.
//
//   request                                                   reply
//   [ATTACH, pages] + delegate items (memory, offsets 0..)    [status, sectorsLo, sectorsHi, flags, windowPages]
//                                                             or, failing: [status, reasonBytes, reason packed 4 per word]
//   [READ | WRITE, sectorLo, sectorHi, count, offset]         [status]
//   [FLUSH]                                                   [status]
//   [INFO]                                                    [status, sectorsLo, sectorsHi, flags, windowPages]
//   [DETACH]                                                  [status]   (flushes, closes the image, unmaps the region)
//   [INACTIVATE]                                              [status]   (flushes and closes the image, keeps the region)
//   [ACTIVATE]                                                [status, sectorsLo, sectorsHi, flags, windowPages]
//                                                             or, failing: [status, reasonBytes, reason packed 4 per word]
//
// ATTACH's optional word 2 holds AttachFlags. With INACTIVE the image is opened only to learn its
// size and closed again (read-only: no write lock taken), and the drive stays inactive until
// ACTIVATE opens it as ATTACH would have. INACTIVATE closes an active drive's image, releasing its
// write lock. A live migration hands a drive over this way (QEMU inactivates and activates its
// images the same way): the destination attaches inactive while the source still writes, the
// source inactivates once its VM stopped, the destination activates before its VM runs (and the
// source activates again if the migration fails). While inactive, READ, WRITE and FLUSH get
// INACTIVE; INFO, DETACH and ACTIVATE work, and INACTIVATE is a no-op.
//
// `count` is in 512-byte sectors; `offset` is a byte offset into the attached region, and the
// buffer [offset, offset + count * 512) must lie inside it. `flags` bit 0: the disk is read-only.

/** Operation in word 0 of a request. */
export const BlockOp = {
  ATTACH: 1,
  READ: 2,
  WRITE: 3,
  FLUSH: 4,
  INFO: 5,
  DETACH: 6,
  INACTIVATE: 7,
  ACTIVATE: 8,
} as const;

/** ATTACH's word 2. */
export const AttachFlags = { INACTIVE: 1 } as const;

/** Word 0 of a reply. 0-2 are numbered like virtio-blk (VIRTIO_BLK_S_OK, _IOERR, _UNSUPP). */
export const BlockReply = {
  OK: 0,
  /** The image failed (host I/O error, corrupt metadata met while reading). */
  IOERR: 1,
  /** Unknown operation. */
  UNSUPP: 2,
  /** ATTACH: the image is opened for writing by another client or process. */
  LOCKED: 3,
  /** The buffer lies outside the attached region, or the delegated region is unusable. */
  BAD_BUFFER: 4,
  /** Sectors beyond the end of the disk. */
  OUT_OF_RANGE: 5,
  /** WRITE to a disk opened read-only. */
  READ_ONLY: 6,
  /** A request other than ATTACH before ATTACH (or after DETACH). */
  NOT_ATTACHED: 7,
  /** ATTACH: no drive is configured for this client. */
  NO_DISK: 8,
  /** ATTACH: the image could not be opened (missing, malformed, unsupported). */
  BAD_IMAGE: 9,
  /** Malformed message: too few words, ATTACH while attached. */
  BAD_REQUEST: 10,
  /**
   * The driver (running isolated, in a worker) died during the request and was restarted, with
   * every client attached again: the request may or may not have happened. Send it again.
   */
  RESTARTED: 11,
  /** READ, WRITE or FLUSH of an inactive drive (see INACTIVATE). */
  INACTIVE: 12,
} as const;
export type BlockReply = (typeof BlockReply)[keyof typeof BlockReply];

/** Bits of the `flags` word of ATTACH and INFO replies. */
export const BlockFlags = { READ_ONLY: 1 } as const;

export const BLOCK_SECTOR_SIZE = 512;

/** A reply status as a name, for messages. */
export function blockReplyName(status: number): string {
  for (const [name, value] of Object.entries(BlockReply)) if (value === status) return name;
  return `UNKNOWN(${status})`;
}
