// Guest RAM as a save hands it over (RamPages), as flat bytes, for tests that compare it.

import type { RamPages } from "../../vmm/protocol.js";

const PAGE = 4096;

/** All of `ram` as one copy (zero pages as zeros). */
export function copyRam(ram: RamPages): Uint8Array {
  const out = new Uint8Array(ram.pages * PAGE);
  for (let n = 0; n < ram.pages; n++) {
    const page = ram.read(n);
    if (page) out.set(page, n * PAGE);
  }
  return out;
}

