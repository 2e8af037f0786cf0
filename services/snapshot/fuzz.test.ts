// Hostile snapshot files. Byte-level mutations (bit flips, overwrites, length fields, truncation,
// inserted and removed bytes) and structure-level attacks re-encoded with valid checksums (huge
// counts, negative numbers, NaN, strings for numbers, pages outside RAM, nested huge arrays...):
// every case either opens and reads back cleanly or throws a SnapshotError. Never another
// exception type, never a hang (the test timeout), never a large allocation (checked per case).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAGE_SIZE, SnapshotError, openSnapshot, writeSnapshot, type SnapshotContents } from "./file.js";
import { type SectionName, SECTION_LIMITS } from "./layout.js";
import { assembleSnapshot, fillText, sampleContents, scratchDir, sectionValue, splitSnapshot, withSection, type AssembleOptions, type SnapshotParts } from "./test-util.js";
import { scaled } from "../../test/support/scale.js";

const RUNS = scaled(3000);
const STRUCTURE_RUNS = scaled(1500);
/** No case may leave more than this in ArrayBuffers (the seeds are a few hundred KiB). */
const ALLOCATION_LIMIT = 128 * 1024 * 1024;

interface Seed {
  name: string;
  contents: SnapshotContents;
  bytes: Uint8Array;
  /** Offsets worth aiming at: preamble fields, section starts, every byte of the table. */
  hotspots: number[];
}

let dir: string;
const seeds: Seed[] = [];
let baselineBuffers = 0;

function makeSeed(name: string, contents: SnapshotContents, compress: boolean): Seed {
  const file = path.join(dir, `${name}.snap`);
  writeSnapshot(file, contents, { compress });
  const bytes = new Uint8Array(fs.readFileSync(file));
  const { entries } = splitSnapshot(bytes);
  const tableOffset = Number(new DataView(bytes.buffer).getBigUint64(16, true));
  const hotspots = [0, 8, 12, 16, 24, 28];
  for (const e of entries) hotspots.push(e.offset, e.offset + 1, e.offset + 8, e.offset + e.bytes - 1);
  for (let at = tableOffset; at < bytes.length; at++) hotspots.push(at);
  return { name, contents, bytes, hotspots };
}

beforeAll(() => {
  dir = scratchDir("hv-snap-fuzz-");
  const plain = sampleContents(45, 1);
  const text = sampleContents(70, 2);
  for (let n = 0; n < 70; n += 2) fillText(text.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE), n + 1);
  seeds.push(makeSeed("plain", plain, false), makeSeed("compressed", text, true), makeSeed("plain-text", text, false));
  baselineBuffers = process.memoryUsage().arrayBuffers;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Outcome = "refused at open" | "refused at read" | "clean";

/**
 * Opens `bytes` as a snapshot and reads all of it. With `original`, a file that opens must be that
 * snapshot exactly (every byte of a file is under a checksum); without, it only must not throw
 * anything but SnapshotError.
 */
function exercise(bytes: Uint8Array, original?: SnapshotContents): { outcome: Outcome; error?: SnapshotError } {
  const file = path.join(dir, "case.snap");
  fs.writeFileSync(file, bytes);
  let reader;
  try {
    reader = openSnapshot(file);
  } catch (err) {
    if (!(err instanceof SnapshotError)) throw err;
    return { outcome: "refused at open", error: err };
  }
  try {
    if (original) {
      expect(reader.header).toEqual(original.header);
      expect(reader.vcpus).toEqual(original.vcpus);
      expect(reader.devices).toEqual(original.devices);
      expect(reader.memoryMap).toEqual(original.memoryMap);
      expect(reader.drives).toEqual(original.drives);
    }
    const memoryBytes = reader.header.memoryBytes;
    const page = new Uint8Array(PAGE_SIZE);
    try {
      for (const n of [0, 1, memoryBytes / PAGE_SIZE - 1]) if (n < memoryBytes / PAGE_SIZE) reader.readPage(n, page);
      // Runs of pages too, twice: the second time from chunks checked already (one vectored read).
      const run = Array.from({ length: Math.min(8, memoryBytes / PAGE_SIZE) }, () => new Uint8Array(PAGE_SIZE));
      for (let k = 0; k < 2; k++) {
        reader.readPages(0, run);
        if (original) run.forEach((b, i) => expect(Buffer.compare(b, (original.ram as Uint8Array).subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE))).toBe(0));
      }
      if (memoryBytes <= 16 * 1024 * 1024) {
        const ram = new Uint8Array(memoryBytes);
        reader.readAll(ram);
        if (original) expect(Buffer.compare(ram, original.ram as Uint8Array)).toBe(0);
      } else reader.verify();
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
      expect(err.section).toBe("ram");
      return { outcome: "refused at read", error: err };
    }
    return { outcome: "clean" };
  } finally {
    reader.close();
    expect(process.memoryUsage().arrayBuffers - baselineBuffers).toBeLessThan(ALLOCATION_LIMIT);
  }
}

// ---- byte-level mutations ----

type Position = { hotspot: number; delta: number } | { anywhere: number };
type Mutation =
  | { kind: "flip"; at: Position; bit: number }
  | { kind: "byte"; at: Position; value: number }
  | { kind: "word"; at: Position; value: number; width: 1 | 2 | 4 | 8 }
  | { kind: "truncate"; keep: number }
  | { kind: "insert"; at: Position; bytes: Uint8Array }
  | { kind: "remove"; at: Position; count: number }
  | { kind: "append"; bytes: Uint8Array };

const INTERESTING = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff, 2 ** 40, 2 ** 53 - 1];
const position: fc.Arbitrary<Position> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ hotspot: fc.nat(), delta: fc.integer({ min: -4, max: 24 }) }) },
  { weight: 2, arbitrary: fc.record({ anywhere: fc.nat() }) },
);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("flip" as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("byte" as const), at: position, value: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("word" as const), at: position, value: fc.constantFrom(...INTERESTING), width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("insert" as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("remove" as const), at: position, count: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
);

function mutate(seed: Seed, mutations: readonly Mutation[]): Uint8Array {
  let out = seed.bytes.slice();
  const resolve = (p: Position): number => {
    const at = "anywhere" in p ? p.anywhere : seed.hotspots[p.hotspot % seed.hotspots.length]! + p.delta;
    return ((at % out.length) + out.length) % out.length;
  };
  for (const m of mutations) {
    if (out.length === 0) break;
    if (m.kind === "flip") out[resolve(m.at)]! ^= 1 << m.bit;
    else if (m.kind === "byte") out[resolve(m.at)] = m.value;
    else if (m.kind === "word") {
      const at = resolve(m.at);
      for (let k = 0; k < m.width && at + k < out.length; k++) out[at + k] = Math.floor(m.value / 2 ** (8 * k)) & 0xff;
    } else if (m.kind === "truncate") out = out.slice(0, m.keep % out.length);
    else if (m.kind === "insert") {
      const at = resolve(m.at);
      out = Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
    } else if (m.kind === "remove") {
      const at = resolve(m.at);
      out = Buffer.concat([out.subarray(0, at), out.subarray(at + m.count)]);
    } else out = Buffer.concat([out, m.bytes]);
  }
  return out;
}

describe("snapshot fuzz", () => {
  it(`${RUNS} byte-level mutations: refused with a SnapshotError, or read back exactly as saved`, () => {
    const outcomes: Record<Outcome, number> = { "refused at open": 0, "refused at read": 0, clean: 0 };
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (pick, mutations) => {
        const seed = seeds[pick % seeds.length]!;
        outcomes[exercise(mutate(seed, mutations), seed.contents).outcome]++;
      }),
      { numRuns: RUNS, seed: 0x5eed },
    );
    // the mix shows the cases reach past the first check
    expect(outcomes["refused at open"]).toBeGreaterThan(RUNS / 2);
    expect(outcomes["refused at read"]).toBeGreaterThan(RUNS / 50);
  });

  it(`${STRUCTURE_RUNS} structure-level attacks with valid checksums: refused with a SnapshotError or read cleanly`, () => {
    const sections = new Map<string, number>();
    fc.assert(
      fc.property(fc.nat(), attack, fc.boolean(), (pick, a, compress) => {
        const seed = seeds[pick % seeds.length]!;
        const bytes = applyAttack(splitSnapshot(seed.bytes), a, compress);
        const { error } = exercise(bytes);
        if (error) sections.set(error.section, (sections.get(error.section) ?? 0) + 1);
      }),
      { numRuns: STRUCTURE_RUNS, seed: 0xa77ac4 },
    );
    // every part of the file was reached by some attack and refused for its own reason
    for (const s of ["file", "table", "header", "vcpus", "devices", "memoryMap", "drives", "ramIndex"]) expect(sections.get(s) ?? 0, s).toBeGreaterThan(0);
  });
});

// ---- structure-level attacks ----

const nested = (depth: number): unknown => (depth === 0 ? 0 : [nested(depth - 1)]);
const HOSTILE_VALUES: unknown[] = [
  -1, 0, 1, -4096, 4095, 4097, 2 ** 31, 2 ** 32, 2 ** 32 - 4096, 2 ** 40, 2 ** 53, 2 ** 64, 1e300, -1e300, 0.5,
  Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, "", "x", "4096", "x".repeat(5000), null, true, false,
  [], {}, new Uint8Array(0), new Uint8Array(5), new Uint8Array(70_000), new Array(3000).fill(0), nested(40), nested(20),
  { a: 1 }, { "": 1 }, [[[]]], new Array(300).fill({ gpa: 0, bytes: new Uint8Array(1) }),
];

/** Raw payloads no encoder would make: huge claimed counts, deep nesting, ext types, bad keys. */
const HOSTILE_PAYLOADS: Uint8Array[] = [
  new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]),
  new Uint8Array([0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 0x61]),
  new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x41]),
  new Uint8Array([0xc6, 0xff, 0xff, 0xff, 0xff]),
  (() => {
    const deep = new Uint8Array(200_000).fill(0x91);
    deep[deep.length - 1] = 0xc0;
    return deep;
  })(),
  encode(new Date(0)),
  new Uint8Array([0xc7, 0x01, 0x05, 0x00]),
  new Uint8Array([0x81, 0x01, 0x02]),
  new Uint8Array([0x81, 0xa9, ...Buffer.from("__proto__"), 0x81, 0xa1, 0x61, 0x01]),
  new Uint8Array([0x80, 0x80]),
  new Uint8Array([0xc1]),
  new Uint8Array([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]), // NaN as the whole section
  new Uint8Array([0xd9, 0x02, 0xff, 0xfe]), // invalid UTF-8
];

type Target = Exclude<SectionName, "ram">;
const TARGETS: Target[] = ["header", "vcpus", "devices", "memoryMap", "drives", "ramIndex"];
type Attack =
  | { kind: "replace"; section: Target; path: number[]; value: number }
  | { kind: "drop"; section: Target; path: number[] }
  | { kind: "add"; section: Target; path: number[]; value: number }
  | { kind: "table"; row: number; field: number; value: number }
  | { kind: "payload"; section: Target; payload: number }
  | { kind: "random"; section: Target; bytes: Uint8Array }
  | { kind: "preamble"; field: number; value: number };

const choices = fc.array(fc.nat(), { minLength: 0, maxLength: 5 });
const target = fc.constantFrom(...TARGETS);
const hostile = fc.nat({ max: HOSTILE_VALUES.length - 1 });
const attack: fc.Arbitrary<Attack> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("replace" as const), section: target, path: choices, value: hostile }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop" as const), section: target, path: choices }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("add" as const), section: target, path: choices, value: hostile }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("table" as const), row: fc.nat({ max: 7 }), field: fc.nat({ max: 6 }), value: hostile }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("payload" as const), section: target, payload: fc.nat({ max: HOSTILE_PAYLOADS.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("random" as const), section: target, bytes: fc.uint8Array({ minLength: 0, maxLength: 200 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("preamble" as const), field: fc.nat({ max: 3 }), value: fc.constantFrom(...INTERESTING) }) },
);

/** Follows `path` into `root` (picking children by index modulo their count); returns the container and key reached. */
function walk(root: { value: unknown }, path: readonly number[]): { holder: Record<string | number, unknown>; key: string | number } {
  let holder = root as unknown as Record<string | number, unknown>;
  let key: string | number = "value";
  for (const step of path) {
    const node: unknown = holder[key];
    if (Array.isArray(node) && node.length > 0) [holder, key] = [node as unknown as Record<number, unknown>, step % node.length];
    else if (typeof node === "object" && node !== null && !(node instanceof Uint8Array) && Object.keys(node).length > 0) {
      const keys = Object.keys(node);
      [holder, key] = [node as Record<string, unknown>, keys[step % keys.length]!];
    } else break;
  }
  return { holder, key };
}

function applyAttack(parts: SnapshotParts, a: Attack, compress: boolean): Uint8Array {
  const options: AssembleOptions = { compress };
  if (a.kind === "replace" || a.kind === "drop" || a.kind === "add") {
    const root = { value: decode(parts.payloads[a.section]) };
    const { holder, key } = walk(root, a.path);
    if (a.kind === "replace") holder[key] = HOSTILE_VALUES[a.value];
    else if (a.kind === "drop") delete holder[key];
    else {
      const node = holder[key];
      if (Array.isArray(node)) node.push(HOSTILE_VALUES[a.value]);
      else if (typeof node === "object" && node !== null && !(node instanceof Uint8Array)) (node as Record<string, unknown>).extra = HOSTILE_VALUES[a.value];
      else holder[key] = [node, HOSTILE_VALUES[a.value]];
    }
    return assembleSnapshot(withSection(parts, a.section, root.value ?? null), options);
  }
  if (a.kind === "payload") return assembleSnapshot(withSection(parts, a.section, HOSTILE_PAYLOADS[a.payload], true), options);
  if (a.kind === "random") return assembleSnapshot(withSection(parts, a.section, a.bytes, true), options);
  if (a.kind === "table") {
    const fields = ["name", "offset", "bytes", "decodedBytes", "compression", "crc32", "extra"];
    return assembleSnapshot(parts, {
      ...options,
      table: (rows) => {
        if (a.row >= rows.length) return [...rows, { ...rows[0], [fields[a.field]!]: HOSTILE_VALUES[a.value] }];
        rows[a.row]![fields[a.field]!] = HOSTILE_VALUES[a.value];
        return rows;
      },
    });
  }
  const bytes = assembleSnapshot(parts, options);
  return patchPreamble(bytes, [8, 12, 16, 24][a.field]!, a.value, a.field === 2 ? 8 : 4);
}

/** Writes a little-endian field of the preamble and fixes the preamble's own checksum. */
function patchPreamble(bytes: Uint8Array, at: number, value: number, width: 4 | 8): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  if (width === 8) view.setBigUint64(at, BigInt(Math.min(value, 2 ** 64 - 1)), true);
  else view.setUint32(at, value % 2 ** 32, true);
  view.setUint32(28, zlib.crc32(out.subarray(0, 28)), true);
  return out;
}

// ---- named attacks: each refused by the check that owns it ----

describe("named attacks are refused by name", () => {
  const plain = () => seeds[0]!;
  const parts = () => splitSnapshot(plain().bytes);
  const edit = (section: Target, change: (v: Record<string, unknown>) => void, options: AssembleOptions = {}) => {
    const p = parts();
    const value = sectionValue(p, section);
    change(value);
    return assembleSnapshot(withSection(p, section, value), options);
  };
  const raw = (section: Target, bytes: Uint8Array) => assembleSnapshot(withSection(parts(), section, bytes, true));
  const table = (change: (rows: Record<string, unknown>[]) => unknown) => assembleSnapshot(parts(), { table: change });
  const row = (rows: Record<string, unknown>[], name: string) => rows.find((r) => r.name === name)!;
  const index = (change: (v: { chunkPages: number; bitmap: Uint8Array; chunks: Uint8Array }) => void) =>
    edit("ramIndex", (v) => change(v as unknown as { chunkPages: number; bitmap: Uint8Array; chunks: Uint8Array }));
  const roms = (v: Record<string, unknown>) => v.roms as { gpa: unknown; bytes: unknown }[];
  const drives = (v: Record<string, unknown>) => v as unknown as Record<string, unknown>[];

  const cases: [string, () => Uint8Array, string, string][] = [
    ["memoryBytes of 1 TiB", () => edit("header", (h) => (h.memoryBytes = 2 ** 40)), "header", "memoryBytes"],
    ["memoryBytes not a page multiple", () => edit("header", (h) => (h.memoryBytes = 4097)), "header", "memoryBytes"],
    ["memoryBytes as a string", () => edit("header", (h) => (h.memoryBytes = "184320")), "header", "memoryBytes"],
    ["memoryBytes NaN", () => edit("header", (h) => (h.memoryBytes = Number.NaN)), "header", "memoryBytes"],
    ["memoryBytes negative", () => edit("header", (h) => (h.memoryBytes = -4096)), "header", "memoryBytes"],
    ["vmTimeNs NaN", () => edit("header", (h) => (h.vmTimeNs = Number.NaN)), "header", "vmTimeNs"],
    ["vmTimeNs negative", () => edit("header", (h) => (h.vmTimeNs = -1)), "header", "vmTimeNs"],
    ["vmTimeNs infinite", () => edit("header", (h) => (h.vmTimeNs = Number.POSITIVE_INFINITY)), "header", "vmTimeNs"],
    ["no vCPUs", () => edit("header", (h) => (h.vcpuCount = 0)), "header", "vcpuCount"],
    ["a billion vCPUs", () => edit("header", (h) => (h.vcpuCount = 1e9)), "header", "vcpuCount"],
    ["a fractional vCPU count", () => edit("header", (h) => (h.vcpuCount = 1.5)), "header", "vcpuCount"],
    ["a number for the name", () => edit("header", (h) => (h.name = 123)), "header", "name"],
    ["a 5000-character name", () => edit("header", (h) => (h.name = "x".repeat(5000))), "header", "name"],
    ["createdAt not a time", () => edit("header", (h) => (h.createdAt = "yesterday")), "header", "createdAt"],
    ["an array in boot", () => edit("header", (h) => (h.boot = { kernel: [1] })), "header", "boot"],
    ["an unknown header field", () => edit("header", (h) => (h.color = "red")), "header", "color"],
    ["a missing header field", () => edit("header", (h) => delete h.memoryBytes), "header", "memoryBytes"],
    ["a header that is an array", () => raw("header", encode([1, 2])), "header", "(the section)"],
    ["an array claiming 4 billion entries", () => raw("header", new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])), "header", "msgpack"],
    ["nesting 200,000 deep", () => raw("vcpus", HOSTILE_PAYLOADS[4]!), "vcpus", "msgpack"],
    ["a string claiming 4 GiB", () => raw("header", new Uint8Array([0x81, 0xdb, 0xff, 0xff, 0xff, 0xf0, 0x41])), "header", "msgpack"],
    ["a timestamp extension", () => raw("devices", encode({ rtc: new Date(0) })), "devices", "msgpack"],
    ["a __proto__ key", () => raw("devices", new Uint8Array([0x81, 0xa9, ...Buffer.from("__proto__"), 0x80])), "devices", "msgpack"],
    ["bytes after the value", () => raw("drives", new Uint8Array([0x90, 0x90])), "drives", "msgpack"],
    ["three vCPU records for two vCPUs", () => edit("vcpus", (v) => (v as unknown as unknown[]).push({})), "vcpus", "length"],
    ["vcpus as a map", () => raw("vcpus", encode({ a: 1 })), "vcpus", "(the section)"],
    ["300 vCPU records", () => raw("vcpus", encode(new Array(300).fill(0))), "vcpus", "(the section)"],
    ["devices as an array", () => raw("devices", encode([1, 2])), "devices", "(the section)"],
    ["a device with an empty name", () => edit("devices", (d) => (d[""] = 1)), "devices", "name"],
    ["ramBytes other than memoryBytes", () => edit("memoryMap", (m) => (m.ramBytes = (m.ramBytes as number) + PAGE_SIZE)), "memoryMap", "ramBytes"],
    ["an unaligned ROM", () => edit("memoryMap", (m) => (roms(m)[0]!.gpa = 0xfffe0001)), "memoryMap", "roms[0].gpa"],
    ["a ROM at 4 GiB", () => edit("memoryMap", (m) => (roms(m)[0]!.gpa = 2 ** 32)), "memoryMap", "roms[0].gpa"],
    ["a ROM running past 4 GiB", () => edit("memoryMap", (m) => (roms(m)[0]!.gpa = 2 ** 32 - PAGE_SIZE)), "memoryMap", "roms[0].bytes"],
    ["overlapping ROMs", () => edit("memoryMap", (m) => (roms(m)[1]!.gpa = 0xfffe1000)), "memoryMap", "roms[1].gpa"],
    ["ROM bytes as a string", () => edit("memoryMap", (m) => (roms(m)[0]!.bytes = "abc")), "memoryMap", "roms[0].bytes"],
    ["an empty ROM", () => edit("memoryMap", (m) => (roms(m)[0]!.bytes = new Uint8Array(0))), "memoryMap", "roms[0].bytes"],
    ["2,000 ROMs", () => edit("memoryMap", (m) => (m.roms = new Array(2000).fill({ gpa: 0, bytes: new Uint8Array(1) }))), "memoryMap", "roms"],
    ["no ROM list", () => edit("memoryMap", (m) => delete m.roms), "memoryMap", "roms"],
    ["a negative drive size", () => edit("drives", (d) => (drives(d)[0]!.sizeBytes = -1)), "drives", "[0].sizeBytes"],
    ["readOnly as a string", () => edit("drives", (d) => (drives(d)[1]!.readOnly = "yes")), "drives", "[1].readOnly"],
    ["a drive without a path", () => edit("drives", (d) => delete drives(d)[0]!.path), "drives", "[0].path"],
    ["100 drives", () => raw("drives", encode(new Array(100).fill({}))), "drives", "(the section)"],
    ["an overlay that is a number", () => edit("drives", (d) => (drives(d)[0]!.overlay = 5)), "drives", "[0].overlay"],
    ["a bitmap one byte short", () => index((v) => (v.bitmap = v.bitmap.subarray(1))), "ramIndex", "bitmap"],
    ["a page past the end of RAM", () => index((v) => (v.bitmap[v.bitmap.length - 1]! |= 0x80)), "ramIndex", "bitmap"],
    ["a zero page marked stored", () => index((v) => (v.bitmap[0]! |= 1)), "table", "ram.decodedBytes"],
    ["zero pages per chunk", () => index((v) => (v.chunkPages = 0)), "ramIndex", "chunkPages"],
    ["a million pages per chunk", () => index((v) => (v.chunkPages = 1e6)), "ramIndex", "chunkPages"],
    ["a chunk list one entry short", () => index((v) => (v.chunks = v.chunks.subarray(8))), "ramIndex", "chunks"],
    ["a chunk of 0 bytes", () => index((v) => new DataView(v.chunks.buffer, v.chunks.byteOffset).setUint32(0, 0, true)), "ramIndex", "chunks[0].storedBytes"],
    ["a bitmap that is a string", () => index((v) => ((v as unknown as Record<string, unknown>).bitmap = "abc")), "ramIndex", "bitmap"],
    ["sections out of order", () => table((rows) => [rows[1], rows[0], ...rows.slice(2)]), "table", "[0].name"],
    ["a section starting one byte late", () => table((rows) => ((row(rows, "vcpus").offset as number)++, rows)), "table", "vcpus.offset"],
    ["a section of 1 TiB", () => table((rows) => ((row(rows, "header").bytes = 2 ** 40), rows)), "table", "header.bytes"],
    ["a section decoding to 1 TiB", () => table((rows) => ((row(rows, "devices").decodedBytes = 2 ** 40), rows)), "table", "devices.decodedBytes"],
    ["devices over their limit", () => table((rows) => (Object.assign(row(rows, "devices"), { decodedBytes: SECTION_LIMITS.devices + 1, compression: "brotli" }), rows)), "table", "devices.decodedBytes"],
    ["an index larger than RAM needs", () => table((rows) => (Object.assign(row(rows, "ramIndex"), { decodedBytes: 2 ** 30, compression: "brotli" }), rows)), "table", "ramIndex.decodedBytes"],
    ["an uncompressed section that decodes larger", () => table((rows) => ((row(rows, "header").decodedBytes = 5000), rows)), "table", "header.decodedBytes"],
    ["an unknown compression", () => table((rows) => ((row(rows, "header").compression = "zstd"), rows)), "table", "header.compression"],
    ["a checksum that is a string", () => table((rows) => ((row(rows, "header").crc32 = "abc"), rows)), "table", "header.crc32"],
    ["a checksum for ram", () => table((rows) => ((row(rows, "ram").crc32 = 5), rows)), "table", "ram.crc32"],
    ["an eighth section", () => table((rows) => [...rows, rows[0]]), "table", "(the table)"],
    ["a table that is a map", () => assembleSnapshot(parts(), { tableBytes: encode({ a: 1 }) }), "table", "(the table)"],
    ["format version 2", () => assembleSnapshot(parts(), { version: 2 }), "file", "formatVersion"],
    ["a 4 GiB table", () => patchPreamble(plain().bytes, 12, 0xffffffff, 4), "file", "tableBytes"],
    ["a table beyond the file", () => patchPreamble(plain().bytes, 16, 2 ** 60, 8), "file", "tableOffset"],
    ["a table checksum that does not match", () => patchPreamble(plain().bytes, 24, 12345, 4), "table", "crc32"],
    ["compressed garbage", () => assembleSnapshot(parts(), { store: { devices: { stored: new Uint8Array(50).fill(7), compression: "brotli", decodedBytes: 100 } } }), "devices", "(the section)"],
    ["a decompression bomb", () => assembleSnapshot(parts(), { store: { devices: { stored: zlib.brotliCompressSync(new Uint8Array(32 * 1024 * 1024), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }), compression: "brotli", decodedBytes: 1024 * 1024 } } }), "devices", "(the section)"],
    ["compressed data shorter than declared", () => assembleSnapshot(parts(), { store: { devices: { stored: zlib.brotliCompressSync(new Uint8Array(900)), compression: "brotli", decodedBytes: 1024 * 1024 } } }), "devices", "(the section)"],
    ["compressed bytes larger than decoded", () => assembleSnapshot(parts(), { store: { drives: { stored: zlib.brotliCompressSync(encode([])), compression: "brotli", decodedBytes: 1 } } }), "table", "drives.bytes"],
  ];

  for (const [what, build, section, field] of cases) {
    it(`${what}: ${section} section, ${field}`, () => {
      const { outcome, error } = exercise(build());
      expect(outcome).toBe("refused at open");
      expect(error!.section).toBe(section);
      expect(error!.field).toContain(field);
      expect(error!.message).toContain(`${section} section, ${error!.field}`);
    });
  }

  it("a wrong chunk checksum opens, and the page read names the page", () => {
    const { outcome, error } = exercise(index((v) => (v.chunks[4]! ^= 1)));
    expect(outcome).toBe("refused at read");
    expect(error!.field).toMatch(/^page \d+ \(chunk 0\)$/);
  });
});
