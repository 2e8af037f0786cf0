// A real migration whose final state is not the VM its hello announced: a man in the middle
// rewrites the last META (the VM's name) between two hv processes, with valid checksums. The
// destination refuses it with a typed error and exits non-zero; the source hears why, keeps
// running its VM as it was (no line lost, none twice) and still owns it.

import { decode, encode } from "@msgpack/msgpack";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FrameReader, FrameType, MIGRATION_MAGIC, encodeFrame } from "../../services/migration/stream.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { COUNTER_GUEST } from "../vm/guests.js";
import { hasNasm } from "../vm/nasm.js";
import { HV, ROOT } from "./img-harness.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hv-migrate-setup-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const ctl = (sock: string, ...args: string[]) => spawnSync(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });

/** hv ctl without blocking this process (the proxy runs here): its status and output. */
function ctlAsync(sock: string, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...HV, "ctl", sock, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => child.on("close", (status) => resolve({ status, stdout, stderr })));
}

/**
 * Listen on `port` and pass one connection on to `to`, frame by frame; the META with the VM's
 * state (the last one) goes on with its header's name changed, framed and checksummed anew.
 * Resolves with whether it rewrote one.
 */
function rewritingProxy(port: number, to: number): Promise<{ rewrote: () => boolean }> {
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
            const value = decode(payload) as { vm?: { header: { name: string } } };
            if (value.vm) {
              value.vm.header.name = "impostor";
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

describe.skipIf(!hasNasm())("a migration whose final state is not the VM the hello announced", () => {
  it("the destination refuses it and exits with status 2; the source keeps its VM running, nothing lost", async () => {
    const kernel = path.join(dir, "counter.bin");
    fs.writeFileSync(kernel, COUNTER_GUEST());
    const [destPort, proxyPort] = [await freePort(), await freePort()];
    const sock = path.join(dir, "source.qmp");
    const destination = hvRun(HV, ["--incoming", `tcp:127.0.0.1:${destPort}`, "--no-pace", "--wall-timeout", "120"], { cwd: ROOT });
    await until("the destination to listen", () => destination.err().includes("waiting for a migration"));
    const proxy = await rewritingProxy(proxyPort, destPort);
    const source = hvRun(HV, ["--kernel", kernel, "--mem", "32M", "--qmp", `unix:${sock}`, "--no-pace", "--wall-timeout", "120"], { cwd: ROOT });
    try {
      await until("the source's lines", () => source.out().split("\n").length > 20 && fs.existsSync(sock));
      const migrate = await ctlAsync(sock, "migrate", `uri=tcp:127.0.0.1:${proxyPort}`);
      expect(proxy.rewrote()).toBe(true);
      // hv ctl says the migration failed, and why (the destination's reason, sent back in ABORT).
      expect(migrate.status, migrate.stdout).toBe(1);
      expect(migrate.stderr).toMatch(/the migration failed: the destination did not take the VM: .*META: the VM's name at the end is not what the hello said/);
      // The destination refused the stream: status 2, the typed error named.
      expect(await destination.exited).toBe(2);
      expect(destination.err()).toMatch(/incoming migration refused: migration stream: META: the VM's name at the end is not what the hello said/);
      expect(destination.out()).toBe("");
      // The source owns the VM and runs it: query-migrate says failed, the guest's lines go on.
      const info = ctl(sock, "query-migrate", "--json");
      expect(JSON.parse(info.stdout)).toMatchObject({ status: "failed" });
      expect(ctl(sock, "query-status").stdout).toMatch(/running/);
      const linesAfter = source.out().split("\n").length;
      await until("the source's lines after the refusal", () => source.out().split("\n").length > linesAfter + 10);
      expect(ctl(sock, "quit").status).toBe(0);
      expect(await source.exited).toBe(0);
      const lines = source.out().split("\n").filter((l) => l.length > 0);
      lines.slice(0, -1).forEach((l, i) => expect(l, `line ${i + 1}`).toBe(`L${i + 1}`));
    } finally {
      source.child.kill("SIGTERM");
      destination.child.kill("SIGTERM");
    }
  }, 300_000);
});
