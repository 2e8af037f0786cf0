// Root task protocol: the parent portal a boot module is given. Each module has a portal of its
// own, so it can speak only for itself. Word 0 of a request is the operation.

export const ParentOp = {
  /** [VM_EXITED, status, reasonCode, message bytes one per word] — the VM is over. */
  VM_EXITED: 1,
  /**
   * [PUBLISH, name] + a delegate item of a portal into the root's window at offset `name` (so each
   * name once): the root passes it on to the module the boot description routes that name to.
   */
  PUBLISH: 2,
  /**
   * [FRAMES, first] — the machine's frames [first, first + FRAME_PIECE) (fewer at the end), at the
   * same pages of the caller's memory space, all rights; `first` a multiple of FRAME_PIECE. Only a
   * module described with `frames` may ask (the memory manager); asking again for a piece it was
   * given changes nothing. So the memory manager holds the frames it has needed so far, not every
   * frame of the machine from the start (a restore does not pay for the RAM its guest has not used).
   */
  FRAMES: 3,
} as const;

/** Frames one ParentOp.FRAMES gives (2 MiB: eight of the kernel's chunks of storage). */
export const FRAME_PIECE = 512;

/** Names of published portals (word 1 of PUBLISH). */
export const Published = {
  /** The VMM's console input portal: the console driver calls it with typed bytes. */
  CONSOLE_INPUT: 1,
  /** The VMM's control portal (vmm/protocol.ts): the control component stops, saves and resumes the VM through it. */
  VMM_CONTROL: 2,
  /**
   * A VMM's peer portal of channel k is PEER_BASE + k (vmm/paravirt/peer-protocol.ts): the root
   * passes it to the VMM at the channel's other end, the only one the fleet connected.
   */
  PEER_BASE: 8,
} as const;

/** Why a VM ended (reasonCode of VM_EXITED). */
export enum VmEnd {
  /** The guest is off: the CPU halted with interrupts disabled (Linux's poweroff without ACPI), or it entered ACPI S5. */
  HALTED = 1,
  /** isa-debug-exit was written. */
  DEBUG_EXIT = 2,
  /** The guest asked for a reset (keyboard controller, port 0x92, 0xcf9); there is no reboot, so the VM ends. */
  RESET = 3,
  /** The vCPU stopped with an error (invalid state, unhandled exit). */
  ERROR = 4,
  /** Triple fault (shutdown): the guest crashed past its own exception handling. */
  TRIPLE_FAULT = 5,
  /** The VM migrated away: it runs in another hv now (the control op END). */
  MIGRATED = 6,
}
