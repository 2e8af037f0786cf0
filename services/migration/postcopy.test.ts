// Post-copy's bookkeeping: each remote page goes once (asked-for ones first), the destination's
// table takes each remote page once and refuses the rest, and the two records are checked whole.

import { describe, expect, it } from "vitest";
import { MigrationError, encodePages } from "./stream.js";
import { MAX_REQUEST_PAGES, PageState, PostcopyOutbox, RemotePages, countBits, decodeRemote, decodeRequest, encodeRequest } from "./postcopy.js";

const bitmapOf = (pages: number, remote: number[]) => {
  const b = new Uint8Array(Math.ceil(pages / 8));
  for (const p of remote) b[p >> 3] |= 1 << (p & 7);
  return b;
};
const page = (fill: number) => new Uint8Array(4096).fill(fill);

describe("post-copy: the source's outbox", () => {
  it("sends every remote page once: asked-for ones first and alone, then the push in order; others asked for are refused", () => {
    const box = new PostcopyOutbox(bitmapOf(64, [3, 5, 9, 10, 40]), 64);
    expect(box.total).toBe(5);
    box.request([40, 7, 40]);
    // 7 was never remote; 40 asked twice goes once.
    expect(box.refused).toBe(2);
    expect(box.take(8)).toEqual([40]);
    expect(box.take(2)).toEqual([3, 5]);
    // Asked for after it went: not again.
    box.request([3, 9]);
    expect(box.refused).toBe(3);
    expect(box.take(8)).toEqual([9]);
    expect(box.take(8)).toEqual([10]);
    expect(box.take(8)).toEqual([]);
    expect(box.remaining).toBe(0);
    expect(box.sent).toBe(5);
    expect(box.requested).toBe(2);
  });
});

describe("post-copy: the destination's table", () => {
  it("takes each remote page once, zero or not; a page that was not remote, or comes again, is refused before anything changes", () => {
    const t = RemotePages.create(bitmapOf(16, [2, 3, 15]), 16);
    // The worker's view of the same memory.
    const w = new RemotePages(t.buffer, 16);
    expect(t.total).toBe(3);
    expect(t.ask([2, 4, 2])).toEqual([2]);
    expect(t.state(2)).toBe(PageState.REQUESTED);
    expect(w.apply(encodePages([{ page: 2, bytes: page(7) }, { page: 15, bytes: null }]))).toBe(2);
    expect(t.wait(2, 0)).toBe(true);
    const into = page(1);
    t.copy(15, into);
    expect(into).toEqual(page(0));
    t.copy(2, into);
    expect(into).toEqual(page(7));
    expect(() => w.apply(encodePages([{ page: 3, bytes: page(1) }, { page: 2, bytes: page(1) }]))).toThrow(/page 2 came a second time/);
    expect(() => w.apply(encodePages([{ page: 3, bytes: page(1) }, { page: 3, bytes: page(1) }]))).toThrow(/page 3 came a second time/);
    expect(() => w.apply(encodePages([{ page: 4, bytes: page(1) }]))).toThrow(/page 4 came after the switch, but it was not remote/);
    expect(() => w.apply(encodePages([{ page: 16, bytes: page(1) }]))).toThrow(/page 16 lies outside RAM/);
    // The refused frames took nothing (page 3 still remote).
    expect(t.state(3)).toBe(PageState.REMOTE);
    expect(t.remaining).toBe(1);
    expect(t.wait(3, 1)).toBe(false);
    w.fail();
    expect(t.failed).toBe(true);
    expect(t.wait(3, 1000)).toBe(false);
  });
});

describe("post-copy: the records", () => {
  it("POSTCOPY is exactly the RAM's bitmap; REQUEST counts 1 to MAX_REQUEST_PAGES pages, each inside RAM", () => {
    expect(countBits(decodeRemote(bitmapOf(20, [0, 19]), 20))).toBe(2);
    expect(() => decodeRemote(new Uint8Array(2), 20)).toThrow(/2 bytes, not the 3 of a bitmap of 20 pages/);
    expect(() => decodeRemote(Uint8Array.from([0, 0, 0x10]), 20)).toThrow(/past the last of the 20 pages/);
    expect(decodeRequest(encodeRequest([1, 19]), 20)).toEqual([1, 19]);
    for (const [bytes, message] of [
      [encodeRequest([20]), /page 20 lies outside RAM \(20 pages\)/],
      [encodeRequest([]), /count 0 is not 1 to 1024/],
      [encodeRequest(new Array(MAX_REQUEST_PAGES + 1).fill(0)), /count 1025/],
      [encodeRequest([1, 2]).subarray(0, 10), /10 bytes for 2 pages/],
      [new Uint8Array(3), /too short for its count/],
    ] as const) {
      expect(() => decodeRequest(bytes, 20)).toThrow(MigrationError);
      expect(() => decodeRequest(bytes, 20)).toThrow(message);
    }
  });
});
