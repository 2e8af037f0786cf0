// A VM's grant table, after Xen's grant_entry_v1: entries in a page of the guest's own RAM, each
// granting one peer read (or read and write) access to one of its pages. The VMM reads an entry
// each time a peer uses it, so the guest grants and revokes copies by writing its table. A peer
// that maps a grant gets the page itself (a capability the VMM derives from its own and keeps:
// `GrantExports`); the entry shows READING / WRITING while mappings last, and GNTTAB_END (or the
// end of the VM) revokes them.

import type { GuestRam } from "../devices/virtio/index.js";
import { guestBytes } from "./guest-bytes.js";
import { GNTTAB_MAX_ENTRIES, GrantEntry, GrantFlag, HV_GNTMAP_PAGES, HV_PEER_SELF, HvError } from "./hv-abi.js";

/** The granter's side of grant mapping: page capabilities (grant-pages.ts), by grant reference. */
export interface GrantExports {
  /** Keep guest page `page` (made private first) as export `ref`; false when it is not RAM. */
  export(ref: number, page: number): boolean;
  /**
   * Export `ref` is still there (the memory manager may have taken the page back, and every
   * mapping of it with it), writable too if `writable` (dirty logging write-protects the page:
   * the VMM takes the write right from everything derived from its own, exports included).
   */
  has(ref: number, writable: boolean): boolean;
  /** Hand export `ref` to the peer being served, with the reply: read-only unless `writable`. */
  offer(ref: number, writable: boolean): void;
  /** Put export `ref` into this VM's own map slot `slot` (it maps its own grant): false when that failed. */
  lend(ref: number, slot: number, writable: boolean): boolean;
  /** Export `ref` goes, and every mapping derived from it, in any VM. */
  revoke(ref: number): void;
}

/** What a table holds beyond the guest's own page (snapshots): the table's place and the mappings peers hold. */
export interface GrantTableState {
  gpa: number;
  entries: number;
  /** The mappings: [ref, peer, the peer's map slot, writable 0 or 1]. */
  mapped: [number, number, number, number][];
}

/** A mapping's key: who maps where, and how (the same mapping asked for again counts once). */
const userKey = (peer: number, slot: number, writable: boolean) => ((peer * HV_GNTMAP_PAGES + slot) << 1) | (writable ? 1 : 0);

export class GrantTable {
  private gpa = 0;
  private entries = 0;
  /** Per ref with mappings: the mappings peers hold now (userKey). */
  private readonly users = new Map<number, Set<number>>();
  /** Per ref: the guest page exported for mapping, or -1. */
  private readonly exported = new Int32Array(GNTTAB_MAX_ENTRIES).fill(-1);

  constructor(
    private readonly ram: GuestRam,
    private readonly exports: GrantExports,
  ) {}

  /** GNTTAB_SETUP: `entries` records at gpa, all in one RAM page (0 entries: no table). Mappings of the old table end. */
  setup(gpa: number, entries: number): number {
    if (entries !== 0 && (!(entries > 0 && entries <= GNTTAB_MAX_ENTRIES) || gpa % GrantEntry.BYTES !== 0)) return -HvError.EINVAL;
    if (entries !== 0 && guestBytes(this.ram, gpa, entries * GrantEntry.BYTES) === null) return -HvError.EFAULT;
    this.endAll();
    this.gpa = entries === 0 ? 0 : gpa;
    this.entries = entries;
    return 0;
  }

  /**
   * Where peer `peer` may access [offset, offset + length) of grant `ref` (for writing or only
   * reading): the guest-physical address, or -HvError.
   */
  resolve(peer: number, ref: number, offset: number, length: number, write: boolean): number {
    if (!(offset >= 0 && length >= 0 && offset + length <= 4096)) return -HvError.EINVAL;
    const view = this.entry(ref);
    if (view === null) return this.validRef(ref) ? -HvError.EFAULT : -HvError.EACCES;
    const flags = view.getUint16(GrantEntry.FLAGS, true);
    if ((flags & GrantFlag.PERMIT_ACCESS) === 0 || view.getUint16(GrantEntry.PEER, true) !== peer) return -HvError.EACCES;
    if (write && flags & GrantFlag.READONLY) return -HvError.EACCES;
    const gpa = view.getUint32(GrantEntry.FRAME, true) * 4096 + offset;
    if (!this.ram.contains(gpa, length)) return -HvError.EFAULT;
    return gpa;
  }

  /**
   * Peer `peer` maps grant `ref` at its map slot `slot` (PeerOp.MAP): the page goes with the reply;
   * 0 or an HvError code. HV_PEER_SELF is this VM mapping its own grant: the page goes to its slot.
   */
  map(peer: number, ref: number, slot: number, writable: boolean): number {
    if (!(slot < HV_GNTMAP_PAGES)) return HvError.EINVAL;
    const gpa = this.resolve(peer, ref, 0, 4096, writable);
    if (gpa < 0) return -gpa;
    const page = gpa / 4096;
    if (this.exported[ref] !== page || !this.exports.has(ref, writable)) {
      // The entry names another page than the one exported (the guest rewrote it), or the export
      // went with the page, or lost its write right to the VM's dirty logging: a new one. (Its
      // mappings of the old one go too; a peer maps again on its next access.) That is also how a
      // page peers write is in this VM's dirty log: logging write-protects the page, which takes
      // the write right from every capability derived from the VMM's, peers' mappings included, so
      // a peer's first write after each collection exits and comes here, and exporting the page
      // anew (ram.view) counts it written. Before, the export stayed read-only and the peer's
      // writes while this VM was logged went nowhere.
      if (this.exported[ref] >= 0) this.exports.revoke(ref);
      if (!this.exports.export(ref, page)) return HvError.EFAULT;
      this.exported[ref] = page;
    }
    if (peer === HV_PEER_SELF) {
      if (!this.exports.lend(ref, slot, writable)) return HvError.EFAULT;
    } else this.exports.offer(ref, writable);
    let users = this.users.get(ref);
    if (!users) this.users.set(ref, (users = new Set()));
    users.add(userKey(peer, slot, writable));
    this.showUse(ref);
    return 0;
  }

  /** Peer `peer` dropped its mapping of grant `ref` at its slot `slot` (PeerOp.UNMAP): 0 or an HvError code. */
  unmap(peer: number, ref: number, slot: number, writable: boolean): number {
    const users = this.users.get(ref);
    if (!(slot < HV_GNTMAP_PAGES) || !users?.delete(userKey(peer, slot, writable))) return HvError.EINVAL;
    if (users.size === 0) this.users.delete(ref);
    this.showUse(ref);
    return 0;
  }

  /** GNTTAB_END: the entry is cleared and every mapping of it revoked. */
  endGrant(ref: number): number {
    if (!this.validRef(ref)) return -HvError.EINVAL;
    this.end(ref, true);
    return 0;
  }

  /** The VM ends (or its table changes): every mapping of its pages goes; entries stay as they are. */
  endAll(): void {
    for (let ref = 0; ref < GNTTAB_MAX_ENTRIES; ref++) if (this.exported[ref] >= 0 || this.users.has(ref)) this.end(ref, false);
  }

  saveState(): GrantTableState {
    const mapped: [number, number, number, number][] = [];
    for (const [ref, users] of this.users) for (const key of users) mapped.push([ref, Math.floor(key / 2 / HV_GNTMAP_PAGES), (key >> 1) % HV_GNTMAP_PAGES, key & 1]);
    return { gpa: this.gpa, entries: this.entries, mapped };
  }

  /**
   * A checked state (hv-state.ts): the table as saved. No page is exported yet: a peer that maps
   * one of them again (on its first touch) gets it from here anew.
   */
  loadState(s: GrantTableState): void {
    this.endAll();
    this.gpa = s.gpa;
    this.entries = s.entries;
    for (const [ref, peer, slot, writable] of s.mapped) {
      let users = this.users.get(ref);
      if (!users) this.users.set(ref, (users = new Set()));
      users.add(userKey(peer, slot, writable === 1));
    }
  }

  private end(ref: number, clearEntry: boolean): void {
    if (this.exported[ref] >= 0) this.exports.revoke(ref);
    this.exported[ref] = -1;
    this.users.delete(ref);
    const view = this.entry(ref);
    if (view === null) return;
    if (clearEntry) view.setUint16(GrantEntry.FLAGS, 0, true);
    else this.showUse(ref);
  }

  /** READING / WRITING in the entry say whether peers hold mappings (as Xen's GTF_reading / GTF_writing). */
  private showUse(ref: number): void {
    const view = this.entry(ref);
    if (view === null) return;
    const flags = view.getUint16(GrantEntry.FLAGS, true) & ~(GrantFlag.READING | GrantFlag.WRITING);
    const users = this.users.get(ref);
    const writing = this.writtenThrough(ref);
    const use = (users ? GrantFlag.READING : 0) | (writing ? GrantFlag.WRITING : 0);
    view.setUint16(GrantEntry.FLAGS, flags | use, true);
  }

  /** Whether some mapping of grant `ref` is writable. */
  private writtenThrough(ref: number): boolean {
    const users = this.users.get(ref);
    if (users === undefined) return false;
    for (const key of users) if (key & 1) return true;
    return false;
  }

  private validRef(ref: number): boolean {
    return Number.isInteger(ref) && ref >= 0 && ref < this.entries;
  }

  /** Entry `ref` of the table (looked up each time: the page's frame may change), or null. */
  private entry(ref: number): DataView | null {
    if (!this.validRef(ref)) return null;
    const bytes = guestBytes(this.ram, this.gpa + ref * GrantEntry.BYTES, GrantEntry.BYTES);
    return bytes && new DataView(bytes.buffer, bytes.byteOffset, GrantEntry.BYTES);
  }
}
