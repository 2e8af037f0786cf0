// Grant mapping as capabilities: the granter's VMM derives a capability for the granted page from
// its own (the RAM window's) into an export slot, one per grant reference, and delegates from that
// with its reply to the grantee's VMM, which maps it into its VM. Revoking the export slot removes
// every mapping derived from it, in every VM, and nothing else (the granter's own mapping of the
// page is a sibling, not a child). When a VMM's PD dies, the kernel revokes its exports with it.

import { MemRights, Sel, SpaceKind, Status, crd, type Sys, type VcpuState } from "../../kernel/index.js";
import type { GuestRam } from "../devices/virtio/index.js";
import type { GrantImports } from "./grant-maps.js";
import type { GrantExports } from "./grant-table.js";
import { GNTTAB_MAX_ENTRIES, HV_GNTMAP_BASE, HV_GNTMAP_PAGES, HvError } from "./hv-abi.js";

/** Where a VMM keeps grant pages in its memory space, and whom it calls. */
export interface GrantLayout {
  /** The VM's PD (where imports are mapped). */
  vmPd: number;
  /** Guest page p is at ramBase + p in the VMM's memory space. */
  ramBase: number;
  /** GNTTAB_MAX_ENTRIES pages: export slot of ref r at exportBase + r. */
  exportBase: number;
  /** HV_GNTMAP_PAGES pages: the page mapped at slot s of the grant map area sits at importBase + s. */
  importBase: number;
  /** The peer portal of channel k is at peerBase + k. */
  peerBase: number;
}

export class GrantPages implements GrantExports, GrantImports {
  constructor(
    private readonly sys: Sys,
    private readonly ram: GuestRam,
    private readonly layout: GrantLayout,
  ) {
    if (layout.exportBase % GNTTAB_MAX_ENTRIES !== 0 || layout.importBase % HV_GNTMAP_PAGES !== 0) throw new Error("grant windows must be aligned");
  }

  export(ref: number, page: number): boolean {
    // The page is made private (and backed) first: a peer must see the frame this VM writes.
    if (this.ram.view(page * 4096, 4096) === null) return false;
    const { ramBase, exportBase } = this.layout;
    return this.sys.delegate(Sel.SELF_PD, crd(SpaceKind.MEMORY, ramBase + page, 0, MemRights.R | MemRights.W), exportBase + ref) === Status.SUCCESS;
  }

  has(ref: number, writable: boolean): boolean {
    return this.sys.memory(this.layout.exportBase + ref, 1, writable) !== null;
  }

  offer(ref: number, writable: boolean): void {
    const rights = writable ? MemRights.R | MemRights.W : MemRights.R;
    this.sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, this.layout.exportBase + ref, 0, rights), offset: 0 });
  }

  lend(ref: number, slot: number, writable: boolean): boolean {
    const rights = writable ? MemRights.R | MemRights.W : MemRights.R;
    return this.sys.delegate(Sel.SELF_PD, crd(SpaceKind.MEMORY, this.layout.exportBase + ref, 0, rights), this.layout.importBase + slot) === Status.SUCCESS;
  }

  revoke(ref: number): void {
    this.sys.revoke(crd(SpaceKind.MEMORY, this.layout.exportBase + ref, 0));
  }

  fetch(peer: number, slot: number, fill: (words: Uint32Array) => number): number | null {
    const utcb = this.sys.utcb;
    utcb.items.length = 0;
    utcb.untyped = fill(utcb.words);
    if (slot >= 0) utcb.receiveWindow[SpaceKind.MEMORY] = crd(SpaceKind.MEMORY, this.layout.importBase + slot, 0);
    const called = this.sys.call(this.layout.peerBase + peer);
    utcb.receiveWindow[SpaceKind.MEMORY] = null;
    if (called !== Status.SUCCESS) return null;
    const status = utcb.words[0];
    if (status !== 0 || slot < 0) return status;
    return utcb.received.some((r) => r.kind === "delegated" && r.crd.kind === SpaceKind.MEMORY) ? 0 : HvError.EFAULT;
  }

  map(slot: number, writable: boolean): void {
    const rights = writable ? MemRights.R | MemRights.W : MemRights.R;
    this.sys.delegate(this.layout.vmPd, crd(SpaceKind.MEMORY, this.layout.importBase + slot, 0, rights), HV_GNTMAP_BASE / 4096 + slot);
  }

  unmap(slot: number): void {
    this.sys.revoke(crd(SpaceKind.MEMORY, this.layout.importBase + slot, 0));
  }

  access(slot: number, q: VcpuState["qual"]): boolean {
    const page = this.sys.memory(this.layout.importBase + slot, 1, q.write)?.bytes;
    if (page === undefined) return false;
    // Little-endian bytes of data (and edx above 4 bytes), within the page.
    const at = q.address % 4096, n = Math.min(q.size, 4096 - at);
    if (q.write) {
      for (let i = 0; i < n; i++) page[at + i] = (i < 4 ? q.data >>> (8 * i) : q.edx >>> (8 * (i - 4))) & 0xff;
      return true;
    }
    let lo = 0, hi = 0;
    for (let i = 0; i < n; i++) {
      if (i < 4) lo |= page[at + i] << (8 * i);
      else hi |= page[at + i] << (8 * (i - 4));
    }
    q.data = lo >>> 0;
    if (q.size === 8) q.edx = hi >>> 0;
    return true;
  }
}
