// Memory manager protocol: one portal per client, and the portal id names the client. Word 0 of a
// request is the operation, word 0 of a reply a MemoryStatus. Frames arrive as delegate items
// into the memory window the client opened (its receive window), at the offsets the request names,
// so the memory manager can take them back later by revoking them.
//
//   request                           reply
//   [ALLOC, first, pages]             [status, pages]             contiguous frames (one view) at [first, first+pages)
//   [BACK, first, count, write]       [status, pages backed]      demand paging: back window pages [first, first+count)
//   [FREE, first, count]              [status, pages freed]       the client gives window pages back (a balloon)
//   [SHARE, first, count]             [status, pages shared]      private pages filled from a template: share them now
//   [HELD]                            [status, private, zero, limit, shared]
//   [HOST]                            [status, total, free, clients, sharedFrames, scanned, merged, zeroed, broken]
//
// BACK gives each page in the range that has no frame yet a private, zero-filled frame when
// `write` is 1, or the shared zero frame read-only when it is 0. A page backed by the zero frame
// becomes private with `write` 1, but only after the client has unmapped the zero frame there
// itself (the memory manager cannot take one client's view of a shared frame without taking all).
// Private pages are skipped. Replies LOW when it granted the pages from the reserve that lets a
// VM finish the instruction it is in: the client must stop asking (pause its VM) until memory is
// freed; NO_MEMORY when even that is gone.
//
// SHARE is for pages a client filled from a source other clients of its trust group may fill the
// same pages from (a template's snapshot) and did not write since: each private page in the range
// is merged at once with an equal shared frame, or becomes one (the scanner would take two looks
// and a second client first). Its private frame is revoked and the shared frame delegated
// read-only at the same offset; a write to it later is copy-on-write (BACK with write). Other pages
// are skipped.
//
// FREE takes private frames back by revoking them (from the client and from its VM), zero-fills
// them and returns them to the pool; a page on the zero frame the client unmaps itself first (as
// for BACK). Either way the page is unbacked afterwards: its next touch is a fresh zero page.

/** Operation in word 0 of a request. */
export const MemoryOp = {
  ALLOC: 1,
  HELD: 2,
  BACK: 3,
  HOST: 4,
  FREE: 5,
  SHARE: 6,
} as const;

/** Word 0 of a reply. */
export const MemoryStatus = {
  OK: 0,
  /** Malformed request: unknown operation, too few words, a range outside the client's window. */
  BAD_REQUEST: 1,
  /** The client would hold more pages than its limit (its RAM, ROMs and state region). */
  OVER_LIMIT: 2,
  /** Granted, from the reserve: host memory is at its limit, stop the VM before it asks again. */
  LOW: 3,
  /** Host memory is at its limit and the client's reserve is used up: nothing was granted. */
  NO_MEMORY: 4,
} as const;
export type MemoryStatus = (typeof MemoryStatus)[keyof typeof MemoryStatus];

/** The name of a reply status, for messages. */
export const memoryStatusName = (s: number): string => Object.entries(MemoryStatus).find(([, v]) => v === s)?.[0] ?? `status ${s}`;

/** Pages a client may take from the reserve once host memory is at its limit (one instruction's worth, and a DMA burst). */
export const RESERVE_PAGES = 64;
/** Most pages one BACK may cover (bounds one reply's work). */
export const MAX_BACK_PAGES = 512;
