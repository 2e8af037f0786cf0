// virtio-blk end to end below the guest: a VMM-like component hosts the device (driven as Linux
// drives it) and reaches a disk image through the block driver component, data in shared memory.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemRights, SpaceKind, crd, type Sys, type TraceSink } from "../../kernel/index.js";
import { Testbed } from "../../services/testbed.js";
import { BlockDriver, type DriveConfig } from "../../drivers/block/component.js";
import { openImage } from "../../drivers/block/open.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { BlockReply } from "../../drivers/block/protocol.js";
import { fillRandom, scratchDir } from "../../drivers/block/test-util.js";
import { BlockAttachError, VirtioBlk, VirtioBlkStatus, VirtioBlkType, ipcBlockBackend } from "../../vmm/devices/virtio/index.js";
import { virtioMachine } from "../../vmm/devices/virtio/test-driver.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir("hv-virtio-e2e-");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** VMM selectors: the driver portal; guest RAM (256 KiB, one chunk of frames) at page 256; a 16 KiB bounce region at page 64. */
const PORTAL = 7;
const RAM_PAGE = 256;
const BOUNCE_PAGE = 64;

function system(drives: Record<number, DriveConfig>) {
  const calls = { toDriver: 0 };
  const trace: TraceSink = {
    schedule() {},
    callBegin(_t, _from, to) {
      if (to === "block") calls.toDriver++;
    },
    callEnd() {},
    vmExit() {},
    fault() {},
    count() {},
  };
  const bed = new Testbed({ trace });
  const driver = new BlockDriver(new Map(Object.entries(drives).map(([k, v]) => [Number(k), v])));
  const portals = new Map<number, number>();
  bed.asRoot((sys) => {
    sys.createPd(100, 1 << 20, { name: "block" });
    for (const id of Object.keys(drives).map(Number)) {
      sys.createLocalEc(110 + id, 100, driver.entry(id));
      sys.createPt(120 + id, 110 + id);
      sys.setPortalId(120 + id, id);
      portals.set(id, 120 + id);
    }
  });
  let frames = 1024;
  const vmm = (id: number, body: (sys: Sys) => void): void => {
    bed.start(`vmm${id}`, (sys) => (function* () {
      body(sys);
    })(), {
      grants: [
        { from: portals.get(id)!, to: PORTAL },
        { from: crd(SpaceKind.MEMORY, frames, 6, MemRights.ALL), to: RAM_PAGE },
        { from: crd(SpaceKind.MEMORY, frames + 256, 2, MemRights.ALL), to: BOUNCE_PAGE },
      ],
    });
    frames += 512;
  };
  return { bed, driver, vmm, calls };
}

/** Linux-style: header, data (one buffer), status; notify; returns the status byte. */
function blkRequest(drv: ReturnType<typeof virtioMachine>["driver"], type: number, sector: number, dataGpa: number, len: number): number {
  const h = new Uint8Array(16);
  new DataView(h.buffer).setUint32(0, type, true);
  new DataView(h.buffer).setUint32(8, sector, true);
  const status = drv.alloc(1);
  drv.ram[status] = 0xee;
  const chain = [{ gpa: drv.alloc(16, h), len: 16 }, { gpa: dataGpa, len, write: type === VirtioBlkType.IN }, { gpa: status, len: 1, write: true }];
  drv.post(type === VirtioBlkType.FLUSH ? [chain[0], chain[2]] : chain);
  drv.notify();
  drv.takeUsed();
  return drv.ram[status];
}

describe.each([
  ["qcow2", "bounce"],
  ["qcow2", "guest RAM"],
  ["raw", "guest RAM"],
] as const)("virtio-blk → block driver component (%s image, %s shared)", (format, sharing) => {
  it("round-trips 64 KiB written by the guest into the image", () => {
    const file = path.join(dir, `disk.${format}`);
    createImage(file, format, 4 << 20);
    const { bed, driver, vmm, calls } = system({ 1: { path: file } });
    const data = new Uint8Array(65536);
    fillRandom(data, 42);
    const out: Record<string, unknown> = {};
    vmm(1, (sys) => {
      const ramView = sys.memory(RAM_PAGE, 64)!;
      const ram = ramView.bytes;
      const shared = sharing === "bounce" ? sys.memory(BOUNCE_PAGE, 4)! : ramView;
      const backend = ipcBlockBackend(sys, PORTAL, shared, sharing === "bounce" ? BOUNCE_PAGE : RAM_PAGE);
      const m = virtioMachine(new VirtioBlk(backend), { ram });
      out.init = m.driver.initModern((o) => o);
      out.capacity = m.driver.config(0, 4);
      const src = m.driver.alloc(data.length, data);
      const before = calls.toDriver;
      out.write = blkRequest(m.driver, VirtioBlkType.OUT, 4000, src, data.length);
      out.writeCalls = calls.toDriver - before;
      const dst = m.driver.alloc(data.length);
      out.read = blkRequest(m.driver, VirtioBlkType.IN, 4000, dst, data.length);
      out.back = ram.slice(dst, dst + data.length);
      out.flush = blkRequest(m.driver, VirtioBlkType.FLUSH, 0, 0, 0);
      out.past = blkRequest(m.driver, VirtioBlkType.IN, 8190, dst, 4096);
      out.isr = m.driver.readIsr();
    });
    expect(bed.run()).toBe("idle");
    expect(bed.faults).toEqual([]);
    expect(out.init).toBe(true);
    expect(out.capacity).toBe(8192);
    expect([out.write, out.read, out.flush, out.past]).toEqual([VirtioBlkStatus.OK, VirtioBlkStatus.OK, VirtioBlkStatus.OK, VirtioBlkStatus.IOERR]);
    // Sharing guest RAM: one call for 64 KiB, the driver works on the guest's pages; a 16 KiB bounce region: four.
    expect(out.writeCalls).toBe(sharing === "bounce" ? 4 : 1);
    expect(Buffer.compare(out.back as Uint8Array, data)).toBe(0);
    expect(out.isr).toBe(1);
    driver.close();
    const img = openImage(file);
    const check = new Uint8Array(data.length);
    img.read(4000 * 512, check);
    img.close();
    expect(Buffer.compare(check, data)).toBe(0);
  });
});

describe("virtio-blk → block driver component: a request of page-sized segments", () => {
  it("goes through the bounce region a region-full at a time, not a call per segment, and lands in order", () => {
    const file = path.join(dir, "segments.raw");
    createImage(file, "raw", 4 << 20);
    const { bed, driver, vmm, calls } = system({ 1: { path: file } });
    const data = new Uint8Array(65536);
    fillRandom(data, 7);
    const out: Record<string, unknown> = {};
    vmm(1, (sys) => {
      const backend = ipcBlockBackend(sys, PORTAL, sys.memory(BOUNCE_PAGE, 4)!, BOUNCE_PAGE);
      // Sixteen 4 KiB segments, as a guest's request arrives (guest RAM pages, not shared with the driver).
      const ram = sys.memory(RAM_PAGE, 64)!.bytes;
      ram.set(data);
      const pieces = (base: number) => Array.from({ length: 16 }, (_, i) => ram.subarray(base + i * 4096, base + (i + 1) * 4096));
      let before = calls.toDriver;
      out.write = backend.writeAll!(100, pieces(0));
      out.writeCalls = calls.toDriver - before;
      before = calls.toDriver;
      out.read = backend.readAll!(100, pieces(65536));
      out.readCalls = calls.toDriver - before;
      out.back = ram.slice(65536, 131072);
    });
    expect(bed.run()).toBe("idle");
    expect(bed.faults).toEqual([]);
    expect([out.write, out.read]).toEqual([VirtioBlkStatus.OK, VirtioBlkStatus.OK]);
    // 64 KiB through a 16 KiB region: four calls each way (it was sixteen, one per page).
    expect([out.writeCalls, out.readCalls]).toEqual([4, 4]);
    expect(Buffer.compare(out.back as Uint8Array, data)).toBe(0);
    driver.close();
    expect(Buffer.compare(fs.readFileSync(file).subarray(100 * 512, 100 * 512 + data.length), data)).toBe(0);
  });
});

describe("virtio-blk → block driver component: two VMs, one image", () => {
  it("the second VM that wants to write gets LOCKED; read-only sharing works", () => {
    const file = path.join(dir, "shared.qcow2");
    createImage(file, "qcow2", 1 << 20);
    const { bed, driver, vmm } = system({ 1: { path: file }, 2: { path: file }, 3: { path: file, readOnly: true } });
    const out: Record<string, unknown> = {};
    vmm(1, (sys) => {
      out.first = ipcBlockBackend(sys, PORTAL, sys.memory(BOUNCE_PAGE, 4)!, BOUNCE_PAGE).readOnly;
    });
    bed.run();
    vmm(2, (sys) => {
      try {
        ipcBlockBackend(sys, PORTAL, sys.memory(BOUNCE_PAGE, 4)!, BOUNCE_PAGE);
      } catch (e) {
        out.second = e;
      }
    });
    vmm(3, (sys) => {
      const backend = ipcBlockBackend(sys, PORTAL, sys.memory(BOUNCE_PAGE, 4)!, BOUNCE_PAGE);
      const ram = sys.memory(RAM_PAGE, 64)!.bytes;
      const m = virtioMachine(new VirtioBlk(backend), { ram });
      m.driver.initModern((o) => o);
      out.roFeature = (m.driver.deviceFeatures()[0] >>> 5) & 1;
      out.write = blkRequest(m.driver, VirtioBlkType.OUT, 0, m.driver.alloc(512), 512);
      out.read = blkRequest(m.driver, VirtioBlkType.IN, 0, m.driver.alloc(512), 512);
    });
    expect(bed.run()).toBe("idle");
    expect(bed.faults).toEqual([]);
    expect(out.first).toBe(false);
    expect(out.second).toBeInstanceOf(BlockAttachError);
    expect((out.second as BlockAttachError).status).toBe(BlockReply.LOCKED);
    expect((out.second as BlockAttachError).message).toMatch(/LOCKED: .*already opened for writing/);
    expect(out.roFeature).toBe(1);
    expect(out.write).toBe(VirtioBlkStatus.IOERR);
    expect(out.read).toBe(VirtioBlkStatus.OK);
    driver.close();
  });
});
