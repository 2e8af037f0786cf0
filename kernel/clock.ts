// Virtual time and the queue of timeouts. Time is a number of virtual nanoseconds that only moves
// when something consumes it (guest instructions, hypercalls, body steps) or when the system is
// idle and skips ahead to the next timeout. Wall time enters only through a HostTimeSource.

import { EcState, type Ec } from "./ec.js";

/** An explicit source of wall-clock time, for runs that should pace virtual time to the host. */
export interface HostTimeSource {
  /** Monotonic host time in ns. */
  now(): number;
}

interface Timeout {
  deadline: number;
  seq: number;
  ec: Ec;
}

const NONE_DUE: readonly Ec[] = Object.freeze([]);

export class VirtualClock {
  /** Current virtual time in ns. */
  now: number;
  private heap: Timeout[] = [];
  private seq = 0;

  constructor(start = 0) {
    this.now = start;
  }

  /** Arm `ec`'s timeout at its `deadline` (Infinity: none). */
  arm(ec: Ec): void {
    if (ec.deadline === Infinity) return;
    this.push({ deadline: ec.deadline, seq: this.seq++, ec });
  }

  /** Earliest pending deadline (Infinity if none). Drops stale entries on the way. */
  next(): number {
    while (this.heap.length > 0) {
      const t = this.heap[0];
      if (t.ec.state === EcState.BLOCKED && t.ec.deadline === t.deadline) return t.deadline;
      this.pop();
    }
    return Infinity;
  }

  /** Take the ECs whose timeouts are due at the current time, in deadline then arming order. */
  due(): readonly Ec[] {
    // Asked before every dispatch: mostly nothing is due, and then nothing is allocated.
    if (this.next() > this.now) return NONE_DUE;
    const out: Ec[] = [];
    while (this.next() <= this.now) out.push(this.pop()!.ec);
    return out;
  }

  private push(t: Timeout): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  private pop(): Timeout | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l], h[m])) m = l;
        if (r < h.length && before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Timeout, b: Timeout): boolean {
  return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
}
