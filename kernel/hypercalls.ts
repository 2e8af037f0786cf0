// The hypercall table. Every handler has one shape: take its argument record (copied once out of
// the caller's hands, see args.ts), look up and check the capabilities, check the quota, and only
// then act. A refused hypercall changes nothing.

import {
  EcRights,
  ObjectType,
  PdRights,
  PtRights,
  ScRights,
  SmRights,
  SpaceKind,
  SPACE_ORDER,
  isValidCrd,
  performDelegate,
  performRevoke,
  planDelegate,
  planRevoke,
} from "../capabilities/index.js";
import { type Args, type Shape, copier } from "./args.js";
import { Ec, EcKind, EcState, type GlobalEntry, type LocalEntry } from "./ec.js";
import type { Kernel } from "./kernel.js";
import { hasHandlerStack, portalCall, reply as replyTo } from "./portal.js";
import { KernelMemoryCost, type KernelObject } from "./object.js";
import { Pd, Sel } from "./pd.js";
import { Pt } from "./pt.js";
import { Sc, isPriority, isQuantum } from "./sc.js";
import { Sm } from "./sm.js";
import { Status } from "./status.js";
import { EXIT_REASON_COUNT, Mtd, VcpuState } from "./vcpu.js";
import { hideTime, vmTime } from "./vm-exit.js";

export enum Hypercall {
  CALL = 0,
  REPLY = 1,
  CREATE_PD = 2,
  CREATE_EC = 3,
  CREATE_SC = 4,
  CREATE_PT = 5,
  CREATE_SM = 6,
  REVOKE = 7,
  LOOKUP = 8,
  EC_CTRL = 9,
  SC_CTRL = 10,
  PT_CTRL = 11,
  SM_CTRL = 12,
  ASSIGN_GSI = 13,
  PD_CTRL = 14,
}

export const EcCtrlOp = {
  RECALL: 0,
  /** Hide the last `ns` of a vCPU's wait in HLT from its VM time (a pause while halted); ns hidden in `utcb.result`. */
  HIDE_TIME: 1,
  /** The vCPU's VM time (ns), in `utcb.result`: it passes only while the vCPU runs or waits in HLT. */
  VM_TIME: 2,
  /**
   * State groups `mtd` (QUAL aside) of a vCPU that is not running (stopped in a boundary exit or
   * waiting for its reply), into the record at `utcb.vcpu`: what its exit's portal did not move
   * (a halt moves little) is read where it is, unchanged.
   */
  STATE: 3,
} as const;
export const SmCtrlOp = { UP: 0, DOWN: 1 } as const;

/** A table entry: the copier of its argument record (undefined: malformed), and the handler that gets the copy. */
interface Entry {
  readonly copy: (raw: unknown) => unknown;
  readonly run: (k: Kernel, ec: Ec, a: never) => Status;
}

function entry<S extends Shape>(args: S, run: (k: Kernel, ec: Ec, a: Args<S>) => Status): Entry {
  return { copy: copier(args), run };
}

const MAX_SELECTOR = 2 ** SPACE_ORDER[SpaceKind.OBJECT];

function isSelector(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < MAX_SELECTOR;
}

/** Portal ids, semaphore counts and MTDs are 32-bit words. */
function isWord(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/** The capability at `sel` if it names an object of `type` with all of `rights`; else undefined. */
export function lookupCap<T extends KernelObject>(pd: Pd, sel: number, type: ObjectType, rights: number): T | undefined {
  if (!isSelector(sel)) return undefined;
  const m = pd.objects.get(sel);
  if (!m || m.cap.object.type !== type || (m.cap.rights & rights) !== rights) return undefined;
  return m.cap.object as T;
}

/** Charge `payer` for the object and the caller's PD for the new mapping, both or neither. */
function pay(payer: Pd, objectCost: number, holder: Pd): boolean {
  if (!payer.charge(objectCost)) return false;
  if (!holder.charge(KernelMemoryCost.MAPPING)) {
    payer.refund(objectCost);
    return false;
  }
  return true;
}

/** Common checks of every create: a free destination selector and a PD with the create right. */
function createTarget(ec: Ec, dst: number, pdSel: number, right: number): Pd | Status {
  if (!isSelector(dst)) return Status.BAD_PARAMETER;
  if (ec.pd.objects.get(dst)) return Status.BAD_CAPABILITY;
  const pd = lookupCap<Pd>(ec.pd, pdSel, ObjectType.PD, right);
  return pd ?? Status.BAD_CAPABILITY;
}

// The hot path: its record is one number, copied by hand (the generic copier costs more than the call).
const call: Entry = {
  copy: (raw) => {
    try {
      const sel = (raw as { sel?: unknown }).sel;
      return typeof sel === "number" ? sel : undefined;
    } catch {
      return undefined; // not an object, or a Proxy or getter that threw
    }
  },
  run: (k, ec, sel: number) => portalCall(k, ec, sel, false),
};

// Hot too (every wake-up of a halted vCPU): one opaque field, copied by hand.
const reply: Entry = {
  copy: (raw) => {
    try {
      return { token: (raw as { token?: unknown }).token };
    } catch {
      return undefined;
    }
  },
  run: (k, ec, a: { token: unknown }) => replyTo(k, ec, a.token),
};

const createPd = entry(
  {
    dst: "number",
    quota: "number",
    options: { parent: "number?", vm: "boolean?", name: "string?", maxPriority: "number?", maxQuantumNs: "number?" },
  },
  (k, ec, { dst, quota, options: o }) => {
    const parent = createTarget(ec, dst, o.parent ?? Sel.SELF_PD, PdRights.CREATE_PD);
    if (typeof parent === "number") return parent;
    // The child pays for its self capability out of its quota, so the quota covers at least that.
    if (!Number.isSafeInteger(quota) || quota < KernelMemoryCost.MAPPING) return Status.BAD_PARAMETER;
    // A child's scheduling ceiling is at most its parent's.
    const ceiling = { maxPriority: o.maxPriority ?? parent.ceiling.maxPriority, maxQuantumNs: o.maxQuantumNs ?? parent.ceiling.maxQuantumNs };
    if (!isPriority(ceiling.maxPriority) || ceiling.maxPriority > parent.ceiling.maxPriority) return Status.BAD_PARAMETER;
    if (!isQuantum(ceiling.maxQuantumNs) || ceiling.maxQuantumNs > parent.ceiling.maxQuantumNs) return Status.BAD_PARAMETER;
    const label = o.name !== undefined && o.name.length > 0 ? o.name.slice(0, 64) : `pd${dst}`;
    if (!pay(parent, KernelMemoryCost.PD + quota, ec.pd)) return Status.OUT_OF_QUOTA;
    // Nothing below can fail: the new PD's space is empty and its quota covers its self capability.
    const pd = new Pd(parent, quota, label, o.vm === true ? k.memory : null, ceiling);
    pd.onDestroyed = parent.onDestroyed;
    pd.charge(KernelMemoryCost.MAPPING);
    const creator = k.adopt(ec.pd, pd, dst, PdRights.ALL);
    // The new PD names itself at SELF_PD, derived from its creator's capability.
    performDelegate({ from: [creator], to: pd.objects, toIndex: [Sel.SELF_PD], mask: PdRights.ALL });
    return Status.SUCCESS;
  },
);

const createEc = entry(
  { dst: "number", pd: "number", kind: "number", eventBase: "number?", entry: "function?" },
  (k, ec, { dst, pd: pdSel, kind, eventBase = 0, entry: code }) => {
    const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_EC);
    if (typeof pd === "number") return pd;
    if (kind !== EcKind.LOCAL && kind !== EcKind.GLOBAL && kind !== EcKind.VCPU) return Status.BAD_PARAMETER;
    if (kind === EcKind.VCPU) {
      if (!pd.guestMemory || !isSelector(eventBase) || eventBase + EXIT_REASON_COUNT > MAX_SELECTOR) return Status.BAD_PARAMETER;
      if (!k.vcpuEngine) return Status.BAD_FEATURE;
    } else if (code === undefined) {
      return Status.BAD_PARAMETER;
    }
    if (!pay(pd, KernelMemoryCost.EC + KernelMemoryCost.UTCB, ec.pd)) return Status.OUT_OF_QUOTA;
    const created = new Ec(pd, pd, kind, `${EcKind[kind].toLowerCase()}${dst}`);
    if (kind === EcKind.LOCAL) created.localEntry = code as LocalEntry;
    else if (kind === EcKind.GLOBAL) created.entry = code as GlobalEntry;
    else {
      created.engine = k.vcpuEngine!(pd.guestMemory!);
      created.eventBase = eventBase;
      pd.vcpus++;
    }
    k.adopt(ec.pd, created, dst, EcRights.ALL);
    return Status.SUCCESS;
  },
);

const createSc = entry(
  { dst: "number", pd: "number", ec: "number", priority: "number", quantumNs: "number" },
  (k, ec, { dst, pd: pdSel, ec: ecSel, priority, quantumNs }) => {
    const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_SC);
    if (typeof pd === "number") return pd;
    const target = lookupCap<Ec>(ec.pd, ecSel, ObjectType.EC, EcRights.CREATE_SC);
    if (!target) return Status.BAD_CAPABILITY;
    if (target.kind === EcKind.LOCAL || target.sc !== null || target.state === EcState.DEAD) return Status.BAD_PARAMETER;
    // Within the ceiling the PD that pays for the SC was given by its parent.
    if (!isPriority(priority) || priority > pd.ceiling.maxPriority) return Status.BAD_PARAMETER;
    if (!isQuantum(quantumNs) || quantumNs > pd.ceiling.maxQuantumNs) return Status.BAD_PARAMETER;
    if (!pay(pd, KernelMemoryCost.SC, ec.pd)) return Status.OUT_OF_QUOTA;
    const sc = new Sc(pd, target, priority, quantumNs);
    k.adopt(ec.pd, sc, dst, ScRights.ALL);
    target.sc = sc;
    if (target.state === EcState.READY) k.runq.enqueue(sc);
    return Status.SUCCESS;
  },
);

const createPt = entry({ dst: "number", pd: "number", ec: "number", mtd: "number" }, (k, ec, { dst, pd: pdSel, ec: ecSel, mtd }) => {
  const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_PT);
  if (typeof pd === "number") return pd;
  const handler = lookupCap<Ec>(ec.pd, ecSel, ObjectType.EC, EcRights.CREATE_PT);
  if (!handler) return Status.BAD_CAPABILITY;
  if (handler.kind !== EcKind.LOCAL || !isWord(mtd) || (mtd & ~Mtd.ALL) !== 0) return Status.BAD_PARAMETER;
  if (!pay(pd, KernelMemoryCost.PT, ec.pd)) return Status.OUT_OF_QUOTA;
  k.adopt(ec.pd, new Pt(pd, handler, mtd), dst, PtRights.ALL);
  return Status.SUCCESS;
});

const createSm = entry({ dst: "number", pd: "number", initial: "number" }, (k, ec, { dst, pd: pdSel, initial }) => {
  const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_SM);
  if (typeof pd === "number") return pd;
  if (!isWord(initial)) return Status.BAD_PARAMETER;
  if (!pay(pd, KernelMemoryCost.SM, ec.pd)) return Status.OUT_OF_QUOTA;
  k.adopt(ec.pd, new Sm(pd, initial), dst, SmRights.UP | SmRights.DOWN);
  return Status.SUCCESS;
});

const revoke = entry({ range: "crd", keepSelf: "boolean" }, (k, ec, { range, keepSelf }) => {
  const roots = planRevoke(ec.pd.space(range.kind), range);
  if (typeof roots === "string") return Status.BAD_PARAMETER;
  // Revoking the PD's own self capability would leave it without a name for itself.
  const kept = range.kind === SpaceKind.OBJECT ? roots.filter((m) => !(m.index === Sel.SELF_PD && m.cap.object === ec.pd)) : roots;
  performRevoke(kept, range.rights, keepSelf, k.removed);
  return Status.SUCCESS;
});

const lookup = entry({ range: "crd" }, (_k, ec, { range }) => {
  if (!isValidCrd(range)) return Status.BAD_PARAMETER;
  const m = ec.pd.space(range.kind).get(range.base);
  ec.utcb.lookupResult = m ? { crd: { kind: range.kind, base: m.index, order: 0, rights: m.cap.rights }, type: m.cap.object.type } : null;
  return Status.SUCCESS;
});

// Hot too (a VMM asks its vCPU's time at every halt): the record { sel, op, ns? } copied by hand
// (`ns`: HIDE_TIME's time, STATE's groups).
const ecCtrl: Entry = {
  copy: (raw) => {
    try {
      const r = raw as { sel?: unknown; op?: unknown; ns?: unknown };
      const sel = r.sel, op = r.op, ns = r.ns;
      if (typeof sel !== "number" || typeof op !== "number" || (ns !== undefined && typeof ns !== "number")) return undefined;
      return { sel, op, ns };
    } catch {
      return undefined;
    }
  },
  run: (k, ec, a: { sel: number; op: number; ns: number | undefined }) => ecCtrlRun(k, ec, a),
};

function ecCtrlRun(k: Kernel, ec: Ec, { sel, op, ns }: { sel: number; op: number; ns: number | undefined }): Status {
  const target = lookupCap<Ec>(ec.pd, sel, ObjectType.EC, EcRights.CONTROL);
  if (!target) return Status.BAD_CAPABILITY;
  if (target.kind !== EcKind.VCPU) return Status.BAD_PARAMETER;
  if (op === EcCtrlOp.RECALL) {
    target.recall = true;
    return Status.SUCCESS;
  }
  if (op === EcCtrlOp.VM_TIME) {
    ec.utcb.result = vmTime(k, target);
    return Status.SUCCESS;
  }
  if (op === EcCtrlOp.STATE) {
    const to = ec.utcb.vcpu;
    if (ns === undefined || !isWord(ns) || (ns & ~Mtd.ALL) !== 0 || !(to instanceof VcpuState)) return Status.BAD_PARAMETER;
    // Stopped (in a boundary exit, waiting for its reply, or for the CPU), its engine holds its
    // state at an instruction boundary; in the middle of a run (a synchronous exit) it does not.
    if (target === k.vcpuRun?.ec) return Status.BAD_PARAMETER;
    target.engine!.saveState(ns & ~Mtd.QUAL, to);
    return Status.SUCCESS;
  }
  if (op !== EcCtrlOp.HIDE_TIME || ns === undefined || !(ns >= 0) || target === k.vcpuRun?.ec || !target.started) return Status.BAD_PARAMETER;
  ec.utcb.result = hideTime(k, target, ns);
  return Status.SUCCESS;
}

const scCtrl = entry({ sel: "number" }, (_k, ec, { sel }) => {
  const sc = lookupCap<Sc>(ec.pd, sel, ObjectType.SC, ScRights.CONTROL);
  if (!sc) return Status.BAD_CAPABILITY;
  ec.utcb.result = sc.consumed;
  return Status.SUCCESS;
});

const ptCtrl = entry({ sel: "number", id: "number" }, (_k, ec, { sel, id }) => {
  const pt = lookupCap<Pt>(ec.pd, sel, ObjectType.PT, PtRights.CONTROL);
  if (!pt) return Status.BAD_CAPABILITY;
  if (!isWord(id)) return Status.BAD_PARAMETER;
  pt.id = id;
  return Status.SUCCESS;
});

const smCtrl = entry({ sel: "number", op: "number" }, (k, ec, { sel, op }) => {
  if (op !== SmCtrlOp.UP && op !== SmCtrlOp.DOWN) return Status.BAD_PARAMETER;
  const sm = lookupCap<Sm>(ec.pd, sel, ObjectType.SM, op === SmCtrlOp.UP ? SmRights.UP : SmRights.DOWN);
  if (!sm) return Status.BAD_CAPABILITY;
  return op === SmCtrlOp.UP ? sm.up(k) : sm.down(k, ec, 0, false);
});

const assignGsi = entry({ sel: "number" }, (_k, ec, { sel }) => {
  const sm = lookupCap<Sm>(ec.pd, sel, ObjectType.SM, SmRights.ASSIGN);
  if (!sm) return Status.BAD_CAPABILITY;
  if (sm.gsi < 0) return Status.BAD_PARAMETER;
  sm.assigned = true;
  return Status.SUCCESS;
});

const pdCtrl = entry({ pd: "number", range: "crd", dstBase: "number" }, (_k, ec, { pd: pdSel, range, dstBase }) => {
  const target = lookupCap<Pd>(ec.pd, pdSel, ObjectType.PD, PdRights.DELEGATE);
  if (!target) return Status.BAD_CAPABILITY;
  if (!isValidCrd(range)) return Status.BAD_PARAMETER;
  const plan = planDelegate(ec.pd.space(range.kind), range, target.space(range.kind), dstBase);
  if (typeof plan === "string") return Status.BAD_PARAMETER;
  if (!target.charge(plan.from.length * KernelMemoryCost.MAPPING)) return Status.OUT_OF_QUOTA;
  performDelegate(plan);
  return Status.SUCCESS;
});

/** Indexed by `Hypercall`. */
const table: readonly Entry[] = [
  call, reply, createPd, createEc, createSc, createPt, createSm, revoke, lookup, ecCtrl, scCtrl, ptCtrl, smCtrl, assignGsi, pdCtrl,
];

/**
 * Enter the kernel from `ec` with hypercall number `nr` and its argument record `args` (as the
 * caller passed it: it is copied here, once). Never throws for caller mistakes.
 */
export function hypercall(k: Kernel, ec: Ec, nr: number, args: unknown): Status {
  const h = Number.isInteger(nr) ? table[nr] : undefined;
  if (k.hypercallNs > 0) k.consume(k.hypercallNs);
  if (h === undefined) return Status.BAD_HYPERCALL;
  const a = h.copy(args);
  if (a === undefined) return Status.BAD_PARAMETER;
  try {
    return h.run(k, ec, a as never);
  } catch (error) {
    // Only a caller that used up the stack gets here without a kernel bug.
    if (hasHandlerStack()) throw error;
    return Status.ABORTED;
  }
}
