// The grantee's side of grant mapping: which page of the grant map area holds which peer's grant.
// GNTTAB_MAP asks the peer's VMM for the page (PeerOp.MAP), which checks the grant and hands the
// page with its reply; this VMM maps it into its VM. A mapping the granter revoked (GNTTAB_END, its
// VM ended, its memory manager took the page) leaves an unmapped page behind: the guest's accesses
// then exit, and `refault` asks the peer once more (a revoked grant answers no: reads see all
// ones, writes go nowhere). A restored VM finds its mappings so too. A VM may map its own grants
// (HV_PEER_SELF, an entry naming it): its own table answers, and the page is the same capability.

import type { VcpuState } from "../../kernel/index.js";
import { GNTMAP_READONLY, HV_GNTMAP_BASE, HV_GNTMAP_PAGES, HV_PEER_SELF, HvError } from "./hv-abi.js";
import { PeerOp } from "./peer-protocol.js";

/** Page capabilities on the grantee's side (grant-pages.ts). */
export interface GrantImports {
  /**
   * Call peer `peer` with the request `fill` writes, taking a page its reply carries into map slot
   * `slot` (none for a slot < 0): the reply's status (an HvError code; 0 when the page came, if one
   * was to come), or null when the call failed.
   */
  fetch(peer: number, slot: number, fill: (words: Uint32Array) => number): number | null;
  /** Map slot `slot`'s page into the VM at its page of the grant map area. */
  map(slot: number, writable: boolean): void;
  /** Slot `slot`'s page goes (the VM's mapping with it). */
  unmap(slot: number): void;
  /** Do the exit's access (an MMIO qualification) on slot `slot`'s page; false when the page is not there (or not writable, for a write). */
  access(slot: number, q: VcpuState["qual"]): boolean;
}

/** This VM's own grant table, for mappings of its own grants (HV_PEER_SELF): no peer to ask. */
export interface OwnGrants {
  /** Map own grant `ref` at slot `slot` (the page lands in the slot's import): 0 or an HvError code. */
  map(ref: number, slot: number, writable: boolean): number;
  /** The mapping at slot `slot` went. */
  unmap(ref: number, slot: number, writable: boolean): void;
}

/** One mapping: whose grant, and how. */
export interface GrantMapping {
  peer: number;
  ref: number;
  writable: boolean;
}

export class GrantMaps {
  private readonly slots: (GrantMapping | null)[] = new Array<GrantMapping | null>(HV_GNTMAP_PAGES).fill(null);

  constructor(
    private readonly imports: GrantImports,
    private readonly peers: number,
    private readonly own: OwnGrants,
  ) {}

  /** GNTTAB_MAP(peer, ref, gpa, flags). */
  map(peer: number, ref: number, gpa: number, flags: number): number {
    if ((flags & ~GNTMAP_READONLY) !== 0) return -HvError.EINVAL;
    const slot = slotOf(gpa);
    if (slot < 0) return -HvError.EINVAL;
    if (!(peer < this.peers) && peer !== HV_PEER_SELF) return -HvError.ESRCH;
    if (this.slots[slot] !== null) return -HvError.EBUSY;
    const mapping = { peer, ref, writable: (flags & GNTMAP_READONLY) === 0 };
    const status = this.fetch(slot, mapping);
    if (status !== 0) return -status;
    this.slots[slot] = mapping;
    return 0;
  }

  /** GNTTAB_UNMAP(gpa). */
  unmap(gpa: number): number {
    const slot = slotOf(gpa);
    const mapping = slot < 0 ? null : this.slots[slot];
    if (mapping === null) return -HvError.EINVAL;
    this.imports.unmap(slot);
    this.slots[slot] = null;
    // The granter counts our mappings; gone or revoked already, it has nothing to undo.
    if (mapping.peer === HV_PEER_SELF) this.own.unmap(mapping.ref, slot, mapping.writable);
    else this.imports.fetch(mapping.peer, -1, (w) => (w.set([PeerOp.UNMAP, mapping.ref, slot, mapping.writable ? 1 : 0]), 4));
    return 0;
  }

  /**
   * An access of the guest exited (MMIO at `q.address`): if it is a mapped page of the area
   * (revoked, or not fetched since a restore), fetch it again and do the access on it. True when
   * done; false when it is no mapping or the granter said no (the access is the platform's then:
   * nothing there).
   */
  refault(q: VcpuState["qual"]): boolean {
    const gpa = q.address;
    const slot = Number.isInteger(gpa) ? slotOf(gpa - (gpa % 4096)) : -1;
    const mapping = slot < 0 ? null : this.slots[slot];
    if (mapping === null) return false;
    this.imports.unmap(slot);
    return this.fetch(slot, mapping) === 0 && this.imports.access(slot, q);
  }

  /** The mappings, by slot (snapshots). */
  saveState(): [number, GrantMapping][] {
    const out: [number, GrantMapping][] = [];
    this.slots.forEach((m, slot) => m && out.push([slot, { ...m }]));
    return out;
  }

  /** Checked mappings (hv-state.ts): they come back on first touch, from whatever peers the restored VM has. */
  loadState(mappings: [number, GrantMapping][]): void {
    this.slots.fill(null);
    for (const [slot, m] of mappings) this.slots[slot] = { ...m };
  }

  /** Ask the granter for the page and map it: 0 or an HvError code. */
  private fetch(slot: number, m: GrantMapping): number {
    const status = m.peer === HV_PEER_SELF ? this.own.map(m.ref, slot, m.writable) : this.imports.fetch(m.peer, slot, (w) => (w.set([PeerOp.MAP, m.ref, slot, m.writable ? 1 : 0]), 4));
    if (status === null) return HvError.ESRCH;
    if (status !== 0) return status;
    this.imports.map(slot, m.writable);
    return 0;
  }
}

/** The slot of a page-aligned gpa in the grant map area, or -1. */
function slotOf(gpa: number): number {
  if (!Number.isInteger(gpa) || gpa % 4096 !== 0) return -1;
  const slot = (gpa - HV_GNTMAP_BASE) / 4096;
  return slot >= 0 && slot < HV_GNTMAP_PAGES ? slot : -1;
}
