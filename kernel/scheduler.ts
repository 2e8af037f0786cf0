// Run queues: fixed priorities, round robin within a priority. Pure bookkeeping; the kernel's
// dispatcher decides what runs and charges the time.

import { MAX_PRIORITY, type Sc } from "./sc.js";

export class RunQueues {
  private readonly queues: Sc[][] = Array.from({ length: MAX_PRIORITY + 1 }, () => []);
  private highest = -1;

  /** Make `sc` runnable: at the tail of its priority, or at the head when it was preempted. */
  enqueue(sc: Sc, atHead = false): void {
    if (sc.queued) return;
    sc.queued = true;
    const q = this.queues[sc.priority];
    if (atHead) q.unshift(sc);
    else q.push(sc);
    if (sc.priority > this.highest) this.highest = sc.priority;
  }

  /** Take the SC that should run next: the head of the highest non-empty priority. */
  dequeue(): Sc | undefined {
    while (this.highest >= 0) {
      const q = this.queues[this.highest];
      const sc = q.shift();
      if (sc) {
        sc.queued = false;
        return sc;
      }
      this.highest--;
    }
    return undefined;
  }

  remove(sc: Sc): void {
    if (!sc.queued) return;
    const q = this.queues[sc.priority];
    q.splice(q.indexOf(sc), 1);
    sc.queued = false;
  }

  /** Is an SC of priority above `priority` waiting? */
  hasAbove(priority: number): boolean {
    for (let p = this.highest; p > priority; p--) if (this.queues[p].length > 0) return true;
    return false;
  }

  get isEmpty(): boolean {
    return !this.hasAbove(-1);
  }
}
