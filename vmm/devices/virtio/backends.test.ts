// Block backends: RAM disk, an in-process BlockService on real images, and the IPC adapter's calls.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemRights, SpaceKind, crd, type Sys } from "../../../kernel/index.js";
import { Testbed } from "../../../services/testbed.js";
import { BlockService } from "../../../drivers/block/service.js";
import { createImage } from "../../../drivers/block/ops/create.js";
import { BlockOp, BlockReply } from "../../../drivers/block/protocol.js";
import { packBytes } from "../../../kernel/index.js";
import { fillRandom, scratchDir } from "../../../drivers/block/test-util.js";
import { memoryBlockBackend, serviceBlockBackend } from "./backends.js";
import { VirtioBlk, VirtioBlkStatus, VirtioBlkType } from "./blk.js";
import { BlockAttachError, ipcBlockBackend } from "./ipc-backend.js";
import { virtioMachine } from "./test-driver.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir("hv-virtio-test-");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("memory backend", () => {
  it("checks bounds, whole sectors and read-only", () => {
    const bytes = new Uint8Array(4096);
    const b = memoryBlockBackend(bytes);
    expect(b.sectors).toBe(8);
    expect(b.write(7, new Uint8Array(512).fill(9))).toBe(VirtioBlkStatus.OK);
    expect(bytes[4095]).toBe(9);
    expect(b.write(7, new Uint8Array(1024))).toBe(VirtioBlkStatus.IOERR);
    expect(b.read(0, new Uint8Array(100))).toBe(VirtioBlkStatus.IOERR);
    expect(b.read(-1, new Uint8Array(512))).toBe(VirtioBlkStatus.IOERR);
    expect(memoryBlockBackend(bytes, { readOnly: true }).write(0, new Uint8Array(512))).toBe(VirtioBlkStatus.IOERR);
  });
});

describe.each(["qcow2", "raw", "vmdk"] as const)("virtio-blk on a BlockService (%s)", (format) => {
  it("writes through the device land in the image; reads come back", () => {
    const file = path.join(dir, `d.${format}`);
    createImage(file, format, 1 << 20);
    const service = BlockService.open(file);
    const { driver: drv } = virtioMachine(new VirtioBlk(serviceBlockBackend(service)));
    expect(drv.initModern((o) => o)).toBe(true);
    expect(drv.config(0, 4)).toBe(2048);
    const data = new Uint8Array(8192);
    fillRandom(data, 3);
    const header = (type: number, sector: number) => {
      const h = new Uint8Array(16);
      new DataView(h.buffer).setUint32(0, type, true);
      new DataView(h.buffer).setUint32(8, sector, true);
      return h;
    };
    const st = drv.alloc(1);
    drv.post([{ gpa: drv.alloc(16, header(VirtioBlkType.OUT, 77)), len: 16 }, { gpa: drv.alloc(8192, data), len: 8192 }, { gpa: st, len: 1, write: true }]);
    drv.notify();
    expect(drv.ram[st]).toBe(VirtioBlkStatus.OK);
    const back = drv.alloc(8192);
    drv.post([{ gpa: drv.alloc(16, header(VirtioBlkType.IN, 77)), len: 16 }, { gpa: back, len: 8192, write: true }, { gpa: st, len: 1, write: true }]);
    drv.notify();
    expect(Buffer.compare(drv.ram.subarray(back, back + 8192), data)).toBe(0);
    service.close();
    const again = BlockService.open(file, { readOnly: true });
    const check = new Uint8Array(8192);
    expect(again.handle({ op: "read", sector: 77, count: 16, buffer: check }).status).toBe(0);
    again.close();
    expect(Buffer.compare(check, data)).toBe(0);
  });
});

describe("IPC backend: what it sends the block driver", () => {
  /** A fake driver that records requests; ATTACH answers a 1000-sector disk. */
  function fakeDriver(bed: Testbed, answer: (words: number[]) => number[]) {
    const seen: number[][] = [];
    const portal = bed.fake("block", (utcb) => {
      const words = Array.from(utcb.words.subarray(0, utcb.untyped));
      seen.push(words);
      utcb.set(...answer(words));
    });
    return { portal, seen };
  }

  function runVmm(bed: Testbed, portal: number, body: (sys: Sys) => void): void {
    bed.start("vmm", (sys) => (function* () {
      body(sys);
    })(), {
      grants: [
        { from: portal, to: 7 },
        { from: crd(SpaceKind.MEMORY, 512, 2, MemRights.ALL), to: 64 },
        { from: crd(SpaceKind.MEMORY, 1024, 4, MemRights.ALL), to: 128 },
      ],
    });
    expect(bed.run()).toBe("idle");
    expect(bed.faults).toEqual([]);
  }

  it("sends one request with the buffer's offset when the buffer is in the shared region, chunks otherwise", () => {
    const bed = new Testbed();
    const { portal, seen } = fakeDriver(bed, (w) => (w[0] === BlockOp.ATTACH ? [BlockReply.OK, 1000, 0, 1, 65536] : [BlockReply.OK]));
    const results: number[] = [];
    let meta = "";
    runVmm(bed, portal, (sys) => {
      const shared = sys.memory(64, 4)!;
      const backend = ipcBlockBackend(sys, 7, shared, 64);
      meta = `${backend.sectors} ${backend.readOnly}`;
      results.push(backend.read(5, shared.bytes.subarray(1024, 1024 + 2048)));
      const outside = sys.memory(128, 16)!.bytes;
      results.push(backend.write(2 ** 33 + 1, outside.subarray(0, 40960)));
      results.push(backend.read(1, outside.subarray(0, 100)));
      results.push(backend.flush());
      results.push(backend.detach());
    });
    expect(meta).toBe("1000 true");
    expect(results).toEqual([0, 0, 1, 0, 0]);
    expect(seen[0]).toEqual([BlockOp.ATTACH, 4]);
    expect(seen[1]).toEqual([BlockOp.READ, 5, 0, 4, 1024]);
    // 40 KiB through a 16 KiB region: three calls at offset 0, sectors advancing.
    expect(seen.slice(2, 5)).toEqual([
      [BlockOp.WRITE, 1, 2, 32, 0],
      [BlockOp.WRITE, 33, 2, 32, 0],
      [BlockOp.WRITE, 65, 2, 16, 0],
    ]);
    expect(seen.slice(5)).toEqual([[BlockOp.FLUSH], [BlockOp.DETACH]]);
  });

  it("sends a request a restarted driver answered RESTARTED again, at most three times in all", () => {
    const bed = new Testbed();
    // Sector 5: RESTARTED twice, then OK. Sector 6: always RESTARTED. FLUSH: once RESTARTED.
    let fives = 0, flushes = 0;
    const { portal, seen } = fakeDriver(bed, (w) => {
      if (w[0] === BlockOp.ATTACH) return [BlockReply.OK, 1000, 0, 0, 16];
      if (w[0] === BlockOp.FLUSH) return [flushes++ === 0 ? BlockReply.RESTARTED : BlockReply.OK];
      if (w[1] === 5) return [fives++ < 2 ? BlockReply.RESTARTED : BlockReply.OK];
      return [BlockReply.RESTARTED];
    });
    const results: number[] = [];
    runVmm(bed, portal, (sys) => {
      const backend = ipcBlockBackend(sys, 7, sys.memory(64, 4)!, 64);
      const buf = sys.memory(64, 1)!.bytes.subarray(0, 512);
      results.push(backend.write(5, buf), backend.read(6, buf), backend.flush());
    });
    expect(results).toEqual([VirtioBlkStatus.OK, VirtioBlkStatus.IOERR, VirtioBlkStatus.OK]);
    expect(seen.slice(1)).toEqual([
      ...new Array(3).fill([BlockOp.WRITE, 5, 0, 1, 0]),
      ...new Array(3).fill([BlockOp.READ, 6, 0, 1, 0]),
      [BlockOp.FLUSH],
      [BlockOp.FLUSH],
    ]);
  });

  it("maps the driver's refusals: ATTACH errors throw with the reason, request errors become IOERR or UNSUPP", () => {
    const bed = new Testbed();
    const reason = new TextEncoder().encode("image is already opened for writing");
    let attaches = 0;
    const { portal } = fakeDriver(bed, (w) => {
      if (w[0] === BlockOp.ATTACH && attaches++ > 0) return [BlockReply.OK, 8, 0, 0, 16];
      if (w[0] === BlockOp.ATTACH) {
        const words = new Uint32Array(64);
        const n = packBytes(reason, words, 0);
        return [BlockReply.LOCKED, reason.length, ...words.subarray(0, n)];
      }
      return [w[1] === 1 ? BlockReply.OUT_OF_RANGE : BlockReply.UNSUPP];
    });
    let error: unknown = null;
    const results: number[] = [];
    runVmm(bed, portal, (sys) => {
      try {
        ipcBlockBackend(sys, 7, sys.memory(64, 4)!, 64);
      } catch (e) {
        error = e;
      }
      const backend = ipcBlockBackend(sys, 7, sys.memory(64, 4)!, 64);
      const buf = sys.memory(64, 1)!.bytes.subarray(0, 512);
      results.push(backend.read(1, buf), backend.read(2, buf));
    });
    expect(results).toEqual([VirtioBlkStatus.IOERR, VirtioBlkStatus.UNSUPP]);
    expect(error).toBeInstanceOf(BlockAttachError);
    expect((error as BlockAttachError).status).toBe(BlockReply.LOCKED);
    expect((error as BlockAttachError).message).toBe("block driver refused the disk: LOCKED: image is already opened for writing");
  });
});
