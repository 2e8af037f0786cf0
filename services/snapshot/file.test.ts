// Snapshot files: round trips, zero-page elision, size, lazy reads, atomic writes and refusals.
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PAGE_SIZE, SnapshotError, openSnapshot, writeSnapshot, type SnapshotContents, type SnapshotReader } from "./file.js";
import { assembleSnapshot, fillRandom, fillText, sampleContents, scratchDir, splitSnapshot } from "./test-util.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const p = (name: string) => path.join(dir, name);

const nonZeroPages = (ram: Uint8Array): number[] => {
  const out: number[] = [];
  for (let n = 0; n < ram.length / PAGE_SIZE; n++) if (ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE).some((b) => b !== 0)) out.push(n);
  return out;
};

/** Expects `fn` to throw a SnapshotError about `section` whose field contains `field`. */
function refused(fn: () => unknown, section: string, field?: string): SnapshotError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SnapshotError);
  const err = caught as SnapshotError;
  expect(err.section).toBe(section);
  if (field !== undefined) expect(err.field).toContain(field);
  expect(err.message).toContain(section);
  return err;
}

function expectSameContents(reader: SnapshotReader, contents: SnapshotContents): void {
  expect(reader.header).toEqual(contents.header);
  expect(reader.vcpus).toEqual(contents.vcpus);
  expect(reader.devices).toEqual(contents.devices);
  expect(reader.memoryMap).toEqual(contents.memoryMap);
  expect(reader.drives).toEqual(contents.drives);
  const ram = new Uint8Array(contents.header.memoryBytes).fill(0xee);
  reader.readAll(ram);
  expect(Buffer.compare(ram, contents.ram as Uint8Array)).toBe(0);
}

describe("snapshot file round trips", () => {
  for (const compress of [false, true]) {
    it(`stores everything and reads it back${compress ? " (compressed)" : ""}; zero pages are not stored`, () => {
      const contents = sampleContents();
      const stored = nonZeroPages(contents.ram);
      const result = writeSnapshot(p("vm.snap"), contents, { compress });
      expect(result.pages).toBe(stored.length);
      expect(result.bytes).toBe(fs.statSync(p("vm.snap")).size);
      const reader = openSnapshot(p("vm.snap"));
      try {
        expectSameContents(reader, contents);
        expect(reader.pageCount).toBe(stored.length);
        expect(Array.from(reader.storedPages())).toEqual([...stored].sort((a, b) => a - b));
        const page = new Uint8Array(PAGE_SIZE);
        for (let n = 0; n < contents.header.memoryBytes / PAGE_SIZE; n++) {
          expect(reader.hasPage(n)).toBe(stored.includes(n));
          page.fill(0xaa);
          reader.readPage(n, page);
          expect(Buffer.compare(page, contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE))).toBe(0);
        }
        reader.verify();
        expect(reader.sections.map((s) => s.name)).toEqual(["header", "vcpus", "devices", "memoryMap", "drives", "ram", "ramIndex"]);
        const ram = reader.sections.find((s) => s.name === "ram")!;
        expect(ram.decodedBytes).toBe(stored.length * PAGE_SIZE);
        expect(ram.compressed).toBe(compress);
        if (compress) expect(ram.bytes).toBeLessThan(ram.decodedBytes);
        else expect(ram.bytes).toBe(ram.decodedBytes);
      } finally {
        reader.close();
      }
    });
  }

  it("random page patterns round trip, compressed or not, through readPage and readAll", () => {
    const pageKind = fc.oneof(
      fc.constant({ kind: "zero" as const }),
      fc.record({ kind: fc.constant("random" as const), seed: fc.integer({ min: 1, max: 1e9 }) }),
      fc.record({ kind: fc.constant("text" as const), seed: fc.integer({ min: 1, max: 1e9 }) }),
      fc.record({ kind: fc.constant("byte" as const), at: fc.integer({ min: 0, max: PAGE_SIZE - 1 }), value: fc.integer({ min: 1, max: 255 }) }),
    );
    let n = 0;
    fc.assert(
      fc.property(fc.array(pageKind, { minLength: 1, maxLength: 70 }), fc.boolean(), fc.integer({ min: 0, max: 3 }), (kinds, compress, order) => {
        const contents = sampleContents(kinds.length);
        contents.memoryMap.roms = [];
        contents.ram.fill(0);
        kinds.forEach((k, i) => {
          const page = contents.ram.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
          if (k.kind === "random") fillRandom(page, k.seed);
          else if (k.kind === "text") fillText(page, k.seed);
          else if (k.kind === "byte") page[k.at] = k.value;
        });
        const file = p(`r${n++ % 3}.snap`);
        writeSnapshot(file, contents, { compress });
        const reader = openSnapshot(file);
        try {
          expect(reader.pageCount).toBe(kinds.filter((k) => k.kind !== "zero").length);
          // lazy reads in some order: forward, backward, strided
          const pages = kinds.map((_, i) => i);
          const visit = order === 1 ? pages.reverse() : order === 2 ? pages.sort((a, b) => (a * 7) % 11 - (b * 7) % 11) : pages;
          const page = new Uint8Array(PAGE_SIZE);
          for (const i of visit) {
            reader.readPage(i, page);
            expect(Buffer.compare(page, contents.ram.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE))).toBe(0);
          }
          expectSameContents(reader, contents);
        } finally {
          reader.close();
        }
      }),
      { numRuns: 150 },
    );
  });

  it("an all-zero RAM stores no pages; a full RAM stores all", () => {
    const contents = sampleContents(40);
    contents.ram.fill(0);
    expect(writeSnapshot(p("zero.snap"), contents, { compress: true }).pages).toBe(0);
    const zero = openSnapshot(p("zero.snap"));
    expect(zero.pageCount).toBe(0);
    expectSameContents(zero, contents);
    zero.close();
    fillRandom(contents.ram, 3);
    expect(writeSnapshot(p("full.snap"), contents).pages).toBe(40);
    const full = openSnapshot(p("full.snap"));
    expectSameContents(full, contents);
    full.close();
  });

  it("the file is at most 1.05 x the non-zero page bytes (uncompressed, and compressed on random data)", () => {
    const pages = 2048; // 8 MiB
    const contents = sampleContents(pages);
    contents.memoryMap.roms = [];
    fillRandom(contents.ram, 11);
    for (let n = 0; n < pages; n += 10) contents.ram.fill(0, n * PAGE_SIZE, (n + 1) * PAGE_SIZE);
    const nonZeroBytes = nonZeroPages(contents.ram).length * PAGE_SIZE;
    for (const compress of [false, true]) {
      const { bytes } = writeSnapshot(p("size.snap"), contents, { compress });
      expect(bytes).toBeLessThanOrEqual(1.05 * nonZeroBytes + 4096);
    }
  });

  it("compression shrinks text-like RAM", () => {
    const contents = sampleContents(256);
    for (let n = 0; n < 256; n++) fillText(contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE), n + 1);
    const plain = writeSnapshot(p("plain.snap"), contents).bytes;
    const packed = writeSnapshot(p("packed.snap"), contents, { compress: true }).bytes;
    expect(packed).toBeLessThan(plain / 2);
    const reader = openSnapshot(p("packed.snap"));
    expectSameContents(reader, contents);
    reader.close();
  });
});

describe("lazy reads", () => {
  /** Overwrites one byte of the stored page data of the chunk holding stored page `i`. */
  function corruptChunkOf(file: string, storedIndex: number): void {
    const bytes = new Uint8Array(fs.readFileSync(file));
    const ram = splitSnapshot(bytes).entries.find((e) => e.name === "ram")!;
    const at = ram.offset + Math.floor(storedIndex / 16) * 16 * PAGE_SIZE + 100;
    bytes[at]! ^= 0x40;
    fs.writeFileSync(file, bytes);
  }

  it("open does not read the pages: a corrupt chunk is found when one of its pages is read, and named", () => {
    const contents = sampleContents(200);
    writeSnapshot(p("vm.snap"), contents);
    const stored = nonZeroPages(contents.ram);
    corruptChunkOf(p("vm.snap"), 20); // the second chunk: stored pages 16..31
    const reader = openSnapshot(p("vm.snap"));
    const page = new Uint8Array(PAGE_SIZE);
    reader.readPage(stored[0]!, page); // first chunk: fine
    expect(Buffer.compare(page, contents.ram.subarray(stored[0]! * PAGE_SIZE, (stored[0]! + 1) * PAGE_SIZE))).toBe(0);
    reader.readPage(stored[40]!, page); // third chunk: fine
    const err = refused(() => reader.readPage(stored[17]!, page), "ram", `page ${stored[17]} (chunk 1)`);
    expect(err.message).toContain("checksum");
    expect(err.message).toContain(p("vm.snap"));
    refused(() => reader.verify(), "ram", "chunk 1");
    refused(() => reader.readAll(new Uint8Array(contents.header.memoryBytes)), "ram", "chunk 1");
    reader.close();
  });

  it("pages of chunks read before read right when the reads hop between chunks; a corrupt chunk stays refused", () => {
    const contents = sampleContents(200);
    for (let n = 0; n < 200; n++) fillRandom(contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE), n + 1);
    writeSnapshot(p("vm.snap"), contents);
    corruptChunkOf(p("vm.snap"), 40); // the third chunk: stored pages 32..47
    const reader = openSnapshot(p("vm.snap"));
    const page = new Uint8Array(PAGE_SIZE);
    // Every page of chunks 0, 1 and 3, hopping: each chunk is left and come back to 15 times.
    for (let j = 0; j < 16; j++) {
      for (const k of [0, 1, 3]) {
        const n = k * 16 + ((j * 5) % 16);
        page.fill(0xaa);
        reader.readPage(n, page);
        expect(Buffer.compare(page, contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE))).toBe(0);
      }
      refused(() => reader.readPage(32 + j, page), "ram", `page ${32 + j} (chunk 2)`);
    }
    reader.close();
  });

  it("readPages reads what readPage reads, in runs across chunks, zero pages and a corrupt chunk (which stays refused)", () => {
    const contents = sampleContents(200);
    for (let n = 0; n < 200; n++) if (n % 7 !== 3) fillRandom(contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE), n + 1);
    else contents.ram.fill(0, n * PAGE_SIZE, (n + 1) * PAGE_SIZE);
    writeSnapshot(p("vm.snap"), contents);
    const stored = nonZeroPages(contents.ram);
    corruptChunkOf(p("vm.snap"), 40); // the third chunk: stored pages 32..47, pages 37..55
    expect([stored[32], stored[47]]).toEqual([37, 55]);
    const reader = openSnapshot(p("vm.snap"));
    // Each run twice: the second time its chunks are checked, and their pages come in vectored reads.
    for (const [first, count] of [[0, 9], [10, 27], [0, 9], [10, 27], [60, 40], [60, 40], [190, 10], [190, 10]]) {
      const into = Array.from({ length: count }, () => new Uint8Array(PAGE_SIZE).fill(0xaa));
      reader.readPages(first, into);
      into.forEach((b, i) => expect(Buffer.compare(b, contents.ram.subarray((first + i) * PAGE_SIZE, (first + i + 1) * PAGE_SIZE)), `page ${first + i}`).toBe(0));
    }
    const into = Array.from({ length: 8 }, () => new Uint8Array(PAGE_SIZE));
    refused(() => reader.readPages(33, into), "ram", "(chunk 2)");
    refused(() => reader.readPages(33, into), "ram", "(chunk 2)");
    expect(() => reader.readPages(198, [new Uint8Array(PAGE_SIZE), new Uint8Array(PAGE_SIZE), new Uint8Array(PAGE_SIZE)])).toThrow(RangeError);
    reader.close();
  });

  it("readPages of a file cut short after its chunks were checked is a typed error naming ram and the pages", () => {
    const contents = sampleContents(200);
    for (let n = 0; n < 200; n++) fillRandom(contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE), n + 1);
    writeSnapshot(p("vm.snap"), contents);
    const reader = openSnapshot(p("vm.snap"));
    const into = Array.from({ length: 8 }, () => new Uint8Array(PAGE_SIZE));
    reader.readPages(180, into);
    reader.readPages(0, into); // chunk 11 (pages 176..191) checked and no longer the cached one
    const ram = splitSnapshot(new Uint8Array(fs.readFileSync(p("vm.snap")))).entries.find((e) => e.name === "ram")!;
    fs.truncateSync(p("vm.snap"), ram.offset + 184 * PAGE_SIZE);
    const err = refused(() => reader.readPages(180, into), "ram", "pages 180..187 (chunk 11)");
    expect(err.message).toMatch(/end of the file|ends early/);
    reader.close();
  });

  it("a compressed chunk is checked before it is decompressed", () => {
    const contents = sampleContents(200);
    for (let n = 0; n < 200; n++) fillText(contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE), n + 1);
    writeSnapshot(p("vm.snap"), contents, { compress: true });
    const bytes = new Uint8Array(fs.readFileSync(p("vm.snap")));
    const ram = splitSnapshot(bytes).entries.find((e) => e.name === "ram")!;
    bytes[ram.offset + 10]! ^= 1;
    fs.writeFileSync(p("vm.snap"), bytes);
    const reader = openSnapshot(p("vm.snap"));
    const page = new Uint8Array(PAGE_SIZE);
    refused(() => reader.readPage(0, page), "ram", "page 0 (chunk 0)");
    reader.readPage(199, page);
    expect(Buffer.compare(page, contents.ram.subarray(199 * PAGE_SIZE))).toBe(0);
    reader.close();
  });

  it("readPage and hasPage refuse page numbers outside RAM and short buffers (caller errors)", () => {
    writeSnapshot(p("vm.snap"), sampleContents(8));
    const reader = openSnapshot(p("vm.snap"));
    expect(() => reader.readPage(8, new Uint8Array(PAGE_SIZE))).toThrow(RangeError);
    expect(() => reader.readPage(-1, new Uint8Array(PAGE_SIZE))).toThrow(RangeError);
    expect(() => reader.readPage(1.5, new Uint8Array(PAGE_SIZE))).toThrow(RangeError);
    expect(() => reader.readPage(1, new Uint8Array(100))).toThrow(RangeError);
    expect(() => reader.hasPage(99)).toThrow(RangeError);
    expect(() => reader.readAll(new Uint8Array(PAGE_SIZE))).toThrow(RangeError);
    reader.close();
    expect(() => reader.readPage(1, new Uint8Array(PAGE_SIZE))).toThrow(/closed/);
  });
});

describe("writing", () => {
  it("replaces the target only when complete; a failed save leaves the old file and no temporary", () => {
    const contents = sampleContents(64);
    writeSnapshot(p("vm.snap"), contents);
    const before = fs.readFileSync(p("vm.snap"));
    const other = sampleContents(64, 99);
    class Cancelled extends Error {}
    expect(() =>
      writeSnapshot(p("vm.snap"), other, {
        onProgress: () => {
          throw new Cancelled("cancelled");
        },
      }),
    ).toThrow(Cancelled);
    expect(Buffer.compare(fs.readFileSync(p("vm.snap")), before)).toBe(0);
    expect(fs.readdirSync(dir)).toEqual(["vm.snap"]);
    writeSnapshot(p("vm.snap"), other);
    expect(Buffer.compare(fs.readFileSync(p("vm.snap")), before)).not.toBe(0);
    expect(fs.readdirSync(dir)).toEqual(["vm.snap"]);
  });

  it("the file is readable by its owner only, and progress runs to the total", () => {
    const calls: [number, number][] = [];
    writeSnapshot(p("vm.snap"), sampleContents(9000), { onProgress: (d, t) => calls.push([d, t]) });
    expect(fs.statSync(p("vm.snap")).mode & 0o777).toBe(0o600);
    expect(calls.at(-1)).toEqual([9000, 9000]);
    expect(calls.every(([d], i) => i === 0 || d >= calls[i - 1]![0])).toBe(true);
  });

  it("refuses contents the reader would refuse, before creating any file", () => {
    const bad = (edit: (c: SnapshotContents) => void, section: string, field?: string) => {
      const contents = sampleContents(8);
      edit(contents);
      refused(() => writeSnapshot(p("bad.snap"), contents), section, field);
      expect(fs.readdirSync(dir)).toEqual([]);
    };
    bad((c) => (c.ram = new Uint8Array(PAGE_SIZE)), "ram");
    bad((c) => (c.header.memoryBytes = 5000), "header", "memoryBytes");
    bad((c) => (c.header.vmTimeNs = Number.NaN), "header", "vmTimeNs");
    bad((c) => (c.header.vcpuCount = 3), "vcpus", "length");
    bad((c) => (c.vcpus[0] = { when: new Date() }), "vcpus", "msgpack");
    bad((c) => (c.memoryMap.roms[1]!.gpa = 0xfffe1000), "memoryMap", "roms[1].gpa");
    bad((c) => (c.drives[0]!.sizeBytes = -1), "drives", "[0].sizeBytes");
    bad((c) => ((c.header as unknown as Record<string, unknown>).extra = 1), "header", "extra");
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    bad((c) => (c.devices.deep = deep), "devices", "msgpack");
  });

  it("a missing folder is a SnapshotError about the file", () => {
    refused(() => writeSnapshot(path.join(dir, "no", "such", "vm.snap"), sampleContents(4)), "file", "path");
  });
});

describe("opening refuses bad files with the section and field", () => {
  it("no file, not a snapshot, empty, truncated, trailing bytes, another version", () => {
    refused(() => openSnapshot(p("missing.snap")), "file", "path");
    fs.writeFileSync(p("text.snap"), "hello world, this is not a snapshot at all");
    refused(() => openSnapshot(p("text.snap")), "file", "magic");
    fs.writeFileSync(p("empty.snap"), "");
    refused(() => openSnapshot(p("empty.snap")), "file", "magic");
    writeSnapshot(p("vm.snap"), sampleContents());
    const good = new Uint8Array(fs.readFileSync(p("vm.snap")));
    fs.writeFileSync(p("short.snap"), good.subarray(0, good.length - 1));
    refused(() => openSnapshot(p("short.snap")), "file", "size");
    fs.writeFileSync(p("preamble.snap"), good.subarray(0, 20));
    refused(() => openSnapshot(p("preamble.snap")), "file", "size");
    fs.writeFileSync(p("long.snap"), Buffer.concat([good, Buffer.from([0])]));
    refused(() => openSnapshot(p("long.snap")), "file", "size");
    fs.writeFileSync(p("v2.snap"), assembleSnapshot(splitSnapshot(good), { version: 2 }));
    expect(refused(() => openSnapshot(p("v2.snap")), "file", "formatVersion").message).toContain("version 2 is not supported");
    fs.writeFileSync(p("same.snap"), assembleSnapshot(splitSnapshot(good)));
    openSnapshot(p("same.snap")).close();
  });
});
