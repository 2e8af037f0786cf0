// The block driver in a worker thread: the same answers as in-process, and a worker that throws,
// hangs, runs out of heap or is killed is replaced without losing a client or its data.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemRights, SpaceKind, crd, type Sys } from "../kernel/index.js";
import { Testbed } from "../services/testbed.js";
import { createImage } from "../drivers/block/ops/create.js";
import { BlockOp, BlockReply } from "../drivers/block/protocol.js";
import { fillRandom, scratchDir } from "../drivers/block/test-util.js";
import { IsolatedBlockDriver, type IsolateOptions } from "./isolate.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir("hv-isolate-test-");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const PORTAL = 7;
const SHARED_PAGE = 64;
const SHARED_PAGES = 16;
const WINDOW_ORDER = 4;

/** An isolated driver serving client 1 on `file`, and a way to run a client script against it. */
function setUp(file: string, options: IsolateOptions = {}): { driver: IsolatedBlockDriver; client: (script: (sys: Sys) => void) => Testbed } {
  const driver = new IsolatedBlockDriver(new Map([[1, { path: file }]]), WINDOW_ORDER, options);
  const bed = new Testbed();
  bed.asRoot((sys) => {
    expect(sys.createPd(100, 1 << 20, { name: "block" })).toBe(0);
    expect(sys.createLocalEc(103, 100, driver.entry(1))).toBe(0);
    expect(sys.createPt(104, 103)).toBe(0);
    expect(sys.setPortalId(104, 1)).toBe(0);
  });
  return {
    driver,
    client: (script) => {
      bed.start("client", (sys) => (function* () {
        script(sys);
      })(), { grants: [{ from: 104, to: PORTAL }, { from: crd(SpaceKind.MEMORY, 256, 4, MemRights.ALL), to: SHARED_PAGE }] });
      expect(bed.run()).toBe("idle");
      expect(bed.faults).toEqual([]);
      return bed;
    },
  };
}

/** This process's open descriptors of `file`. */
function descriptorsOf(file: string): number {
  const real = fs.realpathSync(file);
  return fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === real;
    } catch {
      return false; // closed meanwhile (the readdir's own descriptor)
    }
  }).length;
}

function request(sys: Sys, ...words: number[]): number {
  sys.utcb.set(...words);
  expect(sys.call(PORTAL)).toBe(0);
  return sys.utcb.words[0];
}

function attach(sys: Sys): number {
  sys.utcb.set(BlockOp.ATTACH, SHARED_PAGES);
  sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, SHARED_PAGE, 4, MemRights.R | MemRights.W), offset: 0 });
  expect(sys.call(PORTAL)).toBe(0);
  return sys.utcb.words[0];
}

describe("the block driver in a worker", () => {
  it("reads and writes the client's pages like the in-process driver; a revoked region is BAD_BUFFER", () => {
    const file = path.join(dir, "d.qcow2");
    createImage(file, "qcow2", 1 << 20);
    const data = new Uint8Array(8192);
    fillRandom(data, 3);
    const { driver, client } = setUp(file);
    const replies: number[] = [];
    let back: Uint8Array | null = null;
    client((sys) => {
      replies.push(attach(sys));
      const shared = sys.memory(SHARED_PAGE, SHARED_PAGES)!;
      shared.bytes.set(data, 4096);
      replies.push(request(sys, BlockOp.WRITE, 10, 0, 16, 4096), request(sys, BlockOp.READ, 10, 0, 16, 32768));
      back = shared.bytes.slice(32768, 32768 + data.length);
      replies.push(request(sys, BlockOp.READ, 0, 0, 2, SHARED_PAGES * 4096 - 512));
      expect(sys.revoke(crd(SpaceKind.MEMORY, SHARED_PAGE, 4), true)).toBe(0);
      replies.push(request(sys, BlockOp.WRITE, 20, 0, 1, 0), request(sys, BlockOp.FLUSH));
    });
    driver.close();
    expect(replies).toEqual([BlockReply.OK, BlockReply.OK, BlockReply.OK, BlockReply.BAD_BUFFER, BlockReply.BAD_BUFFER, BlockReply.OK]);
    expect(Buffer.compare(back!, data)).toBe(0);
    expect(driver.restarts).toBe(0);
  });

  it.each([
    ["throws", { faults: [{ at: 3, what: "throw" as const }] }],
    ["answers garbage instead of words", { faults: [{ at: 3, what: "garbage" as const }] }],
    // The watchdog is the default, 10 s: far beyond what a request takes on a busy machine, so the
    // only restart is the fault's (a worker that died of its heap limit is seen by the watchdog too).
    ["hangs past the watchdog", { faults: [{ at: 3, what: "hang" as const }] }],
    ["allocates past its heap limit", { resourceLimits: { maxOldGenerationSizeMb: 32 }, faults: [{ at: 3, what: "allocate" as const }] }],
  ])("a worker that %s is replaced: the request is RESTARTED, the client stays attached, its data stays", (_, options) => {
    const file = path.join(dir, "d.raw");
    createImage(file, "raw", 1 << 20);
    const { driver, client } = setUp(file, options);
    const replies: number[] = [];
    client((sys) => {
      replies.push(attach(sys)); // request 1
      sys.memory(SHARED_PAGE, 1)!.bytes.fill(0x11);
      replies.push(request(sys, BlockOp.WRITE, 0, 0, 8, 0)); // 2
      sys.memory(SHARED_PAGE, 1)!.bytes.fill(0x22);
      replies.push(request(sys, BlockOp.WRITE, 8, 0, 8, 0)); // 3: the fault
      replies.push(request(sys, BlockOp.WRITE, 8, 0, 8, 0)); // sent again, by a new worker
      replies.push(request(sys, BlockOp.READ, 0, 0, 8, 8192));
      expect(sys.memory(SHARED_PAGE + 2, 1)!.bytes.every((b) => b === 0x11)).toBe(true);
    });
    driver.close();
    expect(replies).toEqual([BlockReply.OK, BlockReply.OK, BlockReply.RESTARTED, BlockReply.OK, BlockReply.OK]);
    expect(driver.restarts).toBe(1);
    const image = fs.readFileSync(file);
    expect(image.subarray(0, 4096).every((b) => b === 0x11)).toBe(true);
    expect(image.subarray(4096, 8192).every((b) => b === 0x22)).toBe(true);
  });

  it("a killed worker is replaced at the next request; writes it acknowledged, unflushed, outlive it (qcow2 metadata too)", () => {
    const file = path.join(dir, "k.qcow2");
    createImage(file, "qcow2", 4 << 20);
    const { driver, client } = setUp(file);
    const replies: number[] = [];
    const back: number[] = [];
    client((sys) => {
      replies.push(attach(sys));
      const mem = sys.memory(SHARED_PAGE, SHARED_PAGES)!;
      // One sector in each of 8 clusters (64 KiB): each write allocates, none is flushed.
      for (let i = 1; i <= 8; i++) {
        mem.bytes.fill(i, 0, 512);
        replies.push(request(sys, BlockOp.WRITE, i * 128, 0, 1, 0));
      }
      driver.kill();
      for (let i = 1; i <= 8; i++) {
        mem.bytes.fill(0, 4096, 4608);
        replies.push(request(sys, BlockOp.READ, i * 128, 0, 1, 4096));
        back.push(mem.bytes[4096]);
      }
    });
    driver.close();
    expect(replies).toEqual(new Array(17).fill(BlockReply.OK));
    expect(back).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(driver.restarts).toBe(1);
  });

  it("a worker replaced while its drive is inactive (handed to another process) attaches it inactive, and active again after ACTIVATE", async () => {
    const file = path.join(dir, "moved.qcow2");
    createImage(file, "qcow2", 4 << 20);
    const { driver, client } = setUp(file);
    const replies: Record<string, number> = {};
    const { openImage } = await import("../drivers/block/open.js");
    const { lockPathFor } = await import("../drivers/block/lock.js");
    client((sys) => {
      replies.attach = attach(sys);
      replies.release = request(sys, BlockOp.INACTIVATE);
      // Another process has the image now (its lock names a live process that is not this one), and wrote it; this worker dies meanwhile.
      const other = openImage(file, { writable: true });
      other.write(128 * 512, new Uint8Array(512).fill(7));
      other.close();
      fs.writeFileSync(lockPathFor(file), `${process.ppid}\n`);
      driver.kill();
      replies.inactive = request(sys, BlockOp.READ, 128, 0, 1, 0);
      replies.stillTheirs = request(sys, BlockOp.ACTIVATE);
      fs.rmSync(lockPathFor(file));
      replies.take = request(sys, BlockOp.ACTIVATE);
      driver.kill();
      replies.read = request(sys, BlockOp.READ, 128, 0, 1, 0);
      replies.byte = sys.memory(SHARED_PAGE, SHARED_PAGES)!.bytes[0];
    });
    driver.close();
    // Without the drive's state kept, the new worker would take the other process's lock at its ATTACH (or fail it).
    expect(replies).toEqual({ attach: BlockReply.OK, release: BlockReply.OK, inactive: BlockReply.INACTIVE, stillTheirs: BlockReply.LOCKED, take: BlockReply.OK, read: BlockReply.OK, byte: 7 });
    expect(driver.restarts).toBe(2);
  });

  it("the images a killed worker held open are closed once it is gone", async () => {
    const file = path.join(dir, "fd.qcow2");
    createImage(file, "qcow2", 4 << 20);
    const { driver, client } = setUp(file);
    const KILLS = 5;
    const replies: number[] = [];
    client((sys) => {
      replies.push(attach(sys));
      for (let k = 0; k < KILLS; k++) {
        driver.kill();
        replies.push(request(sys, BlockOp.READ, 0, 0, 1, 0));
      }
    });
    expect(replies).toEqual(new Array(KILLS + 1).fill(BlockReply.OK));
    expect(driver.restarts).toBe(KILLS);
    driver.close();
    // Each killed worker held the image open; Node closes a worker's descriptors as it exits.
    for (let waited = 0; descriptorsOf(file) > 0 && waited < 30_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    expect(descriptorsOf(file)).toBe(0);
  });
});
