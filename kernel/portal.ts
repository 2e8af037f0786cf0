// Portal calls: the IPC path. A call runs the handler EC's function on the caller's stack and
// scheduling context; its return is the reply. A handler may defer its reply to a caller that can
// wait (a body's wait.call, a vCPU's boundary exit) and answer later through a reply token.

import { ObjectType, PtRights } from "../capabilities/index.js";
import { type Ec, EcKind, EcState } from "./ec.js";
import { transferMessage } from "./ipc.js";
import type { Kernel } from "./kernel.js";
import type { Pd } from "./pd.js";
import type { Pt } from "./pt.js";
import { Status } from "./status.js";
import { type ExitReason, type VcpuState } from "./vcpu.js";
import { deliverVcpuState, endHalt, loadVcpuReply } from "./vm-exit.js";

/** Internal result of a call whose reply was deferred. Never returned to component code. */
export const DEFERRED = -1 as Status;

/** Calls nest at most this deep (a chain of portals, each calling the next); deeper calls are ABORTED. */
export const MAX_CALL_DEPTH = 64;

/**
 * Stack a handler should never need. When a handler throws with less than this left below its
 * caller (usually: the stack ran out), the callers used up the stack, not the handler: the call
 * is ABORTED and the handler stays. With at least this much left, a throw is the handler's fault.
 */
export const HANDLER_STACK_BYTES = 256 * 1024;

/** The deferred reply a token stands for, and the tie between them (this file only: a handler reaches neither). */
let deferredOf: (token: object) => DeferredReply | undefined;
let bindToken: (token: ReplyToken, deferred: DeferredReply) => void;

/**
 * What a handler holds for a deferred reply: a name only; what it stands for is in a private field
 * only this file reads (not a WeakMap: a halted vCPU defers its reply on every HLT).
 */
export class ReplyToken {
  #deferred: DeferredReply | undefined = undefined;
  constructor() {
    Object.freeze(this);
  }
  static {
    deferredOf = (token) => (#deferred in token ? token.#deferred : undefined);
    bindToken = (token, deferred) => void (token.#deferred = deferred);
  }
}
Object.freeze(ReplyToken.prototype);

/** A reply a handler deferred, as the kernel keeps it: the caller stays blocked until `reply` or abort. */
export class DeferredReply {
  used = false;
  /** Links in the server PD's list of owed replies (pd.ts OwedReplies). */
  prevOwed: DeferredReply | null = null;
  nextOwed: DeferredReply | null = null;
  readonly token = new ReplyToken();
  constructor(
    readonly caller: Ec,
    /** The PD whose handler took the call; its death aborts the reply. */
    readonly server: Pd,
  ) {
    bindToken(this.token, this);
  }

  cancel(_ec: Ec): void {
    this.used = true;
  }
}

/**
 * Call the portal at `sel` of the caller's PD. The handler runs now, on the caller's SC. With
 * `canWait` the handler may defer its reply and DEFERRED is returned (the caller is blocked).
 */
export function portalCall(k: Kernel, caller: Ec, sel: number, canWait: boolean): Status {
  const m = caller.pd.objects.get(sel);
  if (m === undefined) return Status.BAD_CAPABILITY;
  const cap = m.cap;
  if (cap.object.type !== ObjectType.PT || (cap.rights & PtRights.CALL) === 0) return Status.BAD_CAPABILITY;
  const pt = cap.object as Pt;
  const status = enter(k, caller, pt, canWait, null, -1);
  if (status !== Status.SUCCESS) return status;
  const handler = pt.ec;
  transferMessage(handler.utcb, handler.pd, caller.utcb, caller.pd);
  return Status.SUCCESS;
}

/**
 * Run the handler of `pt` for `caller`: deliver the message (from the caller's UTCB, or the vCPU
 * state), call the handler, and say whether it replied (SUCCESS), deferred, or failed. The open
 * call is recorded on the handler EC itself (a local EC serves one call at a time), and undone on
 * every way out.
 */
export function enter(k: Kernel, caller: Ec, pt: Pt, canWait: boolean, vcpuExit: VcpuState | null, reason: ExitReason | -1): Status {
  const handler = pt.ec;
  if (handler.state === EcState.DEAD || !handler.alive || !handler.pd.alive) return Status.ABORTED;
  if (handler.busy) return Status.ABORTED; // already on the stack: the call would deadlock
  if (k.callDepth >= MAX_CALL_DEPTH) return Status.ABORTED;
  if (handler.handler === null && !materialize(k, handler)) return Status.ABORTED;
  const to = handler.utcb;
  if (reason < 0) transferMessage(caller.utcb, caller.pd, to, handler.pd);
  if (k.trace) k.trace.callBegin(k.now(), caller.pd.name, handler.pd.name, pt.id, reason);
  const prev = k.current;
  k.current = handler;
  k.callDepth++;
  handler.busy = true;
  handler.caller = caller;
  handler.callerCanWait = canWait;
  handler.deferred = null;
  let failed = false;
  try {
    // The handler's UTCB is its own: a malformed vCPU record there is its fault.
    if (reason >= 0) deliverVcpuState(k, caller, pt, to, vcpuExit);
    const run = handler.handler!; // called as a plain function: `this` in it is not the EC
    run(to, pt.id);
  } catch (error) {
    failed = true;
    if (hasHandlerStack()) k.fault(handler, error);
  } finally {
    handler.busy = false;
    handler.caller = null;
    k.callDepth--;
    k.current = prev;
  }
  if (k.trace) k.trace.callEnd(k.now(), handler.pd.name);
  const deferred = handler.deferred as DeferredReply | null;
  if (deferred !== null) {
    handler.deferred = null;
    if (failed) {
      deferred.used = true;
      handler.pd.owedReplies.delete(deferred);
      return Status.ABORTED;
    }
    k.block(caller, deferred, Infinity);
    return DEFERRED;
  }
  return failed ? Status.ABORTED : Status.SUCCESS;
}

/** A local EC gets its handler from its entry the first time it is called (running as that EC). */
function materialize(k: Kernel, ec: Ec): boolean {
  const prev = k.current;
  k.current = ec;
  k.callDepth++;
  try {
    const entry = ec.localEntry!; // called as a plain function: `this` in it is not the EC
    const handler = entry(k.sysFor(ec.pd));
    if (typeof handler !== "function") throw new TypeError(`local EC ${ec.name}: its entry returned no handler`);
    ec.handler = handler;
    return true;
  } catch (error) {
    if (hasHandlerStack()) k.fault(ec, error);
    return false;
  } finally {
    k.callDepth--;
    k.current = prev;
  }
}

/** Called by a handler: keep the caller blocked and answer later with `reply(token)`. */
export function deferReply(k: Kernel, handler: Ec): ReplyToken | null {
  const caller = handler.caller;
  if (!handler.busy || caller === null || !handler.callerCanWait || handler.deferred !== null) return null;
  const deferred = new DeferredReply(caller, handler.pd);
  handler.deferred = deferred;
  handler.pd.owedReplies.add(deferred);
  return deferred.token;
}

/** Answer a deferred call with the message in `from`'s UTCB. */
export function reply(k: Kernel, from: Ec, token: unknown): Status {
  const deferred = typeof token === "object" && token !== null ? deferredOf(token) : undefined;
  if (deferred === undefined || deferred.used || deferred.server !== from.pd) return Status.BAD_PARAMETER;
  deferred.used = true;
  from.pd.owedReplies.delete(deferred);
  const caller = deferred.caller;
  if (caller.state !== EcState.BLOCKED || caller.waitingOn !== deferred) return Status.ABORTED;
  if (caller.kind === EcKind.VCPU) {
    // A reply the vCPU cannot take stops it, as a failed exit handler does.
    endHalt(k, caller);
    if (from.utcb.vcpu !== null && !loadVcpuReply(k, caller, from)) return Status.BAD_PARAMETER;
  } else {
    transferMessage(from.utcb, from.pd, caller.utcb, caller.pd);
  }
  k.wake(caller, Status.SUCCESS);
  return Status.SUCCESS;
}

/** The server is gone: its callers waiting for deferred replies get ABORTED. */
export function abortReply(k: Kernel, deferred: DeferredReply): void {
  if (deferred.used) return;
  deferred.used = true;
  if (deferred.caller.waitingOn === deferred) k.wake(deferred.caller, Status.ABORTED);
}

const applyFunction = Reflect.apply;
const noop = () => {};
/** Passing this many arguments takes HANDLER_STACK_BYTES of stack. */
const PROBE: readonly number[] = Object.freeze(new Array<number>(HANDLER_STACK_BYTES / 8).fill(0));

/** Is there at least HANDLER_STACK_BYTES of stack left here? Only asked after something threw. */
export function hasHandlerStack(): boolean {
  try {
    applyFunction(noop, undefined, PROBE);
    return true;
  } catch {
    return false;
  }
}
