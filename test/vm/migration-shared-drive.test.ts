// Live migration with a writable drive on shared storage (QMP migrate without inc): both hv
// processes name the same qcow2 file. The destination attaches it without opening it (another
// process still writes it), the source writes it to disk and closes it at its stop (its write lock
// goes), and the destination opens it as it starts the VM: every write the guest made, before,
// during and after the move, is in the file. If the source cannot have its drive back after a
// failure (the destination took it and runs the VM: the connection broke after the ACK left), the
// source's VM stays paused rather than write the same disk.

import fs from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FrameReader, FrameType } from "../../services/migration/stream.js";
import { HV, ROOT } from "../hostile/img-harness.js";
import { ctl, ctlAsync } from "../support/hv-ctl.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { expectedDisk, firstDifference, makeWriterDisk, readDisk } from "./block-migration-disk.js";
import { hasNasm } from "./nasm.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-shared-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const hv = (args: string[]) => hvRun(HV, args, { cwd: ROOT });
const lines = (text: string) => text.split("\n").filter((l) => l.length > 0);

/** Writes the guest makes: enough that the move comes in the middle of them. */
const WRITES = 30_000;

describe.skipIf(!hasNasm())("live migration with a writable drive on shared storage", () => {
  it("the destination opens the drive once the source let it go: the file holds every write, made before, during and after the move", async () => {
    const { base, sourceOverlay: disk, kernel } = makeWriterDisk(fs.mkdtempSync(path.join(dir, "move-")), WRITES, "shared.qcow2");
    const port = await freePort();
    const sock = path.join(dir, "move.qmp");
    const destination = hv(["--incoming", `tcp:127.0.0.1:${port}`, "--no-pace", "--wall-timeout", "300"]);
    await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
    const source = hv(["--kernel", kernel, "--mem", "32M", "--drive", `file=${disk}`, "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "300"]);
    try {
      await until("the source's writes", () => lines(source.out()).length > 100 && fs.existsSync(sock));
      const migrated = await ctlAsync(sock, "migrate", `uri=tcp:127.0.0.1:${port}`);
      expect(migrated.status, `ctl: ${migrated.stderr}; source: ${source.err().slice(-1500)}; destination: ${destination.err().slice(-1500)}`).toBe(0);
      expect(await source.exited, source.err()).toBe(0);
      expect(source.err()).toMatch(/drives closed/);
      expect(await destination.exited, destination.err()).toBe(0);
      const all = lines(source.out() + destination.out());
      expect(all.at(-1)).toBe("DONE");
      all.slice(0, -1).forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
      expect(lines(destination.out()).length, "the guest wrote on at the destination").toBeGreaterThan(100);
      expect(firstDifference(readDisk(disk), expectedDisk(base, WRITES))).toBe(-1);
    } finally {
      source.child.kill("SIGTERM");
      destination.child.kill("SIGTERM");
    }
  }, 300_000);

  it("a source that cannot have its drive back (the ACK was lost, the destination runs the VM) keeps its VM paused and says why", async () => {
    // More writes than the test waits for: the destination still runs (and holds the drive) when the source tries to go on.
    const { base, sourceOverlay: disk, kernel } = makeWriterDisk(fs.mkdtempSync(path.join(dir, "lost-ack-")), 10_000_000, "shared.qcow2");
    const [destPort, proxyPort] = [await freePort(), await freePort()];
    const sock = path.join(dir, "lost-ack.qmp");
    const destSock = path.join(dir, "lost-ack-destination.qmp");
    const destination = hv(["--incoming", `tcp:127.0.0.1:${destPort}`, "--qmp", `unix:${destSock}`, "--no-pace", "--wall-timeout", "300"]);
    await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
    // Between the two: everything passes, but the destination's ACK never reaches the source, whose connection then breaks.
    let ackDropped = false;
    const proxy = createServer((from: Socket) => {
      proxy.close();
      const to = connect(destPort, "127.0.0.1");
      const replies = new FrameReader(false);
      from.on("data", (chunk: Buffer) => to.write(chunk));
      to.on("data", (chunk: Buffer) => {
        const frames = replies.push(new Uint8Array(chunk));
        if (frames.some((f) => f.type === FrameType.ACK)) {
          ackDropped = true;
          from.destroy();
        } else from.write(chunk);
      });
      from.on("error", () => {});
      to.on("error", () => {});
    });
    await new Promise<void>((resolve) => proxy.listen(proxyPort, "127.0.0.1", resolve));
    const source = hv(["--kernel", kernel, "--mem", "32M", "--drive", `file=${disk}`, "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "300"]);
    try {
      await until("the source's writes", () => lines(source.out()).length > 100 && fs.existsSync(sock));
      const migrated = await ctlAsync(sock, "migrate", `uri=tcp:127.0.0.1:${proxyPort}`);
      expect(ackDropped).toBe(true);
      expect(migrated.status, migrated.stdout).toBe(1);
      expect(migrated.stderr).toMatch(/the migration failed: .*the VM stays paused here: .*drive 0: .*LOCKED/);
      // Two VMs believe they own the guest; only the destination's writes the disk.
      expect(ctl(sock, "query-status").stdout).toMatch(/paused/);
      const sourceLines = lines(source.out()).length;
      await until("the destination's writes", () => lines(destination.out()).length > 100);
      expect(lines(source.out()).length).toBe(sourceLines);
      // A `cont` at the source is refused the same way: the drive is the destination's.
      const cont = ctl(sock, "cont");
      expect(cont.status).toBe(1);
      expect(cont.stderr).toMatch(/drive 0: .*LOCKED/);
      expect(ctl(sock, "quit").status).toBe(0);
      expect(await source.exited).toBe(0);
      expect(ctl(destSock, "quit").status).toBe(0);
      expect(await destination.exited).toBe(0);
      // Whole lines L1..Ln (the VM may end in the middle of one); the disk holds writes 1..n (and n + 1, made before its line).
      const out = source.out() + destination.out();
      const all = lines(out.slice(0, out.lastIndexOf("\n") + 1));
      all.forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
      const atEnd = readDisk(disk);
      if (firstDifference(atEnd, expectedDisk(base, all.length)) !== -1) expect(firstDifference(atEnd, expectedDisk(base, all.length + 1))).toBe(-1);
    } finally {
      proxy.close();
      source.child.kill("SIGTERM");
      destination.child.kill("SIGTERM");
    }
  }, 300_000);
});
