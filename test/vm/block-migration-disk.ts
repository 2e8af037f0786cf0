// The disk of the block-migration tests: a pseudo-random raw backing file both sides share, a qcow2
// overlay over it that the guest (DISK_WRITER_GUEST) writes one sector after another into, and what
// the disk must read as after write n. Shared by the single-VM and the fleet block-migration tests.

import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { openImage } from "../../drivers/block/open.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { fillRandom } from "../../drivers/block/test-util.js";
import { QmpClient } from "../../bin/ctl-command.js";
import { DISK_WRITER_GUEST } from "./guests.js";

/** The backing file: 16 MiB (32,768 sectors), pseudo-random. */
export const DISK_BYTES = 16 << 20;
export const SECTORS = DISK_BYTES / 512;
/**
 * Write n goes to sector (n * STRIDE) mod SECTORS: each sector once, and each write in another
 * 64 KiB chunk than the one before (129 sectors on), so that the writes between the last pass and
 * the stop are chunks no pass sent yet.
 */
export const STRIDE = 129;
export const sectorOf = (n: number) => (n * STRIDE) % SECTORS;

export const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/** In `dir`: the backing file (base.raw, its bytes and hash), an overlay over it for the source (`overlay`), and the writer guest making `writes` writes. */
export function makeWriterDisk(dir: string, writes: number, overlay = "source.qcow2"): { base: Uint8Array; backing: string; baseHash: string; sourceOverlay: string; kernel: string } {
  const base = new Uint8Array(DISK_BYTES);
  fillRandom(base, 7);
  const backing = path.join(dir, "base.raw");
  fs.writeFileSync(backing, base);
  const sourceOverlay = path.join(dir, overlay);
  createImage(sourceOverlay, "qcow2", undefined, { backing: { file: backing, format: "raw" } });
  const kernel = path.join(dir, "writer.bin");
  fs.writeFileSync(kernel, DISK_WRITER_GUEST(writes, 20_000, STRIDE, SECTORS));
  return { base, backing, baseHash: sha(backing), sourceOverlay, kernel };
}

/** The disk as the guest should see it once it made writes 1..`upTo`: the backing file's bytes, write n's sector holding the dword n 128 times. */
export function expectedDisk(base: Uint8Array, upTo: number): Uint8Array {
  const disk = base.slice();
  const words = new DataView(disk.buffer);
  for (let n = 1; n <= upTo; n++) for (let i = 0; i < 128; i++) words.setUint32(sectorOf(n) * 512 + 4 * i, n, true);
  return disk;
}

export function readDisk(file: string): Uint8Array {
  const image = openImage(file);
  try {
    const bytes = new Uint8Array(image.virtualSize);
    image.read(0, bytes);
    return bytes;
  } finally {
    image.close();
  }
}

/** The first sector where `a` and `b` differ, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let s = 0; s * 512 < a.length; s++) if (Buffer.compare(a.subarray(s * 512, (s + 1) * 512), b.subarray(s * 512, (s + 1) * 512)) !== 0) return s;
  return -1;
}

/** The destination's overlay is a qcow2 file of its own over `backing`. */
export function overlayOver(file: string, backing: string): { format: string; backing: string | undefined } {
  const image = openImage(file);
  try {
    return { format: image.format, backing: image.backing?.path };
  } finally {
    image.close();
  }
}

/** QEMU's MigrationInfo as `hv ctl query-migrate --json` prints it, the parts these tests look at. */
export interface MigrationInfo {
  status?: string;
  ram?: { transferred: number; remaining: number };
  disk?: { transferred: number; remaining: number };
}

/**
 * Ask query-migrate (with `args`, e.g. {vm: NAME}) on one QMP connection, every 20 ms, until
 * `done` settles: each answer while the source still answered (once the VM runs at the
 * destination the source hv ends, and its socket with it).
 */
export async function watchMigration(sock: string, args: Record<string, unknown>, done: Promise<unknown>): Promise<MigrationInfo[]> {
  let over = false;
  void done.finally(() => (over = true));
  const seen: MigrationInfo[] = [];
  const client = await QmpClient.connect(sock);
  try {
    while (!over) {
      const reply = await client.execute("query-migrate", args).catch(() => null);
      if (!reply || "error" in reply) break;
      seen.push(reply.return as MigrationInfo);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    client.close();
  }
  return seen;
}
