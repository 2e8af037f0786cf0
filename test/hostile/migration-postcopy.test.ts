// Post-copy's records are untrusted input too: a destination fed mutated streams that end in a
// post-copy switch, or mutated pages after it, ends with a typed error (and tells the source), or
// takes the VM, or every remote page exactly once; a source fed mutated page requests refuses them
// with a typed error. Nothing else is thrown.

import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { migrateIn, receiveMigration, type PostcopyLink } from "../../bin/migrate.js";
import { platformConfig, savedSetup, type SavedPlatform } from "../../bin/snapshot.js";
import { VcpuState } from "../../kernel/index.js";
import { PageState, PostcopyReceiver, RemotePages, decodeRequest, encodeRemote, encodeRequest } from "../../services/migration/postcopy.js";
import { FrameType, MIGRATION_MAGIC, MigrationError, encodeFrame, encodePages } from "../../services/migration/stream.js";
import { SnapshotError } from "../../services/snapshot/file.js";
import { vcpuRecord } from "../../vmm/vcpu-record.js";
import { freshDeviceRecords } from "../../vmm/vmm.js";
import { FakeSocket, feed } from "../support/fake-socket.js";
import { scaled } from "../support/scale.js";

const PLATFORM: SavedPlatform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };
const PAGES = 16;
/** Pages 3, 4, 9 and 15 stay at the source. */
const REMOTE = Uint8Array.from([0b0001_1000, 0b1000_0010]);

const join = (parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

/** A stream a post-copy destination takes: the VM's hello, some pages, its state, and the switch. */
function switchStream(): Uint8Array {
  const memoryBytes = PAGES * 4096;
  const request = { name: "mover", memoryBytes, platform: PLATFORM, roms: [{ gpa: 0xfffff000, bytes: new Uint8Array(4096).fill(0xf4) }], drives: [] };
  const config = { memoryBytes, plan: { writes: [], roms: [], state: new VcpuState(), memoryMap: [] }, ...platformConfig(PLATFORM) };
  const vm = { ...savedSetup(request, 5_000_000), vcpus: [{ registers: vcpuRecord(new VcpuState()), halted: false, ignneChanged: false }], devices: freshDeviceRecords(config) };
  const pages = Array.from({ length: 8 }, (_, page) => ({ page, bytes: new Uint8Array(4096).fill(page + 1) }));
  return join([
    MIGRATION_MAGIC,
    encodeFrame(FrameType.META, encode({ hello: { memoryBytes, name: "mover", setup: savedSetup(request) } })),
    encodeFrame(FrameType.PAGES, encodePages(pages)),
    encodeFrame(FrameType.META, encode({ vm })),
    encodeFrame(FrameType.POSTCOPY, encodeRemote(REMOTE)),
  ]);
}

/** What comes after the switch: the remote pages in two frames (one a zero page), and END. */
function afterSwitch(): Uint8Array {
  return join([
    encodeFrame(FrameType.PAGES, encodePages([{ page: 3, bytes: new Uint8Array(4096).fill(3) }, { page: 9, bytes: null }])),
    encodeFrame(FrameType.PAGES, encodePages([{ page: 4, bytes: new Uint8Array(4096).fill(4) }, { page: 15, bytes: new Uint8Array(4096).fill(15) }])),
    encodeFrame(FrameType.END),
  ]);
}

const typed = (e: unknown) => e instanceof MigrationError || e instanceof SnapshotError;
const mutation = fc.array(fc.record({ at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 6 });

describe("a post-copy destination under attack", () => {
  it("takes a good switch (the worker gets the checked bitmap), and refuses one where it cannot take post-copy", async () => {
    let given: Uint8Array | null = null;
    const socket = new FakeSocket();
    const vm = receiveMigration(socket, { postcopy: (remote) => ((given = remote), { table: RemotePages.create(remote, PAGES) } as PostcopyLink) }).vm;
    socket.emitInPieces(switchStream(), [100, 5000]);
    const incoming = await vm;
    expect(incoming.postcopy).not.toBeNull();
    expect(given).toEqual(REMOTE);
    incoming.vm.reader.close();
    // No post-copy here (a fleet, a test destination): refused before the VM runs; the source keeps it.
    const plain = new FakeSocket();
    const refused = migrateIn(plain).catch((e: unknown) => e);
    plain.emitInPieces(switchStream(), []);
    const error = await refused;
    expect(error).toBeInstanceOf(MigrationError);
    expect(String(error)).toMatch(/POSTCOPY: this destination cannot take a post-copy migration/);
    expect(plain.sent?.[0]).toBe(FrameType.ABORT);
  });

  it(`${scaled(300)} mutated switch streams in random pieces: a typed error (ABORT to the source) or the VM with a bitmap of its RAM, nothing else thrown`, async () => {
    const good = switchStream();
    await fc.assert(
      fc.asyncProperty(mutation, fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 12 }), async (flips, cuts) => {
        const bytes = good.slice();
        for (const f of flips) bytes[Math.floor(f.at * bytes.length)] = f.value;
        let bitmap: Uint8Array | null = null;
        const { error, sent } = await feed(bytes, cuts, { postcopy: (remote, pages) => ((bitmap = remote), { table: RemotePages.create(remote, pages) } as PostcopyLink) });
        if (error !== null) {
          expect(typed(error), String(error)).toBe(true);
          expect(sent?.[0]).toBe(FrameType.ABORT);
        } else expect((bitmap as Uint8Array | null)?.length).toBe(PAGES / 8);
      }),
      { numRuns: scaled(300) },
    );
  });

  it(`${scaled(500)} mutated page streams after the switch: a typed error, or every remote page exactly once and nothing else`, () => {
    const good = afterSwitch();
    fc.assert(
      fc.property(mutation, fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 12 }), fc.boolean(), (flips, cuts, twice) => {
        // Whole, or with its pages sent again (each must be refused).
        const bytes = twice ? join([good.subarray(0, good.length - 9), good]) : good.slice();
        for (const f of flips) bytes[Math.floor(f.at * bytes.length)] = f.value;
        const table = RemotePages.create(REMOTE, PAGES);
        const receiver = new PostcopyReceiver(table);
        let complete = false;
        try {
          let at = 0;
          for (const cut of [...cuts, bytes.length]) {
            const end = Math.min(bytes.length, at + cut);
            complete = receiver.push(bytes.subarray(at, end)) || complete;
            at = end;
            if (at >= bytes.length) break;
          }
        } catch (error) {
          expect(error, String(error)).toBeInstanceOf(MigrationError);
          return;
        }
        if (complete) {
          expect(table.remaining).toBe(0);
          for (const p of [3, 4, 9, 15]) expect(table.state(p)).toBe(PageState.ARRIVED);
        }
        // Never more pages than were remote, none that was not.
        expect(table.arrived).toBeLessThanOrEqual(4);
        for (let p = 0; p < PAGES; p++) if (![3, 4, 9, 15].includes(p)) expect(table.state(p)).toBe(PageState.LOCAL);
      }),
      { numRuns: scaled(500) },
    );
  });

  it(`${scaled(500)} mutated page requests at the source: a typed error, or pages inside RAM`, () => {
    const good = encodeRequest([0, 3, 15]);
    fc.assert(
      fc.property(mutation, fc.nat({ max: 20 }), (flips, length) => {
        const bytes = new Uint8Array(length);
        bytes.set(good.subarray(0, Math.min(length, good.length)));
        for (const f of flips) if (bytes.length > 0) bytes[Math.floor(f.at * bytes.length)] = f.value;
        try {
          for (const p of decodeRequest(bytes, PAGES)) expect(p).toBeLessThan(PAGES);
        } catch (error) {
          expect(error, String(error)).toBeInstanceOf(MigrationError);
        }
      }),
      { numRuns: scaled(500) },
    );
  });
});
