// Virtual time as devices see it: a clock in nanoseconds and one-shot timers on it.
//
// Devices never read wall time. The VMM backs DeviceClock with the kernel's virtual clock; tests
// and in-process runs can use ManualClock, which fires timers as time is advanced explicitly.
// Timer callbacks are not state: a device saves its deadlines as numbers and re-arms them in
// loadState().

/** Identifies an armed timer; 0 is never a valid handle. */
export type TimerHandle = number;

export interface DeviceClock {
  /** Current virtual time in ns (monotonic, starts wherever the VM's clock started). */
  now(): number;
  /**
   * Call `callback` once when virtual time reaches `deadlineNs` (at once on the next dispatch if
   * it already has). During the callback now() returns at least `deadlineNs`.
   */
  setTimer(deadlineNs: number, callback: () => void): TimerHandle;
  /** Disarm a timer; unknown or already fired handles are ignored. */
  cancelTimer(handle: TimerHandle): void;
}

interface Pending {
  deadline: number;
  handle: TimerHandle;
  callback: () => void;
}

/**
 * A clock advanced by its owner. Timers fire in deadline order (ties in arming order), with now()
 * equal to their deadline while they run, so results do not depend on how time was chunked.
 */
export class ManualClock implements DeviceClock {
  private time: number;
  private nextHandle = 1;
  private pending: Pending[] = [];

  constructor(startNs = 0) {
    this.time = startNs;
  }

  now(): number {
    return this.time;
  }

  setTimer(deadlineNs: number, callback: () => void): TimerHandle {
    const t: Pending = { deadline: Math.max(deadlineNs, this.time), handle: this.nextHandle++, callback };
    let i = this.pending.length;
    while (i > 0 && this.pending[i - 1].deadline > t.deadline) i--;
    this.pending.splice(i, 0, t);
    return t.handle;
  }

  cancelTimer(handle: TimerHandle): void {
    const i = this.pending.findIndex((p) => p.handle === handle);
    if (i >= 0) this.pending.splice(i, 1);
  }

  /** Earliest armed deadline, Infinity if none (the VMM runs the vCPU at most until then). */
  nextDeadline(): number {
    return this.pending.length > 0 ? this.pending[0].deadline : Infinity;
  }

  /** Number of armed timers. */
  get armed(): number {
    return this.pending.length;
  }

  /** Move time forward to `ns`, firing every timer due on the way. */
  advanceTo(ns: number): void {
    while (this.pending.length > 0 && this.pending[0].deadline <= ns) {
      const t = this.pending.shift()!;
      this.time = Math.max(this.time, t.deadline);
      t.callback();
    }
    this.time = Math.max(this.time, ns);
  }

  /** Move time forward by `ns`. */
  advance(ns: number): void {
    this.advanceTo(this.time + ns);
  }
}
