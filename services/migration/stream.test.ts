// The migration stream's pieces: the zero-page test and PAGES frames, one way and back.

import { describe, expect, it } from "vitest";
import { decodePages, encodePages, isZeroPage } from "./stream.js";

describe("migration stream", () => {
  it("isZeroPage finds one non-zero byte anywhere, in aligned and unaligned views", () => {
    const buffer = new Uint8Array(4096 + 3);
    for (const offset of [0, 1, 3]) {
      const page = buffer.subarray(offset, offset + 4096);
      expect(isZeroPage(page)).toBe(true);
      for (const at of [0, 1, 2, 3, 2047, 4092, 4095]) {
        page[at] = 0x80;
        expect(isZeroPage(page), `offset ${offset}, byte ${at}`).toBe(false);
        page[at] = 0;
      }
    }
  });

  it("PAGES: data pages come back as sent, zero ones (null or all zero) are deleted", () => {
    const data = new Uint8Array(4096).fill(7);
    const payload = encodePages([{ page: 3, bytes: data }, { page: 5, bytes: null }, { page: 6, bytes: new Uint8Array(4096) }]);
    // Zero pages travel as a flag: 4 + 3 entries of 5 bytes + one page of data.
    expect(payload.length).toBe(4 + 3 * 5 + 4096);
    const ram = new Map<number, Uint8Array>([[5, data], [6, data]]);
    expect(decodePages(payload, 8, ram)).toBe(3);
    expect([...ram.keys()]).toEqual([3]);
    expect(ram.get(3)).toEqual(data);
  });
});
