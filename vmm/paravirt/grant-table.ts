// A VM's grant table, after Xen's grant_entry_v1: entries in a page of the guest's own RAM, each
// granting one peer read (or read and write) access to one of its pages. The VMM reads an entry
// each time a peer uses it, so the guest grants and revokes by writing its table.

import type { GuestRam } from "../devices/virtio/index.js";
import { guestBytes } from "./guest-bytes.js";
import { GNTTAB_MAX_ENTRIES, GrantEntry, GrantFlag, HvError } from "./hv-abi.js";

export class GrantTable {
  private gpa = 0;
  private entries = 0;

  constructor(private readonly ram: GuestRam) {}

  /** GNTTAB_SETUP: `entries` records at gpa, all in one RAM page (0 entries: no table). */
  setup(gpa: number, entries: number): number {
    if (entries === 0) return void ((this.gpa = 0), (this.entries = 0)), 0;
    if (!(entries > 0 && entries <= GNTTAB_MAX_ENTRIES) || gpa % GrantEntry.BYTES !== 0) return -HvError.EINVAL;
    if (guestBytes(this.ram, gpa, entries * GrantEntry.BYTES) === null) return -HvError.EFAULT;
    this.gpa = gpa;
    this.entries = entries;
    return 0;
  }

  /**
   * Where peer `peer` may access [offset, offset + length) of grant `ref` (for writing or only
   * reading): the guest-physical address, or -HvError.
   */
  resolve(peer: number, ref: number, offset: number, length: number, write: boolean): number {
    if (!(Number.isInteger(ref) && ref >= 0 && ref < this.entries)) return -HvError.EACCES;
    if (!(offset >= 0 && length >= 0 && offset + length <= 4096)) return -HvError.EINVAL;
    const entry = guestBytes(this.ram, this.gpa + ref * GrantEntry.BYTES, GrantEntry.BYTES);
    if (entry === null) return -HvError.EFAULT;
    const view = new DataView(entry.buffer, entry.byteOffset, GrantEntry.BYTES);
    const flags = view.getUint16(GrantEntry.FLAGS, true);
    if ((flags & GrantFlag.PERMIT_ACCESS) === 0 || view.getUint16(GrantEntry.PEER, true) !== peer) return -HvError.EACCES;
    if (write && flags & GrantFlag.READONLY) return -HvError.EACCES;
    const gpa = view.getUint32(GrantEntry.FRAME, true) * 4096 + offset;
    if (!this.ram.contains(gpa, length)) return -HvError.EFAULT;
    return gpa;
  }
}
