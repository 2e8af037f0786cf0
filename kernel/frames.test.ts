import { describe, expect, it } from "vitest";
import { bootedKernel } from "../test/support/kernel.js";
import { MemRights, SpaceKind, crd } from "../capabilities/index.js";
import { CHUNK_FRAMES, FRAME_SIZE } from "./frames.js";
import type { Pd } from "./pd.js";
import { Status } from "./status.js";

const CHUNK_BYTES = CHUNK_FRAMES * FRAME_SIZE;

describe("frames in chunks of storage", () => {
  it("a chunk has storage while one of its frames is in use; a discarded frame reads zero when used again", () => {
    const { k, asRoot } = bootedKernel({ memoryMiB: 1 });
    expect(k.memory.residentBytes).toBe(0);
    asRoot((sys) => {
      const old = sys.memory(0, CHUNK_FRAMES)!.bytes;
      expect(k.memory.residentBytes).toBe(CHUNK_BYTES);
      old.fill(0xaa);
      expect(sys.discard(0, CHUNK_FRAMES - 1)).toBe(CHUNK_FRAMES - 1);
      // Frame 63 is still in use: the chunk stays, and a discarded frame comes back zero.
      expect(k.memory.residentBytes).toBe(CHUNK_BYTES);
      expect(sys.memory(5, 1)!.bytes.every((b) => b === 0)).toBe(true);
      expect(sys.memory(CHUNK_FRAMES - 1, 1)!.bytes.every((b) => b === 0xaa)).toBe(true);
      expect(sys.discard(0, CHUNK_FRAMES)).toBe(CHUNK_FRAMES);
      expect(k.memory.residentBytes).toBe(0);
      expect(k.memory.chunks[0].byteLength).toBe(0);
      // Used again: new storage, all zero.
      expect(sys.memory(CHUNK_FRAMES - 1, 1)!.bytes.every((b) => b === 0)).toBe(true);
      expect(k.memory.residentBytes).toBe(CHUNK_BYTES);
    });
  });

  it("a view is at most one chunk", () => {
    const { asRoot } = bootedKernel({ memoryMiB: 1 });
    asRoot((sys) => {
      expect(sys.memory(CHUNK_FRAMES - 4, 8)).toBeNull();
      expect(sys.memory(0, CHUNK_FRAMES + 1)).toBeNull();
      expect(sys.memory(CHUNK_FRAMES, CHUNK_FRAMES)?.length).toBe(CHUNK_BYTES);
    });
  });

  it("discards only what no one else sees: not a frame delegated on, not one its parent gave out twice, and never with bad arguments", () => {
    const { k, asRoot } = bootedKernel({ memoryMiB: 1 });
    asRoot((sys) => {
      expect(sys.createPd(100, 1 << 20, { name: "a" })).toBe(Status.SUCCESS);
      expect(sys.createPd(101, 1 << 20, { name: "b" })).toBe(Status.SUCCESS);
      sys.memory(10, 1)!.bytes.fill(7);
      expect(sys.delegate(100, crd(SpaceKind.MEMORY, 10, 0, MemRights.ALL), 10)).toBe(Status.SUCCESS);
      expect(sys.discard(10, 1)).toBe(0);
      expect(sys.memory(10, 1)!.bytes.every((b) => b === 7)).toBe(true);
      for (const [page, pages] of [[-1, 1], [0, 0], [1.5, 1], [0, 2 ** 40], [2 ** 40, 1], [0, Number.NaN]]) expect(sys.discard(page, pages)).toBe(0);
      expect(k.memory.residentBytes).toBe(CHUNK_BYTES);
    });
    // A's frame 10 is also the root's; the root gave it to A alone, so A may discard it.
    const sysA = k.sysFor(k.root.objects.get(100)!.cap.object as Pd);
    expect(sysA.discard(10, 1)).toBe(1);
    expect(k.memory.residentBytes).toBe(0);
    asRoot((sys) => {
      // Given to A and B: neither may discard it.
      sys.memory(11, 1)!.bytes.fill(9);
      expect(sys.delegate(100, crd(SpaceKind.MEMORY, 11, 0, MemRights.ALL), 11)).toBe(Status.SUCCESS);
      expect(sys.delegate(101, crd(SpaceKind.MEMORY, 11, 0, MemRights.R), 11)).toBe(Status.SUCCESS);
    });
    expect(sysA.discard(11, 1)).toBe(0);
    const sysB = k.sysFor(k.root.objects.get(101)!.cap.object as Pd);
    expect(sysB.discard(11, 1)).toBe(0);
    asRoot((sys) => expect(sys.memory(11, 1)!.bytes.every((b) => b === 9)).toBe(true));
  });
});
