// Semaphore: a counter with a FIFO of waiting ECs. Interrupts are semaphores the kernel ups.

import { ObjectType } from "../capabilities/index.js";
import type { Ec } from "./ec.js";
import { KernelMemoryCost, KernelObject, type QuotaAccount } from "./object.js";

export class Sm extends KernelObject {
  readonly type = ObjectType.SM;
  readonly waiters: Ec[] = [];
  /** Interrupt semaphores: the GSI, and whether delivery was enabled by assign_gsi. */
  gsi = -1;
  assigned = false;

  constructor(
    payer: QuotaAccount,
    public counter: number,
  ) {
    super(payer, KernelMemoryCost.SM);
  }

  cancel(ec: Ec): void {
    const i = this.waiters.indexOf(ec);
    if (i >= 0) this.waiters.splice(i, 1);
  }
}
