// VMM control protocol: how a control component (snapshots, QMP) stops, saves and resumes a VM.
// The VMM publishes its control portal to the root task (Published.VMM_CONTROL), which passes it
// to the module the boot description names. Word 0 of a request is the operation; word 0 of a
// reply a kernel Status.
//
//   request      reply
//   [ATTACH]     [status, ramPages, statePages] + delegate items into the caller's memory window:
//                guest RAM at offsets [0, ramPages), the state region at [ramPages, ramPages + statePages).
//                RAM pages without a frame of their own are left out (they are zero), and those
//                backed by the shared zero frame come read-only: ATTACH again (into an emptied
//                window) after each SAVE, since RAM gains frames while the VM runs
//   [ATTACH, CHANGES]  [status, ramPages, statePages, whole, count]   after a whole ATTACH: the
//                pages whose frames changed since the last ATTACH, as a bitmap (one bit per RAM
//                page, LSB first) at the start of the state region; whole 1 (no bitmap): too many
//                (MAX_CHANGED_PAGES),
//                or none was attached whole yet: ATTACH whole again
//   [ATTACH, CHANGED]  [status, ramPages, statePages, items] + delegate items: those pages that
//                have a frame (the caller revoked them all from its window first), each at its
//                offset; the caller checks that `items` came
//   [PAUSE(, atLo, atHi)]  [status]     deferred until the vCPU stopped at an instruction boundary:
//                                       now, or when the VM's clock reaches `at` (ns), exactly there
//   [RESUME]     [status] or [BAD_PARAMETER, reason...]   (see INACTIVATE)
//   [SAVE]       [status, stateBytes]   paused VMs only: the VmState, msgpack-encoded, at the start
//                                       of the state region (RAM is read through the RAM pages)
//   [BALLOON, set, pages]  [status, actual, target, statsAsked, ramPages, reported, released]
//                set 1: the guest should
//                have `pages` of its RAM (4 KiB pages; the balloon's target is the rest), as QEMU's
//                `balloon`; actual and target: the guest's RAM less what its balloon holds now, and
//                less what it should hold; pages the guest reported free, and pages that went back
//                to the host (inflated or reported, that held memory)
//   [DIRTY, action]  [status, pages, bitmapBytes]   dirty logging (live migration): action 1 starts
//                it, 2 collects (the pages written since the start or the last collect, as a bitmap
//                of one bit per RAM page, LSB first, at the start of the state region) and goes on,
//                3 stops it; 4 collects as 2 does from a paused VM (a migration's stop) without
//                arming the log again for the pages written (the VM does not run again while the
//                log is on: 3 follows if it is to run here)
//   [THROTTLE, percent]  [status]   auto-converge (live migration): from now on the vCPU runs only
//                (100 - percent)% of each THROTTLE_PERIOD_NS: after (100 - percent)% of a period of
//                its own time it stops for percent% of a period of the host's virtual time (in which
//                the VM's time stands still, as in a pause: the guest does not see it). 0 ends it;
//                at most MAX_THROTTLE_PERCENT
//   [LOAD]       [status]   deferred until the vCPU stands at the state: an incoming migration's VM
//                (built before its state came, VmmConfig.incoming) takes the state the host has
//                now, and the pages that came; it stays paused until RESUME. Once only. Device
//                records the devices refuse (they take all or none): [BAD_PARAMETER, reason...]
//                (UTF-8, a byte a word), and the VM waits on, never run
//   [INACTIVATE]  [status] or [BAD_PARAMETER, reason...]   paused VMs only: a live migration's
//                hand-over of shared drives: each drive goes to disk and is closed, its write lock
//                released, so that another process may open it. The next RESUME opens them again as
//                they are on disk then (so does an incoming VM's first, for the drives it attached
//                inactive, VmmConfig drives' `inactive`); a drive the block driver refuses (LOCKED:
//                another process has it) refuses the RESUME with why, and the VM stays paused
//   [PAGES]      [status]   before LOAD only: an incoming migration's VM takes note of the pages
//                that came so far (the host asks while the stream goes on), so that LOAD has only
//                the last ones to take
//   [END]        [status]   paused VMs only: the VM is over, since it runs elsewhere now (it migrated
//                away); the VMM ends it as a guest's poweroff would (VM_EXITED, VmEnd.MIGRATED), and
//                it never runs again
//   [QUERY]      [status, running, vmTimeLo, vmTimeHi, why, private, zero, limit, hostTotal, hostFree,
//                 touched, shared, sharedFrames, scanned, merged, zeroed, broken]
//                running: 1, paused: 0; VM time in ns; why it is paused (PauseReason); the memory
//                manager's pages: the VM's private and zero-backed pages and its limit, the host's
//                frames and those free; the guest RAM pages the guest (or a device) touched; the
//                VM's pages on shared frames; the host's shared frames and its scanner's counts
//
// A paused VM's time stands still (a VM's time is its vCPU's own): its devices and its TSC see no
// time pass, so a guest cannot tell that it was stopped, saved or moved.

export const VmmControlOp = {
  ATTACH: 1,
  PAUSE: 2,
  RESUME: 3,
  SAVE: 4,
  QUERY: 5,
  BALLOON: 6,
  DIRTY: 7,
  THROTTLE: 8,
  LOAD: 9,
  END: 10,
  INACTIVATE: 11,
  PAGES: 12,
} as const;

/** THROTTLE: the period the vCPU's share is counted in (virtual ns; QEMU's throttle timeslice), and the most it may be held back (percent). */
export const THROTTLE_PERIOD_NS = 10_000_000;
export const MAX_THROTTLE_PERCENT = 99;

/** ATTACH's forms (word 1): all of RAM, the list of pages changed since, those pages. */
export const AttachForm = { WHOLE: 0, CHANGES: 1, CHANGED: 2 } as const;
/**
 * ATTACH CHANGES says "whole" past this many changed pages: CHANGED delegates each as one typed
 * item, and a message carries at most the kernel's UTCB_WORDS (1008) items (the rest are dropped).
 */
export const MAX_CHANGED_PAGES = 1000;

/** DIRTY's actions. */
export const DirtyAction = { START: 1, COLLECT: 2, STOP: 3, LAST: 4 } as const;

/** Guest RAM as a save reads it, page by page. */
export interface RamPages {
  readonly pages: number;
  /** Page `n` (4 KiB), or null when it is all zero. Valid until the VM runs again. */
  read(n: number): Uint8Array | null;
}

/** Why a VM is paused (QUERY's word 4). */
export const PauseReason = {
  /** Running, or paused by its host (a pause command, a save, a restore). */
  HOST: 0,
  /** The host's memory limit was reached: it waits for memory to be freed. */
  MEMORY: 1,
} as const;

/** Pages of the state region (256 KiB): the encoded VmState of one VM must fit. */
export const STATE_PAGES = 64;

/** The VM beyond guest RAM, as a plain record (msgpack-encodable). Records are checked on restore. */
export interface VmState {
  /** The VM's virtual time at the save, ns (its devices' clock). */
  vmTimeNs: number;
  /** The vCPU (a VcpuRecord), its TSC as of vmTimeNs. */
  vcpu: Record<string, unknown>;
  /** The vCPU waits for an interrupt (HLT): it resumes parked, as it was. */
  halted: boolean;
  /** Device records by name (PcPlatform.saveState). */
  platform: Record<string, unknown>;
  /** The monitor's own state: IGNNE# changed and not yet handed to the vCPU. */
  ignneChanged: boolean;
  /** KVM's paravirtual interface (its MSR values, a KvmRecord), when the VM has it. */
  kvm?: Record<string, unknown>;
  /** Our own paravirtual ABI (vmm/paravirt/hv-state.ts: ports, grants, mappings, the upcall), when the VM has it. */
  hv?: Record<string, unknown>;
}
