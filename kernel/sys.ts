// The syscall handle: all a component's code ever gets. It is bound to the component's PD, and
// every operation goes through the hypercall table on behalf of the EC that runs now.
//
// The kernel and the PD live in #private fields, and the handle, its prototype and its `wait` are
// frozen: a component cannot reach around its handle, nor change the handles of others. Methods
// pass their arguments on as they got them; the hypercall table copies and checks them.

import { type Crd, type Mapping, MemRights } from "../capabilities/index.js";
import { EcKind, type GlobalEntry, type LocalEntry, type Wait } from "./ec.js";
import { EcCtrlOp, Hypercall, SmCtrlOp, hypercall } from "./hypercalls.js";
import type { Kernel } from "./kernel.js";
import { type ReplyToken, deferReply } from "./portal.js";
import type { Pd } from "./pd.js";
import { Status } from "./status.js";
import type { Utcb } from "./utcb.js";
import { CHUNK_FRAMES, FrameStore, frameChunk, heldAlone } from "./frames.js";
import { MemoryView } from "./memory-view.js";

/** What `createPd` lets the parent choose besides the quota. */
export interface CreatePdOptions {
  vm?: boolean;
  name?: string;
  /** The PD (selector) that pays and whose child it is: default the caller's own. */
  parent?: number;
  /** Highest priority and longest quantum the child may give its SCs (default: the parent's own). */
  maxPriority?: number;
  maxQuantumNs?: number;
}

export class Sys {
  /** Waits for global EC bodies: `const status = yield sys.wait.down(sel)`. */
  readonly wait = Object.freeze({
    /** Down on a semaphore; TIMEOUT after `timeoutNs` of virtual time (default: never). */
    down: (sel: number, timeoutNs = Infinity): Wait => ({ op: "down", sel, timeoutNs }),
    /** Call a portal whose handler may defer its reply. */
    call: (sel: number): Wait => ({ op: "call", sel }),
    sleep: (ns: number): Wait => ({ op: "sleep", ns }),
    /** Give the rest of the quantum to others of the same priority. */
    yield: (): Wait => ({ op: "yield" }),
  });

  readonly #kernel: Kernel;
  readonly #pd: Pd;

  constructor(kernel: Kernel, pd: Pd) {
    this.#kernel = kernel;
    this.#pd = pd;
    Object.freeze(this);
  }

  /** The name the PD was created with (for messages). */
  get name(): string {
    return this.#pd.name;
  }

  /** The UTCB of the EC that runs now: the message buffer for calls and replies. */
  get utcb(): Utcb {
    const ec = this.#kernel.current;
    if (!ec || ec.pd !== this.#pd) throw new Error(`sys of ${this.#pd.name} used outside its own ECs`);
    return ec.utcb;
  }

  /** Virtual time in ns (like reading the TSC: not a hypercall). */
  now(): number {
    return this.#kernel.now();
  }

  get seed(): number {
    return this.#kernel.seed;
  }

  /** Call the portal at `sel` with the message in the UTCB; the reply replaces it. */
  call(sel: number): Status {
    return this.#hc(Hypercall.CALL, { sel });
  }

  /** In a handler: do not reply on return; answer later with `reply(token)`. Null when the caller cannot wait. */
  deferReply(): ReplyToken | null {
    const ec = this.#kernel.current;
    return ec && ec.pd === this.#pd ? deferReply(this.#kernel, ec) : null;
  }

  /** Answer a deferred call with the message in the current UTCB. */
  reply(token: ReplyToken): Status {
    return this.#hc(Hypercall.REPLY, { token });
  }

  createPd(dst: number, quotaBytes: number, options: CreatePdOptions = {}): Status {
    return this.#hc(Hypercall.CREATE_PD, { dst, quota: quotaBytes, options });
  }

  /** A local EC in the PD at `pdSel`: serves portals with the handler its entry returns. */
  createLocalEc(dst: number, pdSel: number, entry: LocalEntry): Status {
    return this.#hc(Hypercall.CREATE_EC, { dst, pd: pdSel, kind: EcKind.LOCAL, entry });
  }

  /** A global EC in the PD at `pdSel`: runs its body once an SC is bound to it. */
  createGlobalEc(dst: number, pdSel: number, entry: GlobalEntry): Status {
    return this.#hc(Hypercall.CREATE_EC, { dst, pd: pdSel, kind: EcKind.GLOBAL, entry });
  }

  /** A vCPU in the VM PD at `pdSel`; its exits call the portals at `eventBase + reason` of that PD. */
  createVcpu(dst: number, pdSel: number, eventBase: number): Status {
    return this.#hc(Hypercall.CREATE_EC, { dst, pd: pdSel, kind: EcKind.VCPU, eventBase });
  }

  /** An SC for the EC at `ecSel`, paid by the PD at `pdSel` and within that PD's ceiling. */
  createSc(dst: number, ecSel: number, priority: number, quantumNs: number, pdSel = 0): Status {
    return this.#hc(Hypercall.CREATE_SC, { dst, pd: pdSel, ec: ecSel, priority, quantumNs });
  }

  createPt(dst: number, ecSel: number, mtd = 0, pdSel = 0): Status {
    return this.#hc(Hypercall.CREATE_PT, { dst, pd: pdSel, ec: ecSel, mtd });
  }

  createSm(dst: number, initial = 0, pdSel = 0): Status {
    return this.#hc(Hypercall.CREATE_SM, { dst, pd: pdSel, initial });
  }

  /** Revoke a range of this PD's space and everything derived from it (rights in the crd: which to take). */
  revoke(range: Crd, keepSelf = false): Status {
    return this.#hc(Hypercall.REVOKE, { range, keepSelf: keepSelf === true });
  }

  /** What is at `range.base` of this PD's space: result in `utcb.lookupResult` (null if empty). */
  lookup(range: Crd): Status {
    return this.#hc(Hypercall.LOOKUP, { range });
  }

  /** Recall a vCPU: it exits with RECALL before it runs guest code again. */
  recall(ecSel: number): Status {
    return this.#hc(Hypercall.EC_CTRL, { sel: ecSel, op: EcCtrlOp.RECALL });
  }

  /** The VM time of the vCPU at `ecSel` (ns): it passes only while the vCPU runs or waits in HLT. Null if not a vCPU of ours. */
  vmTime(ecSel: number): number | null {
    return this.#hc(Hypercall.EC_CTRL, { sel: ecSel, op: EcCtrlOp.VM_TIME }) === Status.SUCCESS ? this.utcb.result : null;
  }

  /**
   * State groups `mtd` of the vCPU at `ecSel`, stopped in an exit (its reply not given yet), into
   * `utcb.vcpu` (a record the caller put there): the groups its exit's portal did not move.
   */
  vcpuState(ecSel: number, mtd: number): Status {
    return this.#hc(Hypercall.EC_CTRL, { sel: ecSel, op: EcCtrlOp.STATE, ns: mtd });
  }

  /** Hide the last `ns` of a halted vCPU's wait from its VM time (a pause while halted): ns hidden in `utcb.result`. */
  hideTime(ecSel: number, ns: number): Status {
    return this.#hc(Hypercall.EC_CTRL, { sel: ecSel, op: EcCtrlOp.HIDE_TIME, ns });
  }

  /** Virtual ns consumed by the SC: result in `utcb.result`. */
  scCtrl(sel: number): Status {
    return this.#hc(Hypercall.SC_CTRL, { sel });
  }

  setPortalId(sel: number, id: number): Status {
    return this.#hc(Hypercall.PT_CTRL, { sel, id });
  }

  up(sel: number): Status {
    return this.#hc(Hypercall.SM_CTRL, { sel, op: SmCtrlOp.UP });
  }

  /** Down without blocking: TIMEOUT when the counter is zero. Bodies block with `yield sys.wait.down(sel)`. */
  tryDown(sel: number): Status {
    return this.#hc(Hypercall.SM_CTRL, { sel, op: SmCtrlOp.DOWN });
  }

  assignGsi(sel: number): Status {
    return this.#hc(Hypercall.ASSIGN_GSI, { sel });
  }

  /** Delegate `range` of this PD's space into the PD at `pdSel`, at `dstBase` of the same space. */
  delegate(pdSel: number, range: Crd, dstBase: number): Status {
    return this.#hc(Hypercall.PD_CTRL, { pd: pdSel, range, dstBase });
  }

  /**
   * The bytes of `pages` pages of this PD's memory space from `page` on, as one view (no copy):
   * like an MMU mapping. Null unless all are mapped readable (and writable, unless `writable` is
   * false) and are consecutive frames of one chunk of CHUNK_FRAMES (a chunk never has less).
   * The view lasts as long as those mappings: once one is revoked (or made read-only, for a
   * writable view), using it throws MemoryRevokedError.
   */
  memory(page: number, pages: number, writable = true): MemoryView | null {
    if (!Number.isInteger(page) || !Number.isInteger(pages) || page < 0 || pages <= 0 || pages > CHUNK_FRAMES) return null;
    const space = this.#pd.memory;
    const first = space.get(page);
    if (!first || !(first.cap.object instanceof FrameStore) || frameChunk(first.offset) !== frameChunk(first.offset + pages - 1)) return null;
    const need = writable ? MemRights.R | MemRights.W : MemRights.R;
    const mappings: Mapping[] = [];
    for (let i = 0; i < pages; i++) {
      const m = space.get(page + i);
      if (!m || m.cap.object !== first.cap.object || m.offset !== first.offset + i || (m.cap.rights & need) !== need) return null;
      mappings.push(m);
    }
    return new MemoryView(space, page, mappings, !!writable);
  }

  /**
   * Give back the storage of the frames in `pages` pages of this PD's memory space from `page` on
   * (like madvise's DONTNEED): they read as zero from now on. Only a writable page whose frame no
   * one else sees is discarded (nothing delegated from it, and no other branch of its ancestors
   * holds it); the others are left as they are. Returns how many were discarded.
   */
  discard(page: number, pages: number): number {
    if (!Number.isInteger(page) || !Number.isInteger(pages) || page < 0 || pages <= 0 || page + pages > this.#pd.memory.slots) return 0;
    let n = 0;
    for (const m of this.#pd.memory.mappingsIn(page, pages)) {
      if (!(m.cap.object instanceof FrameStore) || (m.cap.rights & MemRights.W) === 0 || !heldAlone(m)) continue;
      m.cap.object.discard(m.offset);
      n++;
    }
    return n;
  }

  /** Show a counter of this component's in the kernel's trace, if there is one (a name of at most 40 characters). */
  traceCount(name: string, value: number): void {
    const trace = this.#kernel.trace;
    if (!trace || typeof name !== "string" || typeof value !== "number") return;
    trace.count(this.#kernel.clock.now, this.#pd.name, name.slice(0, 40), value);
  }

  /** How many times a mapping of this PD's memory space was removed or downgraded: views taken before a change may be stale. */
  memoryRevocations(): number {
    return this.#pd.memory.revocations;
  }

  /**
   * The pages of this PD's memory space revoked (removed or downgraded) since `memoryRevocations`
   * was `since`, oldest first; null when the kernel no longer remembers all of them (the last
   * 4,096 only): then every view kept may be stale.
   */
  memoryRevokedSince(since: number): number[] | null {
    return this.#pd.memory.revokedSince(since);
  }

  #hc(nr: Hypercall, args: object): Status {
    const ec = this.#kernel.current;
    if (!ec || ec.pd !== this.#pd) return Status.BAD_FEATURE;
    return hypercall(this.#kernel, ec, nr, args);
  }
}

Object.freeze(Sys.prototype);
