// virtio-blk over virtio-pci, driven the way Linux's virtio_pci + virtio_blk drive it.
import { describe, expect, it } from "vitest";
import { throughMsgpack } from "../test-support.js";
import { DeviceStateError } from "../state.js";
import { memoryBlockBackend } from "./backends.js";
import { VirtioBlk, VirtioBlkFeature, VirtioBlkStatus, VirtioBlkType, type BlockBackend } from "./blk.js";
import { BUFFER_BASE, virtioMachine, type TestDriver } from "./test-driver.js";
import { VirtioFeature, VirtioStatus, featureWords, hasFeature } from "./virtio.js";

const DISK_SECTORS = 2048;

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** A RAM disk that counts flushes. */
function disk(options: { readOnly?: boolean } = {}) {
  const bytes = pattern(DISK_SECTORS * 512, 7);
  const inner = memoryBlockBackend(bytes, options);
  let flushes = 0;
  const backend: BlockBackend = {
    sectors: inner.sectors,
    readOnly: inner.readOnly,
    read: (s, b) => inner.read(s, b),
    write: (s, b) => inner.write(s, b),
    flush: () => (flushes++, VirtioBlkStatus.OK),
  };
  return { bytes, backend, flushes: () => flushes };
}

/** Linux's choice: everything offered that it knows, here all we offer. */
const acceptAll = (offered: [number, number]): [number, number] => offered;

function machine(options: { readOnly?: boolean; transitional?: boolean; queueSize?: number } = {}) {
  const d = disk(options);
  const m = virtioMachine(new VirtioBlk(d.backend, { serial: "disk-0001" }), { transitional: options.transitional });
  return { ...m, disk: d };
}

/** Post a virtio_blk request as Linux lays it out: header, data buffers, status byte. Returns gpas. */
function request(drv: TestDriver, type: number, sector: number, data: { len: number; fill?: Uint8Array } | null, options: { indirect?: boolean } = {}) {
  const header = new Uint8Array(16);
  const h = new DataView(header.buffer);
  h.setUint32(0, type, true);
  h.setUint32(8, sector % 2 ** 32, true);
  h.setUint32(12, Math.floor(sector / 2 ** 32), true);
  const hdr = drv.alloc(16, header);
  const dataGpa = data ? drv.alloc(data.len, data.fill) : 0;
  const status = drv.alloc(1, Uint8Array.of(0xee));
  const deviceWrites = type !== VirtioBlkType.OUT;
  const chain = [{ gpa: hdr, len: 16 }];
  if (data) chain.push({ gpa: dataGpa, len: data.len, write: deviceWrites } as { gpa: number; len: number });
  chain.push({ gpa: status, len: 1, write: true } as { gpa: number; len: number });
  const head = drv.post(chain, options);
  drv.notify();
  return { head, dataGpa, status };
}

describe("virtio-blk over PCI: discovery and negotiation", () => {
  it("looks like QEMU's transitional virtio-blk in configuration space and offers what Linux needs", () => {
    const { driver: drv, device } = machine();
    expect(drv.cfgRead(0x00)).toBe(0x10011af4);
    expect(drv.cfgRead(0x08) >>> 8).toBe(0x010000);
    expect(drv.cfgRead(0x08) & 0xff).toBe(0);
    expect(drv.cfgRead(0x2c)).toBe(0x00021af4);
    expect(drv.cfgRead(0x3d, 1)).toBe(1);
    expect(drv.cfgRead(0x10) & 1).toBe(1); // BAR 0: I/O (legacy)
    drv.assignBars();
    const caps = drv.findCaps()!;
    expect(caps).not.toBeNull();
    expect(caps.multiplier).toBe(4);
    expect(device.barMapped(4)).toBe(true);
    const offered = drv.deviceFeatures();
    for (const bit of [VirtioFeature.VERSION_1, VirtioFeature.RING_INDIRECT_DESC, VirtioBlkFeature.SEG_MAX, VirtioBlkFeature.BLK_SIZE, VirtioBlkFeature.FLUSH]) {
      expect(hasFeature(offered, bit), `feature ${bit}`).toBe(true);
    }
    expect(hasFeature(offered, VirtioBlkFeature.RO)).toBe(false);
    expect(hasFeature(offered, VirtioFeature.RING_EVENT_IDX)).toBe(false);
    // Configuration: capacity (le64), seg_max, blk_size.
    expect(drv.config(0, 4)).toBe(DISK_SECTORS);
    expect(drv.config(4, 4)).toBe(0);
    expect(drv.config(0x0c, 4)).toBe(254);
    expect(drv.config(0x14, 4)).toBe(512);
    expect(drv.common(0x12, 2)).toBe(1); // num_queues
    expect(drv.common(0x10, 2)).toBe(0xffff); // no MSI-X vector
  });

  it("is a modern-only function (0x1042, revision 1) without the legacy BAR when asked", () => {
    const { driver: drv } = machine({ transitional: false });
    expect(drv.cfgRead(0x00)).toBe(0x10421af4);
    expect(drv.cfgRead(0x08) & 0xff).toBe(1);
    expect(drv.cfgRead(0x10)).toBe(0);
    expect(drv.initModern(acceptAll)).toBe(true);
  });

  it("refuses FEATURES_OK for features it did not offer or without VERSION_1", () => {
    const { driver: drv, device } = machine();
    expect(drv.initModern((o) => [o[0] | (1 << 13), o[1]])).toBe(false); // DISCARD, not offered
    expect(device.deviceStatus & VirtioStatus.FEATURES_OK).toBe(0);
    expect(drv.initModern((o) => [o[0], 0])).toBe(false); // no VERSION_1
    expect(drv.initModern(acceptAll)).toBe(true);
    expect(device.deviceStatus).toBe(VirtioStatus.ACKNOWLEDGE | VirtioStatus.DRIVER | VirtioStatus.FEATURES_OK | VirtioStatus.DRIVER_OK);
  });

  it("offers RO for a read-only backend and fails writes with IOERR, leaving the disk alone", () => {
    const { driver: drv, disk: d } = machine({ readOnly: true });
    expect(drv.initModern(acceptAll)).toBe(true);
    expect(hasFeature(drv.deviceFeatures(), VirtioBlkFeature.RO)).toBe(true);
    const before = d.bytes.slice();
    const r = request(drv, VirtioBlkType.OUT, 0, { len: 512, fill: new Uint8Array(512).fill(1) });
    expect(drv.ram[r.status]).toBe(VirtioBlkStatus.IOERR);
    expect(Buffer.compare(d.bytes, before)).toBe(0);
  });
});

describe("virtio-blk over PCI: requests", () => {
  function ready(options: { queueSize?: number } = {}) {
    const m = machine();
    expect(m.driver.initModern(acceptAll, options.queueSize)).toBe(true);
    return m;
  }

  it("reads: data in the guest buffer, status OK, the used ring and an INTx interrupt", () => {
    const { driver: drv, disk: d, sink, device } = ready();
    expect(sink.level(11)).toBe(false);
    const r = request(drv, VirtioBlkType.IN, 10, { len: 4096 });
    expect(drv.takeUsed()).toEqual([{ id: r.head, len: 4097 }]);
    expect(drv.ram[r.status]).toBe(VirtioBlkStatus.OK);
    expect(Buffer.compare(drv.ram.subarray(r.dataGpa, r.dataGpa + 4096), d.bytes.subarray(10 * 512, 10 * 512 + 4096))).toBe(0);
    expect(sink.level(11)).toBe(true);
    expect(drv.cfgRead(0x06, 2) & 0x08).toBe(0x08); // PCI status: interrupt pending
    expect(drv.readIsr()).toBe(1);
    expect(sink.level(11)).toBe(false);
    expect(drv.readIsr()).toBe(0);
    expect(device.lastError).toBeNull();
  });

  it("writes, flushes and answers GET_ID; unknown types are UNSUPP", () => {
    const { driver: drv, disk: d } = ready();
    const data = pattern(8192, 99);
    const w = request(drv, VirtioBlkType.OUT, 2032, { len: 8192, fill: data }); // the last 16 sectors
    expect(drv.takeUsed()).toEqual([{ id: w.head, len: 1 }]);
    expect(drv.ram[w.status]).toBe(VirtioBlkStatus.OK);
    expect(Buffer.compare(d.bytes.subarray(2032 * 512), data)).toBe(0);
    const f = request(drv, VirtioBlkType.FLUSH, 0, null);
    expect(drv.ram[f.status]).toBe(VirtioBlkStatus.OK);
    expect(d.flushes()).toBe(1);
    const id = request(drv, VirtioBlkType.GET_ID, 0, { len: 20 });
    expect(drv.ram[id.status]).toBe(VirtioBlkStatus.OK);
    expect(new TextDecoder().decode(drv.ram.subarray(id.dataGpa, id.dataGpa + 9))).toBe("disk-0001");
    expect(drv.ram[id.dataGpa + 9]).toBe(0);
    const odd = request(drv, 11 /* DISCARD: not offered */, 0, { len: 16, fill: new Uint8Array(16) });
    expect(drv.ram[odd.status]).toBe(VirtioBlkStatus.UNSUPP);
    expect(drv.takeUsed().map((u) => u.id)).toEqual([f.head, id.head, odd.head]);
  });

  it("refuses requests past the end and partial sectors with IOERR, touching nothing", () => {
    const { driver: drv, disk: d } = ready();
    const before = d.bytes.slice();
    const past = request(drv, VirtioBlkType.OUT, 2047, { len: 1024, fill: new Uint8Array(1024).fill(3) });
    const huge = request(drv, VirtioBlkType.IN, 2 ** 40, { len: 512 });
    const partial = request(drv, VirtioBlkType.OUT, 0, { len: 100, fill: new Uint8Array(100).fill(3) });
    for (const r of [past, huge, partial]) expect(drv.ram[r.status]).toBe(VirtioBlkStatus.IOERR);
    expect(Buffer.compare(d.bytes, before)).toBe(0);
    expect(drv.takeUsed()).toHaveLength(3);
  });

  it("accepts any framing: header and data in one buffer, data and status in one, unaligned pieces", () => {
    const { driver: drv, disk: d } = ready();
    // OUT with the header and data in one readable buffer.
    const data = pattern(1024, 5);
    const both = new Uint8Array(16 + 1024);
    new DataView(both.buffer).setUint32(0, VirtioBlkType.OUT, true);
    new DataView(both.buffer).setUint32(8, 100, true);
    both.set(data, 16);
    const st1 = drv.alloc(1);
    drv.post([{ gpa: drv.alloc(both.length, both), len: both.length }, { gpa: st1, len: 1, write: true }]);
    // IN with the data split 100 + 412 + 511 bytes, the last piece also holding the status byte.
    const hdr = new Uint8Array(16);
    new DataView(hdr.buffer).setUint32(8, 100, true);
    const a = drv.alloc(100), b = drv.alloc(412), c = drv.alloc(513);
    drv.post([{ gpa: drv.alloc(16, hdr), len: 16 }, { gpa: a, len: 100, write: true }, { gpa: b, len: 412, write: true }, { gpa: c, len: 513, write: true }]);
    drv.notify();
    expect(drv.ram[st1]).toBe(VirtioBlkStatus.OK);
    expect(Buffer.compare(d.bytes.subarray(100 * 512, 102 * 512), data)).toBe(0);
    const got = new Uint8Array([...drv.ram.subarray(a, a + 100), ...drv.ram.subarray(b, b + 412), ...drv.ram.subarray(c, c + 512)]);
    expect(Buffer.compare(got, data)).toBe(0);
    expect(drv.ram[c + 512]).toBe(VirtioBlkStatus.OK);
    expect(drv.takeUsed().map((u) => u.len)).toEqual([1, 1025]);
  });

  it("follows indirect descriptor tables", () => {
    const { driver: drv, disk: d } = ready();
    const r = request(drv, VirtioBlkType.IN, 3, { len: 1536 }, { indirect: true });
    expect(drv.ram[r.status]).toBe(VirtioBlkStatus.OK);
    expect(Buffer.compare(drv.ram.subarray(r.dataGpa, r.dataGpa + 1536), d.bytes.subarray(1536, 3072))).toBe(0);
  });

  it("serves many requests across the 16-bit index wrap with a smaller queue the driver chose", () => {
    const { driver: drv, disk: d } = ready({ queueSize: 4 });
    expect(drv.queueSize).toBe(4);
    let ok = 0;
    for (let i = 0; i < 70_000; i++) {
      // Reuse the same buffers: the bump allocator would run out of RAM.
      const at = BUFFER_BASE;
      drv.view.setUint32(at, VirtioBlkType.IN, true);
      drv.view.setUint32(at + 8, i % DISK_SECTORS, true);
      drv.post([{ gpa: at, len: 16 }, { gpa: at + 16, len: 512, write: true }, { gpa: at + 528, len: 1, write: true }]);
      drv.notify();
      const used = drv.takeUsed();
      if (used.length === 1 && drv.ram[at + 528] === 0 && drv.ram[at + 16] === d.bytes[(i % DISK_SECTORS) * 512]) ok++;
      drv.readIsr();
    }
    expect(ok).toBe(70_000);
  });

  it("does not interrupt when the driver set VIRTQ_AVAIL_F_NO_INTERRUPT, and does nothing without bus mastering", () => {
    const { driver: drv, sink } = ready();
    drv.view.setUint16(drv.avail, 1, true);
    request(drv, VirtioBlkType.IN, 0, { len: 512 });
    expect(drv.takeUsed()).toHaveLength(1);
    expect(sink.level(11)).toBe(false);
    drv.view.setUint16(drv.avail, 0, true);
    drv.cfgWrite(0x04, 2, 0x0003);
    const r = request(drv, VirtioBlkType.IN, 0, { len: 512 });
    expect(drv.takeUsed()).toHaveLength(0);
    drv.cfgWrite(0x04, 2, 0x0007);
    drv.notify();
    expect(drv.takeUsed()).toEqual([{ id: r.head, len: 513 }]);
  });
});

describe("virtio-blk over PCI: a driver that breaks the rules", () => {
  function ready() {
    const m = machine();
    expect(m.driver.initModern(acceptAll, 8)).toBe(true);
    return m;
  }

  /** The device is broken: NEEDS_RESET, a configuration interrupt, and it ignores the queue until reset. */
  function expectBroken(m: ReturnType<typeof ready>, problem: RegExp): void {
    expect(m.device.deviceStatus & VirtioStatus.DEVICE_NEEDS_RESET).toBe(VirtioStatus.DEVICE_NEEDS_RESET);
    expect(m.device.lastError).toMatch(problem);
    expect(m.sink.level(11)).toBe(true);
    expect(m.driver.readIsr() & 2).toBe(2);
    m.driver.takeUsed();
    const r = request(m.driver, VirtioBlkType.IN, 0, { len: 512 });
    expect(m.driver.ram[r.status]).toBe(0xee);
    expect(m.driver.takeUsed()).toHaveLength(0);
    // A reset brings it back.
    expect(m.driver.initModern(acceptAll, 8)).toBe(true);
    expect(m.device.lastError).toBeNull();
    const again = request(m.driver, VirtioBlkType.IN, 0, { len: 512 });
    expect(m.driver.ram[again.status]).toBe(VirtioBlkStatus.OK);
  }

  it("a descriptor chain that loops", () => {
    const m = ready();
    const drv = m.driver;
    drv.writeDesc(0, { gpa: BUFFER_BASE, len: 16 }, 1);
    drv.writeDesc(1, { gpa: BUFFER_BASE + 16, len: 16 }, 0);
    drv.makeAvailable(0);
    expect(() => drv.notify()).not.toThrow();
    expectBroken(m, /loops/);
  });

  it("a buffer outside RAM, and one that wraps past 4 GiB", () => {
    for (const gpa of [(1 << 20) - 8, 0xfffffff0]) {
      const m = ready();
      m.driver.post([{ gpa: m.driver.alloc(16), len: 16 }, { gpa, len: 512, write: true }, { gpa: m.driver.alloc(1), len: 1, write: true }]);
      expect(() => m.driver.notify()).not.toThrow();
      expectBroken(m, /outside RAM/);
    }
  });

  it("a next index past the table, an available index far ahead, a head past the table", () => {
    const a = ready();
    a.driver.writeDesc(0, { gpa: BUFFER_BASE, len: 16 }, 200);
    a.driver.makeAvailable(0);
    a.driver.notify();
    expectBroken(a, /past the table/);

    const b = ready();
    b.driver.view.setUint16(b.driver.avail + 2, 100, true);
    b.driver.notify();
    expectBroken(b, /ahead/);

    const c = ready();
    c.driver.makeAvailable(9);
    c.driver.notify();
    expectBroken(c, /past the table/);
  });

  it("nested indirect tables, and a request without a status byte or header", () => {
    const a = ready();
    const inner = a.driver.alloc(16);
    a.driver.writeDesc(0, { gpa: inner, len: 16 }, null, a.driver.alloc(16), true);
    const table = a.driver.alloc(16);
    a.driver.writeDesc(0, { gpa: inner, len: 16 }, null, table, true);
    a.driver.writeDesc(0, { gpa: table, len: 16 }, null, a.driver.desc, true);
    a.driver.makeAvailable(0);
    a.driver.notify();
    expectBroken(a, /nested indirect/);

    const b = ready();
    b.driver.post([{ gpa: b.driver.alloc(16, new Uint8Array(16)), len: 16 }, { gpa: b.driver.alloc(512), len: 512 }]);
    b.driver.notify();
    expectBroken(b, /status byte/);

    const c = ready();
    c.driver.post([{ gpa: c.driver.alloc(8), len: 8 }, { gpa: c.driver.alloc(1), len: 1, write: true }]);
    c.driver.notify();
    expectBroken(c, /header/);
  });

  it("rings outside RAM or a queue size that is not a power of two, at queue_enable", () => {
    for (const bad of ["address", "size"] as const) {
      const m = machine();
      const drv = m.driver;
      drv.assignBars();
      drv.findCaps();
      drv.setStatus(0);
      drv.setStatus(1 | 2);
      drv.setDriverFeatures(drv.deviceFeatures());
      drv.setStatus(1 | 2 | 8);
      drv.setCommon(0x16, 2, 0);
      drv.setCommon(0x18, 2, bad === "size" ? 100 : 256);
      drv.setCommon(0x20, 4, bad === "address" ? 0xfff000 : 0x10000);
      drv.setCommon(0x1c, 2, 1);
      drv.setStatus(1 | 2 | 8 | 4);
      expect(m.device.deviceStatus & VirtioStatus.DEVICE_NEEDS_RESET).toBe(VirtioStatus.DEVICE_NEEDS_RESET);
      expect(m.device.lastError).toMatch(bad === "size" ? /power of two/ : /outside RAM/);
    }
  });

  it("survives valid requests with random corruption of the rings without throwing (fuzz)", () => {
    let seed = 1234;
    const rnd = (n: number) => Math.floor((((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24) * n);
    const m = ready();
    const drv = m.driver;
    let broken = 0;
    let served = 0;
    for (let round = 0; round < 1000; round++) {
      expect(drv.initModern(acceptAll, 8)).toBe(true);
      (drv as unknown as { nextBuffer: number }).nextBuffer = BUFFER_BASE;
      const type = [VirtioBlkType.IN, VirtioBlkType.OUT, VirtioBlkType.FLUSH, VirtioBlkType.GET_ID, 77][rnd(5)];
      const len = rnd(4) === 0 ? rnd(3000) : 512 * (1 + rnd(8));
      const header = new Uint8Array(16);
      new DataView(header.buffer).setUint32(0, type, true);
      new DataView(header.buffer).setUint32(8, rnd(DISK_SECTORS + 8), true);
      drv.post(
        [{ gpa: drv.alloc(16, header), len: 16 }, { gpa: drv.alloc(len), len, write: type !== VirtioBlkType.OUT }, { gpa: drv.alloc(1), len: 1, write: true }],
        { indirect: rnd(2) === 0 },
      );
      // Corrupt a few bytes of the descriptor table, the indirect table or the available ring.
      for (let n = rnd(3); n > 0; n--) {
        const where = [drv.desc + rnd(48), BUFFER_BASE + 16 + len + 16 + rnd(48), drv.avail + rnd(6)][rnd(3)];
        drv.ram[Math.min(where, drv.ram.length - 1)] = rnd(256);
      }
      expect(() => drv.notify()).not.toThrow();
      const st = m.device.deviceStatus;
      expect(st & VirtioStatus.DRIVER_OK).toBe(VirtioStatus.DRIVER_OK);
      if (st & VirtioStatus.DEVICE_NEEDS_RESET) broken++;
      else if (drv.takeUsed().length <= 1) served++;
    }
    expect(broken).toBeGreaterThan(50);
    expect(served).toBeGreaterThan(300);
    expect(broken + served).toBe(1000);
  });
});

describe("virtio-blk over PCI: legacy interface, reset and state", () => {
  it("works through the legacy I/O BAR the way virtio_pci_legacy drives it", () => {
    const { driver: drv, disk: d, device } = machine();
    expect(drv.initLegacy((f) => f & ~(1 << VirtioFeature.RING_INDIRECT_DESC))).toBe(true);
    expect(drv.config(0, 4)).toBe(DISK_SECTORS);
    expect(drv.config(0x14, 4)).toBe(512);
    const r = request(drv, VirtioBlkType.IN, 1, { len: 512 });
    expect(drv.ram[r.status]).toBe(VirtioBlkStatus.OK);
    expect(Buffer.compare(drv.ram.subarray(r.dataGpa, r.dataGpa + 512), d.bytes.subarray(512, 1024))).toBe(0);
    expect(drv.takeUsed()).toEqual([{ id: r.head, len: 513 }]);
    expect(drv.readIsr()).toBe(1);
    // Indirect was not accepted: an indirect descriptor breaks the device.
    request(drv, VirtioBlkType.IN, 1, { len: 512 }, { indirect: true });
    expect(device.deviceStatus & VirtioStatus.DEVICE_NEEDS_RESET).toBe(VirtioStatus.DEVICE_NEEDS_RESET);
  });

  it("a PCI function reset stops the device and lowers its interrupt", () => {
    const { driver: drv, host, device, sink } = machine();
    expect(drv.initModern(acceptAll)).toBe(true);
    request(drv, VirtioBlkType.IN, 0, { len: 512 });
    expect(sink.level(11)).toBe(true);
    host.reset();
    expect(device.deviceStatus).toBe(0);
    expect(sink.level(11)).toBe(false);
    expect(device.barMapped(4)).toBe(false);
  });

  it("saves and restores through msgpack mid-run; the restored device continues the rings", () => {
    const a = machine();
    expect(a.driver.initModern(acceptAll)).toBe(true);
    for (let i = 0; i < 3; i++) request(a.driver, VirtioBlkType.IN, i, { len: 512 });
    const saved = throughMsgpack(a.host.saveState());
    // A second machine with the same disk and a copy of guest RAM takes over.
    const b = machine();
    b.ram.set(a.ram);
    b.host.loadState(saved);
    Object.assign(b.driver, { caps: a.driver.caps, queueSize: a.driver.queueSize, desc: a.driver.desc, avail: a.driver.avail, used: a.driver.used });
    Object.assign(b.driver, { freeDesc: 9, availIdx: 3, lastUsed: 3, nextBuffer: (a.driver as unknown as { nextBuffer: number }).nextBuffer });
    expect(b.device.deviceStatus).toBe(a.device.deviceStatus);
    const r = request(b.driver, VirtioBlkType.IN, 5, { len: 512 });
    expect(b.driver.takeUsed()).toEqual([{ id: r.head, len: 513 }]);
    expect(Buffer.compare(b.ram.subarray(r.dataGpa, r.dataGpa + 512), b.disk.bytes.subarray(5 * 512, 6 * 512))).toBe(0);
    // The line was high when saved (the ISR was never read); the controllers restore their own view.
    expect(b.device.irq!.level).toBe(true);
    expect(b.driver.readIsr()).toBe(1);
    expect(b.device.irq!.level).toBe(false);
  });

  it("refuses a malformed record or one of another disk, and changes nothing", () => {
    const a = machine();
    expect(a.driver.initModern(acceptAll)).toBe(true);
    const good = a.device.saveState() as { pci: unknown; virtio: Record<string, unknown> };
    const other = virtioMachine(new VirtioBlk(memoryBlockBackend(new Uint8Array(512 * 8))));
    expect(() => other.device.loadState(throughMsgpack(good))).toThrow(DeviceStateError);
    expect(other.device.deviceStatus).toBe(0);
    const before = JSON.stringify(a.device.saveState());
    for (const broken of [
      { ...good, virtio: { ...good.virtio, status: 300 } },
      { ...good, virtio: { ...good.virtio, queues: [] } },
      { ...good, virtio: { ...good.virtio, queues: [{ ...(good.virtio.queues as object[])[0], size: 3 }] } },
      { pci: good.pci },
    ]) {
      expect(() => a.device.loadState(throughMsgpack(broken))).toThrow(DeviceStateError);
    }
    expect(JSON.stringify(a.device.saveState())).toBe(before);
  });
});

describe("feature words", () => {
  it("set and test bits in both halves", () => {
    const f = featureWords(0, 31, 32, 63);
    expect(f).toEqual([0x80000001, 0x80000001]);
    expect(hasFeature(f, 31) && hasFeature(f, 63) && !hasFeature(f, 30)).toBe(true);
  });
});
