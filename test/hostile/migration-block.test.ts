// Block migration's records (hello.blocks, BLOCKS frames) as a destination reads them: untrusted.
// Whatever arrives, it ends with a MigrationError naming the field (or another typed error of the
// stream), the source hears it (ABORT), nothing outside the announced disk is written, and the
// overlay the destination made for the migration is gone again.

import { encode } from "@msgpack/msgpack";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { receiveMigration } from "../../bin/migrate.js";
import { savedSetup, type SavedPlatform } from "../../bin/snapshot.js";
import type { HostDrive } from "../../drivers/block/component.js";
import type { BlockImage } from "../../drivers/block/image.js";
import { openImage } from "../../drivers/block/open.js";
import { fillRandom, scratchDir } from "../../drivers/block/test-util.js";
import { BLOCK_CHUNK_BYTES, FrameType, MIGRATION_MAGIC, MigrationError, decodeBlocks, encodeBlocks, encodeFrame } from "../../services/migration/stream.js";
import { SnapshotError } from "../../services/snapshot/file.js";
import { FakeSocket } from "../support/fake-socket.js";
import { scaled } from "../support/scale.js";

const PLATFORM: SavedPlatform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };
/** The disk: 4 chunks and a half (the last chunk is short). */
const DISK_BYTES = 4 * BLOCK_CHUNK_BYTES + 32 * 1024;
const MEMORY = 16 * 4096;

let dir: string;
let backing: string;
let base: Uint8Array;
let target: string;
beforeEach(() => {
  dir = scratchDir("hv-mig-block-");
  backing = path.join(dir, "base.raw");
  base = new Uint8Array(DISK_BYTES);
  fillRandom(base, 3);
  fs.writeFileSync(backing, base);
  target = path.join(dir, "here.qcow2");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const join_ = (parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

/** A hello announcing drive 0 (a qcow2 overlay on the source, over `backing`) as block-migrated; `blocks` may replace the announcement. */
function hello(blocks?: unknown): Uint8Array {
  const setup = savedSetup({ name: "mover", memoryBytes: MEMORY, platform: PLATFORM, roms: [], drives: [] });
  // The source's overlay is not on this machine: the destination makes its own.
  setup.drives = [{ path: "/source/only/disk.qcow2", format: "qcow2", sizeBytes: 1 << 20, readOnly: false, identity: "1:2:3" }];
  const announced = blocks === undefined ? [{ drive: 0, bytes: DISK_BYTES, backing, backingFormat: "raw" }] : blocks;
  return encodeFrame(FrameType.META, encode({ hello: { memoryBytes: MEMORY, name: "mover", setup, blocks: announced } }));
}

const chunkOf = (c: number, fill: number) => new Uint8Array(Math.min(BLOCK_CHUNK_BYTES, DISK_BYTES - c * BLOCK_CHUNK_BYTES)).fill(fill);

/** A good block part: chunk 1 of 0x11, chunk 4 (the short last one) of 0x44, chunk 2 zero; then chunk 1 again of 0x12. */
function goodBlocks(): Uint8Array[] {
  return [
    encodeFrame(FrameType.BLOCKS, encodeBlocks(0, DISK_BYTES, [{ chunk: 1, bytes: chunkOf(1, 0x11) }, { chunk: 4, bytes: chunkOf(4, 0x44) }, { chunk: 2, bytes: null }])),
    encodeFrame(FrameType.BLOCKS, encodeBlocks(0, DISK_BYTES, [{ chunk: 1, bytes: chunkOf(1, 0x12) }])),
  ];
}

/**
 * Feed `bytes` (in pieces of `cuts`) to a destination whose VM has its drives attached (the overlay
 * opened for writing, as the block driver would), then close: the error, what the source heard,
 * and the overlay's content (as the guest would see it) before the close, if it was made.
 */
async function feed(bytes: Uint8Array, cuts: number[] = [], targets = [target]) {
  const socket = new FakeSocket();
  const stream = receiveMigration(socket, { blockTargets: targets });
  const done = stream.vm.then(
    (vm) => (vm.vm.reader.close(), null),
    (error: unknown) => error,
  );
  let image: BlockImage | null = null;
  const drive: HostDrive = {
    image: () => (image ??= fs.existsSync(target) ? openImage(target, { writable: true }) : null),
    startLog: () => false,
    collectLog: () => null,
    stopLog: () => {},
  };
  stream.attachBlocks((index) => (index === 0 ? drive : null));
  socket.emitInPieces(bytes, cuts);
  await new Promise((resolve) => setImmediate(resolve));
  let content: Uint8Array | null = null;
  if (image) {
    content = new Uint8Array(DISK_BYTES);
    (image as BlockImage).read(0, content);
    (image as BlockImage).close();
  }
  socket.emit("close");
  return { error: await done, sent: socket.sent, content };
}

const typed = (e: unknown) => e instanceof MigrationError || e instanceof SnapshotError;

describe("block migration: a destination under attack", () => {
  it("takes good BLOCKS into its own overlay over the backing file: data, zeros, a short last chunk, a chunk sent again", async () => {
    const { error, content } = await feed(join_([MIGRATION_MAGIC, hello(), ...goodBlocks()]), [3, 200, 70_000]);
    // The stream ends without the VM's state: refused, and the overlay made for it is gone.
    expect((error as Error).message).toMatch(/closed before the end|without the VM's state/);
    expect(fs.existsSync(target)).toBe(false);
    const expected = base.slice();
    expected.fill(0x12, BLOCK_CHUNK_BYTES, 2 * BLOCK_CHUNK_BYTES);
    expected.fill(0, 2 * BLOCK_CHUNK_BYTES, 3 * BLOCK_CHUNK_BYTES);
    expected.fill(0x44, 4 * BLOCK_CHUNK_BYTES);
    expect(content).not.toBeNull();
    expect(Buffer.compare(content!, expected)).toBe(0);
    // The backing file is the source's too: nobody writes it.
    expect(Buffer.compare(fs.readFileSync(backing), base)).toBe(0);
  });

  it("names each broken record: hello.blocks' fields, a BLOCKS frame's drive, chunk, kind, length; an overlay that exists; a backing file that does not", async () => {
    const entry = { drive: 0, bytes: DISK_BYTES, backing, backingFormat: "raw" };
    const blocksFrame = (payload: Uint8Array) => join_([MIGRATION_MAGIC, hello(), encodeFrame(FrameType.BLOCKS, payload)]);
    const good = encodeBlocks(0, DISK_BYTES, [{ chunk: 1, bytes: chunkOf(1, 0x11) }]);
    const withChunk = (chunk: number, kind: number) => {
      const p = encodeBlocks(0, DISK_BYTES, [{ chunk: 0, bytes: chunkOf(0, 1) }]).slice();
      new DataView(p.buffer).setUint32(5, chunk, true);
      p[9] = kind;
      return p;
    };
    const cases: Array<[Uint8Array, RegExp]> = [
      [join_([MIGRATION_MAGIC, encodeFrame(FrameType.BLOCKS, good)]), /BLOCKS: block data, but the hello named no block-migrated drive/],
      [join_([MIGRATION_MAGIC, hello(5)]), /hello\.blocks is not a list/],
      [join_([MIGRATION_MAGIC, hello([entry, entry])]), /hello\.blocks names 2 drives, the VM has 1/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, drive: 1 }])]), /hello\.blocks\[0\]\.drive 1 is not one of the VM's 1 drives/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, drive: -1 }])]), /hello\.blocks\[0\]\.drive -1/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, bytes: 1000 }])]), /hello\.blocks\[0\]\.bytes 1000 is not a disk size/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, bytes: 2 ** 60 }])]), /hello\.blocks\[0\]\.bytes .* is not a disk size/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, backing: 7 }])]), /hello\.blocks\[0\]\.backing is not a file name/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, backingFormat: "zip" }])]), /hello\.blocks\[0\]\.backingFormat zip is not one of/],
      [join_([MIGRATION_MAGIC, hello([{ ...entry, backing: path.join(dir, "gone.raw") }])]), /blocks: drive 0's overlay .* over .*gone\.raw' cannot be made/],
      [blocksFrame(Uint8Array.from([0, 1, 0])), /BLOCKS: 3 bytes, too short for the drive and the count/],
      [blocksFrame(encodeBlocks(1, DISK_BYTES, [])), /BLOCKS: drive 1 is not one the hello said would be block-migrated/],
      [blocksFrame(Uint8Array.from([0, 65, 0, 0, 0])), /BLOCKS: count 65 is more than 64/],
      [blocksFrame(Uint8Array.from([0, 2, 0, 0, 0])), /BLOCKS: entry 0 of 2 runs past the frame/],
      [blocksFrame(withChunk(5, 1)), /BLOCKS: entry 0: chunk 5 lies outside drive 0 \(294912 bytes, 5 chunks\)/],
      [blocksFrame(withChunk(0xffffffff, 0)), /BLOCKS: entry 0: chunk 4294967295 lies outside drive 0/],
      [blocksFrame(withChunk(0, 2)), /BLOCKS: entry 0: kind 2 is neither 0 \(zero\) nor 1 \(data\)/],
      [blocksFrame(good.subarray(0, good.length - 1)), /BLOCKS: entry 0: chunk 1's 65536 bytes run past the frame/],
      [blocksFrame(Uint8Array.from([...good, 0])), /BLOCKS: 1 bytes after the last entry/],
    ];
    for (const [bytes, message] of cases) {
      const { error, sent } = await feed(bytes, [5, 100, 7]);
      expect(typed(error), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
      expect(sent?.[0]).toBe(FrameType.ABORT);
      // Refused: the overlay made for the migration (if it came that far) is gone.
      expect(fs.existsSync(target), String(message)).toBe(false);
    }
    // An overlay that exists is not the migration's to replace: refused, and left as it was.
    fs.writeFileSync(target, "mine");
    const { error } = await feed(join_([MIGRATION_MAGIC, hello()]));
    expect((error as Error).message).toMatch(/blocks: drive 0's overlay '.*here\.qcow2' exists already/);
    expect(fs.readFileSync(target, "utf8")).toBe("mine");
    fs.rmSync(target);
    // More overlays named here than drives the source block-migrates.
    const { error: tooMany } = await feed(join_([MIGRATION_MAGIC, hello()]), [], [target, path.join(dir, "b.qcow2")]);
    expect((tooMany as Error).message).toMatch(/--drive names 2 overlays here, the source block-migrates 1 drives/);
  });

  it(`${scaled(200)} mutated block streams in random pieces: a typed error, nothing else thrown, nothing written past the disk, no overlay left`, async () => {
    const good = join_([MIGRATION_MAGIC, hello(), ...goodBlocks()]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 90_000 }), { maxLength: 8 }),
        async (flips, cuts) => {
          const bytes = good.slice();
          for (const f of flips) bytes[Math.floor(f.at * bytes.length)] = f.value;
          const { error, sent } = await feed(bytes, cuts);
          // No stream here brings a VM's state: every one is refused, with a typed error.
          expect(typed(error), String(error)).toBe(true);
          expect(sent?.[0]).toBe(FrameType.ABORT);
          expect(fs.existsSync(target)).toBe(false);
          expect(Buffer.compare(fs.readFileSync(backing), base)).toBe(0);
        },
      ),
      { numRuns: scaled(200) },
    );
  });

  it("decodeBlocks checks the whole frame before it gives out anything", () => {
    // A good entry followed by a bad one: the error, no partial result.
    const p = encodeBlocks(0, DISK_BYTES, [{ chunk: 0, bytes: chunkOf(0, 9) }, { chunk: 3, bytes: null }]).slice();
    p[p.length - 1] = 7;
    expect(() => decodeBlocks(p, [DISK_BYTES])).toThrow(/entry 1: kind 7/);
    const ok = decodeBlocks(encodeBlocks(0, DISK_BYTES, [{ chunk: 0, bytes: chunkOf(0, 9) }, { chunk: 3, bytes: new Uint8Array(BLOCK_CHUNK_BYTES) }]), [DISK_BYTES]);
    expect(ok.chunks.map((c) => [c.chunk, c.bytes?.[0] ?? null])).toEqual([[0, 9], [3, null]]);
  });
});
