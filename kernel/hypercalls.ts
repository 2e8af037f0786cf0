// The hypercall table. Every handler has one shape: read its arguments, look up and check the
// capabilities, check the quota, and only then act. A refused hypercall changes nothing.

import {
  type Crd,
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
import { Ec, EcKind, EcState, type GlobalEntry, type LocalEntry } from "./ec.js";
import type { Kernel } from "./kernel.js";
import { type ReplyToken, portalCall, reply as replyTo } from "./portal.js";
import { KernelMemoryCost, type KernelObject } from "./object.js";
import { Pd } from "./pd.js";
import { Pt } from "./pt.js";
import { MAX_PRIORITY, Sc } from "./sc.js";
import { Sm } from "./sm.js";
import { Status } from "./status.js";
import { EXIT_REASON_COUNT } from "./vcpu.js";
import { hideTime } from "./vm-exit.js";

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
  /** Hide the last `ns` of virtual time from a vCPU that is not running (its TSC skips them); ns hidden in `utcb.result`. */
  HIDE_TIME: 1,
} as const;
export const SmCtrlOp = { UP: 0, DOWN: 1 } as const;
export const CreatePdFlags = { VM: 1 } as const;

type Handler = (k: Kernel, ec: Ec, a: number, b: number, c: number, d: number, x: unknown) => Status;

const MAX_SELECTOR = 2 ** SPACE_ORDER[SpaceKind.OBJECT];

function isSelector(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < MAX_SELECTOR;
}

/** The capability at `sel` if it names an object of `type` with all of `rights`; else undefined. */
function lookupCap<T extends KernelObject>(pd: Pd, sel: number, type: ObjectType, rights: number): T | undefined {
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

const call: Handler = (k, ec, sel) => portalCall(k, ec, sel, false);

const reply: Handler = (k, ec, _a, _b, _c, _d, token) => replyTo(k, ec, token as ReplyToken);

const createPd: Handler = (k, ec, dst, pdSel, quota, flags, name) => {
  const parent = createTarget(ec, dst, pdSel, PdRights.CREATE_PD);
  if (typeof parent === "number") return parent;
  if (!Number.isInteger(quota) || quota < KernelMemoryCost.MAPPING || (flags & ~CreatePdFlags.VM) !== 0) return Status.BAD_PARAMETER;
  const label = typeof name === "string" && name.length > 0 ? name.slice(0, 64) : `pd${dst}`;
  if (!pay(parent, KernelMemoryCost.PD + quota, ec.pd)) return Status.OUT_OF_QUOTA;
  const pd = new Pd(parent, quota, label, (flags & CreatePdFlags.VM) !== 0);
  pd.onDestroyed = parent.onDestroyed;
  k.adopt(ec.pd, pd, dst, PdRights.ALL);
  // The new PD names itself at selector 0, derived from its creator's capability.
  const self = planDelegate(ec.pd.objects, { kind: SpaceKind.OBJECT, base: dst, order: 0, rights: PdRights.ALL }, pd.objects, 0);
  if (typeof self !== "string" && pd.charge(KernelMemoryCost.MAPPING)) performDelegate(self);
  return Status.SUCCESS;
};

const createEc: Handler = (k, ec, dst, pdSel, kind, eventBase, entry) => {
  const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_EC);
  if (typeof pd === "number") return pd;
  if (kind !== EcKind.LOCAL && kind !== EcKind.GLOBAL && kind !== EcKind.VCPU) return Status.BAD_PARAMETER;
  if (kind === EcKind.VCPU) {
    if (!pd.guestMemory || !isSelector(eventBase) || eventBase + EXIT_REASON_COUNT > MAX_SELECTOR) return Status.BAD_PARAMETER;
    if (!k.vcpuEngine) return Status.BAD_FEATURE;
  } else if (typeof entry !== "function") {
    return Status.BAD_PARAMETER;
  }
  if (!pay(pd, KernelMemoryCost.EC + KernelMemoryCost.UTCB, ec.pd)) return Status.OUT_OF_QUOTA;
  const name = `${EcKind[kind].toLowerCase()}${dst}`;
  const created = new Ec(pd, pd, kind, name);
  if (kind === EcKind.LOCAL) created.localEntry = entry as LocalEntry;
  else if (kind === EcKind.GLOBAL) created.entry = entry as GlobalEntry;
  else {
    created.engine = k.vcpuEngine!(pd.guestMemory!);
    created.eventBase = eventBase;
  }
  k.adopt(ec.pd, created, dst, EcRights.ALL);
  return Status.SUCCESS;
};

const createSc: Handler = (k, ec, dst, pdSel, ecSel, priority, quantum) => {
  const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_SC);
  if (typeof pd === "number") return pd;
  const target = lookupCap<Ec>(ec.pd, ecSel, ObjectType.EC, EcRights.CREATE_SC);
  if (!target) return Status.BAD_CAPABILITY;
  if (target.kind === EcKind.LOCAL || target.sc !== null || target.state === EcState.DEAD) return Status.BAD_PARAMETER;
  if (!Number.isInteger(priority) || priority < 0 || priority > MAX_PRIORITY) return Status.BAD_PARAMETER;
  if (typeof quantum !== "number" || !(quantum > 0) || !Number.isFinite(quantum)) return Status.BAD_PARAMETER;
  if (!pay(pd, KernelMemoryCost.SC, ec.pd)) return Status.OUT_OF_QUOTA;
  const sc = new Sc(pd, target, priority, quantum);
  k.adopt(ec.pd, sc, dst, ScRights.ALL);
  target.sc = sc;
  if (target.state === EcState.READY) k.runq.enqueue(sc);
  return Status.SUCCESS;
};

const createPt: Handler = (k, ec, dst, pdSel, ecSel, mtd) => {
  const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_PT);
  if (typeof pd === "number") return pd;
  const handler = lookupCap<Ec>(ec.pd, ecSel, ObjectType.EC, EcRights.CREATE_PT);
  if (!handler) return Status.BAD_CAPABILITY;
  if (handler.kind !== EcKind.LOCAL || !Number.isInteger(mtd) || mtd < 0) return Status.BAD_PARAMETER;
  if (!pay(pd, KernelMemoryCost.PT, ec.pd)) return Status.OUT_OF_QUOTA;
  k.adopt(ec.pd, new Pt(pd, handler, mtd), dst, PtRights.ALL);
  return Status.SUCCESS;
};

const createSm: Handler = (k, ec, dst, pdSel, initial) => {
  const pd = createTarget(ec, dst, pdSel, PdRights.CREATE_SM);
  if (typeof pd === "number") return pd;
  if (!Number.isInteger(initial) || initial < 0 || initial > 0xffffffff) return Status.BAD_PARAMETER;
  if (!pay(pd, KernelMemoryCost.SM, ec.pd)) return Status.OUT_OF_QUOTA;
  k.adopt(ec.pd, new Sm(pd, initial), dst, SmRights.UP | SmRights.DOWN);
  return Status.SUCCESS;
};

function asCrd(x: unknown): Crd | undefined {
  if (x === null || typeof x !== "object") return undefined;
  const c = x as Crd;
  return isValidCrd(c) ? { kind: c.kind, base: c.base, order: c.order, rights: c.rights } : undefined;
}

const revoke: Handler = (k, ec, keepSelf, _b, _c, _d, x) => {
  const range = asCrd(x);
  if (!range || (keepSelf !== 0 && keepSelf !== 1)) return Status.BAD_PARAMETER;
  const roots = planRevoke(ec.pd.space(range.kind), range);
  if (typeof roots === "string") return Status.BAD_PARAMETER;
  // Revoking the PD's own self capability would leave it without a name for itself.
  const self = range.kind === SpaceKind.OBJECT ? roots.filter((m) => !(m.index === 0 && m.cap.object === ec.pd)) : roots;
  performRevoke(self, range.rights, keepSelf === 1, k.removed);
  return Status.SUCCESS;
};

const lookup: Handler = (_k, ec, _a, _b, _c, _d, x) => {
  const range = asCrd(x);
  if (!range) return Status.BAD_PARAMETER;
  const m = ec.pd.space(range.kind).get(range.base);
  ec.utcb.lookupResult = m ? { crd: { kind: range.kind, base: m.index, order: 0, rights: m.cap.rights }, type: m.cap.object.type } : null;
  return Status.SUCCESS;
};

const ecCtrl: Handler = (k, ec, sel, op, ns) => {
  const target = lookupCap<Ec>(ec.pd, sel, ObjectType.EC, EcRights.CONTROL);
  if (!target) return Status.BAD_CAPABILITY;
  if (target.kind !== EcKind.VCPU) return Status.BAD_PARAMETER;
  if (op === EcCtrlOp.RECALL) {
    target.recall = true;
    return Status.SUCCESS;
  }
  if (op !== EcCtrlOp.HIDE_TIME || !(ns >= 0) || target === k.vcpuRun?.ec || !target.started) return Status.BAD_PARAMETER;
  ec.utcb.result = hideTime(k, target, ns);
  return Status.SUCCESS;
};

const scCtrl: Handler = (_k, ec, sel) => {
  const sc = lookupCap<Sc>(ec.pd, sel, ObjectType.SC, ScRights.CONTROL);
  if (!sc) return Status.BAD_CAPABILITY;
  ec.utcb.result = sc.consumed;
  return Status.SUCCESS;
};

const ptCtrl: Handler = (_k, ec, sel, id) => {
  const pt = lookupCap<Pt>(ec.pd, sel, ObjectType.PT, PtRights.CONTROL);
  if (!pt) return Status.BAD_CAPABILITY;
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) return Status.BAD_PARAMETER;
  pt.id = id;
  return Status.SUCCESS;
};

const smCtrl: Handler = (k, ec, sel, op) => {
  if (op === SmCtrlOp.UP) {
    const sm = lookupCap<Sm>(ec.pd, sel, ObjectType.SM, SmRights.UP);
    if (!sm) return Status.BAD_CAPABILITY;
    if (sm.counter >= 0xffffffff) return Status.OUT_OF_QUOTA;
    k.semUp(sm);
    return Status.SUCCESS;
  }
  if (op === SmCtrlOp.DOWN) return k.semDown(ec, sel, 0, false);
  return Status.BAD_PARAMETER;
};

const assignGsi: Handler = (_k, ec, sel) => {
  const sm = lookupCap<Sm>(ec.pd, sel, ObjectType.SM, SmRights.ASSIGN);
  if (!sm) return Status.BAD_CAPABILITY;
  if (sm.gsi < 0) return Status.BAD_PARAMETER;
  sm.assigned = true;
  return Status.SUCCESS;
};

const pdCtrl: Handler = (_k, ec, pdSel, dstBase, _c, _d, x) => {
  const target = lookupCap<Pd>(ec.pd, pdSel, ObjectType.PD, PdRights.DELEGATE);
  if (!target) return Status.BAD_CAPABILITY;
  const range = asCrd(x);
  if (!range) return Status.BAD_PARAMETER;
  const plan = planDelegate(ec.pd.space(range.kind), range, target.space(range.kind), dstBase);
  if (typeof plan === "string") return Status.BAD_PARAMETER;
  if (!target.charge(plan.from.length * KernelMemoryCost.MAPPING)) return Status.OUT_OF_QUOTA;
  performDelegate(plan);
  return Status.SUCCESS;
};

const badHypercall: Handler = () => Status.BAD_HYPERCALL;

/** Indexed by `Hypercall`. */
const table: readonly Handler[] = [
  call, reply, createPd, createEc, createSc, createPt, createSm, revoke, lookup, ecCtrl, scCtrl, ptCtrl, smCtrl, assignGsi, pdCtrl,
];

/** Enter the kernel from `ec` with hypercall number `nr`. Never throws for caller mistakes. */
export function hypercall(k: Kernel, ec: Ec, nr: number, a = 0, b = 0, c = 0, d = 0, x?: unknown): Status {
  const h = (Number.isInteger(nr) && table[nr]) || badHypercall;
  if (k.hypercallNs > 0) k.consume(k.hypercallNs);
  if (!isNumber(a) || !isNumber(b) || !isNumber(c) || !isNumber(d)) return Status.BAD_PARAMETER;
  return h(k, ec, a, b, c, d, x);
}

function isNumber(v: unknown): v is number {
  return typeof v === "number" && v === v;
}
