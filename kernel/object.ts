// What every kernel object has in common: its type, liveness, and who pays for its memory.

import type { CapObject, Mapping, ObjectType } from "../capabilities/index.js";

/** Kernel memory each object costs its creator, in bytes (the unit of quota). */
export const KernelMemoryCost = {
  PD: 1024,
  EC: 512,
  UTCB: 4096,
  SC: 128,
  PT: 64,
  SM: 64,
  MAPPING: 48,
} as const;

/** Something that pays for kernel memory: a PD's quota. */
export interface QuotaAccount {
  charge(bytes: number): boolean;
  refund(bytes: number): void;
}

export abstract class KernelObject implements CapObject {
  abstract readonly type: ObjectType;
  alive = true;
  /** The mapping made when the object was created; revoking it destroys the object. */
  creator: Mapping | null = null;

  constructor(
    /** The account charged for this object, refunded when it is destroyed. */
    readonly payer: QuotaAccount,
    readonly cost: number,
  ) {}

  /** Called once when the capability that created the object is revoked. */
  destroy(): void {
    if (!this.alive) return;
    this.alive = false;
    this.payer.refund(this.cost);
    this.onDestroy();
  }

  protected onDestroy(): void {}
}
