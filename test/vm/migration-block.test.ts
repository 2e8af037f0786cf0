// Block migration (QMP migrate with inc=true) as a user does it: the guest's disk is a qcow2 overlay
// over a raw backing file both sides share; the guest writes a new sector after another while the VM
// moves. The destination (hv run --incoming ... --drive file=NEW) makes its own overlay over the
// same backing file, and in the end it holds every write the guest made, on either side, and the
// backing file is as it was.

import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openImage } from "../../drivers/block/open.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { fillRandom } from "../../drivers/block/test-util.js";
import { HV, ROOT } from "../hostile/img-harness.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { DISK_WRITER_GUEST } from "./guests.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-block-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const hv = (args: string[]) => hvRun(HV, args, { cwd: ROOT });
const ctl = (sock: string, ...args: string[]) => spawnSync(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/** The backing file: 16 MiB (32,768 sectors), pseudo-random. */
const DISK_BYTES = 16 << 20;
const SECTORS = DISK_BYTES / 512;
/** Writes the guest makes (n = 1 to WRITES), one at a time: most of them while the VM moves or after. */
const WRITES = 30_000;
/**
 * Write n goes to sector (n * STRIDE) mod SECTORS: each sector once, and each write in another
 * 64 KiB chunk than the one before (129 sectors on), so that the writes between the last pass and
 * the stop are chunks no pass sent yet.
 */
const STRIDE = 129;
const sectorOf = (n: number) => (n * STRIDE) % SECTORS;

/** The disk as the guest should see it once it made writes 1..`upTo`: the backing file's bytes, write n's sector holding the dword n 128 times. */
function expectedDisk(base: Uint8Array, upTo: number): Uint8Array {
  const disk = base.slice();
  const words = new DataView(disk.buffer);
  for (let n = 1; n <= upTo; n++) for (let i = 0; i < 128; i++) words.setUint32(sectorOf(n) * 512 + 4 * i, n, true);
  return disk;
}

function readDisk(file: string): Uint8Array {
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
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let s = 0; s * 512 < a.length; s++) if (Buffer.compare(a.subarray(s * 512, (s + 1) * 512), b.subarray(s * 512, (s + 1) * 512)) !== 0) return s;
  return -1;
}

describe.skipIf(!hasNasm())("block migration of a qcow2 overlay (migrate inc=true)", () => {
  it("the destination's own overlay over the shared backing file holds every write, made before, during and after the move", async () => {
    const base = new Uint8Array(DISK_BYTES);
    fillRandom(base, 7);
    const backing = path.join(dir, "base.raw");
    fs.writeFileSync(backing, base);
    const baseHash = sha(backing);
    const sourceOverlay = path.join(dir, "source.qcow2");
    const destinationOverlay = path.join(dir, "destination.qcow2");
    createImage(sourceOverlay, "qcow2", undefined, { backing: { file: backing, format: "raw" } });
    const kernel = path.join(dir, "writer.bin");
    fs.writeFileSync(kernel, DISK_WRITER_GUEST(WRITES, 20_000, STRIDE, SECTORS));

    const port = await freePort();
    const sock = path.join(dir, "source.qmp");
    const destination = hv(["--incoming", `tcp:127.0.0.1:${port}`, "--drive", `file=${destinationOverlay}`, "--no-pace", "--wall-timeout", "240"]);
    await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
    const source = hv(["--kernel", kernel, "--mem", "32M", "--drive", `file=${sourceOverlay}`, "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "240"]);
    await until("the source's writes", () => source.out().split("\n").length > 300 && fs.existsSync(sock));
    const migrated = ctl(sock, "migrate", `uri=tcp:127.0.0.1:${port}`, "inc=true");
    expect(migrated.status, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/^migration completed, [\d.]+ MiB sent in \d+ passes/);
    expect(await source.exited, source.err()).toBe(0);
    // The guest wrote on at the destination: the move came in the middle of its writes.
    expect(source.out()).not.toContain("DONE");
    const code = await destination.exited;
    expect(code, destination.err()).toBe(0);

    const lines = (source.out() + destination.out()).split("\n").filter((l) => l.length > 0);
    expect(lines.at(-1)).toBe("DONE");
    lines.slice(0, -1).forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
    expect(lines.length).toBe(WRITES + 1);
    const writtenAtSource = source.out().split("\n").filter((l) => l.length > 0).length;
    expect(writtenAtSource).toBeGreaterThan(300);

    // Every write, the source's too: the destination's overlay reads as the guest's whole history.
    const expected = expectedDisk(base, WRITES);
    const atDestination = readDisk(destinationOverlay);
    expect(firstDifference(atDestination, expected)).toBe(-1);
    // What the source's overlay has is what the destination's has, up to the move.
    const atSource = readDisk(sourceOverlay);
    for (let n = 1; n <= writtenAtSource; n++) {
      const at = sectorOf(n) * 512;
      expect(Buffer.compare(atSource.subarray(at, at + 512), atDestination.subarray(at, at + 512)), `write ${n}`).toBe(0);
    }
    // The destination's overlay is its own, over the same backing file, which nobody wrote.
    const image = openImage(destinationOverlay);
    expect(image.format).toBe("qcow2");
    expect(image.backing?.path).toBe(backing);
    image.close();
    expect(sha(backing)).toBe(baseHash);
  }, 400_000);
});
