// The kernel: boots the root PD, dispatches ECs on virtual time, and carries IPC and VM exits.
//
// Execution model. Component code is plain synchronous JavaScript. A portal call is a function
// call on the caller's stack: the handler runs on the caller's scheduling context (donation), and
// returning from the handler is the reply. Only global ECs have bodies of their own; a body is a
// generator that yields when it blocks (semaphore down, sleep, or a call whose reply is deferred),
// so a blocking operation suspends exactly that EC and the dispatcher goes on with the others.
// A handler that cannot answer now defers its reply (a reply token, as seL4's reply objects) and
// answers later; the caller stays blocked until then (portal.ts). vCPUs are driven by the
// dispatcher too: their exits are portal calls the kernel makes on their behalf (vm-exit.ts).

import { Mapping, ObjectType, capability, insertRoot, performRevoke, type RemovedHook } from "../capabilities/index.js";
import { MemRights, IoRights, PdRights, SmRights, EcRights, ScRights, SpaceKind } from "../capabilities/index.js";
import { copier } from "./args.js";
import { VirtualClock } from "./clock.js";
import { Ec, EcKind, EcState, type EcBody, type GlobalEntry } from "./ec.js";
import { FrameStore } from "./frames.js";
import { WasmArena } from "./wasm-arena.js";
import { TABLE_BYTES } from "./guest-memory.js";
import { lookupCap } from "./hypercalls.js";
import { KernelMemoryCost, type KernelObject, type QuotaAccount } from "./object.js";
import { Pd, Sel } from "./pd.js";
import { MAX_PRIORITY, MAX_QUANTUM_NS, Sc } from "./sc.js";
import { RunQueues } from "./scheduler.js";
import { Sm } from "./sm.js";
import { Status } from "./status.js";
import { Sys } from "./sys.js";
import type { VcpuEngineFactory } from "./vcpu.js";
import type { TraceSink } from "./trace.js";
import { DEFERRED, type DeferredReply, abortReply, portalCall } from "./portal.js";
import { runVcpu } from "./vm-exit.js";

export { Sel };

export interface KernelOptions {
  /** Builds the engine of each vCPU (the x86 core). Without it, creating a vCPU is BAD_FEATURE. */
  vcpuEngine?: VcpuEngineFactory;
  /** Host memory given to the root PD as frames, in MiB. */
  memoryMiB?: number;
  /**
   * Allocate the frames (and vCPU state) from one shared WebAssembly memory, so that the x86
   * core's wasm tier can reach guest RAM (default false).
   */
  wasmArena?: boolean;
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

/** A component fault: code of `pd` threw. The EC is stopped; callers get ABORTED. */
export interface Fault {
  readonly pd: string;
  readonly ec: string;
  readonly error: unknown;
  readonly at: number;
}

/** VMs whose page tables the wasm arena holds (as many as the vCPU states it keeps room for). */
const ARENA_TABLES = 4;
const unlimited: QuotaAccount = { charge: () => true, refund: () => {} };

/** The fields a wait may have (which ones it needs depends on `op`, see `Wait`). */
const copyWait = copier({ op: "string", sel: "number?", timeoutNs: "number?", ns: "number?" });
/** Marks a body that returned. */
const DONE = Symbol("done");

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
  /** Portal calls open on the stack now (bounded by MAX_CALL_DEPTH). */
  callDepth = 0;
  private readonly syscalls = new WeakMap<Pd, Sys>();
  private readonly interrupts: Sm[] = [];
  private readonly dying: Pd[] = [];
  /** Where the running vCPU's run started (time and retired count), to read time mid-run. Set by vm-exit. */
  vcpuRun: { ec: Ec; startNs: number; startRetired: number } | null = null;

  constructor(options: KernelOptions = {}) {
    this.clock = new VirtualClock(options.startNs ?? 0);
    this.nsPerInstruction = options.nsPerInstruction ?? 1;
    this.hypercallNs = options.hypercallNs ?? 0;
    this.stepNs = options.stepNs ?? 1000;
    this.exitNs = options.exitNs ?? 100;
    this.seed = options.seed ?? 0;
    this.trace = options.trace ?? null;
    this.vcpuEngine = options.vcpuEngine ?? null;
    const frames = ((options.memoryMiB ?? 64) * 1024 * 1024) / 4096;
    // Room for the frames, the state of four vCPUs (17 MiB each, see the x86 core's Cpu; the
    // others keep their state in JS memory and run without the wasm tier) and the page tables of
    // four VMs (7 MiB each, GuestMemory; the others' are ArrayBuffers). Only what is touched costs.
    const arena = options.wasmArena === true ? new WasmArena(frames * 4096 + (72 << 20) + ARENA_TABLES * TABLE_BYTES, frames * 4096) : null;
    this.memory = new FrameStore(frames, arena, ARENA_TABLES);
    this.root = new Pd(unlimited, options.rootQuota ?? 64 * 1024 * 1024, "root", null, { maxPriority: MAX_PRIORITY, maxQuantumNs: MAX_QUANTUM_NS });
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
    // Capabilities are immutable, so one record serves all boot mappings of a space. The frames'
    // mappings are made when first looked at (a 2 GiB kernel has 2^19 of them).
    const frames = capability(this.memory, MemRights.ALL);
    root.memory.fillAtBoot(this.memory.frames, (f) => new Mapping(root.memory, f, frames, f));
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

  /**
   * Everything a destroyed PD holds goes, and with it everything derived from it elsewhere. PDs a
   * component creates inside its own PDs nest without bound, so the PDs that die on the way are
   * queued and emptied here in a loop, not by recursion (which a deep enough chain would overflow).
   */
  private pdDestroyed(pd: Pd): void {
    this.dying.push(pd);
    if (this.dying.length > 1) return; // the outermost call empties the queue
    try {
      for (let i = 0; i < this.dying.length; i++) {
        const p = this.dying[i];
        for (const space of [p.objects, p.memory, p.io]) performRevoke(space.all(), 0xff, false, this.removed);
        for (const d of p.owedReplies.takeAll()) abortReply(this, d);
      }
    } finally {
      this.dying.length = 0;
    }
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
    return sm.up(this) === Status.SUCCESS;
  }

  private dispatch(sc: Sc, until: number): void {
    const ec = sc.ec;
    if (ec.state !== EcState.READY || !ec.alive || !ec.pd.alive) return;
    if (sc.left <= 0) sc.left = sc.quantum;
    this.currentSc = sc;
    this.current = ec;
    this.trace?.schedule(this.clock.now, ec.pd.name, ec.name);
    try {
      if (ec.kind === EcKind.VCPU) runVcpu(this, ec, sc, until);
      else this.runBody(ec, sc);
    } finally {
      this.current = null;
      this.currentSc = null;
    }
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
      // A step's time passes before its code runs: what it reads of the clock includes it, so a
      // timeout it computes from now ends where it meant (device timers fire on their deadline).
      this.consume(this.stepNs);
      // Everything the body hands back is untrusted: a throw or a malformed wait is its fault.
      let raw: unknown;
      try {
        if (!ec.body) {
          const entry = ec.entry!; // called as a plain function: `this` in it is not the EC
          ec.body = entry(this.sysFor(ec.pd));
        }
        const body: EcBody = ec.body;
        const r = body.next(status);
        if (r.done === true) raw = DONE;
        else raw = r.value;
      } catch (error) {
        this.fault(ec, error);
        return;
      }
      if (raw === DONE) {
        ec.state = EcState.DEAD;
        return;
      }
      status = this.performWait(ec, raw);
      if (status === DEFERRED || ec.state !== EcState.READY) return;
      if (sc.left <= 0 || this.runq.hasAbove(sc.priority)) {
        ec.resumeStatus = status;
        return;
      }
    }
  }

  /** Carry out what a body yielded (built by `sys.wait.*`): its status, or DEFERRED when it blocked. */
  private performWait(ec: Ec, raw: unknown): Status {
    const w = copyWait(raw);
    switch (w?.op) {
      case "down": {
        if (w.sel === undefined || w.timeoutNs === undefined) break;
        const sm = lookupCap<Sm>(ec.pd, w.sel, ObjectType.SM, SmRights.DOWN);
        if (!sm) return Status.BAD_CAPABILITY;
        if (!(w.timeoutNs >= 0)) return Status.BAD_PARAMETER;
        return sm.down(this, ec, w.timeoutNs, true);
      }
      case "call":
        if (w.sel === undefined) break;
        return portalCall(this, ec, w.sel, true);
      case "sleep":
        if (w.ns === undefined) break;
        if (!(w.ns >= 0)) return Status.BAD_PARAMETER;
        this.block(ec, null, w.ns);
        return DEFERRED;
      case "yield":
        this.currentSc!.left = 0;
        return Status.SUCCESS;
    }
    this.fault(ec, new TypeError(`${ec.pd.name}/${ec.name} yielded something that is not a wait`));
    return DEFERRED;
  }

  fault(ec: Ec, error: unknown): void {
    ec.state = EcState.DEAD;
    if (ec.sc) this.runq.remove(ec.sc);
    this.faults.push({ pd: ec.pd.name, ec: ec.name, error, at: this.clock.now });
    this.trace?.fault(this.clock.now, ec.pd.name, ec.name, error);
  }
}
