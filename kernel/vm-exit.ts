// Running a vCPU: the engine executes guest code for a budget bounded by the SC's quantum and the
// next timeout; each exit becomes a call to the VMM's portal at event base + reason, moving the
// state groups of that portal's MTD into the handler's UTCB and the reply's groups back.

import { ObjectType, PtRights } from "../capabilities/index.js";
import { type Ec, EcState } from "./ec.js";
import type { Kernel } from "./kernel.js";
import { DEFERRED, enter } from "./portal.js";
import type { Pt } from "./pt.js";
import type { Sc } from "./sc.js";
import { Status } from "./status.js";
import type { Utcb } from "./utcb.js";
import { ExitReason, Mtd, VcpuState, copyQual, type VcpuExitHandler } from "./vcpu.js";

/** The longest access a reply may charge (1 ms): a wrong reply cannot stop a VM's clock for long. */
const MAX_ACCESS_NS = 1_000_000;

/**
 * Run `ec` until it blocks, its quantum ends, a timeout is due, or a higher priority is ready.
 *
 * A vCPU of a VM with several vCPUs (a multiprocessor) is preempted mostly by its siblings, which
 * the guest sees as running at the same time: its VM time passes while it waits for the CPU too,
 * so all vCPUs of the VM keep one time (and their TSCs agree). A lone vCPU's VM time does not.
 */
export function runVcpu(k: Kernel, ec: Ec, sc: Sc, until: number): void {
  if (!ec.started) {
    ec.started = true;
    // VM time starts where the kernel's is; from here on it passes only for this vCPU.
    ec.vmNs = ec.tscSyncedNs = k.clock.now;
    if (!vmExit(k, ec, ExitReason.STARTUP)) return;
  }
  endIdle(k, ec); // a multiprocessor's vCPU waited for the CPU
  runVcpuOn(k, ec, sc, until);
  if (ec.state === EcState.READY && ec.pd.vcpus > 1) ec.idleSince = k.clock.now;
}

function runVcpuOn(k: Kernel, ec: Ec, sc: Sc, until: number): void {
  const engine = ec.engine!;
  while (ec.state === EcState.READY && sc.left > 0) {
    if (ec.recall) {
      ec.recall = false;
      if (!vmExit(k, ec, ExitReason.RECALL)) return;
      continue;
    }
    const horizon = Math.min(sc.left, Math.min(k.clock.next(), until) - k.clock.now);
    const budget = Math.max(1, Math.floor(horizon / k.nsPerInstruction));
    syncTsc(k, ec);
    const startRetired = engine.retired;
    k.vcpuRun = { ec, startNs: k.clock.now, startRetired };
    let reason: ExitReason;
    try {
      reason = engine.run(budget, exitHandlerOf(k, ec));
    } catch (error) {
      k.vcpuRun = null;
      k.fault(ec, error);
      return;
    }
    k.vcpuRun = null;
    const retired = engine.retired - startRetired;
    // A halted engine may retire nothing; charge the budget's time so virtual time still moves.
    const ran = (retired > 0 || reason !== ExitReason.BUDGET ? retired : budget) * k.nsPerInstruction;
    k.consume(ran);
    ec.vmNs += ran;
    ec.tscSyncedNs += retired * k.nsPerInstruction;
    if (ec.state !== EcState.READY) return; // stopped by a malformed reply to a synchronous exit
    if (reason === ExitReason.BUDGET) {
      if (k.clock.next() <= k.clock.now || k.clock.now >= until || k.runq.hasAbove(sc.priority)) return;
      continue;
    }
    if (!vmExit(k, ec, reason)) return;
    if (k.runq.hasAbove(sc.priority)) return;
  }
}

/**
 * The TSC ticks once per instruction time of the VM's time, like a constant-rate TSC: VM time that
 * passed while the vCPU did not execute (waiting in HLT, in exits) is added before it runs on, so
 * guest clocks built on the TSC agree with the timers that the VMM's devices run on.
 */
function syncTsc(k: Kernel, ec: Ec): void {
  const ticks = Math.floor((vmTime(k, ec) - ec.tscSyncedNs) / k.nsPerInstruction);
  if (ticks <= 0) return;
  const engine = ec.engine!;
  if (engine.addTsc) engine.addTsc(ticks);
  else {
    const s = (ec.tscScratch ??= new VcpuState());
    engine.saveState(Mtd.TSC, s);
    s.tsc += BigInt(ticks);
    engine.loadState(Mtd.TSC, s);
  }
  ec.tscSyncedNs += ticks * k.nsPerInstruction;
}

/**
 * A boundary exit: call the VMM's portal for `reason`. True when the vCPU may go on now; false
 * when it is blocked (deferred reply) or stopped (no handler: the vCPU is dead, as on NOVA).
 */
function vmExit(k: Kernel, ec: Ec, reason: ExitReason): boolean {
  // A recall is the VMM's doing, not the guest's: it costs the guest no virtual time.
  if (reason !== ExitReason.RECALL) {
    k.consume(k.exitNs);
    ec.vmNs += k.exitNs;
  }
  k.trace?.vmExit(k.clock.now, ec.pd.name, reason);
  const pt = exitPortal(ec, reason);
  if (!pt) {
    k.fault(ec, new Error(`vCPU ${ec.name}: no portal for exit ${ExitReason[reason]}`));
    return false;
  }
  const s = enter(k, ec, pt, true, null, reason);
  if (s === DEFERRED) {
    // Waiting for an interrupt is the VM's time; stopped in any other exit (a pause), it is not.
    if (reason === ExitReason.HLT) ec.idleSince = k.clock.now;
    return false;
  }
  if (s !== Status.SUCCESS) {
    if (ec.state !== EcState.DEAD) k.fault(ec, new Error(`vCPU ${ec.name}: exit ${ExitReason[reason]} handler failed`));
    return false;
  }
  return loadVcpuReply(k, ec, pt.ec);
}

/**
 * Load the vCPU state groups of `handler`'s reply into the engine of `vcpu` (and, for a synchronous
 * exit, the answer into `exit`). The reply is the handler's UTCB, its own to fill: one the engine
 * cannot take stops the vCPU, a fault of that VM only. False then.
 */
export function loadVcpuReply(k: Kernel, vcpu: Ec, handler: Ec, exit: VcpuState | null = null): boolean {
  try {
    const v = handler.utcb.vcpu;
    if (!(v instanceof VcpuState)) throw new TypeError("no vCPU state in the reply");
    const mtd = v.mtd;
    if (exit && mtd & Mtd.QUAL) {
      exit.qual.data = v.qual.data;
      exit.qual.ebx = v.qual.ebx;
      exit.qual.ecx = v.qual.ecx;
      exit.qual.edx = v.qual.edx;
      exit.qual.refused = v.qual.refused === true;
      exit.qual.ramUnchanged = v.qual.ramUnchanged === true;
      // A slow device access: the guest's time passes while it waits (a number, at least 0).
      const ns = v.qual.accessNs;
      if (ns > 0) vcpu.engine!.stall(Math.ceil(Math.min(ns, MAX_ACCESS_NS) / k.nsPerInstruction));
    }
    vcpu.engine!.loadState(mtd & ~Mtd.QUAL, v);
    // A TSC in the reply to a boundary exit is the TSC as of now: time before is not added again.
    if (!exit && mtd & Mtd.TSC) vcpu.tscSyncedNs = vmTime(k, vcpu);
    return true;
  } catch (error) {
    k.fault(vcpu, new Error(`vCPU ${vcpu.name}: malformed exit reply from ${handler.pd.name}`, { cause: error }));
    return false;
  }
}

/**
 * Hide the last `ns` of virtual time (at most the time since the vCPU was last accounted) from a
 * vCPU that is not running: its TSC counts the time before, not that. Returns the ns hidden. A
 * VMM that stops its VM (pause, snapshot) hides the stop, so the guest never sees it.
 */
export function hideTime(k: Kernel, ec: Ec, ns: number): number {
  if (ec.idleSince === null) return 0;
  const hidden = Math.min(ns, k.clock.now - ec.idleSince);
  ec.vmNs += k.clock.now - ec.idleSince - hidden;
  ec.idleSince = k.clock.now;
  return hidden;
}

/**
 * The VM time of vCPU `ec` now: mid-run, up to its last instruction; waiting in HLT (or, on a
 * multiprocessor, for the CPU), up to now, including the progress of the vCPU running now.
 */
export function vmTime(k: Kernel, ec: Ec): number {
  const r = k.vcpuRun;
  if (r !== null && r.ec === ec) return ec.vmNs + (ec.engine!.retired - r.startRetired) * k.nsPerInstruction;
  return ec.idleSince === null ? ec.vmNs : ec.vmNs + (k.now() - ec.idleSince);
}

/** The vCPU stops waiting (in HLT, or for the CPU): the time it waited, up to now, is the VM's. */
export function endIdle(k: Kernel, ec: Ec): void {
  if (ec.idleSince === null) return;
  ec.vmNs += k.now() - ec.idleSince;
  ec.idleSince = null;
}

/**
 * The vCPU's HLT exit was answered (maybe by an IPI in the middle of another vCPU's run). A
 * multiprocessor's vCPU then waits for the CPU, which is its VM's time too (see runVcpu).
 */
export function endHalt(k: Kernel, ec: Ec): void {
  endIdle(k, ec);
  if (ec.pd.vcpus > 1) ec.idleSince = k.now();
}

/** A synchronous exit in the middle of an instruction (port I/O, MMIO, CPUID, MSR). */
function syncExit(k: Kernel, ec: Ec, reason: ExitReason, state: VcpuState): boolean {
  const pt = exitPortal(ec, reason);
  if (!pt) return false;
  k.trace?.vmExit(k.now(), ec.pd.name, reason);
  state.qual.ramUnchanged = false; // only a reply that says so
  const s = enter(k, ec, pt, false, state, reason);
  return s === Status.SUCCESS && loadVcpuReply(k, ec, pt.ec, state);
}

function exitPortal(ec: Ec, reason: ExitReason): Pt | null {
  const m = ec.pd.objects.get(ec.eventBase + reason);
  if (!m || m.cap.object.type !== ObjectType.PT || (m.cap.rights & PtRights.CALL) === 0) return null;
  return m.cap.object as Pt;
}

/**
 * Move the state groups of the portal's MTD into the handler's UTCB. The qualification of a
 * synchronous exit comes from the engine's exit record; at boundary exits from saveState.
 */
export function deliverVcpuState(k: Kernel, vcpu: Ec, pt: Pt, to: Utcb, exit: VcpuState | null): void {
  const v = (to.vcpu ??= new VcpuState());
  to.untyped = 0;
  const groups = exit ? pt.mtd & ~Mtd.QUAL : pt.mtd;
  // The TSC of a boundary exit is the TSC as of delivery, so that the VMM sees it with the time now.
  if (!exit && groups & Mtd.TSC) syncTsc(k, vcpu);
  vcpu.engine!.saveState(groups, v);
  if (exit && pt.mtd & Mtd.QUAL) copyQual(exit.qual, v.qual);
  v.mtd = pt.mtd;
}

function exitHandlerOf(k: Kernel, ec: Ec): VcpuExitHandler {
  return (ec.exitHandler ??= {
    exit: (reason, state) => syncExit(k, ec, reason, state),
    get stopRequested() {
      return ec.recall || ec.state !== EcState.READY;
    },
  });
}
