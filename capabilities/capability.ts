// A capability: an immutable pair of an object reference and the rights its holder has on it.

/** Kinds of kernel objects an object-space capability can name. */
export enum ObjectType {
  PD = 1,
  EC = 2,
  SC = 3,
  PT = 4,
  SM = 5,
}

/** What a capability can refer to. Memory and I/O "objects" are the backing of pages and ports. */
export interface CapObject {
  /** The object kind, or 0 for memory and I/O backings. */
  readonly type: number;
}

/** Immutable: a change of rights makes a new capability. */
export class Capability<O extends CapObject = CapObject> {
  constructor(
    readonly object: O,
    readonly rights: number,
  ) {}
}

export function capability<O extends CapObject>(object: O, rights: number): Capability<O> {
  return new Capability(object, rights);
}
