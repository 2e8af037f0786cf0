// Scheduling context: a priority and a time quantum that make an EC runnable.

import { ObjectType } from "../capabilities/index.js";
import type { Ec } from "./ec.js";
import { KernelMemoryCost, KernelObject, type QuotaAccount } from "./object.js";

export const MAX_PRIORITY = 127;
/** Longest round-robin quantum, virtual ns (one second): no SC can keep its priority to itself for longer. */
export const MAX_QUANTUM_NS = 1_000_000_000;

export function isPriority(p: number): boolean {
  return Number.isInteger(p) && p >= 0 && p <= MAX_PRIORITY;
}

export function isQuantum(ns: number): boolean {
  return Number.isInteger(ns) && ns >= 1 && ns <= MAX_QUANTUM_NS;
}

export class Sc extends KernelObject {
  readonly type = ObjectType.SC;
  /** Virtual ns left of the current quantum. */
  left: number;
  /** Virtual ns consumed in total: by its EC and by every EC it was donated to through calls. */
  consumed = 0;
  /** Is it in a run queue now? */
  queued = false;

  constructor(
    payer: QuotaAccount,
    readonly ec: Ec,
    readonly priority: number,
    /** Round-robin quantum in virtual ns. */
    readonly quantum: number,
  ) {
    super(payer, KernelMemoryCost.SC);
    this.left = quantum;
  }
}
