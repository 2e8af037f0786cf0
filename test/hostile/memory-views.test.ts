// Views of memory against revocation: a component keeps a view of memory it was given, the root
// takes the memory back (or write access to it) and hands the frames to someone else. The view
// may not reach them any more: every access through it fails with a typed error.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { MemRights, MemoryRevokedError, SpaceKind, Status, crd, type MemoryView, type Sys } from "../../kernel/index.js";
import type { Kernel } from "../../kernel/kernel.js";
import type { Ec } from "../../kernel/ec.js";
import type { Pd } from "../../kernel/pd.js";
import { bootedKernel, runAs } from "../support/kernel.js";
import { scaled } from "../support/scale.js";

function must(s: Status): void {
  if (s !== Status.SUCCESS) throw new Error(`setup: ${Status[s]}`);
}

/** A booted kernel with `count` components (root selectors 10, 20, ...), and a way to act as each. */
function world(count: number): { k: Kernel; asRoot: <T>(fn: (sys: Sys) => T) => T; as: <T>(c: number, fn: (sys: Sys) => T) => T } {
  const { k, asRoot } = bootedKernel({ memoryMiB: 1 });
  asRoot((sys) => {
    for (let c = 0; c < count; c++) {
      must(sys.createPd(10 * (c + 1), 1 << 20, { name: `c${c}` }));
      must(sys.createLocalEc(10 * (c + 1) + 1, 10 * (c + 1), () => () => {}));
    }
  });
  const objectAt = <T>(sel: number): T => k.root.objects.get(sel)!.cap.object as unknown as T;
  const as = <T>(c: number, fn: (sys: Sys) => T): T => {
    const pd = objectAt<Pd>(10 * (c + 1));
    return runAs(k, objectAt<Ec>(10 * (c + 1) + 1), () => fn(k.sysFor(pd)));
  };
  return { k, asRoot, as };
}

/** Where each component sees the frames it is given. */
const AT = 0x100;
const A = 0, B = 1;

describe("a view lasts as long as the capability it was taken through", () => {
  it("revoked and given to another: the old view fails with a typed error, and B's bytes are B's", () => {
    const { asRoot, as } = world(2);
    asRoot((sys) => must(sys.delegate(10, crd(SpaceKind.MEMORY, 16, 2), AT)));
    const view = as(A, (sys) => sys.memory(AT, 4)!);
    view.bytes.fill(1);
    asRoot((sys) => {
      must(sys.revoke(crd(SpaceKind.MEMORY, 16, 2), true));
      must(sys.delegate(20, crd(SpaceKind.MEMORY, 16, 2), AT));
    });
    as(B, (sys) => sys.memory(AT, 4)!.bytes.set(new TextEncoder().encode("secret of B"), 100));

    // Reading or writing through A's view: a typed error, naming the page, every time.
    expect(() => view.bytes).toThrow(MemoryRevokedError);
    expect(() => view.bytes[100]).toThrow(/page 256 was revoked/);
    expect(() => view.bytes.set([0x41], 100)).toThrow(MemoryRevokedError);
    as(B, (sys) => {
      const b = sys.memory(AT, 4)!.bytes;
      expect(new TextDecoder().decode(b.subarray(100, 111))).toBe("secret of B");
      expect(b[99]).toBe(1);
    });
    // A has nothing there now.
    as(A, (sys) => expect(sys.memory(AT, 1)).toBeNull());
  });

  it("made read-only: a writable view fails, a readable one goes on", () => {
    const { asRoot, as } = world(1);
    asRoot((sys) => must(sys.delegate(10, crd(SpaceKind.MEMORY, 8, 0), AT)));
    const [writable, readable] = as(A, (sys) => [sys.memory(AT, 1)!, sys.memory(AT, 1, false)!] as const);
    writable.bytes[0] = 5;
    asRoot((sys) => must(sys.revoke(crd(SpaceKind.MEMORY, 8, 0, MemRights.W), true)));
    expect(() => writable.bytes).toThrow(/page 256 was made read-only/);
    try {
      void writable.bytes;
    } catch (error) {
      expect(error).toBeInstanceOf(MemoryRevokedError);
      expect((error as MemoryRevokedError).page).toBe(AT);
      expect((error as MemoryRevokedError).why).toBe("read-only");
    }
    expect(readable.bytes[0]).toBe(5);
    expect(as(A, (sys) => sys.memory(AT, 1, true))).toBeNull();
  });

  it("a revoke elsewhere in the space does not disturb views still held: they see the same frames", () => {
    const { asRoot, as } = world(2);
    // Frames 0-3 to A, 4-7 (the same chunk) to B.
    asRoot((sys) => {
      must(sys.delegate(10, crd(SpaceKind.MEMORY, 0, 2), AT));
      must(sys.delegate(20, crd(SpaceKind.MEMORY, 4, 2), AT));
    });
    const view = as(A, (sys) => sys.memory(AT, 4)!);
    view.bytes.fill(7);
    asRoot((sys) => must(sys.revoke(crd(SpaceKind.MEMORY, 4, 2), true)));
    expect(view.bytes.length).toBe(4 * 4096);
    expect(view.bytes.every((b) => b === 7)).toBe(true);
    view.bytes[0] = 9;
    asRoot((sys) => expect(sys.memory(0, 1)!.bytes[0]).toBe(9));
  });

  it("a component that is destroyed leaves no view that works", () => {
    const { asRoot, as } = world(1);
    asRoot((sys) => must(sys.delegate(10, crd(SpaceKind.MEMORY, 32, 0), AT)));
    const view = as(A, (sys) => sys.memory(AT, 1)!);
    asRoot((sys) => must(sys.revoke(crd(SpaceKind.OBJECT, 10, 0))));
    expect(() => view.bytes).toThrow(MemoryRevokedError);
  });
});

// ---- property: no access outlives its capability ----------------------------------------------

/** Frames the property plays with: the first 16 of the first two chunks (few, so that ops meet). */
const FRAMES = 128;
const frameArb = fc.tuple(fc.nat(15), fc.boolean()).map(([f, second]) => (second ? 64 : 0) + f);

type Op =
  | { op: "delegate"; c: number; frame: number; order: number; writable: boolean }
  | { op: "revoke"; frame: number; order: number; writeOnly: boolean }
  | { op: "view"; c: number; frame: number; pages: number; writable: boolean }
  | { op: "read" | "write"; view: number; at: number; value: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("delegate" as const), c: fc.nat(2), frame: frameArb, order: fc.nat(2), writable: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("revoke" as const), frame: frameArb, order: fc.nat(2), writeOnly: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("view" as const), c: fc.nat(2), frame: frameArb, pages: fc.integer({ min: 1, max: 4 }), writable: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom("read" as const, "write" as const), view: fc.nat(40), at: fc.nat(4 * 4096 - 1), value: fc.integer({ min: 1, max: 255 }) }) },
);

/** The model: what each component holds at each frame (it sees frame f at page AT + f), as a grant number and rights. */
interface Held {
  grant: number;
  writable: boolean;
}

describe("property: every access through a view is allowed exactly while its capabilities last", () => {
  it("delegate, view, revoke and access at random across three components", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 30, maxLength: 80 }), (ops) => {
        const { asRoot, as } = world(3);
        const held: Array<Map<number, Held>> = [new Map(), new Map(), new Map()];
        const bytes = new Uint8Array(FRAMES * 4096);
        const views: Array<{ c: number; view: MemoryView; frame: number; pages: number; writable: boolean; grants: number[] }> = [];
        let grants = 0;
        for (const o of ops) {
          if (o.op === "delegate") {
            const base = o.frame & ~((1 << o.order) - 1);
            const rights = o.writable ? MemRights.ALL : MemRights.R;
            // Into empty slots only (a delegation does not replace a mapping).
            let empty = true;
            for (let f = base; f < base + (1 << o.order); f++) if (held[o.c].has(f)) empty = false;
            if (!empty) continue;
            asRoot((sys) => must(sys.delegate(10 * (o.c + 1), crd(SpaceKind.MEMORY, base, o.order, rights), AT + base)));
            for (let f = base; f < base + (1 << o.order); f++) held[o.c].set(f, { grant: grants++, writable: o.writable });
          } else if (o.op === "revoke") {
            const base = o.frame & ~((1 << o.order) - 1);
            asRoot((sys) => must(sys.revoke(crd(SpaceKind.MEMORY, base, o.order, o.writeOnly ? MemRights.W : MemRights.ALL), true)));
            for (const h of held)
              for (let f = base; f < base + (1 << o.order); f++) {
                const x = h.get(f);
                if (x && o.writeOnly) x.writable = false;
                else if (x) h.delete(f);
              }
          } else if (o.op === "view") {
            // Mostly at a frame the component holds (else views would be rare), sometimes anywhere.
            const mine = [...held[o.c].keys()].sort((x, y) => x - y);
            const frame = mine.length > 0 && o.frame % 8 !== 0 ? mine[o.frame % mine.length] : o.frame;
            const pages = Math.min(o.pages, 64 - (frame % 64));
            const view = as(o.c, (sys) => sys.memory(AT + frame, pages, o.writable));
            const hs = Array.from({ length: pages }, (_, i) => held[o.c].get(frame + i));
            const allowed = hs.every((h) => h && (h.writable || !o.writable));
            expect(view !== null, `view ${JSON.stringify(o)}`).toBe(allowed);
            if (view) views.push({ c: o.c, view, frame, pages, writable: o.writable, grants: hs.map((h) => h!.grant) });
          } else if (views.length > 0) {
            const v = views[o.view % views.length];
            const at = o.at % (v.pages * 4096);
            const f = v.frame + Math.floor(at / 4096);
            const still = v.grants.every((g, i) => {
              const h = held[v.c].get(v.frame + i);
              return h !== undefined && h.grant === g && (h.writable || !v.writable);
            });
            let got: Uint8Array | null = null;
            try {
              got = v.view.bytes;
            } catch (error) {
              expect(error).toBeInstanceOf(MemoryRevokedError);
            }
            expect(got !== null, `access through ${JSON.stringify({ ...v, view: undefined })}`).toBe(still);
            if (!got) continue;
            if (o.op === "write" && v.writable) {
              got[at] = o.value;
              bytes[f * 4096 + (at % 4096)] = o.value;
            } else expect(got[at]).toBe(bytes[f * 4096 + (at % 4096)]);
          }
        }
      }),
      { numRuns: scaled(300) },
    );
  });
});
