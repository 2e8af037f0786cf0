// Root task: starts the boot modules it is given and hands each exactly the capabilities its
// description names. It knows no component's code and never sees the kernel object: a module is a
// description (its PD, the portals it serves, its threads, what it is given), written by the
// composition layer (bin/), and the root acts on it through its own syscall handle only.
//
// Order: every PD first (so grants may name any module), then handler ECs and portals, then the
// grants, then the threads. A description that names something that does not exist is refused
// before anything is created.

import { Sel, SmRights, SpaceKind, Status, alignedRuns, crd, MemRights, PtRights, type GlobalEntry, type LocalEntry, type Sys, type Utcb } from "../kernel/index.js";
import { FRAME_PIECE, ParentOp, type VmEnd } from "./root-protocol.js";

/** A capability a module finds at `sel` of its object space when its threads start. */
export type ModuleGrant =
  /** A portal of another module ("module.portal"), with the CALL right. */
  | { readonly sel: number; readonly portal: string }
  /** Another module's PD, with these rights (PdRights). */
  | { readonly sel: number; readonly pd: string; readonly rights: number }
  /** The semaphore of a host interrupt line (DOWN right); the root enables its delivery. */
  | { readonly sel: number; readonly gsi: number }
  /** Its own parent portal: the root task speaks with each module through a portal of its own. */
  | { readonly sel: number; readonly parent: true };

export interface BootModule {
  /** Unique among the modules; the name of its PD in faults and traces. */
  readonly name: string;
  /** Kernel memory quota of its PD, in bytes. */
  readonly quota: number;
  /** A VM PD: its memory space is a guest-physical address space, and it runs no code of its own. */
  readonly vm?: boolean;
  /**
   * It may have every memory frame of the machine, at pages [0, frames) of its space (the memory
   * manager): it asks for them a piece at a time (ParentOp.FRAMES) through its parent portal, so
   * give it `{ parent: true }` too.
   */
  readonly frames?: boolean;
  /** Handler ECs by name: each serves the portals that name it. */
  readonly handlers?: Readonly<Record<string, LocalEntry>>;
  /** Portals by name: the handler EC that serves it and the portal id (which names the caller to the handler). */
  readonly portals?: Readonly<Record<string, { readonly handler: string; readonly id: number }>>;
  /** Threads: global ECs, each with a scheduling context of its own. */
  readonly threads?: ReadonlyArray<{ readonly entry: GlobalEntry; readonly priority: number; readonly quantumNs: number }>;
  readonly grants?: ReadonlyArray<ModuleGrant>;
  /** The highest priority and longest quantum the module may give scheduling contexts it creates itself (default: none above 0, 1 ms). */
  readonly maxPriority?: number;
  readonly maxQuantumNs?: number;
  /** Where the portals it publishes (ParentOp.PUBLISH, by name) go: into that module's space at `sel`. */
  readonly routes?: Readonly<Record<number, { readonly module: string; readonly sel: number }>>;
}

/** What the machine is: the root's boot information (NOVA's hypervisor information page). */
export interface BootInfo {
  /** Memory frames the root holds, at pages [0, frames) of its memory space. */
  readonly frames: number;
}

/** The root task's host side: what it reports upwards. */
export interface RootHost {
  /** Module `module` (a VMM) reported that its VM is over. */
  vmEnded(module: string, status: number, why: VmEnd, message: string): void;
}

/** Root selectors of what it creates for the modules, from here on. */
const FIRST_FREE = 0x200;
/** Names a module can publish (window slots of its parent EC): up to Published.PEER_BASE + 8 peer portals. */
const PUBLISH_SLOTS = 16;

export class BootDescriptionError extends Error {}

/** The root task's body for these modules. Throws BootDescriptionError (a root fault) before creating anything if the description is inconsistent. */
export function rootTask(modules: readonly BootModule[], info: BootInfo, host: RootHost): GlobalEntry {
  checkDescription(modules);
  return function* root(sys: Sys) {
    let next = FIRST_FREE;
    const pds = new Map<string, number>();
    const portals = new Map<string, number>();
    const parents = new Map<string, number>();
    /** Pieces of frames given (ParentOp.FRAMES), per module that may ask. */
    const given = new Map<string, Uint8Array>();
    for (const m of modules) {
      const pd = next++;
      const ceiling = { maxPriority: m.maxPriority ?? 0, maxQuantumNs: m.maxQuantumNs ?? 1_000_000 };
      must(sys.createPd(pd, m.quota, { name: m.name, vm: m.vm, ...ceiling }), `create the PD of ${m.name}`);
      pds.set(m.name, pd);
      if (m.frames) given.set(m.name, new Uint8Array(Math.ceil(info.frames / FRAME_PIECE)));
    }
    for (const m of modules) {
      const pd = pds.get(m.name)!;
      const ecs = new Map<string, number>();
      for (const [name, entry] of Object.entries(m.handlers ?? {})) {
        const ec = next++;
        must(sys.createLocalEc(ec, pd, entry), `create handler ${m.name}.${name}`);
        ecs.set(name, ec);
      }
      for (const [name, p] of Object.entries(m.portals ?? {})) {
        const pt = next++;
        must(sys.createPt(pt, ecs.get(p.handler)!), `create portal ${m.name}.${name}`);
        must(sys.setPortalId(pt, p.id), `name portal ${m.name}.${name}`);
        portals.set(`${m.name}.${name}`, pt);
      }
      if (m.grants?.some((g) => "parent" in g)) {
        // A parent EC per module: published portals arrive in a window of that module's own, one
        // slot per name (the delegate item's offset is the name).
        const published = Math.ceil(next / PUBLISH_SLOTS) * PUBLISH_SLOTS;
        next = published + PUBLISH_SLOTS;
        const ec = next++;
        const pt = next++;
        const entry: LocalEntry = (self) => {
          self.utcb.receiveWindow[SpaceKind.OBJECT] = crd(SpaceKind.OBJECT, published, Math.log2(PUBLISH_SLOTS));
          return (utcb: Utcb) => onParent(self, utcb, m, { published, pds, host, frames: info.frames, given: given.get(m.name) });
        };
        must(sys.createLocalEc(ec, 0, entry), `create the parent EC of ${m.name}`);
        must(sys.createPt(pt, ec), `create the parent portal of ${m.name}`);
        parents.set(m.name, pt);
      }
    }
    for (const m of modules) {
      const pd = pds.get(m.name)!;
      for (const g of m.grants ?? []) {
        let range;
        if ("portal" in g) range = crd(SpaceKind.OBJECT, portals.get(g.portal)!, 0, PtRights.CALL);
        else if ("pd" in g) range = crd(SpaceKind.OBJECT, pds.get(g.pd)!, 0, g.rights);
        else if ("gsi" in g) {
          must(sys.assignGsi(Sel.GSI_BASE + g.gsi), `enable interrupt ${g.gsi} for ${m.name}`);
          range = crd(SpaceKind.OBJECT, Sel.GSI_BASE + g.gsi, 0, SmRights.DOWN);
        } else range = crd(SpaceKind.OBJECT, parents.get(m.name)!, 0, PtRights.CALL);
        must(sys.delegate(pd, range, g.sel), `give ${m.name} its selector ${g.sel}`);
      }
    }
    for (const m of modules) {
      for (const t of m.threads ?? []) {
        const ec = next++;
        const sc = next++;
        must(sys.createGlobalEc(ec, pds.get(m.name)!, t.entry), `create a thread of ${m.name}`);
        must(sys.createSc(sc, ec, t.priority, t.quantumNs), `schedule a thread of ${m.name}`);
      }
    }
  };
}

/** Every name a module refers to exists, and names are unique. */
function checkDescription(modules: readonly BootModule[]): void {
  const names = new Set<string>();
  for (const m of modules) {
    if (names.has(m.name)) throw new BootDescriptionError(`boot modules: '${m.name}' is named twice`);
    names.add(m.name);
  }
  const portals = new Set(modules.flatMap((m) => Object.keys(m.portals ?? {}).map((p) => `${m.name}.${p}`)));
  for (const m of modules) {
    for (const [name, p] of Object.entries(m.portals ?? {}))
      if (!m.handlers?.[p.handler]) throw new BootDescriptionError(`boot modules: portal ${m.name}.${name} names no handler '${p.handler}'`);
    for (const g of m.grants ?? []) {
      if ("portal" in g && !portals.has(g.portal)) throw new BootDescriptionError(`boot modules: ${m.name} is granted '${g.portal}', which no module serves`);
      if ("pd" in g && !names.has(g.pd)) throw new BootDescriptionError(`boot modules: ${m.name} is granted the PD of '${g.pd}', which is not a module`);
    }
    for (const r of Object.values(m.routes ?? {}))
      if (!names.has(r.module)) throw new BootDescriptionError(`boot modules: ${m.name} publishes to '${r.module}', which is not a module`);
  }
}

/** What the parent portal of a module works with. */
interface ParentContext {
  /** The module's window of published portals. */
  readonly published: number;
  readonly pds: ReadonlyMap<string, number>;
  readonly host: RootHost;
  /** The machine's frames, and the pieces of them the module was given (only for a module with `frames`). */
  readonly frames: number;
  readonly given: Uint8Array | undefined;
}

function onParent(sys: Sys, utcb: Utcb, module: BootModule, { published, pds, host, frames, given }: ParentContext): void {
  switch (utcb.words[0]) {
    case ParentOp.FRAMES: {
      const first = utcb.words[1];
      if (given === undefined || utcb.untyped < 2 || first % FRAME_PIECE !== 0 || first >= frames) return void utcb.set(Status.BAD_PARAMETER);
      const piece = first / FRAME_PIECE;
      if (given[piece] === 0) {
        // One delegation (a piece is aligned; a short last piece may take a few): a refusal (the
        // module's quota is too small) is the answer, and the piece counts as given once all of it went.
        const pd = pds.get(module.name)!;
        for (const [offset, order] of alignedRuns(Math.min(FRAME_PIECE, frames - first), [first])) {
          const status = sys.delegate(pd, crd(SpaceKind.MEMORY, first + offset, order, MemRights.ALL), first + offset);
          if (status !== Status.SUCCESS) return void utcb.set(status);
        }
        given[piece] = 1;
      }
      return void utcb.set(Status.SUCCESS);
    }
    case ParentOp.PUBLISH: {
      // The published portal arrived in our window; pass it on where the description routes it.
      const name = utcb.words[1];
      const route = Object.hasOwn(module.routes ?? {}, name) ? module.routes![name] : undefined;
      const arrived = utcb.received.some((r) => r.kind === "delegated" && r.crd.base === published + name);
      if (!route || !arrived) return void utcb.set(Status.BAD_PARAMETER);
      return void utcb.set(sys.delegate(pds.get(route.module)!, crd(SpaceKind.OBJECT, published + name, 0, PtRights.CALL), route.sel));
    }
    case ParentOp.VM_EXITED: {
      const n = Math.max(0, utcb.untyped - 3);
      const message = new TextDecoder().decode(Uint8Array.from(utcb.words.subarray(3, 3 + n), (w) => w & 0xff));
      host.vmEnded(module.name, utcb.words[1], utcb.words[2] as VmEnd, message);
      return void utcb.set(Status.SUCCESS);
    }
  }
  utcb.set(Status.BAD_PARAMETER);
}

function must(s: Status, what: string): void {
  if (s !== Status.SUCCESS) throw new Error(`root: could not ${what}: ${Status[s]}`);
}
