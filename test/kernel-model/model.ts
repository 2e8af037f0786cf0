// A reference model of capabilities and IPC, and a driver that runs the same random operations on
// the kernel and on the model and compares them after every step. The model is deliberately naive
// (lists and linear scans) so that it is easy to believe.

import { Kernel, Sel, Status, KernelMemoryCost, SpaceKind, type Crd } from "../../kernel/index.js";
import { ObjectType, type Mapping } from "../../capabilities/index.js";
import type { Ec } from "../../kernel/ec.js";
import type { Pd } from "../../kernel/pd.js";
import { runAs } from "../support/kernel.js";
import { prng } from "../support/prng.js";

export { prng };

/** Acting PDs: root (0) and children 1..3. Selector layout in every acting PD: */
export const ACTORS = 4;
const PD_CAPS = 8; // 8+j: a capability for acting PD j (root creates them; everyone gets them)
const LOCAL_EC = 3; // each PD's portal handler EC
const FREE_LO = 16; // random objects are created in [16, 28)
const FREE_HI = 28;
const CHILD_QUOTA = 10_000;
const MEM_PAGES = 16;

export type Op =
  | { op: "sm"; pd: number; sel: number; initial: number }
  | { op: "pt"; pd: number; sel: number }
  | { op: "delegate"; pd: number; kind: SpaceKind; base: number; order: number; mask: number; target: number; dst: number }
  | { op: "revoke"; pd: number; kind: SpaceKind; base: number; order: number; rights: number; keepSelf: boolean }
  | { op: "call"; pd: number; sel: number; word: number }
  | { op: "id"; pd: number; sel: number; id: number }
  | { op: "up" | "down"; pd: number; sel: number };

type ObjKind = "pd" | "ec" | "sc" | "pt" | "sm" | "mem";

interface MObject {
  readonly id: number;
  readonly kind: ObjKind;
  alive: boolean;
  /** Acting PD index that pays for it (-1: the boot account). */
  readonly payer: number;
  readonly cost: number;
  counter: number;
  portalId: number;
  /** For PDs: which acting PD it is; for PTs: the handler EC's object id; for ECs: its PD's actor index. */
  readonly ref: number;
}

interface MNode {
  readonly pd: number;
  readonly kind: SpaceKind;
  readonly idx: number;
  readonly obj: MObject;
  rights: number;
  parent: MNode | null;
  readonly children: MNode[];
  alive: boolean;
  /** The node made at creation: removing it destroys the object. */
  readonly creator: boolean;
  /** Memory: the frame. */
  readonly offset: number;
}

/** The model: objects, derivation nodes, and what each acting PD holds. */
class Model {
  readonly objects: MObject[] = [];
  readonly nodes: MNode[] = [];
  readonly pdAlive: boolean[] = Array(ACTORS).fill(true);
  readonly limits: number[] = [Infinity, CHILD_QUOTA, CHILD_QUOTA, CHILD_QUOTA];

  obj(kind: ObjKind, payer: number, cost: number, ref = -1): MObject {
    const o: MObject = { id: this.objects.length, kind, alive: true, payer, cost, counter: 0, portalId: 0, ref };
    this.objects.push(o);
    return o;
  }

  at(pd: number, kind: SpaceKind, idx: number): MNode | undefined {
    return this.nodes.find((n) => n.alive && n.pd === pd && n.kind === kind && n.idx === idx);
  }

  add(pd: number, kind: SpaceKind, idx: number, obj: MObject, rights: number, parent: MNode | null, offset = 0): MNode {
    const n: MNode = { pd, kind, idx, obj, rights, parent, children: [], alive: true, creator: parent === null, offset };
    parent?.children.push(n);
    this.nodes.push(n);
    return n;
  }

  used(pd: number): number {
    let u = 0;
    for (const n of this.nodes) if (n.alive && n.pd === pd) u += KernelMemoryCost.MAPPING;
    for (const o of this.objects) if (o.alive && o.payer === pd) u += o.cost;
    return u;
  }

  canPay(pd: number, bytes: number): boolean {
    return this.pdAlive[pd] && this.used(pd) + bytes <= this.limits[pd];
  }

  /** Leaves-first list of everything derived from `n`. */
  descendants(n: MNode): MNode[] {
    const out: MNode[] = [];
    const walk = (m: MNode) => {
      for (const c of m.children) if (c.alive) {
        walk(c);
        out.push(c);
      }
    };
    walk(n);
    return out;
  }

  remove(n: MNode): void {
    if (!n.alive) return;
    for (const d of this.descendants(n)) this.remove(d);
    n.alive = false;
    if (n.creator) this.destroy(n.obj);
  }

  destroy(o: MObject): void {
    o.alive = false;
    if (o.kind === "pd") {
      this.pdAlive[o.ref] = false;
      for (const n of this.nodes) if (n.alive && n.pd === o.ref) this.remove(n);
    }
  }

  revoke(roots: MNode[], rights: number, keepSelf: boolean): void {
    for (const root of roots) {
      if (!root.alive) continue;
      const victims = this.descendants(root);
      if (!keepSelf) victims.push(root);
      for (const m of victims) {
        if (!m.alive) continue;
        const left = m.rights & ~rights;
        if (left === 0 || rights === 0xff) this.remove(m);
        else m.rights = left;
      }
    }
  }
}

const RIGHTS = { pd: 63, ec: 7, sc: 1, pt: 3, sm: 3, mem: 7 };

/** Runs one sequence of operations on a fresh kernel and the model; throws on the first difference. */
export class Checker {
  readonly k = new Kernel({ memoryMiB: MEM_PAGES / 256, ioPorts: 16, gsis: 0 });
  readonly model = new Model();
  private readonly ecs: Ec[] = [];
  private readonly pds: Pd[] = [];
  private readonly ids = new Map<unknown, number>();
  readonly calls: Array<{ pd: number; word: number; id: number }> = [];

  constructor() {
    const { k, model } = this;
    k.boot(function* () {});
    this.ecs[0] = k.rootEc!;
    this.pds[0] = k.root;
    const rootPd = model.obj("pd", -1, 0, 0);
    this.ids.set(k.root, rootPd.id);
    model.add(0, SpaceKind.OBJECT, 0, rootPd, RIGHTS.pd, null);
    const rootEc = model.obj("ec", -1, 0, 0);
    this.ids.set(k.rootEc, rootEc.id);
    model.add(0, SpaceKind.OBJECT, Sel.ROOT_EC, rootEc, RIGHTS.ec, null);
    const rootSc = model.obj("sc", -1, 0);
    this.ids.set(k.root.objects.get(Sel.ROOT_SC)!.cap.object, rootSc.id);
    model.add(0, SpaceKind.OBJECT, Sel.ROOT_SC, rootSc, RIGHTS.sc, null);
    const frames = model.obj("mem", -1, 0);
    this.ids.set(k.memory, frames.id);
    for (let f = 0; f < MEM_PAGES; f++) model.add(0, SpaceKind.MEMORY, f, frames, RIGHTS.mem, null, f);
    const root = k.sysFor(k.root);
    this.as(0, () => {
      for (let j = 1; j < ACTORS; j++) {
        must(root.createPd(PD_CAPS + j, CHILD_QUOTA, { name: `p${j}` }));
        must(root.createGlobalEc(100 + j, PD_CAPS + j, function* () {}));
        const pd = k.root.objects.get(PD_CAPS + j)!.cap.object as Pd;
        this.pds[j] = pd;
        this.ecs[j] = k.root.objects.get(100 + j)!.cap.object as Ec;
      }
    });
    // Mirror the setup in the model: PD objects (paid by root), the actors' global ECs (paid by their PDs).
    for (let j = 1; j < ACTORS; j++) {
      const o = model.obj("pd", 0, KernelMemoryCost.PD + CHILD_QUOTA, j);
      this.ids.set(this.pds[j], o.id);
      const creator = model.add(0, SpaceKind.OBJECT, PD_CAPS + j, o, RIGHTS.pd, null);
      model.add(j, SpaceKind.OBJECT, 0, o, RIGHTS.pd, creator);
      const ec = model.obj("ec", j, KernelMemoryCost.EC + KernelMemoryCost.UTCB, j);
      this.ids.set(this.ecs[j], ec.id);
      model.add(0, SpaceKind.OBJECT, 100 + j, ec, RIGHTS.ec, null);
    }
    // Every acting PD gets a handler EC at LOCAL_EC and capabilities for all acting PDs.
    for (let j = 0; j < ACTORS; j++) {
      const sys = k.sysFor(this.pds[j]);
      this.as(j, () =>
        must(
          sys.createLocalEc(LOCAL_EC, 0, () => (utcb, id) => {
            this.calls.push({ pd: j, word: utcb.words[0], id });
            utcb.set((utcb.words[0] + 1) >>> 0, id);
          }),
        ),
      );
      const ec = model.obj("ec", j, KernelMemoryCost.EC + KernelMemoryCost.UTCB, j);
      this.ids.set(this.pds[j].objects.get(LOCAL_EC)!.cap.object, ec.id);
      model.add(j, SpaceKind.OBJECT, LOCAL_EC, ec, RIGHTS.ec, null);
    }
    for (let j = 1; j < ACTORS; j++) {
      for (let i = 1; i < ACTORS; i++) {
        this.as(0, () => must(root.delegate(PD_CAPS + j, { kind: SpaceKind.OBJECT, base: PD_CAPS + i, order: 0, rights: 0xff }, PD_CAPS + i)));
        model.add(j, SpaceKind.OBJECT, PD_CAPS + i, model.at(0, SpaceKind.OBJECT, PD_CAPS + i)!.obj, RIGHTS.pd, model.at(0, SpaceKind.OBJECT, PD_CAPS + i)!);
      }
    }
    this.compare("setup");
  }

  private as<T>(pd: number, fn: () => T): T {
    return runAs(this.k, this.ecs[pd], fn);
  }

  /** Apply `op` to both; compare the status and then the whole state. */
  step(op: Op): void {
    const expected = this.predict(op);
    const sys = this.k.sysFor(this.pds[op.pd]);
    const got = this.as(op.pd, () => this.perform(sys, op));
    if (got !== expected) throw new Error(`${JSON.stringify(op)}: kernel said ${Status[got]}, model ${Status[expected]}`);
    this.learn(op, got);
    this.compare(JSON.stringify(op));
  }

  private perform(sys: import("../../kernel/index.js").Sys, op: Op): Status {
    switch (op.op) {
      case "sm":
        return sys.createSm(op.sel, op.initial);
      case "pt":
        return sys.createPt(op.sel, LOCAL_EC);
      case "delegate":
        return sys.delegate(PD_CAPS + op.target, { kind: op.kind, base: op.base, order: op.order, rights: op.mask }, op.dst);
      case "revoke":
        return sys.revoke({ kind: op.kind, base: op.base, order: op.order, rights: op.rights }, op.keepSelf);
      case "call": {
        sys.utcb.set(op.word);
        const s = sys.call(op.sel);
        if (s === Status.SUCCESS) {
          const pt = this.model.at(op.pd, SpaceKind.OBJECT, op.sel)!.obj;
          if (sys.utcb.words[0] !== ((op.word + 1) >>> 0) || sys.utcb.words[1] !== pt.portalId)
            throw new Error(`call reply ${sys.utcb.words[0]},${sys.utcb.words[1]} for word ${op.word} id ${pt.portalId}`);
        }
        return s;
      }
      case "id":
        return sys.setPortalId(op.sel, op.id);
      case "up":
        return sys.up(op.sel);
      case "down":
        return sys.tryDown(op.sel);
    }
  }

  /** What the model says the kernel must answer. Pure: no change to the model. */
  private predict(op: Op): Status {
    const m = this.model;
    const self = m.at(op.pd, SpaceKind.OBJECT, 0);
    const cap = (sel: number, kind: ObjKind, rights: number) => {
      const n = m.at(op.pd, SpaceKind.OBJECT, sel);
      return n && n.obj.kind === kind && (n.rights & rights) === rights ? n : undefined;
    };
    switch (op.op) {
      case "sm":
      case "pt": {
        if (m.at(op.pd, SpaceKind.OBJECT, op.sel)) return Status.BAD_CAPABILITY;
        const right = op.op === "sm" ? 16 : 8;
        if (!self || (self.rights & right) === 0) return Status.BAD_CAPABILITY;
        if (op.op === "pt" && !cap(LOCAL_EC, "ec", 2)) return Status.BAD_CAPABILITY;
        const cost = (op.op === "sm" ? KernelMemoryCost.SM : KernelMemoryCost.PT) + KernelMemoryCost.MAPPING;
        return m.canPay(op.pd, cost) ? Status.SUCCESS : Status.OUT_OF_QUOTA;
      }
      case "delegate": {
        const target = cap(PD_CAPS + op.target, "pd", 32);
        if (!target) return Status.BAD_CAPABILITY;
        const size = 2 ** op.order;
        if (op.base % size !== 0 || op.dst % size !== 0) return Status.BAD_PARAMETER;
        const sources = this.rangeOf(op.pd, op.kind, op.base, size);
        const dstPd = target.obj.ref;
        for (const s of sources) if (m.at(dstPd, op.kind, op.dst + (s.idx - op.base))) return Status.BAD_PARAMETER;
        return m.canPay(dstPd, sources.length * KernelMemoryCost.MAPPING) ? Status.SUCCESS : Status.OUT_OF_QUOTA;
      }
      case "revoke":
        return op.base % 2 ** op.order === 0 ? Status.SUCCESS : Status.BAD_PARAMETER;
      case "call": {
        const pt = cap(op.sel, "pt", 1);
        if (!pt) return Status.BAD_CAPABILITY;
        const handler = m.objects[pt.obj.ref];
        return handler.alive && m.pdAlive[handler.ref] ? Status.SUCCESS : Status.ABORTED;
      }
      case "id":
        return cap(op.sel, "pt", 2) ? Status.SUCCESS : Status.BAD_CAPABILITY;
      case "up":
        return cap(op.sel, "sm", 1) ? Status.SUCCESS : Status.BAD_CAPABILITY;
      case "down": {
        const sm = cap(op.sel, "sm", 2);
        if (!sm) return Status.BAD_CAPABILITY;
        return sm.obj.counter > 0 ? Status.SUCCESS : Status.TIMEOUT;
      }
    }
  }

  private rangeOf(pd: number, kind: SpaceKind, base: number, size: number): MNode[] {
    return this.model.nodes
      .filter((n) => n.alive && n.pd === pd && n.kind === kind && n.idx >= base && n.idx < base + size)
      .sort((a, b) => a.idx - b.idx);
  }

  /** Apply a successful operation to the model. */
  private learn(op: Op, status: Status): void {
    const m = this.model;
    if (op.op === "revoke" && status === Status.SUCCESS) {
      const roots = this.rangeOf(op.pd, op.kind, op.base, 2 ** op.order).filter(
        (n) => !(n.kind === SpaceKind.OBJECT && n.idx === 0 && n.obj.kind === "pd" && n.obj.ref === op.pd),
      );
      m.revoke(roots, op.rights, op.keepSelf);
      return;
    }
    if (status !== Status.SUCCESS) return;
    switch (op.op) {
      case "sm":
      case "pt": {
        const kobj = this.pds[op.pd].objects.get(op.sel)!.cap.object;
        const o =
          op.op === "sm"
            ? m.obj("sm", op.pd, KernelMemoryCost.SM)
            : m.obj("pt", op.pd, KernelMemoryCost.PT, m.at(op.pd, SpaceKind.OBJECT, LOCAL_EC)!.obj.id);
        if (op.op === "sm") o.counter = op.initial;
        this.ids.set(kobj, o.id);
        m.add(op.pd, SpaceKind.OBJECT, op.sel, o, RIGHTS[op.op], null);
        return;
      }
      case "delegate": {
        const dstPd = m.at(op.pd, SpaceKind.OBJECT, PD_CAPS + op.target)!.obj.ref;
        for (const s of this.rangeOf(op.pd, op.kind, op.base, 2 ** op.order))
          m.add(dstPd, op.kind, op.dst + (s.idx - op.base), s.obj, s.rights & op.mask, s, s.offset);
        return;
      }
      case "id":
        m.at(op.pd, SpaceKind.OBJECT, op.sel)!.obj.portalId = op.id;
        return;
      case "up":
        m.at(op.pd, SpaceKind.OBJECT, op.sel)!.obj.counter++;
        return;
      case "down":
        m.at(op.pd, SpaceKind.OBJECT, op.sel)!.obj.counter--;
        return;
      default:
        return;
    }
  }

  /**
   * The invariants: every acting PD holds exactly what the model says (same objects, same rights,
   * nothing more), every capability's rights are within its parent's, and each PD's kernel memory
   * use equals the model's and stays within its quota.
   */
  private compare(after: string): void {
    for (let j = 0; j < ACTORS; j++) {
      const pd = this.pds[j];
      for (const kind of [SpaceKind.OBJECT, SpaceKind.MEMORY]) {
        const space = pd.space(kind);
        const got = space
          .all()
          .filter((mp) => kind === SpaceKind.MEMORY || mp.index < 200)
          .map((mp) => `${mp.index}:${this.ids.get(mp.cap.object) ?? "?"}:${mp.cap.rights}:${mp.offset}`);
        const want = this.model.nodes
          .filter((n) => n.alive && n.pd === j && n.kind === kind && (kind === SpaceKind.MEMORY || n.idx < 200))
          .sort((a, b) => a.idx - b.idx)
          .map((n) => `${n.idx}:${n.obj.id}:${n.rights}:${n.offset}`);
        if (got.join() !== want.join()) throw new Error(`after ${after}: PD ${j} space ${kind} is [${got}] but the model has [${want}]`);
        for (const mp of space.all()) checkRightsWithinParent(mp, after);
      }
      if (j > 0 && this.model.pdAlive[j]) {
        if (pd.used !== this.model.used(j)) throw new Error(`after ${after}: PD ${j} uses ${pd.used} bytes, the model says ${this.model.used(j)}`);
        if (pd.used > pd.limit) throw new Error(`after ${after}: PD ${j} exceeds its quota`);
      }
    }
  }
}

function checkRightsWithinParent(m: Mapping, after: string): void {
  if (m.parent && (m.cap.rights & ~m.parent.cap.rights) !== 0) throw new Error(`after ${after}: rights grew at ${m.index}`);
  if (m.parent && m.parent.space.get(m.parent.index) !== m.parent) throw new Error(`after ${after}: orphan at ${m.index}`);
}

function must(s: Status): void {
  if (s !== Status.SUCCESS) throw new Error(`setup failed: ${Status[s]}`);
}

/** Map raw random integers to an operation (shared by fast-check and the fuzzer). */
export function opFrom(r: readonly number[]): Op {
  const pd = r[0] % ACTORS;
  const sel = FREE_LO + (r[1] % (FREE_HI - FREE_LO));
  const anySel = r[1] % 8 !== 0 ? sel : r[1] % FREE_HI;
  const kind = r[2] % 4 === 0 ? SpaceKind.MEMORY : SpaceKind.OBJECT;
  const order = r[3] % 3;
  const base = kind === SpaceKind.MEMORY ? (r[4] % MEM_PAGES) & ~((1 << order) - 1) : (r[4] % FREE_HI) & ~((1 << order) - 1);
  const misalign = r[6] % 17 === 0 ? 1 : 0;
  switch (r[5] % 9) {
    case 0:
      return { op: "sm", pd, sel, initial: r[6] % 3 };
    case 1:
      return { op: "pt", pd, sel };
    case 2:
    case 3:
      return { op: "delegate", pd, kind, base: base + misalign, order, mask: [0xff, 1, 2, 3, 5, 6, 0x21][r[6] % 7], target: r[7] % ACTORS, dst: (kind === SpaceKind.MEMORY ? (r[8] % 64) : FREE_LO + (r[8] % (FREE_HI - FREE_LO))) & ~((1 << order) - 1) };
    case 4:
      return { op: "revoke", pd, kind, base: base + misalign, order, rights: r[6] % 3 === 0 ? [1, 2, 4, 32][r[7] % 4] : 0xff, keepSelf: r[8] % 2 === 0 };
    case 5:
    case 6:
      return { op: "call", pd, sel: anySel, word: r[6] };
    case 7:
      return { op: "id", pd, sel: anySel, id: r[6] };
    default:
      return { op: r[6] % 2 ? "up" : "down", pd, sel: anySel };
  }
}

export const OP_RANDOM_WORDS = 9;

export { Sel, type Crd, ObjectType };
