// Block migration (QMP migrate with inc=true) as a user does it: the guest's disk is a qcow2 overlay
// over a raw backing file both sides share; the guest writes a new sector after another while the VM
// moves. The destination (hv run --incoming ... --drive file=NEW) makes its own overlay over the
// same backing file, and in the end it holds every write the guest made, on either side, and the
// backing file is as it was. While the overlay goes, query-migrate shows QEMU's disk part.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HV, ROOT } from "../hostile/img-harness.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { ctlAsync } from "../support/hv-ctl.js";
import { expectedDisk, firstDifference, makeWriterDisk, overlayOver, readDisk, sectorOf, sha, watchMigration } from "./block-migration-disk.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-block-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const hv = (args: string[]) => hvRun(HV, args, { cwd: ROOT });

/** Writes the guest makes (n = 1 to WRITES), one at a time: most of them while the VM moves or after. */
const WRITES = 30_000;
const CHUNK = 64 * 1024;

describe.skipIf(!hasNasm())("block migration of a qcow2 overlay (migrate inc=true)", () => {
  it("the destination's own overlay over the shared backing file holds every write, made before, during and after the move", async () => {
    const { base, backing, baseHash, sourceOverlay, kernel } = makeWriterDisk(dir, WRITES);
    const destinationOverlay = path.join(dir, "destination.qcow2");

    const port = await freePort();
    const sock = path.join(dir, "source.qmp");
    const destination = hv(["--incoming", `tcp:127.0.0.1:${port}`, "--drive", `file=${destinationOverlay}`, "--no-pace", "--wall-timeout", "380"]);
    await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
    const source = hv(["--kernel", kernel, "--mem", "32M", "--drive", `file=${sourceOverlay}`, "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "380"]);
    await until("the source's writes", () => source.out().split("\n").length > 300 && fs.existsSync(sock));
    // No bandwidth cap: the guest dirties a new 64 KiB chunk with each write, faster than a capped
    // link sends them, and it would finish its writes at the source before the migration ends.
    const migrating = ctlAsync(sock, "migrate", `uri=tcp:127.0.0.1:${port}`, "inc=true");
    // query-migrate while the overlay goes: QEMU's disk part, bytes of whole chunks, sent so far only growing.
    const seen = (await watchMigration(sock, {}, migrating)).filter((q) => q.status === "active" && q.disk);
    const migrated = await migrating;
    expect(migrated.status, `ctl: ${migrated.stderr}; source (exit ${source.child.exitCode}, ${source.child.signalCode}): ${source.err().slice(-1500)}; destination: ${destination.err().slice(-1500)}; seen ${JSON.stringify(seen.at(-1))}`).toBe(0);
    expect(migrated.stdout).toMatch(/^migration completed, [\d.]+ MiB sent in \d+ passes/);
    expect(seen.length, "query-migrate answers with a disk part while the migration was active").toBeGreaterThan(0);
    for (const [i, q] of seen.entries()) {
      expect(q.disk!.transferred % CHUNK, JSON.stringify(q)).toBe(0);
      expect(q.disk!.remaining % CHUNK, JSON.stringify(q)).toBe(0);
      expect(q.disk!.transferred).toBeGreaterThan(0);
      if (i > 0) expect(q.disk!.transferred).toBeGreaterThanOrEqual(seen[i - 1].disk!.transferred);
    }
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
    expect(overlayOver(destinationOverlay, backing)).toEqual({ format: "qcow2", backing });
    expect(sha(backing)).toBe(baseHash);
  }, 400_000);
});
