import { describe, expect, it } from "vitest";
import { capability } from "./capability.js";
import { SpaceKind, alignedRuns, crd } from "./crd.js";
import { insertRoot, performDelegate, performRevoke, planDelegate, planRevoke, revokeSize, type DelegationPlan } from "./mdb.js";
import { Mapping } from "./mapping.js";
import { REVOCATION_LOG, Space } from "./space.js";

const obj = (n: number) => ({ type: 1, n });

function spaces(n: number, kind = SpaceKind.OBJECT): Space[] {
  return Array.from({ length: n }, (_, i) => new Space(kind, `pd${i}`));
}

function delegate(from: Space, base: number, order: number, rights: number, to: Space, dst: number): Mapping[] {
  const plan = planDelegate(from, crd(from.kind, base, order, rights), to, dst);
  if (typeof plan === "string") throw new Error(plan);
  return performDelegate(plan);
}

describe("mapping database", () => {
  it("a space filled at boot behaves as if every boot mapping were there, but makes a chunk only when it is looked at", () => {
    const count = 2500; // two whole chunks of 1024 and part of a third
    const made: number[] = [];
    const cap = capability(obj(0), 7);
    const boot = () => {
      const s = new Space(SpaceKind.MEMORY, "root");
      s.fillAtBoot(count, (i) => (made.push(i), new Mapping(s, i, cap, i)));
      return s;
    };
    const [b] = spaces(1, SpaceKind.MEMORY);
    const a = boot();
    expect(a.size).toBe(count);
    expect(made.length).toBe(0);
    // Delegating from the second chunk makes it, and only it.
    const m = delegate(a, 1024, 9, 5, b, 0);
    expect(m.length).toBe(512);
    expect(m[0].parent).toBe(a.get(1024));
    expect(m[511].offset).toBe(1535);
    expect(made.length).toBe(1024);
    expect(Math.min(...made)).toBe(1024);
    // A look past the boot range makes nothing; the short last chunk has its 452 mappings.
    expect(a.get(2500)).toBeUndefined();
    expect(a.get(2499)?.offset).toBe(2499);
    expect(made.length).toBe(1024 + 452);
    expect(a.mappingsIn(0, 4096).length).toBe(count);
    // Revoking the boot mappings of a chunk empties it for good (it is not made again).
    performRevoke(planRevoke(a, crd(SpaceKind.MEMORY, 1024, 10)) as Mapping[], 0xff, false, () => {});
    expect(b.size).toBe(0);
    expect(a.get(1024)).toBeUndefined();
    expect(a.size).toBe(count - 1024);
    expect(a.all().length).toBe(count - 1024);
    expect(made.length).toBe(count);
    // Into an empty boot slot goes a new mapping; into an occupied one does not.
    insertRoot(b, 0, cap, 0);
    expect(planDelegate(b, crd(SpaceKind.MEMORY, 0, 0), a, 5)).toBe("OCCUPIED");
    expect(typeof planDelegate(b, crd(SpaceKind.MEMORY, 0, 0), a, 1024)).toBe("object");
    // The same as a space filled mapping by mapping, for every slot.
    const eager = new Space(SpaceKind.MEMORY, "eager");
    for (let i = 0; i < count; i++) insertRoot(eager, i, cap, i);
    const lazy = boot();
    for (const i of [0, 1023, 1024, 2047, 2048, 2499, 2500, 4095]) expect(lazy.get(i)?.offset).toBe(eager.get(i)?.offset);
    expect(() => lazy.fillAtBoot(1, () => new Mapping(lazy, 0, cap, 0))).toThrow(RangeError);
  });

  it("delegation copies the capability with rights ANDed, never added", () => {
    const [a, b] = spaces(2);
    const o = obj(1);
    insertRoot(a, 5, capability(o, 0b0110));
    const [m] = delegate(a, 5, 0, 0b0011, b, 9);
    expect(b.get(9)).toBe(m);
    expect(m.cap.object).toBe(o);
    expect(m.cap.rights).toBe(0b0010);
    expect(m.parent).toBe(a.get(5));
    const [n] = delegate(b, 9, 0, 0xff, a, 6);
    expect(n.cap.rights).toBe(0b0010);
  });

  it("delegates a 2^order range in one operation, skipping empty source slots", () => {
    const [a, b] = spaces(2, SpaceKind.MEMORY);
    for (const i of [16, 17, 19, 31]) insertRoot(a, i, capability(obj(i), 7), i);
    const made = delegate(a, 16, 4, 5, b, 64);
    expect(made.map((m) => m.index)).toEqual([64, 65, 67, 79]);
    expect(made.map((m) => m.offset)).toEqual([16, 17, 19, 31]);
    expect(made.every((m) => m.cap.rights === 5)).toBe(true);
    expect(b.size).toBe(4);
  });

  it("refuses misaligned, oversized and mixed-kind ranges, and occupied destinations, changing nothing", () => {
    const [a, b] = spaces(2);
    const io = new Space(SpaceKind.IO, "io");
    insertRoot(a, 0, capability(obj(0), 1));
    insertRoot(a, 1, capability(obj(1), 1));
    insertRoot(b, 3, capability(obj(9), 1));
    expect(planDelegate(a, crd(SpaceKind.OBJECT, 1, 1), b, 0)).toBe("BAD_RANGE");
    expect(planDelegate(a, crd(SpaceKind.OBJECT, 0, 1), b, 1)).toBe("BAD_RANGE");
    expect(planDelegate(a, crd(SpaceKind.OBJECT, 0, 19), b, 0)).toBe("BAD_RANGE");
    expect(planDelegate(a, crd(SpaceKind.OBJECT, -2, 1), b, 0)).toBe("BAD_RANGE");
    expect(planDelegate(a, crd(SpaceKind.OBJECT, 0, 1), io, 0)).toBe("KIND_MISMATCH");
    expect(planDelegate(a, crd(SpaceKind.OBJECT, 0, 1), b, 2)).toBe("OCCUPIED");
    expect(b.size).toBe(1);
    expect(a.get(0)!.firstChild).toBeNull();
  });

  it("revoke removes everything derived, in every space, and the root unless kept", () => {
    const [a, b, c] = spaces(3);
    insertRoot(a, 0, capability(obj(0), 3));
    delegate(a, 0, 0, 3, b, 0);
    delegate(b, 0, 0, 1, c, 0);
    delegate(a, 0, 0, 2, c, 1);
    const removed: number[] = [];
    const roots = planRevoke(a, crd(SpaceKind.OBJECT, 0, 0));
    if (typeof roots === "string") throw new Error(roots);
    expect(revokeSize(roots, true)).toBe(3);
    performRevoke(roots, 0xff, true, (m) => removed.push(m.index));
    expect(b.size + c.size).toBe(0);
    expect(a.get(0)!.firstChild).toBeNull();
    expect(removed.length).toBe(3);
    performRevoke(roots, 0xff, false, () => {});
    expect(a.size).toBe(0);
  });

  it("revoking some rights downgrades the subtree and removes what is left with none", () => {
    const [a, b, c] = spaces(3);
    insertRoot(a, 0, capability(obj(0), 7));
    delegate(a, 0, 0, 7, b, 0);
    delegate(b, 0, 0, 4, c, 0);
    performRevoke([a.get(0)!], 4, true, () => {});
    expect(a.get(0)!.cap.rights).toBe(7);
    expect(b.get(0)!.cap.rights).toBe(3);
    expect(c.get(0)).toBeUndefined();
  });

  it("revokes a chain of 100,000 derivations without recursion", () => {
    const s = spaces(2);
    insertRoot(s[0], 0, capability(obj(0), 1));
    for (let i = 1; i <= 100_000; i++) {
      const plan = planDelegate(s[(i - 1) % 2], crd(SpaceKind.OBJECT, i - 1, 0), s[i % 2], i) as DelegationPlan;
      performDelegate(plan);
    }
    let count = 0;
    performRevoke([s[0].get(0)!], 0xff, false, () => count++);
    expect(count).toBe(100_001);
    expect(s[0].size + s[1].size).toBe(0);
  });

  it("finds mappings of a range across sparse chunks in index order", () => {
    const [a] = spaces(1, SpaceKind.MEMORY);
    for (const i of [3, 1023, 1024, 500_000, 1_048_575]) insertRoot(a, i, capability(obj(i), 1), i);
    expect(a.mappingsIn(0, 2 ** 20).map((m) => m.index)).toEqual([3, 1023, 1024, 500_000, 1_048_575]);
    expect(a.mappingsIn(1024, 1024).map((m) => m.index)).toEqual([1024]);
  });
});

describe("aligned runs", () => {
  it("split a range into the fewest naturally aligned blocks for every base", () => {
    expect(alignedRuns(16, [0])).toEqual([[0, 4]]);
    expect(alignedRuns(7, [0])).toEqual([[0, 2], [4, 1], [6, 0]]);
    expect(alignedRuns(8, [4, 0])).toEqual([[0, 2], [4, 2]]);
    expect(alignedRuns(6, [2, 0])).toEqual([[0, 1], [2, 1], [4, 1]]);
    expect(alignedRuns(3, [1, 0])).toEqual([[0, 0], [1, 0], [2, 0]]);
    expect(alignedRuns(0, [0])).toEqual([]);
  });
});

describe("capability spaces", () => {
  it("an index outside the space names no slot: it does not wrap around onto a slot inside", () => {
    const [a] = spaces(1);
    insertRoot(a, 5, capability(obj(1), 1));
    expect(a.get(5)).toBeDefined();
    for (const bad of [2 ** 32 + 5, 2 ** 40 + 5, 2 ** 18 + 5, -(2 ** 32) + 5, 5.5, -1, NaN, Infinity]) expect(a.get(bad)).toBeUndefined();
  });
});

describe("a space's log of revocations", () => {
  it("names the slots removed or downgraded since a count, until more than REVOCATION_LOG have passed", () => {
    const [a, b] = spaces(2, SpaceKind.MEMORY);
    for (let i = 0; i < 8; i++) insertRoot(a, i, capability(obj(i), 7));
    delegate(a, 0, 3, 7, b, 16);
    const start = b.revocations;
    expect(b.revokedSince(start)).toEqual([]);
    performRevoke([a.get(3)!], 2, true, () => {}); // b's slot 19 loses a right
    performRevoke([a.get(5)!], 0xff, true, () => {}); // b's slot 21 goes
    expect(b.revokedSince(start)).toEqual([19, 21]);
    expect(b.revokedSince(start + 1)).toEqual([21]);
    for (const bad of [start + 3, -1, 0.5, Number.NaN]) expect(b.revokedSince(bad)).toBeNull();
    // Round and round: the log keeps the last REVOCATION_LOG.
    for (let n = 0; n < REVOCATION_LOG; n++) b.changed(b.get(16)!);
    expect(b.revokedSince(start)).toBeNull();
    expect(b.revokedSince(b.revocations - REVOCATION_LOG)).toEqual(new Array(REVOCATION_LOG).fill(16));
  });
});
