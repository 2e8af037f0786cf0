// Operations on the mapping database: create a root capability, delegate ranges, revoke ranges.
// Each operation is planned first (every check, no change) and then performed (no checks), so a
// refused operation changes nothing.

import { capability, type Capability } from "./capability.js";
import { type Crd, SPACE_ORDER, isValidCrd } from "./crd.js";
import { Mapping, descendantsLeavesFirst, insertChild, unlinkLeaf } from "./mapping.js";
import type { Space } from "./space.js";

export type MdbError = "BAD_RANGE" | "KIND_MISMATCH" | "OCCUPIED";

/** Told about each mapping as it leaves its space (quota refund, object destruction, TLB flush). */
export type RemovedHook = (m: Mapping) => void;

/** Insert a capability with no parent: a newly created object, or boot-time resources. */
export function insertRoot(space: Space, index: number, cap: Capability, offset = 0): Mapping {
  const m = new Mapping(space, index, cap, offset);
  space.set(m);
  return m;
}

export interface DelegationPlan {
  readonly from: readonly Mapping[];
  readonly to: Space;
  readonly toIndex: readonly number[];
  readonly mask: number;
}

/**
 * Check a delegation of the range `src` (in space `from`) to the same-sized range at `dstBase` in
 * space `to`, with rights ANDed by `src.rights`. Empty source slots are skipped; a destination slot
 * that is occupied refuses the whole delegation.
 */
export function planDelegate(from: Space, src: Crd, to: Space, dstBase: number): DelegationPlan | MdbError {
  if (from.kind !== src.kind || to.kind !== src.kind) return "KIND_MISMATCH";
  if (!isValidCrd(src)) return "BAD_RANGE";
  const count = 2 ** src.order;
  if (!Number.isInteger(dstBase) || dstBase < 0 || dstBase % count !== 0 || dstBase + count > 2 ** SPACE_ORDER[src.kind])
    return "BAD_RANGE";
  const sources = from.mappingsIn(src.base, count);
  const toIndex: number[] = [];
  for (const m of sources) {
    const index = dstBase + (m.index - src.base);
    if (to.get(index) !== undefined) return "OCCUPIED";
    toIndex.push(index);
  }
  return { from: sources, to, toIndex, mask: src.rights };
}

/** Carry out a checked delegation. Returns the new mappings. */
export function performDelegate(plan: DelegationPlan): Mapping[] {
  const made: Mapping[] = [];
  for (let i = 0; i < plan.from.length; i++) {
    const parent = plan.from[i];
    const child = new Mapping(plan.to, plan.toIndex[i], capability(parent.cap.object, parent.cap.rights & plan.mask), parent.offset);
    insertChild(parent, child);
    plan.to.set(child);
    made.push(child);
  }
  return made;
}

/** The mappings a revoke of `range` in `space` starts from; checks the range. */
export function planRevoke(space: Space, range: Crd): Mapping[] | MdbError {
  if (space.kind !== range.kind) return "KIND_MISMATCH";
  if (!isValidCrd(range)) return "BAD_RANGE";
  return space.mappingsIn(range.base, 2 ** range.order);
}

/** How many mappings a revoke of these roots would remove or change (for tests and accounting). */
export function revokeSize(roots: readonly Mapping[], keepSelf: boolean): number {
  let n = 0;
  for (const r of roots) n += descendantsLeavesFirst(r).length + (keepSelf ? 0 : 1);
  return n;
}

/**
 * Take the rights in `rights` away from everything derived from `roots` (and from the roots
 * unless `keepSelf`). A mapping left with no rights is removed. Children go before their parents,
 * so no mapping is ever left without its parent. Cost: proportional to the subtrees touched.
 */
export function performRevoke(roots: readonly Mapping[], rights: number, keepSelf: boolean, removed: RemovedHook): number {
  let touched = 0;
  for (const root of roots) {
    if (root.space.get(root.index) !== root) continue; // already gone with an earlier root
    const victims = descendantsLeavesFirst(root);
    if (!keepSelf) victims.push(root);
    for (const m of victims) {
      if (m.space.get(m.index) !== m) continue; // went with an object destroyed on the way
      touched++;
      const left = m.cap.rights & ~rights;
      if (left === 0 || (rights & 0xff) === 0xff) {
        removeLeaf(m, removed);
      } else if (left !== m.cap.rights) {
        m.cap = capability(m.cap.object, left);
        m.space.changed(m);
      }
    }
  }
  return touched;
}

function removeLeaf(m: Mapping, removed: RemovedHook): void {
  // Children that kept some rights cannot stay under a removed parent: remove them too.
  while (m.firstChild) removeSubtree(m.firstChild, removed);
  unlinkLeaf(m);
  m.space.clear(m);
  removed(m);
}

function removeSubtree(top: Mapping, removed: RemovedHook): void {
  for (const d of descendantsLeavesFirst(top)) {
    unlinkLeaf(d);
    d.space.clear(d);
    removed(d);
  }
  unlinkLeaf(top);
  top.space.clear(top);
  removed(top);
}
