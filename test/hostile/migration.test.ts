// A migration destination reads its stream as untrusted input: whatever arrives (cut short,
// bit-flipped, forged frames with valid checksums), it ends with a MigrationError or a
// SnapshotError naming the problem, tells the source (ABORT), and throws nothing else.

import { encode } from "@msgpack/msgpack";
import { EventEmitter } from "node:events";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { migrateIn } from "../../bin/migrate.js";
import { FrameType, MIGRATION_MAGIC, MigrationError, encodeFrame, encodePages } from "../../services/migration/stream.js";
import { SnapshotError } from "../../services/snapshot/file.js";
import { sampleContents } from "../../services/snapshot/test-util.js";
import { scaled } from "../support/scale.js";

class FakeSocket extends EventEmitter {
  sent: Uint8Array | null = null;
  end(bytes: Uint8Array): void {
    this.sent = bytes;
  }
}

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
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Feed `bytes` in pieces of the given sizes, then close; what migrateIn did and what it sent back. */
async function feed(bytes: Uint8Array, cuts: number[]): Promise<{ error: unknown; sent: Uint8Array | null }> {
  const socket = new FakeSocket();
  const done = migrateIn(socket).then(
    (vm) => {
      vm.vm.reader.close();
      return null;
    },
    (error: unknown) => error,
  );
  let at = 0;
  for (const n of cuts) {
    if (at >= bytes.length) break;
    socket.emit("data", Buffer.from(bytes.subarray(at, at + n)));
    at += n;
  }
  if (at < bytes.length) socket.emit("data", Buffer.from(bytes.subarray(at)));
  socket.emit("close");
  return { error: await done, sent: socket.sent };
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

  it(`${scaled(300)} mutated streams in random pieces: a typed error or a VM, nothing else thrown`, async () => {
    const good = stream();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.nat({ max: good.length - 1 }), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 12 }),
        fc.nat({ max: good.length }),
        async (flips, cuts, keep) => {
          const bytes = good.slice(0, Math.max(keep, 8));
          for (const f of flips) if (f.at < bytes.length) bytes[f.at] = f.value;
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
