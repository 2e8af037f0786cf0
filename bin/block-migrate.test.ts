// Block migration's source side: which drives `inc` takes (refused at once otherwise, the VM runs
// on), what the hello says of them, and which chunks pass 1 sends.

import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { HostDrive } from "../drivers/block/component.js";
import type { BlockImage } from "../drivers/block/image.js";
import { openImage } from "../drivers/block/open.js";
import { createImage } from "../drivers/block/ops/create.js";
import { scratchDir } from "../drivers/block/test-util.js";
import { decodeBlocks, FrameReader } from "../services/migration/stream.js";
import { allocatedChunks, announceBlocks, blockFrames } from "./block-migrate.js";
import { HostControl } from "./host-control.js";
import { OutgoingMigration } from "./migrate.js";
import type { DriveConfig } from "../drivers/block/component.js";

let dir: string;
const opened: BlockImage[] = [];
beforeEach(() => {
  dir = scratchDir("hv-blockmig-src-");
});
afterEach(() => {
  for (const i of opened.splice(0)) i.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const CHUNK = 64 * 1024;

/** A drive the host reaches: the image opened for writing, as the block driver has it. */
function hostDrive(file: string): HostDrive {
  const image = openImage(file, { writable: true });
  opened.push(image);
  return { image: () => image, startLog: () => true, collectLog: () => null, stopLog: () => {} };
}

function overlay(name: string, size = 8 * CHUNK): string {
  const base = path.join(dir, `${name}-base.raw`);
  fs.writeFileSync(base, new Uint8Array(size).fill(0x5a));
  const file = path.join(dir, `${name}.qcow2`);
  createImage(file, "qcow2", undefined, { backing: { file: base, format: "raw" } });
  return file;
}

describe("block migration, the source", () => {
  it("pass 1 sends the chunks the overlay holds (data or zeros), each as the guest sees it", () => {
    const file = overlay("a");
    const drive = hostDrive(file);
    const image = drive.image()!;
    image.write(3 * CHUNK + 4096, new Uint8Array(512).fill(7));
    image.writeZeroes(5 * CHUNK, CHUNK);
    const wanted = allocatedChunks(image);
    expect([...wanted]).toEqual([0b0010_1000]);
    let counted = 0;
    const frames = [...blockFrames({ index: 0, drive }, wanted, (n) => (counted += n))];
    expect(counted).toBe(2);
    const reader = new FrameReader(false);
    const [frame] = reader.push(frames[0]);
    const { drive: d, chunks } = decodeBlocks(frame.payload, [8 * CHUNK]);
    expect(d).toBe(0);
    expect(chunks.map((c) => c.chunk)).toEqual([3, 5]);
    // Chunk 3: the backing file's bytes around the guest's write; chunk 5: zeros (a flag, no data).
    expect(chunks[0].bytes![0]).toBe(0x5a);
    expect(chunks[0].bytes![4096]).toBe(7);
    expect(chunks[1].bytes).toBeNull();
    const [a] = announceBlocks([{ index: 0, drive }]);
    expect(a).toEqual({ drive: 0, bytes: 8 * CHUNK, backing: path.join(dir, "a-base.raw"), backingFormat: "raw" });
  });

  it("migrate inc=true is refused at once (nothing connects, the VM runs on) for drives that cannot go, naming the drive", () => {
    const raw = path.join(dir, "plain.raw");
    fs.writeFileSync(raw, new Uint8Array(CHUNK));
    const lone = path.join(dir, "lone.qcow2");
    createImage(lone, "qcow2", CHUNK);
    const ov = overlay("b");
    const cases: Array<[DriveConfig[], Array<HostDrive | null> | null, RegExp]> = [
      [[], [], /inc: the VM has no writable drive to block-migrate/],
      [[{ path: ov, readOnly: true }], [], /inc: the VM has no writable drive/],
      [[{ path: ov }], null, /inc: drive 0 cannot be block-migrated from here \(the block driver runs in a worker: --isolate\)/],
      [[{ path: ov }], [null], /--isolate/],
      [[{ path: raw }], [hostDrive(raw)], /drive 0 \('.*plain\.raw'\) is not a qcow2 overlay with a backing file/],
      [[{ path: ov }, { path: lone }], [hostDrive(ov), hostDrive(lone)], /drive 1 \('.*lone\.qcow2'\) is not a qcow2 overlay/],
    ];
    for (const [drives, reachable, message] of cases) {
      let connects = 0;
      const m = new OutgoingMigration(new HostControl(), () => ({ name: "v", memoryBytes: 1 << 20, platform: { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: false }, roms: [], drives }), () => {
        connects++;
        throw new Error("no connection in this test");
      }, () => {});
      m.blockDrives = reachable === null ? null : () => reachable;
      expect(() => m.start(0, "tcp:127.0.0.1:9", true)).toThrow(message);
      expect(connects).toBe(0);
      expect(m.status).toBe("none");
    }
  });
});
