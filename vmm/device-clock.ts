// Device time backed by the kernel's virtual clock. Timers are kept here; the VMM's timer thread
// sleeps until the earliest one and fires what is due. Arming an earlier timer wakes that thread.

import type { DeviceClock, TimerHandle } from "./devices/clock.js";

interface Timer {
  deadline: number;
  handle: TimerHandle;
  callback: () => void;
}

export class KernelDeviceClock implements DeviceClock {
  private timers: Timer[] = [];
  private nextHandle = 1;

  constructor(
    /** Virtual time in ns (the VMM's `sys.now`). */
    private readonly time: () => number,
    /** Tell the timer thread that the earliest deadline moved up. */
    private readonly wake: () => void,
  ) {}

  now(): number {
    return this.time();
  }

  setTimer(deadlineNs: number, callback: () => void): TimerHandle {
    const t: Timer = { deadline: deadlineNs, handle: this.nextHandle++, callback };
    let i = this.timers.length;
    while (i > 0 && this.timers[i - 1].deadline > deadlineNs) i--;
    this.timers.splice(i, 0, t);
    if (i === 0) this.wake();
    return t.handle;
  }

  cancelTimer(handle: TimerHandle): void {
    const i = this.timers.findIndex((t) => t.handle === handle);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** Earliest deadline, Infinity if none. */
  nextDeadline(): number {
    return this.timers.length > 0 ? this.timers[0].deadline : Infinity;
  }

  /** Fire every timer due at `now`, in deadline order (callbacks may arm new ones). */
  fireDue(now: number): number {
    let fired = 0;
    while (this.timers.length > 0 && this.timers[0].deadline <= now) {
      const t = this.timers.shift()!;
      t.callback();
      fired++;
    }
    return fired;
  }
}
