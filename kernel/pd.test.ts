import { describe, expect, it } from "vitest";
import { FrameStore } from "./frames.js";
import { Kernel } from "./kernel.js";
import { OwedReplies, Pd, type OwedReply } from "./pd.js";
import { WasmArena } from "./wasm-arena.js";

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

describe("a VM's page tables", () => {
  const vmPd = (frames: FrameStore) => new Pd({ charge: () => true, refund: () => {} }, 1 << 20, "vm", frames, { maxPriority: 1, maxQuantumNs: 1 });

  it("are in the wasm arena for the VMs it has room for (V8 does not count them as external memory there), apart and zero; the others' are ArrayBuffers", () => {
    const frames = new FrameStore(64, new WasmArena(64 * 4096 + (16 << 20), 64 * 4096), 2);
    const [a, b, c] = [vmPd(frames), vmPd(frames), vmPd(frames)].map((pd) => pd.guestMemory!);
    expect(a.rightsOf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(b.offsetOf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(c.rightsOf.buffer).toBeInstanceOf(ArrayBuffer);
    for (const t of [a, b]) expect(t.rightsOf.every((r) => r === 0)).toBe(true);
    a.offsetOf.fill(-1);
    a.storeOf.fill(-1);
    a.rightsOf.fill(0xff);
    expect(b.offsetOf.every((r) => r === 0) && b.storeOf.every((r) => r === 0) && b.rightsOf.every((r) => r === 0)).toBe(true);
  });

  it("a kernel with the arena keeps room for four VMs' tables", () => {
    const k = new Kernel({ memoryMiB: 4, wasmArena: true });
    expect([1, 2, 3, 4, 5].map(() => k.memory.takeTableRoom())).toEqual([true, true, true, true, false]);
    expect(new Kernel({ memoryMiB: 4 }).memory.takeTableRoom()).toBe(false);
  });
});
