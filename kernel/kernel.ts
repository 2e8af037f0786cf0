// The kernel: boots the root PD, dispatches ECs on virtual time, and carries IPC and VM exits.
//
// Execution model. Component code is plain synchronous JavaScript. A portal call is a function
// call on the caller's stack: the handler runs on the caller's scheduling context (donation), and
// returning from the handler is the reply. Only global ECs have bodies of their own; a body is a
// generator that yields when it blocks (semaphore down, sleep, or a call whose reply is deferred),
// so a blocking operation suspends exactly that EC and the dispatcher goes on with the others.
// A handler that cannot answer now defers its reply (a reply token, as seL4's reply objects) and
// answers later; the caller stays blocked until then. vCPUs are driven by the dispatcher too:
// their exits are portal calls the kernel makes on their behalf.

import { type Mapping, ObjectType, capability, insertRoot, performRevoke, type RemovedHook } from "../capabilities/index.js";
import { MemRights, IoRights, PdRights, SmRights, EcRights, ScRights, SpaceKind } from "../capabilities/index.js";
import { VirtualClock } from "./clock.js";
import { Ec, EcKind, EcState, type GlobalEntry, type Wait } from "./ec.js";
import { FrameStore } from "./frames.js";
import { transferMessage } from "./ipc.js";
import { KernelMemoryCost, type KernelObject, type QuotaAccount } from "./object.js";
import { Pd } from "./pd.js";
import { Pt } from "./pt.js";
import { Sc } from "./sc.js";
import { RunQueues } from "./scheduler.js";
import { Sm } from "./sm.js";
import { Status } from "./status.js";
import { Sys } from "./sys.js";
import { ExitReason, Mtd, VcpuState, type VcpuEngineFactory, type VcpuExitHandler } from "./vcpu.js";
import type { TraceSink } from "./trace.js";
import type { Utcb } from "./utcb.js";

/** Selectors every PD finds filled in its object space. */
export const Sel = {
  /** The PD itself (all rights): create objects inside it, paid from its quota. */
  SELF_PD: 0,
  /** Root only: its first EC and SC. */
  ROOT_EC: 1,
  ROOT_SC: 2,
  /** Root only: interrupt semaphores, one per GSI, at GSI_BASE + gsi. */
  GSI_BASE: 64,
} as const;

export interface KernelOptions {
  /** Builds the engine of each vCPU (the x86 core). Without it, creating a vCPU is BAD_FEATURE. */
  vcpuEngine?: VcpuEngineFactory;
  /** Host memory given to the root PD as frames, in MiB. */
  memoryMiB?: number;
  /** Kernel memory quota of the root PD, in bytes. */
  rootQuota?: number;
  /** Interrupt lines (GSIs) with a semaphore each in the root PD. */
  gsis?: number;
  /** I/O ports 0..n-1 given to the root PD (default all 65536; tests that boot many kernels use fewer). */
  ioPorts?: number;
  /** Virtual time per retired guest instruction, ns. */
  nsPerInstruction?: number;
  /** Virtual time charged for each hypercall, ns. */
  hypercallNs?: number;
  /** Virtual time charged for each step of a global EC's body, ns. */
  stepNs?: number;
  /** Virtual time charged for each boundary VM exit, ns (so exits alone also use up a quantum). */
  exitNs?: number;
  /** Virtual time at boot, ns. */
  startNs?: number;
  /** Seed handed to components that want deterministic randomness (`sys.seed`). */
  seed?: number;
  trace?: TraceSink | null;
}

/** A reply that a handler deferred: the caller stays blocked until `reply` or abort. */
export class ReplyToken {
  used = false;
  constructor(
    readonly caller: Ec,
    /** The PD whose handler took the call; its death aborts the reply. */
    readonly server: Pd,
    /** For vCPU exits: the synchronous-exit state to answer into (null at boundary exits). */
    readonly vcpuExit: boolean,
  ) {}

  cancel(_ec: Ec): void {
    this.used = true;
  }
}

/** A component fault: code of `pd` threw. The EC is stopped; callers get ABORTED. */
export interface Fault {
  readonly pd: string;
  readonly ec: string;
  readonly error: unknown;
  readonly at: number;
}

/** Internal result of a call whose reply was deferred. Never returned to component code. */
export const DEFERRED = -1 as Status;

const unlimited: QuotaAccount = { charge: () => true, refund: () => {} };

export class Kernel {
  readonly clock: VirtualClock;
  readonly runq = new RunQueues();
  readonly root: Pd;
  readonly memory: FrameStore;
  readonly faults: Fault[] = [];
  readonly seed: number;
  trace: TraceSink | null;
  /** The EC whose code runs now, and the SC it runs on (its own or donated). */
  current: Ec | null = null;
  currentSc: Sc | null = null;
  /** The root task's EC, once booted. */
  rootEc: Ec | null = null;
  readonly nsPerInstruction: number;
  readonly hypercallNs: number;
  readonly stepNs: number;
  readonly exitNs: number;
  readonly vcpuEngine: VcpuEngineFactory | null;
  private readonly syscalls = new WeakMap<Pd, Sys>();
  private readonly interrupts: Sm[] = [];
  private readonly tokens = new WeakMap<Pd, Set<ReplyToken>>();
  /** Where the running vCPU's run started (time and retired count), to read time mid-run. */
  private vcpuRun: { ec: Ec; startNs: number; startRetired: number } | null = null;

  constructor(options: KernelOptions = {}) {
    this.clock = new VirtualClock(options.startNs ?? 0);
    this.nsPerInstruction = options.nsPerInstruction ?? 1;
    this.hypercallNs = options.hypercallNs ?? 0;
    this.stepNs = options.stepNs ?? 1000;
    this.exitNs = options.exitNs ?? 100;
    this.seed = options.seed ?? 0;
    this.trace = options.trace ?? null;
    this.vcpuEngine = options.vcpuEngine ?? null;
    this.memory = new FrameStore(((options.memoryMiB ?? 64) * 1024 * 1024) / 4096);
    this.root = new Pd(unlimited, options.rootQuota ?? 64 * 1024 * 1024, "root", false);
    this.root.onDestroyed = (pd) => this.pdDestroyed(pd);
    this.bootSpaces(options.gsis ?? 24, Math.min(options.ioPorts ?? 0x10000, 0x10000));
  }

  private bootSpaces(gsis: number, ioPorts: number): void {
    const root = this.root;
    const bootMappings = 1 + gsis + this.memory.frames + ioPorts + 2;
    if (!root.charge(bootMappings * KernelMemoryCost.MAPPING)) throw new RangeError("root quota too small for the boot capabilities");
    this.adopt(root, root, Sel.SELF_PD, PdRights.ALL);
    for (let gsi = 0; gsi < gsis; gsi++) {
      const sm = new Sm(unlimited, 0);
      sm.gsi = gsi;
      this.interrupts.push(sm);
      this.adopt(root, sm, Sel.GSI_BASE + gsi, SmRights.ALL);
    }
    // Capabilities are immutable, so one record serves all boot mappings of a space.
    const frames = capability(this.memory, MemRights.ALL);
    for (let f = 0; f < this.memory.frames; f++) insertRoot(root.memory, f, frames, f);
    const ports = capability({ type: 0 }, IoRights.ALL);
    for (let port = 0; port < ioPorts; port++) insertRoot(root.io, port, ports, port);
  }

  /** Put the creating capability of `obj` into `pd`'s object space. The mapping must be paid for already. */
  adopt(pd: Pd, obj: KernelObject, sel: number, rights: number): Mapping {
    const m = insertRoot(pd.objects, sel, capability(obj, rights));
    obj.creator = m;
    return m;
  }

  /** Start the root task: a global EC in the root PD with the given body. */
  boot(main: GlobalEntry, priority = 64, quantumNs = 10_000_000): void {
    const ec = new Ec(unlimited, this.root, EcKind.GLOBAL, "root");
    ec.entry = main;
    this.rootEc = ec;
    this.adopt(this.root, ec, Sel.ROOT_EC, EcRights.ALL);
    const sc = new Sc(unlimited, ec, priority, quantumNs);
    this.adopt(this.root, sc, Sel.ROOT_SC, ScRights.ALL);
    ec.sc = sc;
    this.runq.enqueue(sc);
  }

  /** The syscall handle of `pd`: the only thing component code of that PD ever gets. */
  sysFor(pd: Pd): Sys {
    let s = this.syscalls.get(pd);
    if (!s) this.syscalls.set(pd, (s = new Sys(this, pd)));
    return s;
  }

  /** Virtual time now, including the progress of a vCPU that is in the middle of a run. */
  now(): number {
    const r = this.vcpuRun;
    if (r) return r.startNs + (r.ec.engine!.retired - r.startRetired) * this.nsPerInstruction;
    return this.clock.now;
  }

  // ---- hooks of the capability layer -------------------------------------------------------

  /** Every mapping leaving a space: refund its owner; the creating mapping takes its object along. */
  readonly removed: RemovedHook = (m: Mapping) => {
    (m.space.owner as Pd).refund(KernelMemoryCost.MAPPING);
    if (m.space.kind === SpaceKind.OBJECT) {
      const obj = m.cap.object as KernelObject;
      if (obj.creator === m) {
        obj.creator = null;
        this.destroyObject(obj);
      }
    }
  };

  private destroyObject(obj: KernelObject): void {
    obj.destroy();
    switch (obj.type) {
      case ObjectType.EC: {
        const ec = obj as Ec;
        if (ec.sc) this.runq.remove(ec.sc);
        break;
      }
      case ObjectType.SC: {
        const sc = obj as Sc;
        this.runq.remove(sc);
        if (sc.ec.sc === sc) sc.ec.sc = null;
        break;
      }
      case ObjectType.SM: {
        const sm = obj as Sm;
        for (const ec of sm.waiters.splice(0)) this.wake(ec, Status.ABORTED);
        break;
      }
      default:
        break;
    }
  }

  private pdDestroyed(pd: Pd): void {
    // Everything the PD holds goes, and with it everything derived from it elsewhere.
    for (const space of [pd.objects, pd.memory, pd.io]) performRevoke(space.all(), 0xff, false, this.removed);
    const pending = this.tokens.get(pd);
    if (pending) for (const t of pending) this.abortReply(t);
  }

  // ---- scheduling ------------------------------------------------------------------------------

  /** Make a blocked EC ready again with `status` as the result of what it waited for. */
  wake(ec: Ec, status: Status): void {
    if (ec.state !== EcState.BLOCKED) return;
    ec.state = EcState.READY;
    ec.resumeStatus = status;
    ec.waitingOn = null;
    ec.deadline = Infinity;
    if (ec.sc && ec.sc.alive) this.runq.enqueue(ec.sc);
  }

  /** Block the running global EC or vCPU on `on` until woken or `timeoutNs` passed. */
  block(ec: Ec, on: { cancel(ec: Ec): void } | null, timeoutNs: number): void {
    ec.state = EcState.BLOCKED;
    ec.waitingOn = on;
    ec.deadline = timeoutNs === Infinity ? Infinity : this.clock.now + timeoutNs;
    this.clock.arm(ec);
  }

  /** Charge `ns` of virtual time to the running SC and advance the clock. */
  consume(ns: number): void {
    this.clock.now += ns;
    const sc = this.currentSc;
    if (sc) {
      sc.consumed += ns;
      sc.left -= ns;
    }
  }

  /**
   * Run until nothing is runnable and no timeout is pending ("idle"), until virtual time reaches
   * `untilNs` ("time"), or for `maxSteps` dispatches ("steps").
   */
  run(limits: { untilNs?: number; maxSteps?: number } = {}): "idle" | "time" | "steps" {
    const until = limits.untilNs ?? Infinity;
    const maxSteps = limits.maxSteps ?? Infinity;
    for (let step = 0; ; step++) {
      if (step >= maxSteps) return "steps";
      for (const ec of this.clock.due()) {
        ec.waitingOn?.cancel(ec);
        this.wake(ec, Status.TIMEOUT);
      }
      if (this.clock.now >= until) return "time";
      const sc = this.runq.dequeue();
      if (!sc) {
        const next = this.clock.next();
        if (next === Infinity) return "idle";
        this.clock.now = Math.min(next, until);
        continue;
      }
      this.dispatch(sc, until);
    }
  }

  /** Deliver an interrupt: `up` on the semaphore of `gsi`, if delivery was enabled with assign_gsi. */
  raiseGsi(gsi: number): boolean {
    const sm = this.interrupts[gsi];
    if (!sm || !sm.alive || !sm.assigned) return false;
    this.semUp(sm);
    return true;
  }

  private dispatch(sc: Sc, until: number): void {
    const ec = sc.ec;
    if (ec.state !== EcState.READY || !ec.alive || !ec.pd.alive) return;
    if (sc.left <= 0) sc.left = sc.quantum;
    this.currentSc = sc;
    this.current = ec;
    this.trace?.schedule(this.clock.now, ec.pd.name, ec.name);
    if (ec.kind === EcKind.VCPU) this.runVcpu(ec, sc, until);
    else this.runBody(ec, sc);
    this.current = null;
    this.currentSc = null;
    if (ec.state === EcState.READY && ec.alive && ec.sc === sc && sc.alive) {
      if (sc.left <= 0) {
        sc.left = sc.quantum;
        this.runq.enqueue(sc);
      } else {
        this.runq.enqueue(sc, true);
      }
    }
  }

  private runBody(ec: Ec, sc: Sc): void {
    let status = ec.resumeStatus;
    for (;;) {
      if (!ec.body) {
        try {
          ec.body = ec.entry!(this.sysFor(ec.pd));
        } catch (error) {
          this.fault(ec, error);
          return;
        }
      }
      let r: IteratorResult<Wait, void>;
      try {
        r = ec.body.next(status);
      } catch (error) {
        this.fault(ec, error);
        return;
      }
      this.consume(this.stepNs);
      if (r.done) {
        ec.state = EcState.DEAD;
        return;
      }
      status = this.performWait(ec, r.value);
      if (status === DEFERRED || ec.state !== EcState.READY) return;
      if (sc.left <= 0 || this.runq.hasAbove(sc.priority)) {
        ec.resumeStatus = status;
        return;
      }
    }
  }

  private performWait(ec: Ec, w: Wait): Status {
    if (w === null || typeof w !== "object") return Status.BAD_PARAMETER;
    switch (w.op) {
      case "down":
        return this.semDown(ec, w.sel, w.timeoutNs, true);
      case "call":
        return this.call(ec, w.sel, true);
      case "sleep":
        if (!(w.ns >= 0)) return Status.BAD_PARAMETER;
        this.block(ec, null, w.ns);
        return DEFERRED;
      case "yield":
        this.currentSc!.left = 0;
        return Status.SUCCESS;
      default:
        return Status.BAD_PARAMETER;
    }
  }

  fault(ec: Ec, error: unknown): void {
    ec.state = EcState.DEAD;
    if (ec.sc) this.runq.remove(ec.sc);
    this.faults.push({ pd: ec.pd.name, ec: ec.name, error, at: this.clock.now });
    this.trace?.fault(this.clock.now, ec.pd.name, ec.name, error);
  }

  // ---- semaphores --------------------------------------------------------------------------------

  semUp(sm: Sm): void {
    const waiter = sm.waiters.shift();
    if (waiter) this.wake(waiter, Status.SUCCESS);
    else sm.counter++;
  }

  /** Down on the semaphore at `sel` for `ec`; blocks (a global EC's wait) when `mayBlock` and `timeoutNs` > 0. */
  semDown(ec: Ec, sel: number, timeoutNs: number, mayBlock: boolean): Status {
    const m = ec.pd.objects.get(sel);
    if (!m || m.cap.object.type !== ObjectType.SM || (m.cap.rights & SmRights.DOWN) === 0) return Status.BAD_CAPABILITY;
    if (!(timeoutNs >= 0)) return Status.BAD_PARAMETER;
    const sm = m.cap.object as Sm;
    if (sm.counter > 0) {
      sm.counter--;
      return Status.SUCCESS;
    }
    if (timeoutNs === 0 || !mayBlock) return Status.TIMEOUT;
    sm.waiters.push(ec);
    this.block(ec, sm, timeoutNs);
    return DEFERRED;
  }

  // ---- IPC ------------------------------------------------------------------------------------------

  /**
   * Call the portal at `sel` of the caller's PD. The handler runs now, on the caller's SC. With
   * `canWait` the handler may defer its reply and DEFERRED is returned (the caller is blocked).
   */
  call(caller: Ec, sel: number, canWait: boolean): Status {
    const m = caller.pd.objects.get(sel);
    if (m === undefined) return Status.BAD_CAPABILITY;
    const cap = m.cap;
    if (cap.object.type !== ObjectType.PT || (cap.rights & 1) === 0) return Status.BAD_CAPABILITY;
    const pt = cap.object as Pt;
    const handler = pt.ec;
    const status = this.enter(caller, pt, canWait, null, -1);
    if (status !== Status.SUCCESS) return status;
    transferMessage(handler.utcb, handler.pd, caller.utcb, caller.pd);
    return Status.SUCCESS;
  }

  /**
   * Run the handler of `pt` for `caller`: deliver the message (from the caller's UTCB, or the vCPU
   * state), call the handler, and say whether it replied (SUCCESS), deferred, or failed. The open
   * call is recorded on the handler EC itself (a local EC serves one call at a time).
   */
  private enter(caller: Ec, pt: Pt, canWait: boolean, vcpuExit: VcpuState | null, reason: ExitReason | -1): Status {
    const handler = pt.ec;
    if (handler.state === EcState.DEAD || !handler.alive || !handler.pd.alive) return Status.ABORTED;
    if (handler.busy) return Status.ABORTED; // already on the stack: the call would deadlock
    if (handler.handler === null && !this.materialize(handler)) return Status.ABORTED;
    const to = handler.utcb;
    if (reason >= 0) this.deliverVcpuState(caller, pt, to, vcpuExit);
    else transferMessage(caller.utcb, caller.pd, to, handler.pd);
    const prev = this.current;
    this.current = handler;
    handler.busy = true;
    handler.caller = caller;
    handler.callerCanWait = canWait;
    handler.deferred = null;
    if (this.trace) this.trace.callBegin(this.now(), caller.pd.name, handler.pd.name, pt.id, reason);
    let failed = false;
    try {
      handler.handler!(to, pt.id);
    } catch (error) {
      failed = true;
      this.fault(handler, error);
    }
    handler.busy = false;
    handler.caller = null;
    this.current = prev;
    if (this.trace) this.trace.callEnd(this.now(), handler.pd.name);
    const deferred = handler.deferred as ReplyToken | null;
    if (deferred !== null) {
      handler.deferred = null;
      if (failed) {
        deferred.used = true;
        return Status.ABORTED;
      }
      this.block(caller, deferred, Infinity);
      return DEFERRED;
    }
    return failed ? Status.ABORTED : Status.SUCCESS;
  }

  /** A local EC gets its handler from its entry the first time it is called (running as that EC). */
  private materialize(ec: Ec): boolean {
    const prev = this.current;
    this.current = ec;
    try {
      ec.handler = ec.localEntry!(this.sysFor(ec.pd));
      return true;
    } catch (error) {
      this.fault(ec, error);
      return false;
    } finally {
      this.current = prev;
    }
  }

  /** Called by a handler: keep the caller blocked and answer later with `reply(token)`. */
  deferReply(handler: Ec): ReplyToken | null {
    const caller = handler.caller;
    if (!handler.busy || caller === null || !handler.callerCanWait || handler.deferred !== null) return null;
    const token = new ReplyToken(caller, handler.pd, caller.kind === EcKind.VCPU);
    handler.deferred = token;
    let set = this.tokens.get(handler.pd);
    if (!set) this.tokens.set(handler.pd, (set = new Set()));
    set.add(token);
    return token;
  }

  /** Answer a deferred call with the message in `from`'s UTCB. */
  reply(from: Ec, token: ReplyToken): Status {
    if (!(token instanceof ReplyToken) || token.used || token.server !== from.pd) return Status.BAD_PARAMETER;
    token.used = true;
    this.tokens.get(token.server)?.delete(token);
    const caller = token.caller;
    if (caller.state !== EcState.BLOCKED || caller.waitingOn !== token) return Status.ABORTED;
    if (caller.kind === EcKind.VCPU) {
      const v = from.utcb.vcpu;
      if (v) caller.engine!.loadState(v.mtd & ~Mtd.QUAL, v);
    } else {
      transferMessage(from.utcb, from.pd, caller.utcb, caller.pd);
    }
    this.wake(caller, Status.SUCCESS);
    return Status.SUCCESS;
  }

  private abortReply(token: ReplyToken): void {
    if (token.used) return;
    token.used = true;
    if (token.caller.waitingOn === token) this.wake(token.caller, Status.ABORTED);
  }

  // ---- virtual CPUs --------------------------------------------------------------------------------

  private runVcpu(ec: Ec, sc: Sc, until: number): void {
    const engine = ec.engine!;
    if (!ec.started) {
      ec.started = true;
      if (!this.vmExit(ec, ExitReason.STARTUP)) return;
    }
    while (ec.state === EcState.READY && sc.left > 0) {
      if (ec.recall) {
        ec.recall = false;
        if (!this.vmExit(ec, ExitReason.RECALL)) return;
        continue;
      }
      const horizon = Math.min(sc.left, Math.min(this.clock.next(), until) - this.clock.now);
      const budget = Math.max(1, Math.floor(horizon / this.nsPerInstruction));
      const startRetired = engine.retired;
      this.vcpuRun = { ec, startNs: this.clock.now, startRetired };
      let reason: ExitReason;
      try {
        reason = engine.run(budget, exitHandlerOf(this, ec));
      } catch (error) {
        this.vcpuRun = null;
        this.fault(ec, error);
        return;
      }
      this.vcpuRun = null;
      this.consume((engine.retired - startRetired) * this.nsPerInstruction);
      if (reason === ExitReason.BUDGET) {
        if (this.clock.next() <= this.clock.now || this.clock.now >= until || this.runq.hasAbove(sc.priority)) return;
        continue;
      }
      if (!this.vmExit(ec, reason)) return;
      if (this.runq.hasAbove(sc.priority)) return;
    }
  }

  /**
   * A boundary exit: call the VMM's portal for `reason`. True when the vCPU may go on now; false
   * when it is blocked (deferred reply) or stopped (no handler: the vCPU is dead, as on NOVA).
   */
  private vmExit(ec: Ec, reason: ExitReason): boolean {
    this.consume(this.exitNs);
    this.trace?.vmExit(this.clock.now, ec.pd.name, reason);
    const pt = this.exitPortal(ec, reason);
    if (!pt) {
      this.fault(ec, new Error(`vCPU ${ec.name}: no portal for exit ${ExitReason[reason]}`));
      return false;
    }
    const s = this.enter(ec, pt, true, null, reason);
    if (s === DEFERRED) return false;
    if (s !== Status.SUCCESS) {
      if (ec.state !== EcState.DEAD) this.fault(ec, new Error(`vCPU ${ec.name}: exit ${ExitReason[reason]} handler failed`));
      return false;
    }
    const v = pt.ec.utcb.vcpu!;
    ec.engine!.loadState(v.mtd & ~Mtd.QUAL, v);
    return true;
  }

  /** A synchronous exit in the middle of an instruction (port I/O, MMIO, CPUID). */
  syncExit(ec: Ec, reason: ExitReason, state: VcpuState): boolean {
    const pt = this.exitPortal(ec, reason);
    if (!pt) return false;
    this.trace?.vmExit(this.now(), ec.pd.name, reason);
    const s = this.enter(ec, pt, false, state, reason);
    if (s !== Status.SUCCESS) return false;
    const v = pt.ec.utcb.vcpu!;
    if (v.mtd & Mtd.QUAL) {
      state.qual.data = v.qual.data;
      state.qual.ebx = v.qual.ebx;
      state.qual.ecx = v.qual.ecx;
      state.qual.edx = v.qual.edx;
    }
    ec.engine!.loadState(v.mtd & ~Mtd.QUAL, v);
    return true;
  }

  private exitPortal(ec: Ec, reason: ExitReason): Pt | null {
    const m = ec.pd.objects.get(ec.eventBase + reason);
    if (!m || m.cap.object.type !== ObjectType.PT || (m.cap.rights & 1) === 0) return null;
    return m.cap.object as Pt;
  }

  /**
   * Move the state groups of the portal's MTD into the handler's UTCB. The qualification of a
   * synchronous exit comes from the engine's exit record; at boundary exits from saveState.
   */
  private deliverVcpuState(vcpu: Ec, pt: Pt, to: Utcb, exit: VcpuState | null): void {
    const v = (to.vcpu ??= new VcpuState());
    to.untyped = 0;
    const groups = exit ? pt.mtd & ~Mtd.QUAL : pt.mtd;
    vcpu.engine!.saveState(groups, v);
    if (exit && pt.mtd & Mtd.QUAL) Object.assign(v.qual, exit.qual);
    v.mtd = pt.mtd;
  }
}

function exitHandlerOf(k: Kernel, ec: Ec): VcpuExitHandler {
  return (ec.exitHandler ??= {
    exit: (reason, state) => k.syncExit(ec, reason, state),
    get stopRequested() {
      return ec.recall;
    },
  });
}
