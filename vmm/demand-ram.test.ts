import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VcpuState } from "../kernel/index.js";
import { MemoryStatus } from "../services/memory-protocol.js";
import { DemandRam, GuestMemoryError, SOURCE_AHEAD, type RamBacking } from "./demand-ram.js";
import { MAX_CHANGED_PAGES } from "./protocol.js";
import { UTCB_WORDS } from "../kernel/index.js";

const PAGE = 4096;
const PAGES = 24;

/**
 * The memory manager and the VMM's window, modelled: what the manager holds for each page (nothing,
 * the zero frame, a shared frame, a private frame), and what the window has mapped. The manager can
 * take pages away behind the VMM's back (merge into a shared frame, give a zero page back), as its
 * scanner does; each such change counts a revocation.
 */
class FakeManager implements RamBacking {
  readonly held: Array<{ kind: "none" } | { kind: "zero" } | { kind: "shared" | "private"; bytes: Uint8Array }> = Array.from({ length: PAGES }, () => ({ kind: "none" }));
  /** Window page → the bytes mapped there and whether writable. */
  readonly window = new Map<number, { bytes: Uint8Array; writable: boolean }>();
  /** Guest page → whether the VM's mapping of it is writable (the VMM maps its window pages into the VM). */
  readonly vm = new Map<number, boolean>();
  private count = 0;
  /** The window page of each revocation, in order. */
  private readonly log: number[] = [];
  limit = Infinity;
  calls = 0;

  /** `knowsRevoked`: tell which pages were revoked (the kernel's log), or only how many (the log overflowed). */
  constructor(private readonly knowsRevoked = true) {}

  back(first: number, count: number, write: boolean): { status: number; pages: number } {
    this.calls++;
    let wanted = 0;
    for (let p = first; p < first + count; p++) if (write && this.held[p].kind !== "private") wanted++;
    if (wanted > this.limit) return { status: MemoryStatus.NO_MEMORY, pages: 0 };
    this.limit -= wanted;
    for (let p = first; p < first + count; p++) {
      const h = this.held[p];
      if (h.kind === "private") continue;
      if (write) {
        const bytes = h.kind === "shared" ? h.bytes.slice() : new Uint8Array(PAGE);
        this.held[p] = { kind: "private", bytes };
        if (!this.window.has(p)) this.window.set(p, { bytes, writable: true });
      } else {
        if (h.kind === "none") this.held[p] = { kind: "zero" };
        const bytes = h.kind === "shared" ? h.bytes : new Uint8Array(PAGE);
        if (!this.window.has(p)) this.window.set(p, { bytes, writable: false });
      }
    }
    return { status: MemoryStatus.OK, pages: count };
  }

  free(first: number, count: number): number {
    for (let p = first; p < first + count; p++) {
      if (this.held[p].kind === "private") {
        this.window.delete(p);
        this.vm.delete(p);
        this.revoked(p);
      }
      this.held[p] = { kind: "none" };
    }
    return count;
  }

  unmap(page: number): void {
    this.window.delete(page);
    this.vm.delete(page);
    this.revoked(page);
  }

  map(first: number, count: number, writable: boolean): void {
    for (let p = first; p < first + count; p++) {
      expect(this.vm.has(p), `page ${p} mapped into the VM twice`).toBe(false);
      expect(!writable || this.window.get(p)?.writable, `page ${p} mapped writable from a read-only page`).toBeTruthy();
      this.vm.set(p, writable);
    }
  }

  protect(page: number, writable: boolean): void {
    expect(this.vm.has(page), `page ${page} protected but not mapped`).toBe(true);
    this.vm.set(page, writable);
  }

  view(page: number, writable: boolean): { bytes: Uint8Array } | null {
    const w = this.window.get(page);
    return w && (w.writable || !writable) ? { bytes: w.bytes } : null;
  }

  revocations(): number {
    return this.count;
  }

  revokedSince(since: number): number[] | null {
    return this.knowsRevoked ? this.log.slice(since) : null;
  }

  private revoked(page: number): void {
    this.log.push(page);
    this.count++;
  }

  /** SHARE: each private page becomes a shared one (its bytes), handed back read-only. */
  share(first: number, count: number): number {
    let shared = 0;
    for (let p = first; p < first + count; p++) {
      const h = this.held[p];
      if (h.kind !== "private") continue;
      const bytes = h.bytes.slice();
      this.held[p] = { kind: "shared", bytes };
      this.vm.delete(p);
      this.revoked(p);
      this.window.set(p, { bytes, writable: false });
      shared++;
    }
    return shared;
  }

  /** The scanner: page `p`'s private frame becomes a shared one (equal bytes), or goes back when all zero. */
  takeAway(p: number): void {
    const h = this.held[p];
    if (h.kind !== "private") return;
    this.held[p] = h.bytes.every((b) => b === 0) ? { kind: "zero" } : { kind: "shared", bytes: h.bytes.slice() };
    this.window.delete(p);
    this.vm.delete(p);
    this.revoked(p);
  }
}

/** The guest's side: an access goes to the mapped frame when the page is mapped for it, or is an MMIO exit. */
function guestAccess(ram: DemandRam, mm: FakeManager, gpa: number, size: 1 | 2 | 4, write: boolean, value: number): number {
  if (ram.handles(gpa, write)) {
    const q = new VcpuState().qual;
    Object.assign(q, { address: gpa, size, write, data: write ? value >>> 0 : 0 });
    ram.access(q);
    return q.data;
  }
  const page = Math.floor(gpa / PAGE);
  // The engine exits for a page the VM has not mapped, or mapped read-only for a write: the VMM must have said so.
  const w = mm.window.get(page);
  const vmWritable = mm.vm.get(page);
  expect(w !== undefined && vmWritable !== undefined, `page ${page} is not mapped, yet the VMM did not take the exit`).toBe(true);
  expect(!write || vmWritable, `page ${page} is mapped read-only, yet the VMM did not take the write`).toBe(true);
  let v = 0;
  for (let k = 0; k < size; k++) {
    if (write) w!.bytes[(gpa % PAGE) + k] = (value >>> (8 * k)) & 0xff;
    else v |= w!.bytes[(gpa % PAGE) + k] << (8 * k);
  }
  return v >>> 0;
}

type Op =
  | { kind: "guest"; page: number; at: number; size: 1 | 2 | 4; write: boolean; value: number }
  | { kind: "device"; gpa: number; bytes: number[] }
  | { kind: "words"; page: number; index: number; value: number }
  | { kind: "release"; page: number; count: number }
  | { kind: "takeAway"; page: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("guest" as const), page: fc.integer({ min: 0, max: PAGES - 1 }), at: fc.integer({ min: 0, max: PAGE - 4 }), size: fc.constantFrom(1 as const, 2 as const, 4 as const), write: fc.boolean(), value: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("device" as const), gpa: fc.integer({ min: 0, max: PAGES * PAGE - 64 }), bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("words" as const), page: fc.integer({ min: 0, max: PAGES - 1 }), index: fc.integer({ min: 0, max: PAGE / 4 - 1 }), value: fc.integer() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("release" as const), page: fc.integer({ min: 0, max: PAGES - 1 }), count: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("takeAway" as const), page: fc.integer({ min: 0, max: PAGES - 1 }) }) },
);

describe("DemandRam", () => {
  it("guest, devices (bytes and words), balloon and the scanner taking pages away: RAM always reads as a plain byte array would (property)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean(), (ops, withSource, knowsRevoked, listsPages, shareSource) => {
        const mm = new FakeManager(knowsRevoked);
        // Half the runs resume from a "snapshot" holding two of every three pages (runs to read ahead); half of those list them.
        const saved = (p: number) => new Uint8Array(PAGE).fill(p + 1);
        const isStored = (p: number) => p % 3 !== 1;
        const stored = Array.from({ length: PAGES }, (_, p) => p).filter(isStored).reverse();
        // Half of the listing ones read runs of pages in one call (readPages) too.
        const readPage = (p: number, into: Uint8Array) => into.set(saved(p));
        const readPages = (first: number, into: readonly Uint8Array[]) => into.forEach((b, i) => readPage(first + i, b));
        const source = withSource ? { hasPage: isStored, readPage, ...(listsPages ? { storedPages: () => stored } : {}), ...(listsPages && shareSource !== knowsRevoked ? { readPages } : {}) } : null;
        // Half of those are a linked clone's: the pages it reads from the template are shared.
        const ram = new DemandRam(PAGES * PAGE, mm, source, shareSource);
        const model = new Uint8Array(PAGES * PAGE);
        if (source) for (const p of stored) model.set(saved(p), p * PAGE);
        for (const op of ops) {
          if (op.kind === "guest") {
            const gpa = op.page * PAGE + op.at;
            const got = guestAccess(ram, mm, gpa, op.size, op.write, op.value);
            if (op.write) for (let k = 0; k < op.size; k++) model[gpa + k] = (op.value >>> (8 * k)) & 0xff;
            else {
              let v = 0;
              for (let k = 0; k < op.size; k++) v |= model[gpa + k] << (8 * k);
              expect(got).toBe(v >>> 0);
            }
          } else if (op.kind === "device") {
            const segments = ram.segments(op.gpa, op.bytes.length)!;
            let k = 0;
            for (const s of segments) for (let i = 0; i < s.length; i++) s[i] = op.bytes[k++];
            model.set(op.bytes, op.gpa);
          } else if (op.kind === "words") {
            // A hypercall's argument array: the page's words (kept by the RAM while the page keeps its frame).
            const words = ram.pageWords(op.page)!;
            expect(words.length).toBe(PAGE / 4);
            words[op.index] = op.value;
            for (let k = 0; k < 4; k++) model[op.page * PAGE + 4 * op.index + k] = (op.value >>> (8 * k)) & 0xff;
          } else if (op.kind === "release") {
            ram.release(op.page, op.count);
            model.fill(0, op.page * PAGE, Math.min(PAGES, op.page + op.count) * PAGE);
          } else mm.takeAway(op.page);
          // What a save reads, and the device view of every byte, agree with the model.
          for (let p = 0; p < PAGES; p++) {
            const bytes = ram.read(p);
            const want = model.subarray(p * PAGE, (p + 1) * PAGE);
            if (bytes === null) expect(want.every((b) => b === 0), `page ${p} reads as zero`).toBe(true);
            else expect(Buffer.compare(bytes, want), `page ${p}`).toBe(0);
          }
        }
        // A save after it all: every page the manager holds is in the window again (none left lost).
        ram.fillAll();
        for (let p = 0; p < PAGES; p++) if (mm.held[p].kind !== "none") expect(mm.window.has(p), `page ${p} back in the window`).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("pageWords: a page's words alias its RAM, the same array while it keeps its frame; not RAM or out of range is null", () => {
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm);
    ram.exclude(2);
    expect(ram.pageWords(2)).toBeNull();
    expect(ram.pageWords(PAGES)).toBeNull();
    expect(ram.pageWords(-1)).toBeNull();
    expect(ram.pageWords(0.5)).toBeNull();
    const w = ram.pageWords(3)!;
    w[5] = 0x11223344;
    expect(ram.u32(3 * PAGE + 20)).toBe(0x11223344);
    expect(ram.pageWords(3)).toBe(w);
    // Taken away and written again: a new frame, so a new array, holding what the old one held.
    mm.takeAway(3);
    const again = ram.pageWords(3)!;
    expect(again).not.toBe(w);
    expect(again[5]).toBe(0x11223344);
  });

  it("a released page the guest touches again is a fresh zero page, whatever was there", () => {
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm);
    guestAccess(ram, mm, 5 * PAGE + 8, 4, true, 0xdeadbeef);
    expect(ram.release(5, 1)).toBe(1);
    expect(mm.window.has(5)).toBe(false);
    expect(guestAccess(ram, mm, 5 * PAGE + 8, 4, false, 0)).toBe(0);
  });

  it("reads of pages never written cost no private frame; a burst of writes to consecutive pages takes few calls", () => {
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm);
    for (let p = 0; p < 8; p++) guestAccess(ram, mm, p * PAGE, 4, false, 0);
    expect(mm.held.filter((h) => h.kind === "private")).toHaveLength(0);
    const before = mm.calls;
    for (let p = 8; p < PAGES; p++) guestAccess(ram, mm, p * PAGE, 4, true, p);
    expect(mm.calls - before).toBeLessThan(8);
    expect(mm.held.filter((h) => h.kind === "private")).toHaveLength(PAGES - 8);
  });

  it("a page the manager will not back is a typed error naming the page", () => {
    const mm = new FakeManager();
    mm.limit = 0;
    const ram = new DemandRam(PAGES * PAGE, mm);
    expect(() => guestAccess(ram, mm, 3 * PAGE, 4, true, 1)).toThrow(GuestMemoryError);
    expect(() => guestAccess(ram, mm, 3 * PAGE, 4, true, 1)).toThrow(/guest page 0x3: the memory manager answered NO_MEMORY/);
  });

  it("a fault on a snapshot page reads the stored pages after it in the same call (SOURCE_AHEAD in all); a clone's are shared, but the page a write fault writes", () => {
    for (const [write, clone] of [[false, false], [false, true], [true, true]]) {
      const mm = new FakeManager();
      const ram = new DemandRam(PAGES * PAGE, mm, { hasPage: (p) => p >= 2 && p < 13, readPage: (p, into) => into.fill(p, 0, PAGE) }, clone);
      guestAccess(ram, mm, 2 * PAGE, 1, write, 0x55);
      expect(mm.calls).toBe(1);
      for (let p = 2; p < 2 + SOURCE_AHEAD; p++) expect(mm.held[p].kind, `page ${p}`).toBe(clone && !(write && p === 2) ? "shared" : "private");
      expect(mm.held[2 + SOURCE_AHEAD].kind).toBe("none");
      for (let p = 3; p < 2 + SOURCE_AHEAD; p++) expect(guestAccess(ram, mm, p * PAGE + 7, 1, false, 0)).toBe(p);
      expect(guestAccess(ram, mm, 2 * PAGE, 1, false, 0)).toBe(write ? 0x55 : 2);
      expect(mm.calls).toBe(1);
    }
  });

  it("a growing source (an incoming migration's) is taken a part at a time: takeSource asks only for what came since, and each page reads as the source has it", () => {
    const came = new Map<number, number>();
    let fresh: number[] = [];
    const asked: number[] = [];
    const source = {
      hasPage: (p: number) => came.has(p),
      readPage: (p: number, into: Uint8Array) => into.fill(came.get(p) ?? 0),
      storedPages: () => {
        throw new Error("the whole list was asked for");
      },
      takeStored: () => {
        const taken = fresh;
        fresh = [];
        asked.push(taken.length);
        return taken;
      },
    };
    const arrive = (p: number, fill: number) => {
      if (!came.has(p)) fresh.push(p);
      came.set(p, fill);
    };
    arrive(1, 11);
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm, source);
    arrive(2, 12);
    arrive(20, 30);
    ram.takeSource();
    arrive(1, 21);
    arrive(3, 13);
    ram.takeSource();
    // The constructor took page 1; then 2 and 20; then only 3 (page 1 came again, and is taken already).
    expect(asked).toEqual([1, 2, 1]);
    expect([1, 2, 3, 20, 4].map((p) => ram.u8(p * PAGE))).toEqual([21, 12, 13, 30, 0]);
  });

  it("a fault's read-ahead of snapshot pages reads them from the source in one call when it can (readPages)", () => {
    for (const clone of [false, true]) {
      const mm = new FakeManager();
      const calls: Array<[number, number]> = [];
      const readPage = (p: number, into: Uint8Array) => void (calls.push([p, 1]), into.fill(p, 0, PAGE));
      const readPages = (first: number, into: readonly Uint8Array[]) => {
        calls.push([first, into.length]);
        into.forEach((b, i) => b.fill(first + i, 0, PAGE));
      };
      const ram = new DemandRam(PAGES * PAGE, mm, { hasPage: (p) => p >= 2 && p < 13, readPage, readPages }, clone);
      guestAccess(ram, mm, 2 * PAGE, 1, false, 0);
      expect(calls).toEqual([[2, SOURCE_AHEAD]]);
      for (let p = 2; p < 2 + SOURCE_AHEAD; p++) expect(guestAccess(ram, mm, p * PAGE + 7, 1, false, 0)).toBe(p);
    }
  });

  it("a linked clone's read of a template page shares it read-only; its first write copies it, and the shared bytes stay", () => {
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm, { hasPage: (p) => p === 3, readPage: (_p, into) => into.fill(7, 0, PAGE) }, true);
    expect(guestAccess(ram, mm, 3 * PAGE + 5, 1, false, 0)).toBe(7);
    expect(mm.held[3].kind).toBe("shared");
    expect(mm.vm.get(3)).toBe(false);
    expect(ram.stats.shared).toBe(1);
    const shared = mm.window.get(3)!.bytes;
    guestAccess(ram, mm, 3 * PAGE + 5, 1, true, 9);
    expect(mm.held[3].kind).toBe("private");
    expect(guestAccess(ram, mm, 3 * PAGE + 5, 1, false, 0)).toBe(9);
    expect(shared[5]).toBe(7);
    expect(ram.read(3)![6]).toBe(7);
  });

  it("while logging, a page read in from a snapshot is not news, and its first write after that is", () => {
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm, { hasPage: (p) => p === 3, readPage: (_p, into) => into.fill(7, 0, PAGE) });
    ram.startDirtyLog();
    expect(guestAccess(ram, mm, 3 * PAGE, 1, false, 0)).toBe(7);
    expect(ram.collectDirty()[3]).toBe(0);
    guestAccess(ram, mm, 3 * PAGE + 1, 1, true, 9);
    expect(ram.collectDirty()[3]).toBe(1);
  });

  it("a paused VM's last collection (a migration's stop) leaves the pages written writable: no kernel call each; stopping the log then leaves RAM writable", () => {
    const mm = new FakeManager();
    const ram = new DemandRam(PAGES * PAGE, mm);
    for (const p of [2, 3, 4]) guestAccess(ram, mm, p * PAGE, 1, true, p);
    ram.startDirtyLog();
    guestAccess(ram, mm, 3 * PAGE, 1, true, 9);
    expect(mm.vm.get(3)).toBe(true);
    const protects: number[] = [];
    const protect = mm.protect.bind(mm);
    mm.protect = (page, writable) => (protects.push(page), protect(page, writable));
    expect(Array.from(ram.collectDirty(false).subarray(2, 5))).toEqual([0, 1, 0]);
    expect(protects).toEqual([]);
    expect(mm.vm.get(3)).toBe(true);
    ram.stopDirtyLog();
    expect([2, 3, 4].map((p) => mm.vm.get(p))).toEqual([true, true, true]);
    // Collected as the passes do, the page written is write-protected again: its next write is news.
    ram.startDirtyLog();
    guestAccess(ram, mm, 3 * PAGE, 1, true, 10);
    protects.length = 0;
    ram.collectDirty();
    expect(protects).toEqual([3]);
    expect(mm.vm.get(3)).toBe(false);
  });

  it("dirty logging misses no write: guest, devices, balloon, copies of shared pages; every page that changed is in the log (property)", () => {
    const streamArb = fc.record({ kind: fc.constant("stream" as const), page: fc.integer({ min: 0, max: PAGES - 8 }), count: fc.integer({ min: 2, max: 8 }), value: fc.nat() });
    fc.assert(
      fc.property(fc.array(fc.oneof({ weight: 8, arbitrary: opArb }, { weight: 2, arbitrary: streamArb }, { weight: 1, arbitrary: fc.constant({ kind: "collect" as const }) }), { maxLength: 80 }), fc.integer({ min: 0, max: 20 }), fc.boolean(), fc.boolean(), fc.boolean(), (ops, startAt, knowsRevoked, resumed, shareSource) => {
        const mm = new FakeManager(knowsRevoked);
        // A resumed VM: two of every three pages come from its snapshot on first touch.
        const saved = (p: number) => resumed && p % 3 !== 1;
        const source = { hasPage: saved, readPage: (p: number, into: Uint8Array) => into.fill(saved(p) ? p + 1 : 0, 0, PAGE) };
        const ram = new DemandRam(PAGES * PAGE, mm, source, shareSource);
        const model = new Uint8Array(PAGES * PAGE);
        for (let p = 0; p < PAGES; p++) if (saved(p)) model.fill(p + 1, p * PAGE, (p + 1) * PAGE);
        let base: Uint8Array | null = null;
        const check = () => {
          const written = ram.collectDirty();
          for (let p = 0; p < PAGES; p++) {
            const changed = Buffer.compare(base!.subarray(p * PAGE, (p + 1) * PAGE), model.subarray(p * PAGE, (p + 1) * PAGE)) !== 0;
            if (changed) expect(written[p], `page ${p} changed and is not in the log`).toBe(1);
          }
          base = model.slice();
        };
        ops.forEach((op, i) => {
          if (i === startAt) {
            ram.startDirtyLog();
            base = model.slice();
          }
          if (op.kind === "collect") {
            if (base) check();
            return;
          }
          if (op.kind === "stream") {
            // A memset over consecutive pages: the faults come in a run (the VMM backs pages ahead).
            for (let p = op.page; p < op.page + op.count; p++) {
              guestAccess(ram, mm, p * PAGE + 16, 4, true, op.value + p);
              for (let k = 0; k < 4; k++) model[p * PAGE + 16 + k] = ((op.value + p) >>> (8 * k)) & 0xff;
            }
          } else if (op.kind === "guest") {
            const gpa = op.page * PAGE + op.at;
            guestAccess(ram, mm, gpa, op.size, op.write, op.value);
            if (op.write) for (let k = 0; k < op.size; k++) model[gpa + k] = (op.value >>> (8 * k)) & 0xff;
          } else if (op.kind === "device") {
            const segments = ram.segments(op.gpa, op.bytes.length)!;
            let k = 0;
            for (const s of segments) for (let j = 0; j < s.length; j++) s[j] = op.bytes[k++];
            model.set(op.bytes, op.gpa);
          } else if (op.kind === "words") {
            // A hypercall's argument array: the page's words (kept by the RAM while the page keeps its frame).
            const words = ram.pageWords(op.page)!;
            expect(words.length).toBe(PAGE / 4);
            words[op.index] = op.value;
            for (let k = 0; k < 4; k++) model[op.page * PAGE + 4 * op.index + k] = (op.value >>> (8 * k)) & 0xff;
          } else if (op.kind === "release") {
            ram.release(op.page, op.count);
            model.fill(0, op.page * PAGE, Math.min(PAGES, op.page + op.count) * PAGE);
          } else mm.takeAway(op.page);
        });
        if (base) check();
        ram.stopDirtyLog();
        // Logging off: every private page is writable in the VM again.
        for (const [p, writable] of mm.vm) if (mm.held[p].kind === "private" && mm.window.get(p)?.writable) expect(writable, `page ${p} writable again`).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("takeRemapped names every page whose frame changed: a holder of earlier views that takes those again reads RAM as it is (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof({ weight: 8, arbitrary: opArb }, { weight: 1, arbitrary: fc.constant({ kind: "attach" as const }) }, { weight: 1, arbitrary: fc.constant({ kind: "collect" as const }) }), { maxLength: 80 }), fc.boolean(), (ops, logging) => {
        const mm = new FakeManager();
        const ram = new DemandRam(PAGES * PAGE, mm);
        const model = new Uint8Array(PAGES * PAGE);
        // The control component's window: all of RAM once, then only what changed.
        ram.fillAll();
        ram.takeRemapped(0);
        const held: Array<Uint8Array | null> = Array.from({ length: PAGES }, (_, p) => ram.read(p));
        // Making a page writable again for the VM takes every mapping derived from the VMM's with it (the kernel's revoke): the holder's is dead.
        const protect = mm.protect.bind(mm);
        mm.protect = (p, writable) => {
          protect(p, writable);
          if (writable) held[p] = new Uint8Array(PAGE).fill(0xee);
        };
        // Dirty logging (a migration) write-protects pages and lets them go again at the first write.
        if (logging) ram.startDirtyLog();
        const attach = () => {
          ram.fillAll();
          const changed = ram.takeRemapped(PAGES)!;
          for (const p of changed) held[p] = ram.read(p);
          for (let p = 0; p < PAGES; p++) {
            const seen = held[p] ?? new Uint8Array(PAGE);
            expect(Buffer.compare(seen, model.subarray(p * PAGE, (p + 1) * PAGE)), `page ${p} as the holder sees it`).toBe(0);
          }
        };
        for (const op of ops) {
          if (op.kind === "attach") attach();
          else if (op.kind === "collect") {
            if (logging) ram.collectDirty();
          } else if (op.kind === "guest") {
            const gpa = op.page * PAGE + op.at;
            guestAccess(ram, mm, gpa, op.size, op.write, op.value);
            if (op.write) for (let k = 0; k < op.size; k++) model[gpa + k] = (op.value >>> (8 * k)) & 0xff;
          } else if (op.kind === "device") {
            let k = 0;
            for (const seg of ram.segments(op.gpa, op.bytes.length)!) for (let j = 0; j < seg.length; j++) seg[j] = op.bytes[k++];
            model.set(op.bytes, op.gpa);
          } else if (op.kind === "words") {
            // A hypercall's argument array: the page's words (kept by the RAM while the page keeps its frame).
            const words = ram.pageWords(op.page)!;
            expect(words.length).toBe(PAGE / 4);
            words[op.index] = op.value;
            for (let k = 0; k < 4; k++) model[op.page * PAGE + 4 * op.index + k] = (op.value >>> (8 * k)) & 0xff;
          } else if (op.kind === "release") {
            ram.release(op.page, op.count);
            model.fill(0, op.page * PAGE, Math.min(PAGES, op.page + op.count) * PAGE);
          } else mm.takeAway(op.page);
        }
        attach();
        // Past `max`, it says "all again" (null) and starts afresh.
        for (let p = 0; p < 3; p++) guestAccess(ram, mm, p * PAGE, 4, true, 7);
        ram.release(0, 3);
        expect(ram.takeRemapped(2)).toBeNull();
        expect(ram.takeRemapped(2)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("ATTACH CHANGED's most pages fit the typed items of one message (the kernel drops the rest)", () => {
    expect(MAX_CHANGED_PAGES).toBeLessThanOrEqual(UTCB_WORDS);
  });
});
