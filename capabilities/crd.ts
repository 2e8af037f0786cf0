// Capability range descriptors: which 2^order naturally aligned slots of which space, with what rights.

export enum SpaceKind {
  OBJECT = 0,
  MEMORY = 1,
  IO = 2,
}

/** Size of each space in slots (selectors, 4 KiB pages, x86 ports), as a power of two. */
export const SPACE_ORDER: Record<SpaceKind, number> = {
  [SpaceKind.OBJECT]: 18,
  [SpaceKind.MEMORY]: 20,
  [SpaceKind.IO]: 16,
};

export interface Crd {
  readonly kind: SpaceKind;
  readonly base: number;
  readonly order: number;
  /** For delegation: the rights mask applied; for revoke: the rights to take away (all = remove). */
  readonly rights: number;
}

export function crd(kind: SpaceKind, base: number, order = 0, rights = 0xff): Crd {
  return { kind, base, order, rights };
}

/** True when the descriptor names a valid, naturally aligned range inside its space. */
export function isValidCrd(c: Crd): boolean {
  if (c.kind !== SpaceKind.OBJECT && c.kind !== SpaceKind.MEMORY && c.kind !== SpaceKind.IO) return false;
  const max = SPACE_ORDER[c.kind];
  if (!Number.isInteger(c.order) || c.order < 0 || c.order > max) return false;
  if (!Number.isInteger(c.base) || c.base < 0) return false;
  const size = 2 ** c.order;
  if (c.base % size !== 0 || c.base + size > 2 ** max) return false;
  return Number.isInteger(c.rights) && c.rights >= 0 && c.rights <= 0xff;
}

/**
 * Split `count` slots into runs that can each be one descriptor: [offset, order] pairs, in order,
 * such that `base + offset` is aligned to 2^order for every base in `bases` (e.g. the source and
 * the destination of a delegation), largest runs first.
 */
export function alignedRuns(count: number, bases: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let done = 0;
  while (done < count) {
    let order = 31 - Math.clz32(count - done);
    while (order > 0 && bases.some((b) => (b + done) % 2 ** order !== 0)) order--;
    out.push([done, order]);
    done += 2 ** order;
  }
  return out;
}
