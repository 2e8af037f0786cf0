// VM control: the component through which the host stops, saves and resumes VMs (snapshots, QMP).
// Commands arrive from the host as an interrupt (GSI) and a queue the host fills; a thread of the
// component carries each out through the VMM's control portal (vmm/protocol.ts) of that VM and
// hands the result back. For a save, the VMM has delegated guest RAM and its state region into this
// component's memory: the host reads them through the views it is given, while the VM is paused.

import { SpaceKind, Status, crd, type GlobalEntry, type MemoryView, type Sys } from "../kernel/index.js";
import { AttachForm, DirtyAction, PauseReason, VmmControlOp, type RamPages } from "../vmm/protocol.js";

/** Selectors the root task fills: the control interrupt, and VM i's control portal at VM_BASE + i. */
export const ControlSel = { IRQ: 1, VM_BASE: 16 } as const;

/** A command for VM `vm`. `atVmTimeNs`: pause (or save) when the VM's clock reaches it, not now. */
export type ControlCommand =
  | { vm: number; op: "pause"; atVmTimeNs?: number }
  | { vm: number; op: "save"; atVmTimeNs?: number }
  /**
   * A paused VM's encoded state only: no look at whether it runs, no new look at its RAM, no resume
   * (a migration's stop, which paused it and read RAM with "ram" just before: each is work in the
   * downtime).
   */
  | { vm: number; op: "state" }
  | { vm: number; op: "resume" }
  /** An incoming migration's VM (built before its state came) takes the state the host has now; it stays paused. */
  | { vm: number; op: "load" }
  /** A live migration's hand-over of shared drives: write them to disk and close them, so that another process may open them (the next resume opens them again); paused VMs only. */
  | { vm: number; op: "inactivate" }
  /** An incoming migration's VM, before its state came, takes note of the pages that came so far (LOAD then takes only the rest). */
  | { vm: number; op: "pages" }
  /** The VM is over (it runs elsewhere now: migrated); paused VMs only. */
  | { vm: number; op: "end" }
  | { vm: number; op: "query" }
  /** The balloon: `guestPages` (when given) is how much RAM the guest should have; the answer says what it has. */
  | { vm: number; op: "balloon"; guestPages?: number }
  /** Dirty logging (live migration): start, collect (the pages written since, as a bitmap), stop. */
  | { vm: number; op: "dirty"; action: "start" | "collect" | "stop" | "last" }
  /** Guest RAM as it is now, the VM running on (live migration reads it while the guest runs). */
  | { vm: number; op: "ram" }
  /** Auto-converge: hold the vCPU back `percent` of each period (0: not at all). */
  | { vm: number; op: "throttle"; percent: number };

/** A VM's memory as the memory manager counts it, in pages, and the host's. */
export interface MemoryCounts {
  private: number;
  zero: number;
  limit: number;
  hostTotal: number;
  hostFree: number;
  /** Guest RAM pages the guest or its devices touched (read or written). */
  touched: number;
  /** The VM's pages on frames shared with other pages. */
  shared: number;
  /** Guest RAM pages its balloon holds (given back to the host). */
  ballooned: number;
  /** The host's shared frames, and what the memory manager's scanner did so far. */
  scanner: { sharedFrames: number; scanned: number; merged: number; zeroed: number; broken: number };
}

/** The balloon as the VMM sees it, in 4 KiB pages: the guest's RAM less what its balloon holds, and the target of that. */
export interface BalloonInfo {
  actual: number;
  target: number;
  ramPages: number;
  /** Pages the guest reported free (free page reporting), and pages that went back to the host. */
  reported: number;
  released: number;
}

export type ControlResult =
  | { status: Status; balloon: BalloonInfo }
  /** A dirty log collected: one bit per RAM page (LSB first), valid only during `done`; `pages` set. */
  | { status: Status; dirty: Uint8Array; pages: number }
  /** RAM as it is now, page by page, valid only during `done`. */
  | { status: Status; pages: RamPages }
  | { status: Status; running?: boolean; vmTimeNs?: number; pausedFor?: "host" | "memory"; memory?: MemoryCounts }
  /** A save: `state` is the encoded VmState, `ram` guest RAM page by page; both valid only during `done`. */
  | { status: Status; state: Uint8Array; ram: RamPages }
  /** The "state" op: the encoded VmState, valid only during `done`. */
  | { status: Status; vmState: Uint8Array }
  /** A refused LOAD, INACTIVATE or RESUME: why the VMM's devices or drives refused. */
  | { status: Status; reason: string };

/** The host side: where commands come from and results go. */
export interface ControlHost {
  /** The next command, or null when there is none. */
  take(): ControlCommand | null;
  done(command: ControlCommand, result: ControlResult): void;
}

/** Pages of this component's memory space each VM's window spans (2^order): RAM and state region. */
export function controlThread(host: ControlHost, windowOrder: number): GlobalEntry {
  return (sys) =>
    (function* () {
      /** Each VM's state region as this component last saw it (it stays the same pages). */
      const stateViews = new Map<number, MemoryView>();
      for (;;) {
        const s: Status = yield sys.wait.down(ControlSel.IRQ);
        if (s !== Status.SUCCESS) return;
        for (let command = host.take(); command; command = host.take()) {
          const portal = ControlSel.VM_BASE + command.vm;
          // A VMM publishes its control portal once it has set its VM up: until then, wait for it.
          for (let tries = 0; !holds(sys, portal) && tries < PORTAL_WAITS; tries++) yield sys.wait.sleep(PORTAL_WAIT_NS);
          if (command.op === "pause") {
            pauseMessage(sys, command.atVmTimeNs);
            const st: Status = yield sys.wait.call(portal);
            host.done(command, { status: st === Status.SUCCESS ? sys.utcb.words[0] : st });
          } else if (command.op === "load") {
            sys.utcb.set(VmmControlOp.LOAD);
            const st: Status = yield sys.wait.call(portal);
            host.done(command, withReason(sys, st));
          } else if (command.op === "inactivate") {
            sys.utcb.set(VmmControlOp.INACTIVATE);
            host.done(command, withReason(sys, sys.call(portal)));
          } else if (command.op === "resume") {
            sys.utcb.set(VmmControlOp.RESUME);
            host.done(command, withReason(sys, sys.call(portal)));
          } else if (command.op === "pages") {
            host.done(command, { status: call(sys, portal, VmmControlOp.PAGES) });
          } else if (command.op === "end") {
            host.done(command, { status: call(sys, portal, VmmControlOp.END) });
          } else if (command.op === "ram") {
            const got = attach(sys, portal, command.vm, windowOrder, stateViews.get(command.vm));
            if (typeof got === "number") host.done(command, { status: got });
            else {
              stateViews.set(command.vm, got.state);
              host.done(command, { status: Status.SUCCESS, pages: got.ram });
            }
          } else if (command.op === "dirty") {
            const action = { start: DirtyAction.START, collect: DirtyAction.COLLECT, stop: DirtyAction.STOP, last: DirtyAction.LAST }[command.action];
            sys.utcb.set(VmmControlOp.DIRTY, action);
            const called = sys.call(portal);
            const st = called === Status.SUCCESS ? (sys.utcb.words[0] as Status) : called;
            const [pages, bytes] = [sys.utcb.words[1], sys.utcb.words[2]];
            if (st !== Status.SUCCESS || (command.action !== "collect" && command.action !== "last")) host.done(command, { status: st });
            else {
              // The bitmap is in the VM's state region: this component sees it once it has attached.
              let state = stateViews.get(command.vm);
              if (!state) {
                const got = attach(sys, portal, command.vm, windowOrder);
                state = typeof got === "number" ? undefined : got.state;
                if (state) stateViews.set(command.vm, state);
              }
              host.done(command, state && bytes <= state.length ? { status: st, dirty: state.bytes.subarray(0, bytes), pages } : { status: Status.BAD_CAPABILITY });
            }
          } else if (command.op === "state") {
            // The state region is in this component's window since the "ram" (ATTACH) before.
            const view = stateViews.get(command.vm);
            const st = view ? call(sys, portal, VmmControlOp.SAVE) : Status.BAD_CAPABILITY;
            const bytes = sys.utcb.words[1];
            host.done(command, st === Status.SUCCESS && view && bytes <= view.length ? { status: st, vmState: view.bytes.subarray(0, bytes) } : { status: st === Status.SUCCESS ? Status.BAD_CAPABILITY : st });
          } else if (command.op === "throttle") {
            sys.utcb.set(VmmControlOp.THROTTLE, command.percent);
            const called = sys.call(portal);
            host.done(command, { status: called === Status.SUCCESS ? (sys.utcb.words[0] as Status) : called });
          } else if (command.op === "balloon") {
            const set = command.guestPages !== undefined;
            sys.utcb.set(VmmControlOp.BALLOON, set ? 1 : 0, set ? command.guestPages! : 0);
            const called = sys.call(portal);
            const w = sys.utcb.words;
            const st = called === Status.SUCCESS ? (w[0] as Status) : called;
            host.done(command, st === Status.SUCCESS ? { status: st, balloon: { actual: w[1], target: w[2], ramPages: w[4], reported: w[5], released: w[6] } } : { status: st });
          } else if (command.op === "query") {
            const st = call(sys, portal, VmmControlOp.QUERY);
            const w = sys.utcb.words;
            if (st !== Status.SUCCESS) host.done(command, { status: st });
            else {
              const memory = {
                private: w[5], zero: w[6], limit: w[7], hostTotal: w[8], hostFree: w[9], touched: w[10], shared: w[11], ballooned: w[17],
                scanner: { sharedFrames: w[12], scanned: w[13], merged: w[14], zeroed: w[15], broken: w[16] },
              };
              host.done(command, { status: st, running: w[1] === 1, vmTimeNs: w[2] + w[3] * 2 ** 32, pausedFor: w[4] === PauseReason.MEMORY ? "memory" : "host", memory });
            }
          } else {
            // Pause (if it runs), save, and let it go on as it was.
            if (call(sys, portal, VmmControlOp.QUERY) !== Status.SUCCESS) {
              host.done(command, { status: sys.utcb.words[0] });
              continue;
            }
            const wasRunning = sys.utcb.words[1] === 1;
            pauseMessage(sys, command.atVmTimeNs);
            const paused: Status = yield sys.wait.call(portal);
            // RAM gains frames while the VM runs: see it as it is now (before SAVE, which writes the state where ATTACH's list goes).
            const views = paused === Status.SUCCESS ? attach(sys, portal, command.vm, windowOrder, stateViews.get(command.vm)) : paused;
            let st = typeof views === "number" ? views : call(sys, portal, VmmControlOp.SAVE);
            const bytes = sys.utcb.words[1];
            if (typeof views !== "number") stateViews.set(command.vm, views.state);
            if (st === Status.SUCCESS && typeof views !== "number") host.done(command, { status: st, state: views.state.bytes.subarray(0, bytes), ram: views.ram });
            else host.done(command, { status: st });
            if (wasRunning) call(sys, portal, VmmControlOp.RESUME);
          }
        }
      }
    })();
}

/** The reply to a call that returned `called`: its status, and why it refused when it says ([status, reason...], a byte a word). */
function withReason(sys: Sys, called: Status): ControlResult {
  const w = sys.utcb.words;
  if (called !== Status.SUCCESS || w[0] === Status.SUCCESS) return { status: called === Status.SUCCESS ? w[0] : called };
  return { status: w[0], reason: new TextDecoder().decode(Uint8Array.from(w.subarray(1, sys.utcb.untyped), (b) => b & 0xff)) };
}

function pauseMessage(sys: Sys, at: number | undefined): void {
  if (at === undefined) sys.utcb.set(VmmControlOp.PAUSE);
  else sys.utcb.set(VmmControlOp.PAUSE, at % 2 ** 32, Math.floor(at / 2 ** 32));
}

/** How long (virtual ns) and how often to wait for a VM's control portal to arrive. */
const PORTAL_WAIT_NS = 100_000;
const PORTAL_WAITS = 10_000;

function holds(sys: Sys, sel: number): boolean {
  return sys.lookup(crd(SpaceKind.OBJECT, sel, 0)) === Status.SUCCESS && sys.utcb.lookupResult !== null;
}

/** Call with one word (and `arg`); the reply's status (word 0) or the call's failure. */
function call(sys: Sys, portal: number, op: number, arg?: number): Status {
  if (arg === undefined) sys.utcb.set(op);
  else sys.utcb.set(op, arg);
  const s = sys.call(portal);
  return s === Status.SUCCESS ? (sys.utcb.words[0] as Status) : s;
}

/**
 * ATTACH: VM `vm`'s RAM and state region in its window, page by page, and the state region's view;
 * or a status. With `held` (the state view of an earlier ATTACH, whose window this component
 * kept), only the pages whose frames changed since come again (ATTACH CHANGES, then CHANGED), as
 * long as they are few; otherwise the window is emptied and all of it comes (what an earlier
 * ATTACH delivered goes).
 */
function attach(sys: Sys, portal: number, vm: number, windowOrder: number, held?: MemoryView): { ram: RamPages; state: MemoryView } | Status {
  const base = vm * 2 ** windowOrder;
  const window = crd(SpaceKind.MEMORY, base, windowOrder);
  const pagesOf = (ramPages: number, state: MemoryView) => {
    // A page that did not come (never touched) is zero; read-only ones (the zero frame, shared frames) are read as they are.
    const ram: RamPages = { pages: ramPages, read: (n) => (Number.isInteger(n) && n >= 0 && n < ramPages ? (sys.memory(base + n, 1, false)?.bytes ?? null) : null) };
    return { ram, state };
  };
  if (held) {
    sys.utcb.set(VmmControlOp.ATTACH, AttachForm.CHANGES);
    const called = sys.call(portal);
    const [st, ramPages, , whole, count] = sys.utcb.words;
    const changed = held.bytes;
    if (called === Status.SUCCESS && st === Status.SUCCESS && whole === 0 && Number.isInteger(ramPages) && ramPages >= 0 && Math.ceil(ramPages / 8) <= changed.length) {
      // The pages that changed leave the window, and come again as they are now.
      let revoked = 0;
      for (let p = 0; p < ramPages && revoked < count; p++)
        if ((changed[p >> 3] >> (p & 7)) & 1) {
          sys.revoke(crd(SpaceKind.MEMORY, base + p, 0));
          revoked++;
        }
      sys.utcb.receiveWindow[SpaceKind.MEMORY] = window;
      const again = call(sys, portal, VmmControlOp.ATTACH, AttachForm.CHANGED);
      sys.utcb.receiveWindow[SpaceKind.MEMORY] = null;
      // Every page sent must have come (the kernel drops what a message cannot carry, or this component's quota): else all again.
      const came = sys.utcb.received.filter((r) => r.kind === "delegated").length;
      if (again === Status.SUCCESS && came === sys.utcb.words[3]) return pagesOf(ramPages, held);
    }
  }
  sys.revoke(window);
  sys.utcb.receiveWindow[SpaceKind.MEMORY] = window;
  const st = call(sys, portal, VmmControlOp.ATTACH, AttachForm.WHOLE);
  sys.utcb.receiveWindow[SpaceKind.MEMORY] = null;
  if (st !== Status.SUCCESS) return st;
  const [ramPages, statePages] = [sys.utcb.words[1], sys.utcb.words[2]];
  const state = sys.memory(base + ramPages, statePages);
  if (!state || !Number.isInteger(ramPages) || ramPages < 0 || ramPages + statePages > 2 ** windowOrder) return Status.BAD_CAPABILITY;
  return pagesOf(ramPages, state);
}
