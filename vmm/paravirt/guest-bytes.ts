// Where the paravirtual interface touches guest memory: one function, so that a change of how the
// VMM holds guest RAM (one flat view today) changes this file only.

import type { GuestRam } from "../devices/virtio/index.js";

/**
 * The bytes of guest-physical [gpa, gpa + length), aliasing guest RAM, or null when they are not
 * all RAM (a guest-given address: outside RAM is the guest's mistake, never a host exception).
 */
export function guestBytes(ram: GuestRam, gpa: number, length: number): Uint8Array | null {
  if (!Number.isSafeInteger(gpa) || gpa < 0) return null;
  return ram.view(gpa, length);
}
