// Guest RAM that comes on first touch: a resumed VM's pages that its snapshot holds stay unmapped
// until the guest touches them (an MMIO exit, a code fetch) or a device does (FlatGuestRam's
// `present`); then the page is read from the snapshot and mapped. So a restore costs the index of
// the file, not its RAM.

import type { VcpuState } from "../kernel/index.js";

/** Where a resumed VM's RAM comes from (a snapshot file). Pages it does not hold are zero. */
export interface GuestRamSource {
  hasPage(page: number): boolean;
  /** Page `page` (4 KiB) into `into`. */
  readPage(page: number, into: Uint8Array): void;
}

const PAGE = 4096;

export class LazyRam {
  /** 1 for each page still in the source. */
  private readonly unfilled: Uint8Array;
  private count = 0;

  /**
   * Over `ram` (the VMM's view of guest RAM): `map(first, pages)` maps guest pages into the VM.
   * Maps every page the source does not hold at once, in runs, and leaves the others for later.
   */
  constructor(
    private readonly source: GuestRamSource,
    private readonly ram: Uint8Array,
    private readonly map: (first: number, pages: number) => void,
  ) {
    const pages = ram.length / PAGE;
    this.unfilled = new Uint8Array(pages);
    let run = 0;
    for (let p = 0; p <= pages; p++) {
      if (p < pages && !source.hasPage(p)) continue;
      if (p > run) map(run, p - run);
      if (p < pages) {
        this.unfilled[p] = 1;
        this.count++;
      }
      run = p + 1;
    }
  }

  /** Page `page` will never be filled (a ROM shadows it). */
  forget(page: number): void {
    if (!this.unfilled[page]) return;
    this.unfilled[page] = 0;
    this.count--;
  }

  /** Whether guest-physical `gpa` is RAM still to come. */
  pending(gpa: number): boolean {
    const page = Math.floor(gpa / PAGE);
    return page < this.unfilled.length && this.unfilled[page] === 1;
  }

  /** Make the pages of [gpa, gpa + length) real: read what the source holds, map them. */
  fill(gpa: number, length: number): void {
    if (this.count === 0) return;
    const last = Math.min(Math.floor((gpa + Math.max(length, 1) - 1) / PAGE), this.unfilled.length - 1);
    for (let p = Math.floor(gpa / PAGE); p <= last; p++) {
      if (!this.unfilled[p]) continue;
      this.unfilled[p] = 0;
      this.count--;
      this.source.readPage(p, this.ram.subarray(p * PAGE, (p + 1) * PAGE));
      this.map(p, 1);
    }
  }

  /** An MMIO exit on a pending page: fill it, then do the access (`q`) on RAM. */
  access(q: VcpuState["qual"]): void {
    this.fill(q.address, q.size);
    const ram = new DataView(this.ram.buffer, this.ram.byteOffset, this.ram.byteLength);
    const at = q.address;
    if (q.write) {
      if (q.size === 8) {
        ram.setUint32(at, q.data >>> 0, true);
        ram.setUint32(at + 4, q.edx >>> 0, true);
      } else if (q.size === 4) ram.setUint32(at, q.data >>> 0, true);
      else if (q.size === 2) ram.setUint16(at, q.data, true);
      else ram.setUint8(at, q.data);
    } else if (q.size === 8) {
      q.data = ram.getUint32(at, true);
      q.edx = ram.getUint32(at + 4, true);
    } else q.data = q.size === 4 ? ram.getUint32(at, true) : q.size === 2 ? ram.getUint16(at, true) : ram.getUint8(at);
  }
}
