import { describe, expect, it } from "vitest";
import { VirtioBalloon, BalloonFeature, BalloonQueue } from "./balloon.js";
import { FlatGuestRam } from "./guest-ram.js";
import { virtioMachine } from "./test-driver.js";
import { Virtqueue } from "./virtqueue.js";
import { hasFeature } from "./virtio.js";

/** A balloon whose host records what it was given back. */
function balloon() {
  const released: Array<[number, number]> = [];
  const actuals: number[] = [];
  const model = new VirtioBalloon({
    release: (first, count) => {
      released.push([first, count]);
      return count;
    },
    onActual: (pages) => void actuals.push(pages),
  });
  return { model, released, actuals };
}

/** Queue `index` of `size` entries at `base` in `ram`, enabled, with a tiny driver side. */
function queueAt(ram: Uint8Array, index: number, base: number, size = 8) {
  const q = new Virtqueue(index, size, new FlatGuestRam(ram));
  q.setLegacyPfn(base / 4096);
  q.enable();
  const v = new DataView(ram.buffer);
  const desc = base, avail = base + 16 * size;
  let availIdx = 0;
  return {
    q,
    /** Post one chain of buffers (gpa, length, device-writable?). */
    post(buffers: Array<[number, number, boolean]>) {
      buffers.forEach(([gpa, len, write], i) => {
        const at = desc + 16 * i;
        v.setUint32(at, gpa, true);
        v.setUint32(at + 4, 0, true);
        v.setUint32(at + 8, len, true);
        v.setUint16(at + 12, (i + 1 < buffers.length ? 1 : 0) | (write ? 2 : 0), true);
        v.setUint16(at + 14, i + 1, true);
      });
      v.setUint16(avail + 4 + 2 * (availIdx % size), 0, true);
      v.setUint16(avail + 2, ++availIdx, true);
    },
  };
}

describe("virtio-balloon", () => {
  it("offers stats, deflate on OOM and free page reporting, and four queues", () => {
    const { model } = balloon();
    expect(model.queueSizes).toHaveLength(4);
    for (const f of [BalloonFeature.STATS_VQ, BalloonFeature.DEFLATE_ON_OOM, BalloonFeature.PAGE_REPORTING]) expect(hasFeature(model.features, f)).toBe(true);
    expect(hasFeature(model.features, BalloonFeature.FREE_PAGE_HINT)).toBe(false);
  });

  it("an inflate gives each page back to the host; the target is the host's, actual the driver's, and a target change interrupts", () => {
    const { model, released, actuals } = balloon();
    const m = virtioMachine(model);
    expect(m.driver.initModern((offered) => offered)).toBe(true);
    // The host sets a target: the driver sees it in the configuration (and gets a configuration interrupt).
    model.target = 3;
    m.device.configChanged();
    expect(m.driver.config(0, 4)).toBe(3);
    expect(m.driver.readIsr() & 2).toBe(2);
    // The driver inflates by three page frame numbers, and says so.
    const pfns = new Uint8Array(12);
    new DataView(pfns.buffer).setUint32(0, 0x123, true);
    new DataView(pfns.buffer).setUint32(4, 0x124, true);
    new DataView(pfns.buffer).setUint32(8, 0x7ff, true);
    const gpa = m.driver.alloc(12, pfns);
    const head = m.driver.post([{ gpa, len: 12 }]);
    m.driver.notify(BalloonQueue.INFLATE);
    expect(released).toEqual([[0x123, 1], [0x124, 1], [0x7ff, 1]]);
    expect(m.driver.takeUsed()).toEqual([{ id: head, len: 0 }]);
    m.mmio.write(m.driver.caps!.device + 4, 4, 3);
    expect(actuals).toEqual([3]);
    expect(model.actual).toBe(3);
    expect(model.counts).toMatchObject({ inflated: 3, released: 3 });
    // The driver cannot write the target.
    m.mmio.write(m.driver.caps!.device, 4, 99);
    expect(model.target).toBe(3);
  });

  it("free page reports give whole pages of each range back without touching them, and return the buffers", () => {
    const { model, released } = balloon();
    const ram = new Uint8Array(1 << 20);
    const r = queueAt(ram, BalloonQueue.REPORTING, 0x8000);
    r.post([
      [0x40000, 0x10000, true],
      [0x61800, 0x3000, true], // not page-aligned at the start: only the whole pages inside
    ]);
    model.process(r.q);
    expect(released).toEqual([
      [0x40, 16],
      [0x62, 2],
    ]);
    expect(model.counts.reported).toBe(18);
    expect(r.q.usedIdx).toBe(1);
  });

  it("keeps the driver's stats buffer, reads its tags, and hands it back to ask again", () => {
    const { model } = balloon();
    const ram = new Uint8Array(1 << 20);
    const s = queueAt(ram, BalloonQueue.STATS, 0x8000);
    const v = new DataView(ram.buffer);
    const stat = (at: number, tag: number, value: number) => {
      v.setUint16(at, tag, true);
      v.setUint32(at + 2, value % 2 ** 32, true);
      v.setUint32(at + 6, Math.floor(value / 2 ** 32), true);
    };
    stat(0x20000, 4, 50 << 20); // free memory
    stat(0x2000a, 5, 2 ** 33); // total memory, above 4 GiB
    stat(0x20014, 99, 7); // an unknown tag is skipped
    s.post([[0x20000, 30, false]]);
    expect(model.requestStats()).toBe(false);
    model.process(s.q);
    expect(model.stats).toEqual({ "free-memory": 50 << 20, "total-memory": 2 ** 33 });
    expect(s.q.takeSignal()).toBe(false); // held, not returned
    expect(model.requestStats()).toBe(true);
    expect(s.q.takeSignal()).toBe(true);
    expect(model.requestStats()).toBe(false);
  });

  it("saves and loads its target and actual, and refuses records out of range", () => {
    const { model } = balloon();
    model.target = 1234;
    const saved = JSON.parse(JSON.stringify(model.saveState()));
    const other = balloon().model;
    other.readState(saved, "balloon")();
    expect(other.target).toBe(1234);
    expect(() => other.readState({ ...saved, target: -1 }, "balloon")).toThrow(/balloon\.target/);
    expect(() => other.readState({ ...saved, statsHead: 4096 }, "balloon")).toThrow(/balloon\.statsHead/);
  });
});
