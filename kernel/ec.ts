// Execution context: a thread of a PD. Local ECs serve portals on their callers' time, global
// ECs run a body of their own under their own SC, vCPU ECs run guest code through an engine.

import { ObjectType } from "../capabilities/index.js";
import { KernelMemoryCost, KernelObject, type QuotaAccount } from "./object.js";
import type { Pd } from "./pd.js";
import type { Sc } from "./sc.js";
import type { Status } from "./status.js";
import type { Sys } from "./sys.js";
import { Utcb } from "./utcb.js";
import type { VcpuEngine, VcpuExitHandler, VcpuState } from "./vcpu.js";
import type { DeferredReply } from "./portal.js";

export enum EcKind {
  LOCAL = 0,
  GLOBAL = 1,
  VCPU = 2,
}

export enum EcState {
  /** Ready to run when its SC is scheduled (or, for local ECs, idle and callable). */
  READY = 0,
  /** Waiting on a semaphore, a deferred reply, or its timeout. */
  BLOCKED = 1,
  /** Body finished, crashed, or the EC was destroyed. */
  DEAD = 2,
}

/**
 * A portal handler: runs when the portal is called, on the caller's scheduling context. The
 * message is in `utcb`; returning replies with what is in `utcb` then (unless the reply was deferred).
 */
export type PortalHandler = (utcb: Utcb, portalId: number) => void;

/** What a global EC's body yields to block: built by `sys.wait.*`. */
export type Wait =
  | { readonly op: "down"; readonly sel: number; readonly timeoutNs: number }
  | { readonly op: "call"; readonly sel: number }
  | { readonly op: "sleep"; readonly ns: number }
  | { readonly op: "yield" };

/** The body of a global EC: a generator that yields a Wait whenever it blocks and gets the Status back. */
export type EcBody = Generator<Wait, void, Status>;

/** How code enters a new EC: it gets the syscall handle of the PD it runs in, nothing else. */
export type LocalEntry = (sys: Sys) => PortalHandler;
export type GlobalEntry = (sys: Sys) => EcBody;

export class Ec extends KernelObject {
  readonly type = ObjectType.EC;
  readonly utcb = new Utcb();
  state = EcState.READY;
  /** Scheduling context bound to this EC (global and vCPU ECs). */
  sc: Sc | null = null;
  /** Local ECs: the handler, and whether it is on the stack now (a second call would deadlock). */
  handler: PortalHandler | null = null;
  localEntry: LocalEntry | null = null;
  busy = false;
  /** While busy: who called, whether that caller can wait for a deferred reply, and the deferral. */
  caller: Ec | null = null;
  callerCanWait = false;
  deferred: DeferredReply | null = null;
  /** Global ECs: the body, created when the first SC is bound. */
  body: EcBody | null = null;
  entry: GlobalEntry | null = null;
  /** Status handed to the body (or the vCPU) when it runs next. */
  resumeStatus: Status = 0;
  /** vCPUs: the engine, its VM-exit portal base in the PD's object space, and pending recall. */
  engine: VcpuEngine | null = null;
  eventBase = 0;
  /** The kernel's answerer of this vCPU's synchronous exits (made once). */
  exitHandler: VcpuExitHandler | null = null;
  started = false;
  recall = false;
  /**
   * vCPUs: the VM's own time. It passes while the vCPU runs (its instructions and exits) and while
   * it waits in HLT for an interrupt (`idleSince`), not while it is preempted or stopped in another
   * exit: other components, pauses and other VMs never show in it.
   */
  vmNs = 0;
  /** Virtual (kernel) time since which the vCPU waits in HLT, its VM time running on; null otherwise. */
  idleSince: number | null = null;
  /** VM time the guest's TSC has been brought up to (the TSC runs on VM time). */
  tscSyncedNs = 0;
  tscScratch: VcpuState | null = null;
  /** What it is blocked on, so the kernel can take it off that queue on timeout or destruction. */
  waitingOn: { cancel(ec: Ec): void } | null = null;
  /** Absolute virtual time at which its wait times out (Infinity: never). */
  deadline = Infinity;

  constructor(
    payer: QuotaAccount,
    readonly pd: Pd,
    readonly kind: EcKind,
    readonly name: string,
  ) {
    super(payer, KernelMemoryCost.EC + KernelMemoryCost.UTCB);
  }

  protected override onDestroy(): void {
    this.state = EcState.DEAD;
    this.waitingOn?.cancel(this);
    this.waitingOn = null;
    this.body = null;
  }
}
