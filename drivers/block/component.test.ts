// Block driver component on a testbed: a fake client shares pages with the driver and drives images.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemRights, SpaceKind, crd, type Sys } from "../../kernel/index.js";
import { Testbed } from "../../services/testbed.js";
import { unpackBytes } from "../../kernel/index.js";
import { BlockDriver, type DriveConfig } from "./component.js";
import { openImage } from "./open.js";
import { createImage } from "./ops/create.js";
import { AttachFlags, BlockFlags, BlockOp, BlockReply } from "./protocol.js";
import { fillRandom, scratchDir } from "./test-util.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir("hv-blkdrv-test-");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Client selectors: the driver portal, and 16 shared pages at page 64. */
const PORTAL = 7;
const SHARED_PAGE = 64;
const SHARED_PAGES = 16;

interface Harness {
  bed: Testbed;
  driver: BlockDriver;
  /** Root selectors of the driver's portals by client id. */
  portals: Map<number, number>;
  /** Run `script` as a client component granted the portal of `id` and 16 pages of memory (root frames at `frames`). */
  client(id: number, script: (sys: Sys) => void, frames?: number): void;
}

function harness(drives: Record<number, DriveConfig>, ids: number[], portalIds?: Record<number, number>): Harness {
  const bed = new Testbed();
  const driver = new BlockDriver(new Map(Object.entries(drives).map(([k, v]) => [Number(k), v])));
  const portals = new Map<number, number>();
  bed.asRoot((sys) => {
    expect(sys.createPd(100, 1 << 20, { name: "block" })).toBe(0);
    for (const id of ids) {
      expect(sys.createLocalEc(101 + 2 * id, 100, driver.entry(id))).toBe(0);
      expect(sys.createPt(102 + 2 * id, 101 + 2 * id)).toBe(0);
      expect(sys.setPortalId(102 + 2 * id, portalIds?.[id] ?? id)).toBe(0);
      portals.set(id, 102 + 2 * id);
    }
  });
  let nextFrames = 256;
  return {
    bed,
    driver,
    portals,
    client(id, script, frames) {
      const base = frames ?? nextFrames;
      nextFrames += SHARED_PAGES;
      bed.start(`client${id}`, (sys) => (function* () {
        script(sys);
      })(), {
        grants: [
          { from: portals.get(id)!, to: PORTAL },
          { from: crd(SpaceKind.MEMORY, base, 4, MemRights.ALL), to: SHARED_PAGE },
        ],
      });
    },
  };
}

/** ATTACH with `pages` pages announced and `delegated` (a power of two) actually delegated. */
function attach(sys: Sys, pages = SHARED_PAGES, delegated = pages): number[] {
  sys.utcb.set(BlockOp.ATTACH, pages);
  sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, SHARED_PAGE, Math.log2(delegated), MemRights.R | MemRights.W), offset: 0 });
  expect(sys.call(PORTAL)).toBe(0);
  return Array.from(sys.utcb.words.subarray(0, sys.utcb.untyped));
}

function request(sys: Sys, ...words: number[]): number[] {
  sys.utcb.set(...words);
  expect(sys.call(PORTAL)).toBe(0);
  return Array.from(sys.utcb.words.subarray(0, sys.utcb.untyped));
}

function reasonOf(reply: number[]): string {
  return new TextDecoder().decode(unpackBytes(Uint32Array.from(reply), 2, reply[1]));
}

function runClean(h: Harness): void {
  expect(h.bed.run()).toBe("idle");
  expect(h.bed.faults).toEqual([]);
}

describe.each(["raw", "qcow2"] as const)("block driver component on %s", (format) => {
  it("reads and writes through shared pages; only the descriptor travels in words", () => {
    const file = path.join(dir, `disk.${format}`);
    createImage(file, format, 2 * 1024 * 1024);
    const h = harness({ 1: { path: file } }, [1]);
    const data = new Uint8Array(8 * 512);
    fillRandom(data, 11);
    const seen: Record<string, unknown> = {};
    h.client(1, (sys) => {
      seen.attach = attach(sys);
      const shared = sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes;
      shared.set(data, 4096);
      seen.write = request(sys, BlockOp.WRITE, 100, 0, 8, 4096);
      seen.read = request(sys, BlockOp.READ, 100, 0, 8, 32768);
      seen.back = shared.slice(32768, 32768 + data.length);
      seen.zeros = request(sys, BlockOp.READ, 3000, 0, 1, 0);
      seen.zeroBytes = shared.slice(0, 512);
      seen.info = request(sys, BlockOp.INFO);
      seen.flush = request(sys, BlockOp.FLUSH);
      seen.detach = request(sys, BlockOp.DETACH);
      seen.after = request(sys, BlockOp.READ, 0, 0, 1, 0);
    });
    runClean(h);
    expect(seen.attach).toEqual([BlockReply.OK, 4096, 0, 0, 2 ** 16]);
    expect(seen.write).toEqual([BlockReply.OK]);
    expect(seen.read).toEqual([BlockReply.OK]);
    expect(Buffer.compare(seen.back as Uint8Array, data)).toBe(0);
    expect(seen.zeros).toEqual([BlockReply.OK]);
    expect((seen.zeroBytes as Uint8Array).every((b) => b === 0)).toBe(true);
    expect(seen.info).toEqual(seen.attach);
    expect(seen.flush).toEqual([BlockReply.OK]);
    expect(seen.detach).toEqual([BlockReply.OK]);
    expect(seen.after).toEqual([BlockReply.NOT_ATTACHED]);
    expect(h.driver.isAttached(1)).toBe(false);
    // The image holds the data (and DETACH released the write lock: it opens for writing again).
    const img = openImage(file, { writable: true });
    const check = new Uint8Array(data.length);
    img.read(100 * 512, check);
    img.close();
    expect(Buffer.compare(check, data)).toBe(0);
  });
});

describe("block driver component: refusals", () => {
  it("answers out of range, bad buffer, unknown and malformed requests with their own status, touching nothing", () => {
    const file = path.join(dir, "d.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    const h = harness({ 1: { path: file } }, [1]);
    const replies: number[][] = [];
    let before: Buffer | null = null;
    h.client(1, (sys) => {
      replies.push(request(sys, BlockOp.READ, 0, 0, 1, 0)); // before ATTACH
      replies.push(attach(sys));
      before = fs.readFileSync(file);
      const shared = sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes;
      shared.fill(0xaa);
      replies.push(request(sys, BlockOp.WRITE, 2047, 0, 2, 0)); // one sector past the end
      replies.push(request(sys, BlockOp.WRITE, 0, 1, 1, 0)); // sector 2^32
      replies.push(request(sys, BlockOp.WRITE, 0, 0, 2, SHARED_PAGES * 4096 - 512)); // buffer past the region
      replies.push(request(sys, BlockOp.WRITE, 0, 0, 0x10000000, 0)); // absurd count
      replies.push(request(sys, BlockOp.WRITE, 0, 0, 1, 0xffffffff)); // absurd offset
      replies.push(request(sys, BlockOp.WRITE, 0, 0)); // too short
      replies.push(request(sys, 99)); // unknown operation
      replies.push(request(sys)); // empty message
      replies.push(attach(sys)); // twice
    });
    runClean(h);
    expect(replies[0]).toEqual([BlockReply.NOT_ATTACHED]);
    expect(replies[1][0]).toBe(BlockReply.OK);
    expect(replies.slice(2, 10).map((r) => r[0])).toEqual([
      BlockReply.OUT_OF_RANGE,
      BlockReply.OUT_OF_RANGE,
      BlockReply.BAD_BUFFER,
      BlockReply.BAD_BUFFER,
      BlockReply.BAD_BUFFER,
      BlockReply.BAD_REQUEST,
      BlockReply.UNSUPP,
      BlockReply.BAD_REQUEST,
    ]);
    expect(replies[10][0]).toBe(BlockReply.BAD_REQUEST);
    expect(reasonOf(replies[10])).toMatch(/already attached/);
    h.driver.close();
    expect(Buffer.compare(fs.readFileSync(file), before!)).toBe(0);
  });

  it("a client that takes its shared pages back gets BAD_BUFFER: the driver reaches them no more", () => {
    const file = path.join(dir, "revoked.raw");
    createImage(file, "raw", 64 * 1024);
    const h = harness({ 1: { path: file } }, [1]);
    const replies: number[][] = [];
    h.client(1, (sys) => {
      replies.push(attach(sys));
      sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes.fill(0x5a);
      replies.push(request(sys, BlockOp.WRITE, 0, 0, 1, 0));
      // Revoke what the driver was given (keeping its own pages), then ask again.
      expect(sys.revoke(crd(SpaceKind.MEMORY, SHARED_PAGE, 4), true)).toBe(0);
      sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes.fill(0x77);
      replies.push(request(sys, BlockOp.WRITE, 1, 0, 1, 0), request(sys, BlockOp.READ, 0, 0, 1, 0));
    });
    runClean(h);
    expect(replies.map((r) => r[0])).toEqual([BlockReply.OK, BlockReply.OK, BlockReply.BAD_BUFFER, BlockReply.BAD_BUFFER]);
    h.driver.close();
    const image = fs.readFileSync(file);
    expect(image.subarray(0, 512).every((b) => b === 0x5a)).toBe(true);
    expect(image.subarray(512, 1024).every((b) => b === 0)).toBe(true);
  });

  it("serves a read-only image for reading and refuses writes with READ_ONLY", () => {
    const file = path.join(dir, "ro.raw");
    createImage(file, "raw", 64 * 1024);
    const content = new Uint8Array(64 * 1024);
    fillRandom(content, 5);
    fs.writeFileSync(file, content);
    const h = harness({ 2: { path: file, readOnly: true } }, [2]);
    const seen: Record<string, unknown> = {};
    h.client(2, (sys) => {
      seen.attach = attach(sys);
      seen.write = request(sys, BlockOp.WRITE, 0, 0, 1, 0);
      seen.read = request(sys, BlockOp.READ, 1, 0, 2, 512);
      seen.bytes = sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes.slice(512, 1536);
    });
    runClean(h);
    expect(seen.attach).toEqual([BlockReply.OK, 128, 0, BlockFlags.READ_ONLY, 2 ** 16]);
    expect(seen.write).toEqual([BlockReply.READ_ONLY]);
    expect(seen.read).toEqual([BlockReply.OK]);
    expect(Buffer.compare(seen.bytes as Uint8Array, content.subarray(512, 1536))).toBe(0);
    expect(Buffer.compare(fs.readFileSync(file), content)).toBe(0);
  });

  it("refuses a second writer of the same image with LOCKED until the first detaches; readers are fine", () => {
    const file = path.join(dir, "shared.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    const h = harness({ 1: { path: file }, 2: { path: file }, 3: { path: file, readOnly: true } }, [1, 2, 3]);
    const order: string[] = [];
    const seen: Record<string, number[]> = {};
    h.client(1, (sys) => {
      seen.first = attach(sys);
      order.push("first attached");
    });
    h.bed.run();
    h.client(2, (sys) => {
      seen.second = attach(sys);
    });
    h.client(3, (sys) => {
      seen.reader = attach(sys);
    });
    h.bed.run();
    expect(seen.first[0]).toBe(BlockReply.OK);
    expect(seen.second[0]).toBe(BlockReply.LOCKED);
    expect(reasonOf(seen.second)).toMatch(/already opened for writing/);
    expect(seen.reader[0]).toBe(BlockReply.OK);
    expect(h.driver.isAttached(2)).toBe(false);
    // The first writer goes away; now the second may write.
    h.client(1, (sys) => {
      seen.detach = request(sys, BlockOp.DETACH);
    }, 256);
    h.bed.run();
    h.client(2, (sys) => {
      seen.retry = attach(sys);
    }, 272);
    runClean(h);
    expect(seen.detach).toEqual([BlockReply.OK]);
    expect(seen.retry[0]).toBe(BlockReply.OK);
    h.driver.close();
  });

  it("hands a drive over as a migration does: an inactive ATTACH takes no lock, INACTIVATE releases it, ACTIVATE opens the image as it is now", () => {
    const file = path.join(dir, "moving.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    // Client 1 is the source's drive, client 2 the destination's (the same file: shared storage).
    const h = harness({ 1: { path: file }, 2: { path: file } }, [1, 2]);
    const [a, b, c] = [0x11, 0x22, 0x33].map((v) => new Uint8Array(512).fill(v));
    const seen: Record<string, number[]> = {};
    const read: Record<string, number[]> = {};
    /** Write `data` at `sector` through the shared pages, or read `sector` into read[name] (its first byte). */
    const write = (sys: Sys, sector: number, data: Uint8Array) => {
      sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes.set(data);
      return request(sys, BlockOp.WRITE, sector, 0, 1, 0);
    };
    const readBack = (sys: Sys, name: string, ...sectors: number[]) => {
      read[name] = sectors.map((sector) => (request(sys, BlockOp.READ, sector, 0, 1, 0)[0] === BlockReply.OK ? sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes[0] : -1));
    };
    h.client(1, (sys) => {
      seen.source = attach(sys);
      seen.a = write(sys, 100, a);
    }, 256);
    h.bed.run();
    h.client(2, (sys) => {
      sys.utcb.set(BlockOp.ATTACH, SHARED_PAGES, AttachFlags.INACTIVE);
      sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, SHARED_PAGE, 4, MemRights.R | MemRights.W), offset: 0 });
      expect(sys.call(PORTAL)).toBe(0);
      seen.destination = Array.from(sys.utcb.words.subarray(0, sys.utcb.untyped));
      seen.inactiveRead = request(sys, BlockOp.READ, 100, 0, 1, 0);
      seen.inactiveWrite = request(sys, BlockOp.WRITE, 100, 0, 1, 0);
      seen.inactiveFlush = request(sys, BlockOp.FLUSH);
      seen.inactiveInfo = request(sys, BlockOp.INFO);
      // The source still writes: the destination cannot take the image yet.
      seen.early = request(sys, BlockOp.ACTIVATE);
    }, 272);
    h.bed.run();
    h.client(1, (sys) => {
      // Written after the destination's look at the image: new clusters, new L2 entries.
      seen.b = write(sys, 200, b);
      seen.release = request(sys, BlockOp.INACTIVATE);
      seen.again = request(sys, BlockOp.INACTIVATE);
      seen.releasedRead = request(sys, BlockOp.READ, 100, 0, 1, 0);
    }, 256);
    h.bed.run();
    h.client(2, (sys) => {
      seen.take = request(sys, BlockOp.ACTIVATE);
      readBack(sys, "destination", 100, 200);
      seen.c = write(sys, 300, c);
    }, 272);
    h.bed.run();
    h.client(1, (sys) => {
      // The destination writes now: the source cannot have the image back.
      seen.back = request(sys, BlockOp.ACTIVATE);
    }, 256);
    h.bed.run();
    h.client(2, (sys) => void (seen.handBack = request(sys, BlockOp.INACTIVATE)), 272);
    h.bed.run();
    h.client(1, (sys) => {
      seen.backAgain = request(sys, BlockOp.ACTIVATE);
      readBack(sys, "source", 100, 200, 300);
    }, 256);
    runClean(h);
    expect(seen.source[0]).toBe(BlockReply.OK);
    expect(seen.a).toEqual([BlockReply.OK]);
    expect(seen.destination).toEqual(seen.source);
    expect([seen.inactiveRead, seen.inactiveWrite, seen.inactiveFlush]).toEqual([[BlockReply.INACTIVE], [BlockReply.INACTIVE], [BlockReply.INACTIVE]]);
    expect(seen.inactiveInfo).toEqual(seen.source);
    expect(seen.early[0]).toBe(BlockReply.LOCKED);
    expect(reasonOf(seen.early)).toMatch(/already opened for writing/);
    expect([seen.b, seen.release, seen.again, seen.releasedRead]).toEqual([[BlockReply.OK], [BlockReply.OK], [BlockReply.OK], [BlockReply.INACTIVE]]);
    expect(seen.take).toEqual(seen.source);
    expect(read.destination).toEqual([0x11, 0x22]);
    expect(seen.c).toEqual([BlockReply.OK]);
    expect(seen.back[0]).toBe(BlockReply.LOCKED);
    expect(seen.handBack).toEqual([BlockReply.OK]);
    expect(seen.backAgain).toEqual(seen.source);
    expect(read.source).toEqual([0x11, 0x22, 0x33]);
    h.driver.close();
  });

  it("ACTIVATE refuses an image whose size changed while the drive was inactive", () => {
    const file = path.join(dir, "grows.raw");
    createImage(file, "raw", 64 * 1024);
    const h = harness({ 1: { path: file } }, [1]);
    const seen: Record<string, number[]> = {};
    h.client(1, (sys) => {
      seen.attach = attach(sys);
      seen.release = request(sys, BlockOp.INACTIVATE);
      fs.truncateSync(file, 128 * 1024);
      seen.grown = request(sys, BlockOp.ACTIVATE);
      seen.stillInactive = request(sys, BlockOp.READ, 0, 0, 1, 0);
      fs.truncateSync(file, 64 * 1024);
      seen.back = request(sys, BlockOp.ACTIVATE);
    });
    runClean(h);
    expect(seen.release).toEqual([BlockReply.OK]);
    expect(seen.grown[0]).toBe(BlockReply.BAD_IMAGE);
    expect(reasonOf(seen.grown)).toBe("the disk has 256 sectors now, 128 when it was attached");
    expect(seen.stillInactive).toEqual([BlockReply.INACTIVE]);
    expect(seen.back).toEqual(seen.attach);
    h.driver.close();
  });

  it("refuses ATTACH without a drive, with a broken image, and with a region that does not match", () => {
    const good = path.join(dir, "good.raw");
    createImage(good, "raw", 64 * 1024);
    const bad = path.join(dir, "bad.qcow2");
    fs.writeFileSync(bad, Buffer.concat([Buffer.from("QFI\xfb", "latin1"), Buffer.alloc(60)]));
    const h = harness({ 1: { path: path.join(dir, "missing.raw") }, 2: { path: bad, format: "qcow2" }, 3: { path: good } }, [1, 2, 3, 4]);
    const seen: Record<string, number[]> = {};
    h.client(1, (sys) => void (seen.missing = attach(sys)));
    h.client(2, (sys) => void (seen.broken = attach(sys)));
    h.client(4, (sys) => void (seen.none = attach(sys)));
    h.client(3, (sys) => {
      seen.short = attach(sys, 16, 8); // 8 pages delegated, 16 announced
      seen.zero = attach(sys, 0, 1);
      seen.huge = attach(sys, 2 ** 17, 16);
      seen.nothing = request(sys, BlockOp.ATTACH, 4); // no pages at all
      // Everything refused was unmapped again: a correct ATTACH now lands in free slots.
      seen.ok = attach(sys, 16, 16);
    });
    runClean(h);
    expect(seen.missing[0]).toBe(BlockReply.BAD_IMAGE);
    expect(reasonOf(seen.missing)).toMatch(/missing\.raw/);
    expect(seen.broken[0]).toBe(BlockReply.BAD_IMAGE);
    expect(seen.none[0]).toBe(BlockReply.NO_DISK);
    expect(seen.short[0]).toBe(BlockReply.BAD_BUFFER);
    expect(reasonOf(seen.short)).toMatch(/8 pages arrived, 16 announced/);
    expect(seen.zero[0]).toBe(BlockReply.BAD_BUFFER);
    expect(seen.huge[0]).toBe(BlockReply.BAD_BUFFER);
    expect(seen.nothing[0]).toBe(BlockReply.BAD_BUFFER);
    expect(seen.ok[0]).toBe(BlockReply.OK);
    h.driver.close();
  });

  it("gives each client id its own window of the driver's memory space", () => {
    const small = new BlockDriver(new Map(), { windowOrder: 16 });
    expect(small.windowOf(3)).toMatchObject({ kind: SpaceKind.MEMORY, base: 3 << 16, order: 16 });
    expect(() => small.windowOf(16)).toThrow(RangeError);
    const whole = new BlockDriver(new Map(), { windowOrder: 20 });
    expect(whole.windowOf(0).base).toBe(0);
    expect(() => whole.windowOf(1)).toThrow(RangeError);
    expect(() => new BlockDriver(new Map(), { windowOrder: 21 })).toThrow(RangeError);
  });

  it("answers only on the portal named after its client", () => {
    const file = path.join(dir, "d.raw");
    createImage(file, "raw", 64 * 1024);
    const h = harness({ 1: { path: file }, 5: { path: file } }, [1], { 1: 5 });
    const seen: Record<string, number[]> = {};
    h.client(1, (sys) => void (seen.attach = attach(sys)));
    runClean(h);
    expect(seen.attach).toEqual([BlockReply.BAD_REQUEST]);
    expect(h.driver.isAttached(1) || h.driver.isAttached(5)).toBe(false);
  });
});

describe("block driver component: the host's write log (block migration)", () => {
  it("logs the chunks writes touch while on (not reads, not before the start), hands a fresh log at each collect, and none once stopped", () => {
    const file = path.join(dir, "log.qcow2");
    createImage(file, "qcow2", 1024 * 1024);
    const h = harness({ 1: { path: file } }, [1]);
    const drive = h.driver.hostDrive(1);
    const CHUNK = 64 * 1024;
    const seen: Record<string, unknown> = {};
    expect(drive.startLog(CHUNK)).toBe(false);
    expect(drive.image()).toBeNull();
    h.client(1, (sys) => {
      attach(sys);
      request(sys, BlockOp.WRITE, 0, 0, 1, 0);
      seen.started = drive.startLog(CHUNK);
      // Sectors 127-128 straddle chunks 0 and 1; sector 1023 is chunk 7; the read logs nothing.
      request(sys, BlockOp.WRITE, 127, 0, 2, 0);
      request(sys, BlockOp.READ, 512, 0, 8, 0);
      seen.first = drive.collectLog();
      request(sys, BlockOp.WRITE, 2047, 0, 1, 0);
      seen.second = drive.collectLog();
      seen.empty = drive.collectLog();
      seen.format = drive.image()?.format;
      drive.stopLog();
      request(sys, BlockOp.WRITE, 0, 0, 1, 0);
      seen.stopped = drive.collectLog();
    });
    runClean(h);
    expect(seen.started).toBe(true);
    // 1 MiB: 16 chunks, 2 bytes of bitmap.
    expect(seen.first).toEqual(Uint8Array.from([0b11, 0]));
    expect(seen.second).toEqual(Uint8Array.from([0, 0b1000_0000]));
    expect(seen.empty).toEqual(Uint8Array.from([0, 0]));
    expect(seen.format).toBe("qcow2");
    expect(seen.stopped).toBeNull();
  });
});
