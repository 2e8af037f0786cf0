// A migration destination reads its stream as untrusted input: whatever arrives (cut short,
// bit-flipped, forged frames with valid checksums), it ends with a MigrationError or a
// SnapshotError naming the problem, tells the source (ABORT), and throws nothing else.

import { encode } from "@msgpack/msgpack";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { migrateIn } from "../../bin/migrate.js";
import { FrameType, MIGRATION_MAGIC, MigrationError, encodeFrame, encodePages } from "../../services/migration/stream.js";
import { SnapshotError } from "../../services/snapshot/file.js";
import { sampleContents } from "../../services/snapshot/test-util.js";
import { FakeSocket, feed } from "../support/fake-socket.js";
import { scaled } from "../support/scale.js";
import { platformConfig, savedSetup, type SavedPlatform } from "../../bin/snapshot.js";
import { VcpuState } from "../../kernel/index.js";
import { vcpuRecord } from "../../vmm/vcpu-record.js";
import { freshDeviceRecords } from "../../vmm/vmm.js";

/** A well-formed stream: hello (with the VM's setup, or `setup`), the RAM in two PAGES frames, the VM's metadata (a sample VM), END. */
function stream(setup?: (s: Record<string, unknown>) => unknown): Uint8Array {
  const c = sampleContents(12, 3);
  const { ram, ...meta } = c;
  const pages = Array.from({ length: 12 }, (_, p) => ({ page: p, bytes: ram.subarray(p * 4096, (p + 1) * 4096) }));
  // The sample's drives are not on this machine: the hello (checked when it comes) names none.
  const helloSetup = { header: meta.header, memoryMap: meta.memoryMap, drives: [] };
  const parts = [
    MIGRATION_MAGIC,
    encodeFrame(FrameType.META, encode({ hello: { memoryBytes: c.header.memoryBytes, name: "x", setup: setup ? setup(helloSetup) : helloSetup } })),
    encodeFrame(FrameType.PAGES, encodePages(pages.slice(0, 6))),
    encodeFrame(FrameType.PAGES, encodePages(pages.slice(6))),
    encodeFrame(FrameType.META, encode({ vm: meta })),
    encodeFrame(FrameType.END),
  ];
  return join_(parts);
}

/** Frames after the magic, in one stream. */
function join_(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const PLATFORM: SavedPlatform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };

/**
 * A stream a destination takes: a VM whose state passes every check (a reset vCPU, the devices as
 * built), 16 pages of RAM and a one-page ROM. `hello` and `end` may change the setup the hello
 * announces and the VM the end brings.
 */
function goodVmStream(change: { hello?: (setup: ReturnType<typeof savedSetup>) => unknown; end?: (vm: Record<string, unknown>) => unknown } = {}): Uint8Array {
  const memoryBytes = 16 * 4096;
  const request = { name: "mover", memoryBytes, platform: PLATFORM, roms: [{ gpa: 0xfffff000, bytes: new Uint8Array(4096).fill(0xf4) }], drives: [] };
  const setup = savedSetup(request);
  const config = { memoryBytes, plan: { writes: [], roms: [], state: new VcpuState(), memoryMap: [] }, ...platformConfig(PLATFORM) };
  const vm = { ...savedSetup(request, 5_000_000), vcpus: [{ registers: vcpuRecord(new VcpuState()), halted: false, ignneChanged: false }], devices: freshDeviceRecords(config) };
  const pages = Array.from({ length: 16 }, (_, page) => ({ page, bytes: new Uint8Array(4096).fill(page + 1) }));
  return join_([
    MIGRATION_MAGIC,
    encodeFrame(FrameType.META, encode({ hello: { memoryBytes, name: "mover", setup: change.hello ? change.hello(setup) : setup } })),
    encodeFrame(FrameType.PAGES, encodePages(pages)),
    encodeFrame(FrameType.META, encode({ vm: change.end ? change.end(vm) : vm })),
    encodeFrame(FrameType.END),
  ]);
}

const typed = (e: unknown) => e instanceof MigrationError || e instanceof SnapshotError;

describe("a migration destination under attack", () => {
  it("names each broken part: magic, frame type, length, checksum, pages outside RAM, a cut, no state", async () => {
    const good = stream();
    const cases: Array<[Uint8Array, RegExp]> = [
      [Uint8Array.from([...new TextEncoder().encode("HVMIGRT2"), ...good.subarray(8)]), /magic: the stream does not start with HVMIGRT1/],
      [Uint8Array.from([...MIGRATION_MAGIC, 9, 0, 0, 0, 0, 0, 0, 0, 0]), /frame: type 9 is unknown/],
      [Uint8Array.from([...MIGRATION_MAGIC, 1, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]), /frame: a payload of 2147483647 bytes is more than/],
      [(() => { const b = good.slice(); b[good.length - 40] ^= 1; return b; })(), /checksum|META|vcpus|header|devices/],
      [Uint8Array.from([...MIGRATION_MAGIC, ...encodeFrame(FrameType.META, encode({ hello: { memoryBytes: 8192 } })), ...encodeFrame(FrameType.PAGES, encodePages([{ page: 2, bytes: new Uint8Array(4096).fill(1) }]))]), /PAGES: entry 0: page 2 lies outside RAM \(2 pages\)/],
      [Uint8Array.from([...MIGRATION_MAGIC, ...encodeFrame(FrameType.PAGES, encodePages([]))]), /PAGES: pages before the RAM size/],
      [good.subarray(0, good.length - 20), /closed before the end/],
      [Uint8Array.from([...MIGRATION_MAGIC, ...encodeFrame(FrameType.META, encode({ hello: { memoryBytes: 8192 } })), ...encodeFrame(FrameType.END)]), /ended without the VM's state/],
      [Uint8Array.from([...MIGRATION_MAGIC, ...encodeFrame(FrameType.META, encode({ hello: { memoryBytes: -5 } }))]), /memoryBytes -5 is not a RAM size/],
      // The hello's setup is checked when it comes (the destination builds the VM from it), and the end must match it.
      [stream(() => ({ header: 5, memoryMap: {}, drives: [] })), /header/],
      [stream((x) => ({ ...x, extra: 1 })), /setup section, "extra": is not a field/],
      [stream((x) => ({ ...x, drives: [{ path: "/no/such/disk.raw", format: "raw", sizeBytes: 512, readOnly: false, identity: "" }] })), /drives.*\/no\/such\/disk\.raw' is gone/],
      [stream((x) => ({ ...x, header: { ...(x.header as object), memoryBytes: 4096 } })), /header.*memoryBytes/],
    ];
    for (const [bytes, message] of cases) {
      const { error, sent } = await feed(bytes, [5, 100, 7]);
      expect(typed(error), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
      // The source hears it: an ABORT frame with the reason.
      expect(sent?.[0]).toBe(FrameType.ABORT);
    }
  });

  it("refuses a final state that is not the VM the hello announced (name, platform, ROMs, drives, RAM), naming what differs", async () => {
    // The well-formed stream is taken: a VM, and the source hears nothing but the ACK it is told to send.
    const socket = new FakeSocket();
    const taking = migrateIn(socket);
    socket.emit("data", Buffer.from(goodVmStream()));
    const taken = await taking;
    expect(taken.vm.name).toBe("mover");
    expect(taken.vm.plan.roms[0].bytes[0]).toBe(0xf4);
    taken.vm.reader.close();
    expect(socket.sent).toBeNull();
    const dir = mkdtempSync(join(tmpdir(), "hv-mig-hostile-"));
    try {
      // A drive the hello names (the destination would build the VM with it) that the end does not.
      const disk = join(dir, "disk.raw");
      writeFileSync(disk, new Uint8Array(65536));
      const withDisk = (s: ReturnType<typeof savedSetup>) => ({ ...s, drives: [{ path: disk, format: "raw", sizeBytes: 65536, readOnly: false, identity: savedSetup({ name: "d", memoryBytes: 4096, platform: PLATFORM, roms: [], drives: [{ path: disk, format: "raw" }] }).drives[0].identity }] });
      type Vm = Record<string, Record<string, unknown>>;
      const cases: Array<[Parameters<typeof goodVmStream>[0], RegExp]> = [
        [{ end: (vm) => ({ ...vm, header: { ...(vm as Vm).header, name: "impostor" } }) }, /META: the VM's name at the end is not what the hello said/],
        [{ hello: (s) => ({ ...s, header: { ...s.header, boot: { ...(s.header.boot as object), debugcon: true } } }) }, /META: the VM's platform at the end is not what the hello said/],
        [{ end: (vm) => ({ ...vm, memoryMap: { ramBytes: 16 * 4096, roms: [{ gpa: 0xfffff000, bytes: new Uint8Array(4096).fill(0x90) }] } }) }, /META: the VM's ROMs at the end is not what the hello said/],
        [{ end: (vm) => ({ ...vm, memoryMap: { ramBytes: 16 * 4096, roms: [] } }) }, /META: the VM's ROMs at the end is not what the hello said/],
        [{ hello: withDisk }, /META: the VM's drives at the end is not what the hello said/],
        // The RAM size is the hello's: an end that says otherwise is refused by the state's own checks.
        [{ end: (vm) => ({ ...vm, header: { ...(vm as Vm).header, memoryBytes: 32 * 4096 } }) }, /memoryBytes/],
      ];
      for (const [change, message] of cases) {
        const { error, sent } = await feed(goodVmStream(change), [7, 3000, 50_000]);
        expect(typed(error), String(error)).toBe(true);
        expect((error as Error).message).toMatch(message);
        // The source hears why (ABORT, with the reason), and keeps its VM.
        expect(sent?.[0]).toBe(FrameType.ABORT);
        expect(new TextDecoder().decode(sent!.subarray(9))).toMatch(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(`${scaled(300)} mutated streams in random pieces: a typed error or a VM, nothing else thrown`, async () => {
    // The sample's stream (refused at its state's checks) and one a destination takes (mutations reach the VM's checks and the comparison with the hello).
    const goods = [stream(), goodVmStream()];
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 1 }),
        fc.array(fc.record({ at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 12 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (which, flips, cuts, keepShare) => {
          const good = goods[which];
          const bytes = good.slice(0, Math.max(Math.floor(keepShare * good.length), 8));
          for (const f of flips) bytes[Math.floor(f.at * bytes.length)] = f.value;
          const { error, sent } = await feed(bytes, cuts);
          if (error !== null) {
            expect(typed(error), String(error)).toBe(true);
            expect(sent?.[0]).toBe(FrameType.ABORT);
          }
        },
      ),
      { numRuns: scaled(300) },
    );
  });
});
