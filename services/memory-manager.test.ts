import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CHUNK_FRAMES, Kernel, SpaceKind, Status, crd, type Sys } from "../kernel/index.js";
import type { Pd } from "../kernel/pd.js";
import { MemoryManager, MemoryManagerSel } from "./memory-manager.js";
import { MemoryOp, MemoryStatus, RESERVE_PAGES } from "./memory-protocol.js";
import { FRAME_PIECE } from "./root-protocol.js";
import { rootTask, type BootModule } from "./root.js";

const PAGE = 4096;
const MEMORY = 1;
/** Where each client opens its window (page numbers of its own space). */
const WINDOW = { base: 1 << 16, order: 16 };

type Client = (sys: Sys, mm: Mm) => void | Generator<import("../kernel/index.js").Wait, void, Status>;

/** The kernel `run` is running (for clients that look at it from outside). */
let booting: Kernel | null = null;

/** Run `clients` (one thread each, in turn) against a memory manager of `total` frames. */
function run(total: number, limits: number[], clients: Client[], options: { groups?: number[]; scanRate?: number; noFrames?: boolean } = {}): MemoryManager & { kernel: Kernel } {
  const kernel = (booting = new Kernel({ memoryMiB: Math.ceil(total / 256), ioPorts: 0 }));
  const mm = new MemoryManager(total, {
    limits: new Map(limits.map((l, i) => [i + 1, l])),
    groups: new Map((options.groups ?? []).map((g, i) => [i + 1, g])),
    scanRate: options.scanRate,
  });
  const scanner = mm.scannerThread();
  const memory: BootModule = {
    name: "memory",
    quota: 4 << 20,
    frames: options.noFrames !== true,
    grants: [{ sel: MemoryManagerSel.PARENT, parent: true }],
    handlers: { main: mm.handler() },
    portals: Object.fromEntries(limits.map((_, i) => [`c${i + 1}`, { handler: "main", id: i + 1 }])),
    maxPriority: 20,
    threads: scanner ? [{ entry: scanner, priority: 20, quantumNs: 1_000_000 }] : [],
  };
  const errors: unknown[] = [];
  const modules: BootModule[] = [
    memory,
    ...clients.map((body, i) => ({
      name: `client${i + 1}`,
      quota: 4 << 20,
      maxPriority: 10,
      maxQuantumNs: 1_000_000,
      grants: [{ sel: MEMORY, portal: `memory.c${i + 1}` }],
      threads: [
        {
          priority: 10 - i,
          quantumNs: 1_000_000,
          entry: (sys: Sys) =>
            (function* () {
              try {
                const steps = body(sys, new Mm(sys));
                if (steps) yield* steps;
              } catch (error) {
                errors.push(error);
              }
            })(),
        },
      ],
    })),
  ];
  kernel.boot(rootTask(modules, { frames: kernel.memory.frames }, { vmEnded: () => {} }));
  kernel.run({ maxSteps: 1_000_000, untilNs: 60e9 });
  if (errors.length > 0) throw errors[0];
  return Object.assign(mm, { kernel });
}

/** A client's calls to the memory manager. */
class Mm {
  constructor(private readonly sys: Sys) {}

  call(...words: number[]): number[] {
    const u = this.sys.utcb;
    u.receiveWindow[SpaceKind.MEMORY] = crd(SpaceKind.MEMORY, WINDOW.base, WINDOW.order);
    u.items.length = 0;
    u.set(...words);
    expect(this.sys.call(MEMORY)).toBe(Status.SUCCESS);
    u.receiveWindow[SpaceKind.MEMORY] = null;
    return Array.from(u.words.subarray(0, u.untyped));
  }

  back(first: number, count: number, write: boolean): number[] {
    return this.call(MemoryOp.BACK, first, count, write ? 1 : 0);
  }

  /** The writable bytes of window page `p`, or null. */
  page(p: number): Uint8Array | null {
    return this.sys.memory(WINDOW.base + p, 1)?.bytes ?? null;
  }

  /** Whether window page `p` holds anything (the zero frame shows only here: it is read-only). */
  mapped(p: number): boolean {
    return this.sys.lookup(crd(SpaceKind.MEMORY, WINDOW.base + p, 0)) === Status.SUCCESS && this.sys.utcb.lookupResult !== null;
  }

  unmap(p: number): void {
    this.sys.revoke(crd(SpaceKind.MEMORY, WINDOW.base + p, 0));
  }
}

/** A name for the frame behind a page view: its chunk's storage and place there. */
const storageIds = new Map<ArrayBufferLike, number>();
function frameName(view: Uint8Array): string {
  if (!storageIds.has(view.buffer)) storageIds.set(view.buffer, storageIds.size);
  return `${storageIds.get(view.buffer)}:${view.byteOffset}`;
}

type Op =
  | { kind: "back"; first: number; count: number; write: boolean; fill: number }
  | { kind: "free"; first: number; count: number }
  | { kind: "alloc"; count: number }
  | { kind: "held" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("back" as const), first: fc.integer({ min: 0, max: 40 }), count: fc.integer({ min: 1, max: 12 }), write: fc.boolean(), fill: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("free" as const), first: fc.integer({ min: 0, max: 40 }), count: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ kind: fc.constant("alloc" as const), count: fc.integer({ min: 1, max: 24 }) }),
  fc.record({ kind: fc.constant("held" as const) }),
);

const NONE = 0, ZERO = 1, PRIVATE = 2;

describe("memory manager", () => {
  it("backs pages on demand, zero pages shared read-only, private ones zero-filled and apart, and its accounting adds up (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.array(opArb, { maxLength: 25 }), { minLength: 2, maxLength: 3 }), (programs) => {
        storageIds.clear();
        const limits = programs.map(() => 80);
        const seenFrames: Array<Map<string, number>> = [];
        const state = run(
          1024,
          limits,
          programs.map((ops, c) => (sys, mm) => {
            // The client's model: each window page's kind and the byte it filled it with.
            const kind = new Uint8Array(128);
            const fill = new Uint8Array(128);
            let allocAt = 64;
            let priv = 0, zero = 0;
            for (const op of ops) {
              if (op.kind === "held") {
                expect(mm.call(MemoryOp.HELD)).toEqual([MemoryStatus.OK, priv, zero, 80, 0]);
                continue;
              }
              if (op.kind === "alloc") {
                if (allocAt + op.count > 128) continue;
                const [status, pages] = mm.call(MemoryOp.ALLOC, allocAt, op.count);
                const ok = priv + op.count <= 80;
                expect(status).toBe(ok ? MemoryStatus.OK : MemoryStatus.OVER_LIMIT);
                if (!ok) continue;
                expect(pages).toBe(op.count);
                // One run: the pages are one contiguous view.
                const view = sys.memory(WINDOW.base + allocAt, op.count)?.bytes;
                expect(view).toBeDefined();
                expect(view!.every((b) => b === 0)).toBe(true);
                for (let p = allocAt; p < allocAt + op.count; p++) {
                  kind[p] = PRIVATE;
                  fill[p] = 0;
                }
                priv += op.count;
                allocAt += op.count;
                continue;
              }
              if (op.kind === "free") {
                // Zero pages the client unmaps itself; private ones the manager takes back.
                let had = 0;
                for (let p = op.first; p < op.first + op.count; p++) {
                  if (kind[p] === ZERO) mm.unmap(p), zero--;
                  if (kind[p] === PRIVATE) priv--;
                  if (kind[p] !== NONE) had++;
                  kind[p] = NONE;
                }
                expect(mm.call(MemoryOp.FREE, op.first, op.count)).toEqual([MemoryStatus.OK, had]);
                for (let p = op.first; p < op.first + op.count; p++) expect(mm.mapped(p)).toBe(false);
                continue;
              }
              let wanted = 0;
              for (let p = op.first; p < op.first + op.count; p++) if (kind[p] === NONE || (op.write && kind[p] === ZERO)) wanted++;
              if (op.write && priv + wanted > 80) {
                expect(mm.back(op.first, op.count, op.write)).toEqual([MemoryStatus.OVER_LIMIT, 0]);
                continue;
              }
              // A write to a zero page: the client drops the zero frame first (the protocol's rule).
              if (op.write) for (let p = op.first; p < op.first + op.count; p++) if (kind[p] === ZERO) mm.unmap(p);
              const [status, pages] = mm.back(op.first, op.count, op.write);
              expect(status).toBe(MemoryStatus.OK);
              // A read hands out every page that is not private (again, for those it had: idempotent).
              let notPrivate = 0;
              for (let p = op.first; p < op.first + op.count; p++) if (kind[p] !== PRIVATE) notPrivate++;
              expect(pages).toBe(op.write ? wanted : notPrivate);
              for (let p = op.first; p < op.first + op.count; p++) {
                if (kind[p] === PRIVATE) continue;
                if (op.write) {
                  if (kind[p] === ZERO) zero--;
                  kind[p] = PRIVATE;
                  priv++;
                  const bytes = mm.page(p)!;
                  expect(bytes.every((b) => b === 0)).toBe(true);
                  bytes.fill(op.fill);
                  fill[p] = op.fill;
                } else if (kind[p] === NONE) {
                  kind[p] = ZERO;
                  zero++;
                }
              }
              // Every page is what the model says: private pages keep what was written, zero pages are mapped read-only.
              for (let p = 0; p < 128; p++) {
                if (kind[p] === PRIVATE) expect(mm.page(p)!.every((b) => b === fill[p])).toBe(true);
                else if (kind[p] === ZERO) {
                  expect(mm.page(p)).toBeNull();
                  expect(mm.mapped(p)).toBe(true);
                } else expect(mm.mapped(p)).toBe(false);
              }
            }
            const frames = new Map<string, number>();
            for (let p = 0; p < 128; p++) if (kind[p] === PRIVATE) frames.set(frameName(mm.page(p)!), p);
            seenFrames[c] = frames;
            expect(mm.call(MemoryOp.HELD).slice(0, 3)).toEqual([MemoryStatus.OK, priv, zero]);
          }),
        );
        // No frame went to two pages; the pool's books balance.
        const all = seenFrames.flatMap((m) => [...m.keys()]);
        expect(new Set(all).size).toBe(all.length);
        const held = [...state.clients.values()].reduce((n, c) => n + c.private, 0);
        expect(state.free + held + 1).toBe(state.total);
        // Host storage follows what is held: exactly the chunks with a client's private frame in them.
        const inUse = new Set<number>();
        for (const c of state.clients.values()) for (let p = 0; p < 128; p++) if (c.table.get(p) >= 0) inUse.add(Math.floor(c.table.get(p) / CHUNK_FRAMES));
        expect(state.kernel.memory.residentBytes).toBe(inUse.size * CHUNK_FRAMES * PAGE);
      }),
      { numRuns: 60 },
    );
  });

  it("hands out every frame once, each chunk's last, also after a run that skipped frames to stay aligned", () => {
    storageIds.clear();
    const total = 4 * CHUNK_FRAMES;
    const names = new Set<string>();
    let backed = 0;
    run(total, [total], [
      (sys, mm) => {
        // Three pages at offset 2 start at an even frame: the top frame is skipped (a spare).
        expect(mm.call(MemoryOp.ALLOC, 2, 3)).toEqual([MemoryStatus.OK, 3]);
        for (let p = 0; p < 3; p++) names.add(frameName(sys.memory(WINDOW.base + 2 + p, 1)!.bytes));
        // Then single pages until the pool is at its reserve: every one a frame of its own, zero.
        for (let p = 8; ; p++) {
          const [status] = mm.back(p, 1, true);
          if (status !== MemoryStatus.OK) break;
          const bytes = mm.page(p)!;
          expect(bytes.every((b) => b === 0)).toBe(true);
          // Content of its own, so that a reclaim at the limit finds nothing to merge.
          new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, p, true);
          names.add(frameName(bytes));
          backed++;
        }
      },
    ]);
    expect(backed).toBe(total - 1 - 3 - RESERVE_PAGES);
    expect(names.size).toBe(3 + backed);
  });

  it("holds only the pieces of frames it handed out: the root gives them when the pool first reaches them", () => {
    const total = 4 * FRAME_PIECE;
    const held: number[] = [];
    // The memory manager's PD is the root's first module (selector 0x200); its memory space holds what it was given.
    const mmPages = () => (booting!.root.objects.get(0x200)!.cap.object as Pd).memory.size;
    run(total, [total], [
      (_sys, mm) => {
        held.push(mmPages()); // nothing asked for yet
        // Reads back pages with the zero frame: the first piece.
        expect(mm.back(0, 4, false)).toEqual([MemoryStatus.OK, 4]);
        held.push(mmPages());
        // Written pages come from the bottom: the first piece still.
        expect(mm.back(8, 8, true)).toEqual([MemoryStatus.OK, 8]);
        held.push(mmPages());
        // A contiguous run comes from the top: the last piece.
        expect(mm.call(MemoryOp.ALLOC, 64, 16)).toEqual([MemoryStatus.OK, 16]);
        held.push(mmPages());
        // Singles past the first piece's end: the second.
        for (let p = 100; p < 100 + FRAME_PIECE; p += 256) expect(mm.back(p, 256, true)).toEqual([MemoryStatus.OK, 256]);
        held.push(mmPages());
        // The pool's accounting is of all the machine's frames, given or not.
        expect(mm.call(MemoryOp.HOST).slice(0, 3)).toEqual([MemoryStatus.OK, total, total - 1 - 8 - 16 - FRAME_PIECE]);
      },
    ]);
    expect(held).toEqual([0, FRAME_PIECE, FRAME_PIECE, 2 * FRAME_PIECE, 3 * FRAME_PIECE]);
  });

  it("when the root gives it no frames, it answers NO_MEMORY, grants nothing and keeps its pool whole", () => {
    const total = 2 * FRAME_PIECE;
    const answers: number[][] = [];
    const state = run(
      total,
      [total],
      [
        (_sys, mm) => {
          answers.push(mm.back(0, 4, true), mm.back(8, 2, false), mm.call(MemoryOp.ALLOC, 64, 16), mm.call(MemoryOp.HOST).slice(0, 3), mm.call(MemoryOp.HELD));
          for (const p of [0, 8, 64]) answers.push([mm.mapped(p) ? 1 : 0]);
        },
      ],
      { noFrames: true },
    );
    const { OK, NO_MEMORY } = MemoryStatus;
    expect(answers).toEqual([[NO_MEMORY, 0], [NO_MEMORY, 0], [NO_MEMORY, 0], [OK, total, total - 1], [OK, 0, 0, total, 0], [0], [0], [0]]);
    expect(state.kernel.faults).toEqual([]);
  });

  it("at the host's limit grants from the reserve with LOW, then refuses with NO_MEMORY; a client's limit is OVER_LIMIT", () => {
    const total = 1 + 2 * RESERVE_PAGES + 10;
    const seen: number[][] = [];
    // Every page written gets bytes of its own, so a reclaim at the limit finds nothing to take back.
    let unique = 0;
    const written = (mm: Mm, first: number, count: number) => {
      const reply = mm.back(first, count, true);
      for (let p = first; p < first + reply[1]; p++) new DataView(mm.page(p)!.buffer, mm.page(p)!.byteOffset).setUint32(0, ++unique);
      return reply;
    };
    run(total, [1000, 1000], [
      (_sys, mm) => {
        seen.push(written(mm, 0, 10)); // the pool's free pages beyond the reserves
        seen.push(written(mm, 10, 1)); // from the reserve
        seen.push(written(mm, 11, RESERVE_PAGES - 1)); // the rest of its reserve
        seen.push(written(mm, 100, 1)); // nothing left for it
        seen.push(mm.back(200, 3, false)); // zero pages cost nothing
        seen.push(mm.call(MemoryOp.HOST).slice(0, 5)); // (the scanned count depends on the reclaims)
      },
      (_sys, mm) => {
        // The other client's reserve is still there.
        seen.push(written(mm, 0, RESERVE_PAGES));
        seen.push(written(mm, RESERVE_PAGES, 1));
      },
    ]);
    expect(seen).toEqual([
      [MemoryStatus.OK, 10],
      [MemoryStatus.LOW, 1],
      [MemoryStatus.LOW, RESERVE_PAGES - 1],
      [MemoryStatus.NO_MEMORY, 0],
      [MemoryStatus.OK, 3],
      [MemoryStatus.OK, total, RESERVE_PAGES, 2, 0],
      [MemoryStatus.LOW, RESERVE_PAGES],
      [MemoryStatus.NO_MEMORY, 0],
    ]);
    const limited: number[][] = [];
    run(1000, [5], [(_sys, mm) => void limited.push(mm.back(0, 6, true), mm.back(0, 5, true), mm.back(5, 1, true), mm.back(5, 1, false))]);
    expect(limited).toEqual([
      [MemoryStatus.OVER_LIMIT, 0],
      [MemoryStatus.OK, 5],
      [MemoryStatus.OVER_LIMIT, 0],
      [MemoryStatus.OK, 1],
    ]);
  });

  it("refuses malformed requests and unknown clients without granting anything", () => {
    const replies: number[][] = [];
    const state = run(100, [50], [
      (_sys, mm) => {
        replies.push(mm.call(MemoryOp.BACK, 0, 0, 1));
        replies.push(mm.call(MemoryOp.BACK, 2 ** 20 - 1, 2, 1));
        replies.push(mm.call(MemoryOp.BACK, -1, 2, 1));
        replies.push(mm.call(MemoryOp.BACK, 0, 2, 7));
        replies.push(mm.call(MemoryOp.BACK, 0, 5000, 0));
        replies.push(mm.call(MemoryOp.ALLOC, 0, 0));
        replies.push(mm.call(MemoryOp.BACK, 0));
        replies.push(mm.call(99));
        mm.back(3, 1, true);
        replies.push(mm.call(MemoryOp.ALLOC, 2, 2)); // over a page it holds
      },
    ]);
    for (const r of replies) expect(r).toEqual([MemoryStatus.BAD_REQUEST, 0]);
    expect(state.clients.get(1)!.private).toBe(1);
    expect(state.free).toBe(98);
  });

  it("the scanner merges equal pages within a trust group, gives all-zero ones back, and a write copies; every page reads as written", () => {
    const seen: Record<string, unknown> = {};
    // Pages 0-9: byte p+1 everywhere (equal across clients); 10-14 written but zero; 15: the client's own.
    const fill = (c: number, p: number) => (p < 10 ? p + 1 : p < 15 ? 0 : 100 + c);
    const writer = (c: number): Client =>
      function* (sys, mm) {
        mm.back(0, 16, true);
        for (let p = 0; p < 16; p++) mm.page(p)!.fill(fill(c, p));
        // Two passes of the scanner: a page is merged only when it did not change between two looks.
        yield sys.wait.sleep(3e9);
        const held = mm.call(MemoryOp.HELD);
        seen[`held${c}`] = held;
        // What the scanner took away comes back read-only when asked for, with the same bytes.
        const lost = Array.from({ length: 16 }, (_, p) => !mm.page(p)).filter(Boolean).length;
        seen[`lost${c}`] = lost;
        expect(mm.back(0, 16, false)[0]).toBe(MemoryStatus.OK);
        for (let p = 0; p < 16; p++) {
          const bytes = sys.memory(WINDOW.base + p, 1, false)?.bytes;
          expect(bytes, `client ${c} page ${p}`).toBeDefined();
          expect(bytes!.every((b) => b === fill(c, p)), `client ${c} page ${p}`).toBe(true);
        }
        if (c === 1) {
          // Copy-on-write: client 1 writes its page 0; client 2's stays as it was.
          mm.unmap(0);
          expect(mm.back(0, 1, true)).toEqual([MemoryStatus.OK, 1]);
          const mine = mm.page(0)!;
          expect(mine.every((b) => b === 1)).toBe(true);
          mine.fill(0xee);
        }
        yield sys.wait.sleep(1e6);
        if (c === 2) expect(sys.memory(WINDOW.base, 1, false)!.bytes.every((b) => b === 1)).toBe(true);
      };
    const mm = run(1024, [64, 64, 64], [writer(1), writer(2), writer(3)], { groups: [0, 0, 1], scanRate: 2000 });
    // Clients 1 and 2 (one group) share pages 0-9; client 3 (another group) keeps its own; all give their zero pages back.
    expect(seen.held1).toEqual([MemoryStatus.OK, 1, 5, 64, 10]);
    expect(seen.held2).toEqual([MemoryStatus.OK, 1, 5, 64, 10]);
    expect(seen.held3).toEqual([MemoryStatus.OK, 11, 5, 64, 0]);
    expect(seen.lost1).toBe(15);
    expect(seen.lost3).toBe(5);
    expect(mm.scanner.zeroed).toBe(15);
    expect(mm.scanner.broken).toBe(1);
    // 10 shared frames, then one of them copied for client 1's write: the books balance.
    const privates = [...mm.clients.values()].reduce((n, c) => n + c.private, 0);
    expect(mm.scanner.sharedFrames).toBe(10);
    expect(mm.free + privates + mm.scanner.sharedFrames + 1).toBe(mm.total);
  });

  it("SHARE merges a client's template pages at once with equal ones of its group (or makes them shared), read-only; a write copies", () => {
    const seen: Record<string, unknown> = {};
    // Pages 0-3: the template's (equal in every client); page 4: the client's own.
    const fill = (c: number, p: number) => (p < 4 ? p + 1 : 100 + c);
    const cloneOf = (c: number): Client =>
      function* (sys, mm) {
        // One after the other: client c shares when the clients before it have.
        yield sys.wait.sleep(c * 1e6);
        mm.back(0, 5, true);
        for (let p = 0; p < 5; p++) mm.page(p)!.fill(fill(c, p));
        seen[`share${c}`] = mm.call(MemoryOp.SHARE, 0, 6); // page 5 has nothing: skipped
        seen[`held${c}`] = mm.call(MemoryOp.HELD);
        for (let p = 0; p < 5; p++) {
          expect(mm.page(p), `client ${c} page ${p} is read-only`).toBeNull();
          expect(sys.memory(WINDOW.base + p, 1, false)!.bytes.every((b) => b === fill(c, p)), `client ${c} page ${p}`).toBe(true);
        }
        if (c === 1) {
          yield sys.wait.sleep(10e6);
          mm.unmap(0);
          expect(mm.back(0, 1, true)).toEqual([MemoryStatus.OK, 1]);
          expect(mm.page(0)!.every((b) => b === 1)).toBe(true);
          mm.page(0)!.fill(0xee);
        }
        if (c === 2) {
          yield sys.wait.sleep(20e6);
          expect(sys.memory(WINDOW.base, 1, false)!.bytes.every((b) => b === 1)).toBe(true);
        }
      };
    const mm = run(1024, [64, 64, 64], [cloneOf(1), cloneOf(2), cloneOf(3)], { groups: [0, 0, 1] });
    for (const c of [1, 2, 3]) expect(seen[`share${c}`]).toEqual([MemoryStatus.OK, 5]);
    for (const c of [1, 2, 3]) expect(seen[`held${c}`]).toEqual([MemoryStatus.OK, 0, 0, 64, 5]);
    // Group 0: pages 0-3 once, and each client's page 4; group 1: its five. Client 1's write broke one.
    expect(mm.scanner.sharedFrames).toBe(4 + 2 + 5);
    expect(mm.scanner.broken).toBe(1);
    const privates = [...mm.clients.values()].reduce((n, c) => n + c.private, 0);
    expect(privates).toBe(1);
    expect(mm.free + privates + mm.scanner.sharedFrames + 1).toBe(mm.total);
  });

  it("at the host's limit it first takes back all-zero and equal pages (on the first look), then grants normally", () => {
    const seen: number[][] = [];
    const total = 1 + 2 * RESERVE_PAGES + 60;
    const mm = run(total, [100, 100], [
      function* (sys, mm) {
        // 40 pages written but left zero, 10 with equal bytes: reclaimable; 10 of its own.
        mm.back(0, 60, true);
        for (let p = 40; p < 50; p++) mm.page(p)!.fill(7);
        for (let p = 50; p < 60; p++) mm.page(p)!.fill(p);
        yield sys.wait.sleep(1e6);
        // The other client has taken more than was free: this one lost its zero and equal pages (now
        // shared read-only), not its own.
        expect(Array.from({ length: 60 }, (_, p) => mm.page(p) !== null).filter(Boolean)).toHaveLength(10);
        expect(mm.back(0, 60, false)[0]).toBe(MemoryStatus.OK);
        for (let p = 0; p < 60; p++) expect(sys.memory(WINDOW.base + p, 1, false)!.bytes.every((b) => b === (p < 40 ? 0 : p < 50 ? 7 : p))).toBe(true);
      },
      function* (sys, mm) {
        yield sys.wait.sleep(5e5);
        seen.push(mm.back(0, 40, true));
      },
    ]);
    expect(seen).toEqual([[MemoryStatus.OK, 40]]);
    expect(mm.scanner.reclaimed).toBe(49);
    expect(mm.free + [...mm.clients.values()].reduce((n, c) => n + c.private, 0) + mm.scanner.sharedFrames + 1).toBe(mm.total);
  });
});
