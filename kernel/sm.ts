// Semaphore: a counter with a FIFO of waiting ECs. Interrupts are semaphores the kernel ups.

import { ObjectType } from "../capabilities/index.js";
import type { Ec } from "./ec.js";
import type { Kernel } from "./kernel.js";
import { KernelMemoryCost, KernelObject, type QuotaAccount } from "./object.js";
import { DEFERRED } from "./portal.js";
import { Status } from "./status.js";

/** The counter is a 32-bit word. */
export const MAX_COUNT = 0xffffffff;

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

  /** Wake the first waiter, or count; OUT_OF_QUOTA when the counter is full. */
  up(k: Kernel): Status {
    const waiter = this.waiters.shift();
    if (waiter) k.wake(waiter, Status.SUCCESS);
    else if (this.counter >= MAX_COUNT) return Status.OUT_OF_QUOTA;
    else this.counter++;
    return Status.SUCCESS;
  }

  /**
   * Take one for `ec`: SUCCESS when the counter was positive; else TIMEOUT when it may not block
   * (`mayBlock` false, or `timeoutNs` 0), else DEFERRED with `ec` blocked until up or timeout.
   */
  down(k: Kernel, ec: Ec, timeoutNs: number, mayBlock: boolean): Status {
    if (this.counter > 0) {
      this.counter--;
      return Status.SUCCESS;
    }
    if (timeoutNs === 0 || !mayBlock) return Status.TIMEOUT;
    this.waiters.push(ec);
    k.block(ec, this, timeoutNs);
    return DEFERRED;
  }

  cancel(ec: Ec): void {
    const i = this.waiters.indexOf(ec);
    if (i >= 0) this.waiters.splice(i, 1);
  }
}
