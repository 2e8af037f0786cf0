import { describe, expect, it } from "vitest";
import { OwedReplies, type OwedReply } from "./pd.js";

const reply = (): OwedReply & { id: number } => ({ id: 0, prevOwed: null, nextOwed: null });

describe("OwedReplies", () => {
  it("adds, unlinks from anywhere (twice is nothing), and hands out what is left once", () => {
    const list = new OwedReplies<OwedReply & { id: number }>();
    const [a, b, c, d] = [1, 2, 3, 4].map((id) => Object.assign(reply(), { id }));
    for (const r of [a, b, c, d]) list.add(r);
    list.delete(c); // in the middle
    list.delete(c);
    list.delete(d); // the head
    const stranger = Object.assign(reply(), { id: 9 });
    list.delete(stranger); // never added
    expect(list.takeAll().map((r) => r.id)).toEqual([2, 1]);
    expect(list.takeAll()).toEqual([]);
    list.delete(a); // taken already
    list.add(c);
    expect(list.takeAll().map((r) => r.id)).toEqual([3]);
  });
});
