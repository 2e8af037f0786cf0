// A real migration whose final state is not the VM its hello announced, or holds a device record
// the devices refuse: a man in the middle rewrites the last META (the VM's name, or the PIT's
// record) between two hv processes, with valid checksums. The destination refuses it with a typed
// error and exits non-zero, the VM never having run there; the source hears why, keeps running its
// VM as it was (no line lost, none twice) and still owns it.

import { decode, encode } from "@msgpack/msgpack";
import fs from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FrameReader, FrameType, MIGRATION_MAGIC, encodeFrame } from "../../services/migration/stream.js";
import { ctl, ctlAsync } from "../support/hv-ctl.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { COUNTER_GUEST } from "../vm/guests.js";
import { expectedDisk, firstDifference, makeWriterDisk, readDisk } from "../vm/block-migration-disk.js";
import { hasNasm } from "../vm/nasm.js";
import { HV, ROOT } from "./img-harness.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-setup-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The VM's state as the last META has it (its snapshot sections), the parts rewritten here. */
interface VmRecord {
  header: { name: string };
  devices: { pit: { channels: Array<{ mode: number }> } };
}

/**
 * Listen on `port` and pass one connection on to `to`, frame by frame; the META with the VM's
 * state (the last one) goes on as `rewrite` changed it, framed and checksummed anew.
 * Resolves with whether it rewrote one.
 */
function rewritingProxy(port: number, to: number, rewrite: (vm: VmRecord) => void): Promise<{ rewrote: () => boolean }> {
  let rewrote = false;
  return new Promise((resolve) => {
    const server = createServer((source: Socket) => {
      server.close();
      const destination = connect(to, "127.0.0.1");
      const reader = new FrameReader();
      destination.write(MIGRATION_MAGIC);
      source.on("data", (chunk: Buffer) => {
        for (const f of reader.push(new Uint8Array(chunk))) {
          let payload = f.payload;
          if (f.type === FrameType.META) {
            const value = decode(payload) as { vm?: VmRecord };
            if (value.vm) {
              rewrite(value.vm);
              payload = encode(value);
              rewrote = true;
            }
          }
          destination.write(encodeFrame(f.type, payload));
        }
      });
      destination.on("data", (chunk: Buffer) => source.write(chunk));
      source.on("close", () => destination.destroy());
      destination.on("close", () => source.end());
      source.on("error", () => destination.destroy());
      destination.on("error", () => source.destroy());
    });
    server.listen(port, "127.0.0.1", () => resolve({ rewrote: () => rewrote }));
  });
}

let runs = 0;

/**
 * Migrate the counter guest (`withDrive`: a guest that writes its shared drive, a line per write)
 * through a proxy that rewrites its final state; the refusal must name `reason`, on both ends.
 */
async function refusedMigration(rewrite: (vm: VmRecord) => void, reason: RegExp, withDrive = false): Promise<void> {
  let kernel = path.join(dir, "counter.bin");
  fs.writeFileSync(kernel, COUNTER_GUEST());
  const drive = withDrive ? makeWriterDisk(fs.mkdtempSync(path.join(dir, "drive-")), 10_000_000) : null;
  const driveArgs = drive ? ["--drive", `file=${drive.sourceOverlay}`] : [];
  if (drive) kernel = drive.kernel;
  const [destPort, proxyPort] = [await freePort(), await freePort()];
  const sock = path.join(dir, `source-${++runs}.qmp`);
  const destination = hvRun(HV, ["--incoming", `tcp:127.0.0.1:${destPort}`, "--no-pace", "--wall-timeout", "120"], { cwd: ROOT });
  await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
  const proxy = await rewritingProxy(proxyPort, destPort, rewrite);
  const source = hvRun(HV, ["--kernel", kernel, "--mem", "32M", ...driveArgs, "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "120"], { cwd: ROOT });
  try {
    await until("the source's lines", () => source.out().split("\n").length > 20 && fs.existsSync(sock));
    const migrate = await ctlAsync(sock, "migrate", `uri=tcp:127.0.0.1:${proxyPort}`);
    expect(proxy.rewrote()).toBe(true);
    // hv ctl says the migration failed, and why (the destination's reason, sent back in ABORT).
    expect(migrate.status, migrate.stdout).toBe(1);
    expect(migrate.stderr).toMatch(new RegExp(`the migration failed: the destination did not take the VM: .*${reason.source}`));
    // The destination refused the stream: status 2, the typed error named.
    expect(await destination.exited).toBe(2);
    expect(destination.err()).toMatch(new RegExp(`incoming migration refused: .*${reason.source}`));
    // The refused state never ran there: the guest printed nothing.
    expect(destination.out()).toBe("");
    // The source owns the VM and runs it: query-migrate says failed, the guest's lines go on.
    const info = ctl(sock, "query-migrate", "--json");
    expect(JSON.parse(info.stdout)).toMatchObject({ status: "failed" });
    expect(ctl(sock, "query-status").stdout).toMatch(/running/);
    const linesAfter = source.out().split("\n").length;
    await until("the source's lines after the refusal", () => source.out().split("\n").length > linesAfter + 10);
    expect(ctl(sock, "quit").status).toBe(0);
    expect(await source.exited).toBe(0);
    // Whole lines only: the VM may end in the middle of one.
    const out = source.out();
    const lines = out.slice(0, out.lastIndexOf("\n") + 1).split("\n").filter((l) => l.length > 0);
    lines.forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
    if (drive) {
      // The source had its drive back (it had closed it for the destination): every write, before and after, is in it (and maybe the next, made before its line).
      const disk = readDisk(drive.sourceOverlay);
      if (firstDifference(disk, expectedDisk(drive.base, lines.length)) !== -1) expect(firstDifference(disk, expectedDisk(drive.base, lines.length + 1))).toBe(-1);
      expect(source.err()).not.toMatch(/stays paused/);
    }
  } finally {
    source.child.kill("SIGTERM");
    destination.child.kill("SIGTERM");
  }
}

describe.skipIf(!hasNasm())("a migration whose final state is not the VM the hello announced, or that its devices refuse", () => {
  it("another name: the destination refuses it and exits with status 2; the source keeps its VM running, nothing lost", async () => {
    await refusedMigration((vm) => void (vm.header.name = "impostor"), /migration stream: META: the VM's name at the end is not what the hello said/);
  }, 300_000);

  it("with a drive on shared storage: the source closed it for the destination, takes it back after the refusal and writes on", async () => {
    await refusedMigration((vm) => void (vm.header.name = "impostor"), /migration stream: META: the VM's name at the end is not what the hello said/, true);
  }, 300_000);

  it("a PIT channel in mode 9: the destination's devices refuse it as they load it (exit status 2, never run); the source keeps its VM", async () => {
    await refusedMigration((vm) => void (vm.devices.pit.channels[0].mode = 9), /the VM could not be loaded \(BAD_PARAMETER\): .*pit.*mode/);
  }, 300_000);
});
