// The incoming migration's page store: what it keeps is a copy, pages are found across chunks,
// zeroed pages are gone, and pages outside RAM are refused.

import { describe, expect, it } from "vitest";
import { PageStore } from "./page-store.js";
import { decodePages, encodePages } from "./stream.js";

const page = (fill: number) => new Uint8Array(4096).fill(fill);

describe("PageStore", () => {
  it("keeps a copy of each page, in any chunk, until it is deleted or cleared", () => {
    const store = new PageStore(1000);
    const bytes = page(1);
    // The first and last page of a chunk, the first of the next, the last of RAM.
    for (const [p, fill] of [[0, 1], [255, 2], [256, 3], [999, 4]]) {
      bytes.fill(fill);
      store.set(p, bytes);
    }
    bytes.fill(9);
    expect([0, 255, 256, 999].map((p) => store.get(p)![4095])).toEqual([1, 2, 3, 4]);
    expect(store.stored()).toEqual([0, 255, 256, 999]);
    expect(store.has(1)).toBe(false);
    expect(store.get(1)).toBeUndefined();
    expect(store.delete(255)).toBe(true);
    expect(store.has(255)).toBe(false);
    expect(store.get(256)![0]).toBe(3);
    expect(store.stored()).toEqual([0, 256, 999]);
    store.clear();
    expect(store.has(0) || store.has(999)).toBe(false);
  });

  it("says which pages it holds in any order as stored() does, after pages came again and were zeroed", () => {
    const store = new PageStore(1000);
    const held = () => [...Array.from(store.held())].sort((a, b) => a - b);
    for (const p of [999, 3, 256, 3]) store.set(p, page(1));
    expect(held()).toEqual([3, 256, 999]);
    store.delete(256);
    store.set(500, page(2));
    expect(held()).toEqual(store.stored());
    expect(held()).toEqual([3, 500, 999]);
    store.clear();
    store.set(7, page(3));
    expect(held()).toEqual([7]);
  });

  it("takeFresh: the pages that came since the last call, each once; one zeroed and sent again is fresh again", () => {
    const store = new PageStore(1000);
    for (const p of [5, 900, 5]) store.set(p, page(1));
    expect(store.takeFresh()).toEqual([5, 900]);
    expect(store.takeFresh()).toEqual([]);
    store.set(900, page(2));
    store.set(6, page(3));
    store.delete(5);
    store.set(5, page(4));
    expect(store.takeFresh()).toEqual([6, 5]);
    store.set(7, page(5));
    store.clear();
    expect(store.takeFresh()).toEqual([]);
  });

  it("refuses pages outside RAM and bytes that are not a page", () => {
    const store = new PageStore(8);
    expect(() => store.set(8, page(1))).toThrow(RangeError);
    expect(() => store.set(-1, page(1))).toThrow(RangeError);
    expect(() => store.set(1, new Uint8Array(100))).toThrow(/100 bytes/);
    expect(store.has(8)).toBe(false);
  });

  it("takes PAGES frames: a page sent again replaces the one before, a zero one is gone", () => {
    const store = new PageStore(8);
    decodePages(encodePages([{ page: 2, bytes: page(5) }, { page: 3, bytes: page(6) }]), 8, store);
    decodePages(encodePages([{ page: 2, bytes: page(7) }, { page: 3, bytes: null }]), 8, store);
    expect(store.get(2)![100]).toBe(7);
    expect(store.has(3)).toBe(false);
  });
});
