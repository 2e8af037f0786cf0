// The host's control of its VMs: one queue of commands to the control component
// (services/vm-control.ts), shared by the console's Ctrl-A s and the QMP socket. Each command is a
// promise; it settles when the component hands the result back (`done`, inside a kernel slice of
// runVm's host loop), so callers wait without holding the loop.

import { Status } from "../kernel/index.js";
import type { BalloonInfo, ControlCommand, ControlHost, ControlResult, MemoryCounts } from "../services/vm-control.js";
import type { RamPages } from "../vmm/protocol.js";
import { saveSnapshot, type SaveRequest } from "./snapshot.js";

/** A command the control component refused (a kernel status), or that the VM's end cut short. */
export class ControlError extends Error {
  override name = "ControlError";
}

/** What the QMP server and the console need from VM control; VMs are numbered as in the composition. */
/** What QUERY says about a VM. */
export interface VmQuery {
  running: boolean;
  vmTimeNs: number;
  /** Why a paused VM is paused: its host paused it, or the host's memory limit did. */
  pausedFor: "host" | "memory";
  memory: MemoryCounts;
}

const NO_COUNTS: MemoryCounts = { private: 0, zero: 0, limit: 0, hostTotal: 0, hostFree: 0, touched: 0, shared: 0, ballooned: 0, scanner: { sharedFrames: 0, scanned: 0, merged: 0, zeroed: 0, broken: 0 } };

export interface VmControl {
  query(vm: number): Promise<VmQuery>;
  /** Pause; `wasRunning` says whether it ran (QEMU announces STOP only then). */
  pause(vm: number): Promise<{ wasRunning: boolean }>;
  resume(vm: number): Promise<{ wasRunning: boolean }>;
  balloon(vm: number, guestPages?: number): Promise<BalloonInfo>;
  /** Pause if it runs, write the snapshot file, and let it go on as it was. */
  save(vm: number, request: SaveRequest): Promise<{ bytes: number; pages: number }>;
}

interface Pending {
  command: ControlCommand;
  /** Runs during `done` on success: a save's views are valid only then. */
  onDone: (result: ControlResult) => void;
  fail: (error: Error) => void;
}

const VERB: Record<Exclude<ControlCommand["op"], "inactivate">, string> = { end: "ended", load: "loaded", pages: "given its pages", pause: "paused", resume: "resumed", query: "queried", save: "saved", state: "saved", balloon: "ballooned", dirty: "logged", ram: "read", throttle: "throttled" };

export class HostControl implements ControlHost, VmControl {
  /** Raises the control interrupt (runVm's onStart hands it over); until then commands wait queued. */
  raise: () => void = () => {};
  private readonly queue: Pending[] = [];
  private readonly taken = new Map<ControlCommand, Pending>();
  private closedWhy: string | null = null;

  query(vm: number): Promise<VmQuery> {
    return this.request({ vm, op: "query" }, (r) => {
      const q: Extract<ControlResult, { running?: boolean }> = "running" in r || "memory" in r || "vmTimeNs" in r ? r : { status: r.status };
      return { running: q.running === true, vmTimeNs: q.vmTimeNs ?? 0, pausedFor: q.pausedFor ?? "host", memory: q.memory ?? NO_COUNTS };
    });
  }

  pause(vm: number): Promise<{ wasRunning: boolean }> {
    return this.lookThen(vm, { vm, op: "pause" });
  }

  /** Resume; `onResumed` runs the moment the VMM let the VM go (before its next instruction, inside the kernel's slice). */
  resume(vm: number, onResumed?: () => void): Promise<{ wasRunning: boolean }> {
    return this.lookThen(vm, { vm, op: "resume" }, onResumed);
  }

  /**
   * Resume a VM known to be paused (an incoming migration's, after LOAD), without the QUERY that
   * resume() sends first (the VMM counts RAM page by page and asks the memory manager twice, in the
   * downtime); `onResumed` as for resume().
   */
  resumeLoaded(vm: number, onResumed?: () => void): Promise<void> {
    return this.request({ vm, op: "resume" }, () => onResumed?.());
  }

  /** An incoming migration's VM takes the state the host has for it now (VmmConfig.incoming); it stays paused. */
  load(vm: number): Promise<void> {
    return this.request({ vm, op: "load" }, () => undefined);
  }

  /**
   * A paused VM's drives, handed over in a live migration: each is written to disk and closed (its
   * write lock released: another process may open it now). The next resume opens them again as
   * they are on disk then, and fails (ControlError naming the drive: LOCKED while another process
   * has it) when one cannot be; the VM stays paused then.
   */
  inactivateDrives(vm: number): Promise<void> {
    return this.request({ vm, op: "inactivate" }, () => undefined);
  }

  /** An incoming migration's VM, still waiting for its state, takes note of the pages that came so far: LOAD then has only the rest to take. */
  takePages(vm: number): Promise<void> {
    return this.request({ vm, op: "pages" }, () => undefined);
  }

  /** End a paused VM for good (it migrated away): its VMM reports it ended (VmEnd.MIGRATED); the others run on. */
  end(vm: number): Promise<void> {
    return this.request({ vm, op: "end" }, () => undefined);
  }

  /** The balloon: with `guestPages`, the guest should have that much RAM (4 KiB pages); says what it has. */
  balloon(vm: number, guestPages?: number): Promise<BalloonInfo> {
    return this.request({ vm, op: "balloon", guestPages }, (r) => {
      if (!("balloon" in r)) throw new ControlError(`the VM has no balloon (status ${r.status})`);
      return r.balloon;
    });
  }

  /** Dirty logging: start, collect (a copy of the bitmap, one bit per RAM page), stop. */
  dirty(vm: number, action: "start" | "collect" | "stop"): Promise<{ bitmap: Uint8Array | null; pages: number }> {
    return this.request({ vm, op: "dirty", action }, (r) => {
      if (r.status !== Status.SUCCESS) throw new ControlError(`dirty logging (${action}) failed: ${Status[r.status] ?? r.status}`);
      return "dirty" in r ? { bitmap: r.dirty.slice(), pages: r.pages } : { bitmap: null, pages: 0 };
    });
  }

  /** Auto-converge: hold the vCPU back `percent` (0-99) of each period of virtual time; 0 lets it run. */
  throttle(vm: number, percent: number): Promise<void> {
    return this.request({ vm, op: "throttle", percent }, () => undefined);
  }

  /** Read guest RAM while the VM runs on: `use` sees it page by page, during the call only. */
  readRam<T>(vm: number, use: (ram: RamPages) => T): Promise<T> {
    return this.request({ vm, op: "ram" }, (r) => {
      if (!("pages" in r) || typeof r.pages === "number") throw new ControlError(`the VM's RAM could not be read (status ${r.status})`);
      return use(r.pages);
    });
  }

  /** Save without a file: pause if it runs, and hand the encoded state and RAM to `use` (during the call only); the VM stays paused. */
  capture<T>(vm: number, use: (state: Uint8Array, ram: RamPages) => T): Promise<T> {
    return this.request({ vm, op: "pause" }, () => undefined).then(() =>
      this.request({ vm, op: "save" }, (r) => {
        if (!("state" in r)) throw new ControlError("the VM could not be saved (the control component sent no state)");
        return use(r.state, r.ram);
      }),
    );
  }

  /**
   * A migration's stop in one round: pause, collect the dirty log, look at RAM, and take the state,
   * queued together so that the control component does all four in one go. `read` sees the last
   * dirty log (a bitmap, null when logging was off) and RAM, before the VMM encodes the state (what
   * it does with them, such as sending, overlaps the save); `use` then sees the encoded state. Each
   * sees its data during the call only; the VM stays paused.
   */
  stopAndCapture<R, T>(vm: number, read: (dirty: Uint8Array | null, ram: RamPages) => R, use: (state: Uint8Array, read: R) => T, onStep?: (step: "paused" | "collected") => void): Promise<T> {
    let dirty: { bitmap: Uint8Array | null } | null = null;
    let seen: { value: R } | null = null;
    let stopped = false;
    const paused = this.request({ vm, op: "pause" }, () => {
      stopped = true;
      onStep?.("paused");
    });
    // The last look of a paused VM: the pages written are not write-protected again (LAST), the VM
    // runs here again only after the log stopped (a failed migration stops it first).
    const collected = this.request({ vm, op: "dirty", action: "last" }, (r) => {
      onStep?.("collected");
      // A copy: the state that follows is written where the bitmap is.
      dirty = { bitmap: "dirty" in r ? r.dirty.slice() : null };
    });
    const looked = this.request({ vm, op: "ram" }, (r) => {
      if (!("pages" in r) || typeof r.pages === "number") throw new ControlError(`the VM's RAM could not be read (status ${r.status})`);
      // The log came just before (in this round); without it the pages written last would be missed.
      if (!dirty) throw new ControlError("the VM's last dirty log could not be collected");
      // `read` may send what it reads: only what a stopped VM holds.
      if (!stopped) throw new ControlError("the VM could not be paused");
      seen = { value: read(dirty.bitmap, r.pages) };
    });
    const saved = this.request({ vm, op: "state" }, (r) => {
      if (!("vmState" in r)) throw new ControlError("the VM could not be saved (the control component sent no state)");
      if (!seen) throw new ControlError("the VM's RAM could not be read before its state");
      return use(r.vmState, seen.value);
    });
    return Promise.all([paused, collected, looked, saved]).then(([, , , result]) => result);
  }

  save(vm: number, request: SaveRequest): Promise<{ bytes: number; pages: number }> {
    return this.request({ vm, op: "save" }, (r) => {
      if (!("state" in r)) throw new ControlError("the VM could not be saved (the control component sent no state)");
      return saveSnapshot(request, r.state, r.ram);
    });
  }

  /** The VMs are gone: queued and unfinished commands fail with `why`, and so does any later one. */
  close(why: string): void {
    this.closedWhy ??= why;
    const dropped = [...this.queue.splice(0), ...this.taken.values()];
    this.taken.clear();
    for (const p of dropped) p.fail(new ControlError(why));
  }

  /** No command waits or is being carried out. */
  get idle(): boolean {
    return this.queue.length === 0 && this.taken.size === 0;
  }

  take(): ControlCommand | null {
    const next = this.queue.shift();
    if (!next) return null;
    this.taken.set(next.command, next);
    return next.command;
  }

  done(command: ControlCommand, result: ControlResult): void {
    const pending = this.taken.get(command);
    if (!pending) return;
    this.taken.delete(command);
    const why = "reason" in result ? `: ${result.reason}` : "";
    const what = command.op === "inactivate" ? "the VM's drives could not be closed" : `the VM could not be ${VERB[command.op]}`;
    if (result.status !== Status.SUCCESS) pending.fail(new ControlError(`${what} (${Status[result.status] ?? result.status})${why}`));
    else pending.onDone(result);
  }

  /** Queue `command`; `onDone` turns its successful result into the promise's value (a throw rejects it). */
  private request<T>(command: ControlCommand, onDone: (result: ControlResult) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closedWhy !== null) return reject(new ControlError(this.closedWhy));
      const settle = (result: ControlResult) => {
        try {
          resolve(onDone(result));
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      };
      this.queue.push({ command, onDone: settle, fail: reject });
      this.raise();
    });
  }

  /** Query, then `command`, queued together: nothing comes between the look and the act. */
  private async lookThen(vm: number, command: ControlCommand, onDone?: () => void): Promise<{ wasRunning: boolean }> {
    const [state] = await Promise.all([this.query(vm), this.request(command, () => onDone?.())]);
    return { wasRunning: state.running };
  }
}

/** Ctrl-A s: save VM `vm` and tell the terminal how it went. */
export function saveFromConsole(control: VmControl, vm: number, request: SaveRequest, write = (text: string) => void process.stderr.write(text)): void {
  control.save(vm, request).then(
    ({ bytes }) => write(`\r\nhv: saved the VM to ${request.path} (${(bytes / 2 ** 20).toFixed(1)} MiB); resume it with hv run --restore ${request.path}\r\n`),
    (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      write(`\r\nhv: ${error instanceof ControlError ? message : `the snapshot could not be written: ${message}`}\r\n`);
    },
  );
}
