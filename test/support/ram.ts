// Guest RAM as a save hands it over (RamPages), and as flat bytes, for tests that compare them.

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

/** Flat bytes as RamPages. */
export function flatRam(bytes: Uint8Array): RamPages {
  return { pages: Math.ceil(bytes.length / PAGE), read: (n) => bytes.subarray(n * PAGE, (n + 1) * PAGE) };
}
