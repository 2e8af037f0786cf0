// Memory manager: owns the guest RAM frames and hands them to VMMs as capabilities. Every client
// calls its own portal (the portal id names it); the frames arrive as delegations into the memory
// window the client opened, so revoking them later takes them from the VM as well.

import { MemRights, SpaceKind, alignedRuns, crd, Status, type LocalEntry, type Utcb } from "../kernel/index.js";
import { MemoryOp } from "./memory-protocol.js";

export interface MemoryManagerState {
  /** Frames the memory manager holds, as page numbers of its own memory space [0, total). */
  readonly total: number;
  /** Next free page (frames are handed out in order; freeing comes with ballooning later). */
  next: number;
  /** Pages held by each client id. */
  readonly held: Map<number, number>;
  /** Pages each client's window already received (the next delegation goes after them). */
  readonly windowUsed: Map<number, number>;
}

/** The memory manager's portal handler over `total` frames delegated to it at pages [0, total). */
export function memoryManager(total: number, state?: { current?: MemoryManagerState }): LocalEntry {
  return () => {
    const s: MemoryManagerState = { total, next: 0, held: new Map(), windowUsed: new Map() };
    if (state) state.current = s;
    return (utcb: Utcb, client: number) => {
      const op = utcb.words[0];
      if (op === MemoryOp.HELD) {
        utcb.set(Status.SUCCESS, s.held.get(client) ?? 0);
        return;
      }
      if (op !== MemoryOp.ALLOC || utcb.untyped < 2) {
        utcb.set(Status.BAD_PARAMETER, 0);
        return;
      }
      const pages = utcb.words[1];
      if (pages === 0 || pages > s.total - s.next) {
        utcb.set(Status.OUT_OF_QUOTA, 0);
        return;
      }
      // Hand out aligned power-of-two blocks, largest first: each is one delegate item.
      const offset = s.windowUsed.get(client) ?? 0;
      for (const [run, order] of alignedRuns(pages, [s.next, offset]))
        utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, s.next + run, order, MemRights.ALL), offset: offset + run });
      s.next += pages;
      s.windowUsed.set(client, offset + pages);
      s.held.set(client, (s.held.get(client) ?? 0) + pages);
      utcb.set(Status.SUCCESS, pages);
    };
  };
}
