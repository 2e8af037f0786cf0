// Message formats of the portals components offer each other. Word 0 of a request is the operation.

/** Memory manager: one portal per client; the portal id names the client. */
export const MemoryOp = {
  /** [ALLOC, pages] → [status, pages granted]; frames arrive as delegate items in the memory window. */
  ALLOC: 1,
  /** [HELD] → [pages the client holds]. */
  HELD: 2,
} as const;

/** Console driver output: [channel, byteCount, bytes packed 4 per word (little-endian)]. */
export const ConsoleChannel = { SERIAL0: 0, DEBUGCON: 1 } as const;

/** VMM input portal (the console driver calls it): [byteCount, bytes packed 4 per word]. */

/** Parent portal (root task): what components report upwards. */
export const ParentOp = {
  /** [VM_EXITED, status, reasonCode] — the VM is over. */
  VM_EXITED: 1,
  /** [REGISTER_INPUT] + a delegate item of the VMM's input portal into the root's window. */
  REGISTER_INPUT: 2,
} as const;

/** Why a VM ended (reasonCode of VM_EXITED). */
export enum VmEnd {
  /** The CPU halted with interrupts disabled: nothing can wake it (Linux's poweroff without ACPI). */
  HALTED = 1,
  /** isa-debug-exit was written. */
  DEBUG_EXIT = 2,
  /** Triple fault or a reset request (keyboard controller, port 0x92, 0xcf9). */
  RESET = 3,
  /** The vCPU stopped with an error (invalid state, unhandled exit). */
  ERROR = 4,
}

/** Pack bytes into UTCB words, 4 per word, little-endian, starting at `at`. Returns words used. */
export function packBytes(bytes: ArrayLike<number>, words: Uint32Array, at: number): number {
  const n = Math.ceil(bytes.length / 4);
  for (let w = 0; w < n; w++) {
    let v = 0;
    for (let b = 0; b < 4; b++) {
      const i = 4 * w + b;
      if (i < bytes.length) v |= (bytes[i] & 0xff) << (8 * b);
    }
    words[at + w] = v >>> 0;
  }
  return n;
}

export function unpackBytes(words: Uint32Array, at: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (words[at + (i >> 2)] >>> (8 * (i & 3))) & 0xff;
  return out;
}
