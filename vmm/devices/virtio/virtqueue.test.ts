// The split virtqueue alone, over a flat guest RAM: chains, used ring, interrupt suppression, layout.
import { describe, expect, it } from "vitest";
import { FlatGuestRam } from "./guest-ram.js";
import { Virtqueue, VirtqueueError } from "./virtqueue.js";

function setup(size = 8) {
  const bytes = new Uint8Array(1 << 16);
  const ram = new FlatGuestRam(bytes);
  const q = new Virtqueue(0, size, ram);
  const desc = 0x1000, avail = 0x2000, used = 0x3000;
  q.address.set([desc, 0, avail, 0, used, 0]);
  const dv = new DataView(bytes.buffer);
  const writeDesc = (i: number, addr: number, len: number, flags: number, next = 0): void => {
    dv.setUint32(desc + 16 * i, addr, true);
    dv.setUint32(desc + 16 * i + 8, len, true);
    dv.setUint16(desc + 16 * i + 12, flags, true);
    dv.setUint16(desc + 16 * i + 14, next, true);
  };
  let availIdx = 0;
  const offer = (head: number): void => {
    dv.setUint16(avail + 4 + 2 * (availIdx % size), head, true);
    dv.setUint16(avail + 2, ++availIdx, true);
  };
  return { bytes, ram, q, dv, writeDesc, offer, used, avail };
}

describe("split virtqueue", () => {
  it("refuses to work before it is enabled", () => {
    const { q } = setup();
    expect(() => q.pop()).toThrow(VirtqueueError);
  });

  it("walks a chain into readable and writable views of RAM (no copies) and fills the used ring", () => {
    const { q, writeDesc, offer, bytes, dv, used } = setup();
    q.enable();
    writeDesc(2, 0x8000, 16, 1, 5);
    writeDesc(5, 0x9000, 512, 1 | 2, 1);
    writeDesc(1, 0x9200, 1, 2);
    offer(2);
    const chain = q.pop()!;
    expect(chain.head).toBe(2);
    expect(chain.readable.map((v) => [v.byteOffset - bytes.byteOffset, v.length])).toEqual([[0x8000, 16]]);
    expect(chain.writable.map((v) => v.length)).toEqual([512, 1]);
    expect(chain.readableBytes + chain.writableBytes).toBe(529);
    chain.writable[0][0] = 0x5a;
    expect(bytes[0x9000]).toBe(0x5a);
    expect(q.pop()).toBeNull();
    q.push(2, 513);
    expect([dv.getUint16(used + 2, true), dv.getUint32(used + 4, true), dv.getUint32(used + 8, true)]).toEqual([1, 2, 513]);
    expect(q.takeSignal()).toBe(true);
    expect(q.takeSignal()).toBe(false);
  });

  it("honours VIRTQ_AVAIL_F_NO_INTERRUPT", () => {
    const { q, writeDesc, offer, dv, avail } = setup();
    q.enable();
    dv.setUint16(avail, 1, true);
    writeDesc(0, 0x8000, 1, 2);
    offer(0);
    q.push(q.pop()!.head, 1);
    expect(q.takeSignal()).toBe(false);
  });

  it("lays out legacy rings from one page frame number with 4 KiB alignment", () => {
    const { q } = setup(256);
    q.setLegacyPfn(0x5);
    expect(Array.from(q.address)).toEqual([0x5000, 0, 0x5000 + 4096, 0, 0x7000, 0]);
    expect(() => q.enable()).not.toThrow();
  });

  it("refuses readable buffers after writable ones and indirect tables it did not negotiate", () => {
    const a = setup();
    a.q.enable();
    a.writeDesc(0, 0x8000, 1, 1 | 2, 1);
    a.writeDesc(1, 0x8000, 16, 0);
    a.offer(0);
    expect(() => a.q.pop()).toThrow(/readable buffer follows/);
    const b = setup();
    b.q.enable();
    b.writeDesc(0, 0x8000, 16, 4);
    b.offer(0);
    expect(() => b.q.pop()).toThrow(/without VIRTIO_F_RING_INDIRECT_DESC/);
  });
});
