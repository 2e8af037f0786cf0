// Memory manager protocol: one portal per client, and the portal id names the client. Word 0 of a
// request is the operation.

/** Operation in word 0 of a request. */
export const MemoryOp = {
  /** [ALLOC, pages] → [status, pages granted]; frames arrive as delegate items in the memory window. */
  ALLOC: 1,
  /** [HELD] → [pages the client holds]. */
  HELD: 2,
} as const;
