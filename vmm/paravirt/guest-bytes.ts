// Where the paravirtual interface touches guest memory: one function. Guest RAM is paged (each
// page backed on first touch), so a record must lie within one page, as KVM's records do.

import type { GuestRam } from "../devices/virtio/index.js";

/**
 * The bytes of guest-physical [gpa, gpa + length), aliasing guest RAM, or null when they are not
 * all RAM or cross a page (a guest-given address: its mistake, never a host exception).
 */
export function guestBytes(ram: GuestRam, gpa: number, length: number): Uint8Array | null {
  if (!Number.isSafeInteger(gpa) || gpa < 0) return null;
  return ram.view(gpa, length);
}
