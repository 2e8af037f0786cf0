// Protection domain: the three capability spaces of a component and its kernel-memory quota.

import { ObjectType, Space, SpaceKind, type Mapping } from "../capabilities/index.js";
import { GuestMemory } from "./guest-memory.js";
import { KernelMemoryCost, KernelObject, type QuotaAccount } from "./object.js";
import { type FrameStore, frameChunk, frameOffset } from "./frames.js";
import type { DeferredReply } from "./portal.js";

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

/** The most a PD may give the scheduling contexts it creates (and the PDs it creates), set by its parent. */
export interface ScCeiling {
  readonly maxPriority: number;
  /** Round-robin quantum, virtual ns. */
  readonly maxQuantumNs: number;
}

export class Pd extends KernelObject implements QuotaAccount {
  readonly type = ObjectType.PD;
  readonly objects: Space;
  readonly memory: Space;
  readonly io: Space;
  /** Kernel memory this PD may use, and what it uses now (bytes). */
  used = 0;
  /** Guest-physical memory as vCPUs see it; only for PDs created as virtual machines. */
  readonly guestMemory: GuestMemory | null;
  /** vCPU ECs created in it (a VM with several is a multiprocessor: see runVcpu's time rule). */
  vcpus = 0;
  /** The deferred replies its handlers owe: aborted when it dies. */
  readonly owedReplies = new OwedReplies<DeferredReply>();
  /** Called with the removal of every mapping of this PD's spaces (set by the kernel). */
  onDestroyed: ((pd: Pd) => void) | null = null;

  constructor(
    payer: QuotaAccount,
    readonly limit: number,
    readonly name: string,
    /** For a virtual machine: the frames its guest-physical memory maps (else null). */
    vmFrames: FrameStore | null,
    readonly ceiling: ScCeiling,
  ) {
    super(payer, KernelMemoryCost.PD + limit);
    this.objects = new Space(SpaceKind.OBJECT, this);
    this.memory = new Space(SpaceKind.MEMORY, this);
    this.io = new Space(SpaceKind.IO, this);
    this.guestMemory = vmFrames ? new GuestMemory(vmFrames.chunks, vmFrames.views, vmFrames.arena, vmFrames.takeTableRoom()) : null;
    if (vmFrames && this.guestMemory) {
      const gm = this.guestMemory;
      this.memory.listener = (page: number, m: Mapping | undefined) => {
        if (m === undefined) return gm.unmap(page);
        vmFrames.use(m.offset);
        gm.mapStore(page, frameChunk(m.offset), frameOffset(m.offset), m.cap.rights);
      };
    }
  }

  space(kind: SpaceKind): Space {
    return kind === SpaceKind.OBJECT ? this.objects : kind === SpaceKind.MEMORY ? this.memory : this.io;
  }

  charge(bytes: number): boolean {
    if (!this.alive || this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  refund(bytes: number): void {
    this.used -= bytes;
  }

  protected override onDestroy(): void {
    this.onDestroyed?.(this);
  }
}

/** A deferred reply as the list of its server's PD links it. */
export interface OwedReply {
  prevOwed: OwedReply | null;
  nextOwed: OwedReply | null;
}

/**
 * The replies a PD's handlers owe, linked through the replies themselves: a halted vCPU defers a
 * reply on every HLT, and a Set hashed each new one (a tenth of a microsecond a halt).
 */
export class OwedReplies<T extends OwedReply> {
  private head: T | null = null;

  add(r: T): void {
    r.prevOwed = null;
    r.nextOwed = this.head;
    if (this.head !== null) this.head.prevOwed = r;
    this.head = r;
  }

  /** Unlink `r` (a reply of this list, or one unlinked already: then nothing happens). */
  delete(r: T): void {
    if (r.prevOwed === null && this.head !== r) return;
    if (r.prevOwed !== null) r.prevOwed.nextOwed = r.nextOwed;
    else this.head = r.nextOwed as T | null;
    if (r.nextOwed !== null) r.nextOwed.prevOwed = r.prevOwed;
    r.prevOwed = r.nextOwed = null;
  }

  /** All of them, the list emptied. */
  takeAll(): T[] {
    const out: T[] = [];
    for (let r = this.head; r !== null; r = r.nextOwed as T | null) out.push(r);
    for (const r of out) r.prevOwed = r.nextOwed = null;
    this.head = null;
    return out;
  }
}
