// Testbed: start one component alone on a fresh kernel, against fake peers, and watch it.
//
// The testbed plays the root task. Fakes are portals served by plain functions in a "fakes" PD;
// `start` creates the component's PD, delegates to it exactly the capabilities the test grants
// (fakes, semaphores, memory), and runs its body on a global EC. The component sees only its own
// syscall handle, as it would under the real root task.

import {
  Kernel,
  Status,
  SpaceKind,
  crd,
  type Crd,
  type GlobalEntry,
  type KernelOptions,
  type Sys,
  type Utcb,
} from "../kernel/index.js";
import type { Ec } from "../kernel/ec.js";

/** Selectors the testbed uses in the root PD. */
const FAKES_PD = 16;
const FIRST_FREE = 1024;

export interface Grant {
  /** A selector the testbed returned (fake portal, semaphore), or a memory/I/O range of the root. */
  readonly from: number | Crd;
  /** Where it lands in the component's space. */
  readonly to: number;
  /** Rights mask (default: all). */
  readonly rights?: number;
}

export interface StartOptions {
  quota?: number;
  priority?: number;
  quantumNs?: number;
  grants?: readonly Grant[];
  vm?: boolean;
}

export class TestbedError extends Error {}

export class Testbed {
  readonly kernel: Kernel;
  private next = FIRST_FREE;
  private readonly rootSys: Sys;
  private readonly rootEc: Ec;

  constructor(options: KernelOptions = {}) {
    this.kernel = new Kernel({ memoryMiB: 16, ...options });
    this.kernel.boot(function* () {}, 127);
    this.rootEc = this.kernel.rootEc!;
    this.rootSys = this.kernel.sysFor(this.kernel.root);
    this.asRoot((sys) => this.must(sys.createPd(FAKES_PD, 16 << 20, { name: "fakes" }), "create the fakes PD"));
  }

  /** A fake peer: a portal whose calls run `handler` (reply = the UTCB when it returns). Returns its root selector. */
  fake(name: string, handler: (utcb: Utcb, portalId: number) => void): number {
    const ec = this.next++;
    const pt = this.next++;
    this.asRoot((sys) => {
      this.must(sys.createLocalEc(ec, FAKES_PD, () => handler), `create fake ${name}`);
      this.must(sys.createPt(pt, ec), `create the portal of fake ${name}`);
    });
    return pt;
  }

  /** A semaphore held by the testbed (e.g. to hand a component an "interrupt"). */
  semaphore(initial = 0): number {
    const sel = this.next++;
    this.asRoot((sys) => this.must(sys.createSm(sel, initial), "create a semaphore"));
    return sel;
  }

  /** Start `main` as a component in a PD of its own with exactly the granted capabilities. Returns its PD selector. */
  start(name: string, main: GlobalEntry, options: StartOptions = {}): number {
    const pd = this.next++;
    const ec = this.next++;
    const sc = this.next++;
    this.asRoot((sys) => {
      this.must(sys.createPd(pd, options.quota ?? 4 << 20, { name, vm: options.vm }), `create PD ${name}`);
      for (const g of options.grants ?? []) {
        const range = typeof g.from === "number" ? crd(SpaceKind.OBJECT, g.from, 0, g.rights ?? 0xff) : { ...g.from, rights: g.rights ?? g.from.rights };
        this.must(sys.delegate(pd, range, g.to), `grant ${JSON.stringify(g.from)} to ${name}`);
      }
      this.must(sys.createGlobalEc(ec, pd, main), `create the EC of ${name}`);
      this.must(sys.createSc(sc, ec, options.priority ?? 10, options.quantumNs ?? 1_000_000), `create the SC of ${name}`);
    });
    return pd;
  }

  /** Call a portal the testbed holds (a fake, or one a component handed out) with these words. */
  call(sel: number, ...words: number[]): { status: Status; words: number[] } {
    return this.asRoot((sys) => {
      sys.utcb.set(...words);
      const status = sys.call(sel);
      return { status, words: Array.from(sys.utcb.words.subarray(0, sys.utcb.untyped)) };
    });
  }

  /** Run until idle (or the limits); component faults are collected in `faults`. */
  run(limits?: { untilNs?: number; maxSteps?: number }): "idle" | "time" | "steps" {
    return this.kernel.run(limits);
  }

  get faults() {
    return this.kernel.faults;
  }

  /** Act as the root task (for set-up beyond what the helpers cover). */
  asRoot<T>(fn: (sys: Sys) => T): T {
    const k = this.kernel;
    const prev = k.current;
    k.current = this.rootEc;
    try {
      return fn(this.rootSys);
    } finally {
      k.current = prev;
    }
  }

  private must(s: Status, what: string): void {
    if (s !== Status.SUCCESS) throw new TestbedError(`testbed: could not ${what}: ${Status[s]}`);
  }
}
