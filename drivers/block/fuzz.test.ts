// Property test: mutated images either work or fail with an ImageError; no hang, no write to the source.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageError } from "./errors.js";
import { chainStatus } from "./image.js";
import { openImage } from "./open.js";
import { createQcow2 } from "./qcow2/create.js";
import { createVhd } from "./vhd/create.js";
import { createVmdk } from "./vmdk/create.js";
import { hasQemuImg, holeyContent, qemuImg, scratchDir } from "./test-util.js";
import { scaled } from "../../test/support/scale.js";

const RUNS = scaled(10_000);
const WRITE_RUNS = scaled(2_000);
const VSIZE = 128 * 1024;

/** Fill a fresh image with the same holey content through our driver. */
function populate(file: string): void {
  const img = openImage(file, { writable: true });
  try {
    const data = holeyContent(img.virtualSize, 5, 0.5);
    for (let at = 0; at < img.virtualSize; at += 16384) img.write(at, data.subarray(at, Math.min(img.virtualSize, at + 9000)));
  } finally {
    img.close();
  }
}

type Mutation =
  | { kind: "byte"; at: number; value: number }
  | { kind: "word"; at: number; value: number; width: 2 | 4 | 8 }
  | { kind: "truncate"; keep: number }
  | { kind: "append"; count: number };

const interesting = fc.constantFrom(0, 1, 2, 0x7f, 0x80, 0xff, 0x1ff, 0x200, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe);
/** Positions: biased toward the first 4 KiB (headers) and then anywhere (tables, footers). */
const position = fc.oneof(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: -1024, max: -1 }));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("byte" as const), at: position, value: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("word" as const), at: position, value: interesting, width: fc.constantFrom(2 as const, 4 as const, 8 as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), keep: fc.integer({ min: 0, max: 2 ** 20 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("append" as const), count: fc.integer({ min: 1, max: 4096 }) }) },
);

function mutate(seed: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = seed.slice();
  for (const m of mutations) {
    const at = (p: number): number => ((p % out.length) + out.length) % out.length;
    if (out.length === 0) break;
    if (m.kind === "byte") out[at(m.at)] = m.value;
    else if (m.kind === "word") {
      const base = at(m.at) & ~(m.width - 1);
      for (let k = 0; k < m.width && base + k < out.length; k++) {
        // both byte orders appear in our formats: big-endian for qcow2/VHD, little for VMDK
        out[base + k] = m.width === 8 && k < 4 ? (m.value > 0x7fffffff ? 0xff : 0) : (m.value >>> (8 * ((m.width - 1 - k) % 4))) & 0xff;
      }
    } else if (m.kind === "truncate") out = out.slice(0, m.keep % (out.length + 1));
    else {
      const grown = new Uint8Array(out.length + m.count);
      grown.set(out);
      out = grown;
    }
  }
  return out;
}

const sha = (bytes: Uint8Array): string => crypto.createHash("sha256").update(bytes).digest("hex");

/** Open, read, map and check; everything that fails must fail with an ImageError. */
function exercise(file: string): void {
  let img;
  try {
    img = openImage(file);
  } catch (err) {
    if (!(err instanceof ImageError)) throw err;
    return;
  }
  try {
    const vs = img.virtualSize;
    const buf = new Uint8Array(Math.min(vs, 256 * 1024));
    const attempt = (fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        if (!(err instanceof ImageError)) throw err;
      }
    };
    attempt(() => img.read(0, buf));
    if (vs > buf.length) attempt(() => img.read(vs - 4096 > 0 ? vs - 4096 : 0, buf.subarray(0, Math.min(4096, vs))));
    attempt(() => {
      let at = 0;
      for (let i = 0; i < 64 && at < vs; i++) at += chainStatus(img, at, Math.min(vs - at, 64 * 1024 * 1024)).length;
    });
    attempt(() => img.check());
  } finally {
    img.close();
  }
}

describe("mutated images", () => {
  let dir: string;
  const seeds: { name: string; bytes: Uint8Array; ext: string }[] = [];
  beforeAll(() => {
    dir = scratchDir("hv-img-fuzz-");
    const add = (name: string, file: string): void => {
      seeds.push({ name, bytes: new Uint8Array(fs.readFileSync(file)), ext: path.extname(file) });
    };
    const q3 = path.join(dir, "seed3.qcow2");
    createQcow2(q3, VSIZE, { clusterSize: 512 });
    populate(q3);
    add("qcow2 v3", q3);
    const q2 = path.join(dir, "seed2.qcow2");
    createQcow2(q2, VSIZE, { clusterSize: 1024, version: 2 });
    populate(q2);
    add("qcow2 v2", q2);
    const vd = path.join(dir, "seed.vhd");
    createVhd(vd, VSIZE, { blockSize: 4096 });
    populate(vd);
    add("vpc dynamic", vd);
    const vf = path.join(dir, "seedf.vhd");
    createVhd(vf, VSIZE, { subformat: "fixed" });
    populate(vf);
    add("vpc fixed", vf);
    const vm = path.join(dir, "seed.vmdk");
    createVmdk(vm, VSIZE);
    populate(vm);
    add("vmdk sparse", vm);
    if (hasQemuImg) {
      const raw = path.join(dir, "seed.raw");
      fs.writeFileSync(raw, holeyContent(VSIZE, 9, 0.6));
      const so = path.join(dir, "seed-so.vmdk");
      qemuImg("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, so);
      add("vmdk streamOptimized", so);
      const qc = path.join(dir, "seed-c.qcow2");
      qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", raw, qc);
      add("qcow2 compressed", qc);
    }
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`${RUNS} mutations: open/read/check work or throw ImageError, and never modify the file`, () => {
    let n = 0;
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (pick, mutations) => {
        const seed = seeds[pick % seeds.length]!;
        const bytes = mutate(seed.bytes, mutations);
        const file = path.join(dir, `case${n++ % 4}${seed.ext}`);
        fs.writeFileSync(file, bytes);
        const before = sha(bytes);
        exercise(file);
        expect(sha(fs.readFileSync(file))).toBe(before);
      }),
      { numRuns: RUNS },
    );
  }, 300_000);

  it(`${WRITE_RUNS} mutations opened for writing: writes work (and read back) or throw ImageError`, () => {
    let n = 0;
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.nat(), fc.integer({ min: 1, max: 70000 }),
        (pick, mutations, at, len) => {
          const seed = seeds[pick % seeds.length]!;
          const file = path.join(dir, `w${n++ % 4}${seed.ext}`);
          fs.writeFileSync(file, mutate(seed.bytes, mutations));
          let img;
          try {
            img = openImage(file, { writable: true });
          } catch (err) {
            if (!(err instanceof ImageError)) throw err;
            return;
          }
          // Writes into an image whose tables already contradict each other may clobber data (qemu-img
          // behaves the same); only a consistent image must read back what was written.
          let consistent = false;
          try {
            const r = img.check();
            consistent = r.corruptions === 0;
          } catch (err) {
            if (!(err instanceof ImageError)) throw err;
          }
          const data = new Uint8Array(Math.min(len, img.virtualSize)).fill(0x5c);
          const offset = img.virtualSize > data.length ? at % (img.virtualSize - data.length) : 0;
          let wrote = false;
          try {
            img.write(offset, data);
            wrote = true;
          } catch (err) {
            if (!(err instanceof ImageError)) throw err;
          } finally {
            try {
              img.close();
            } catch (err) {
              if (!(err instanceof ImageError)) throw err;
              wrote = false;
            }
          }
          if (!wrote || !consistent) return;
          try {
            const back = openImage(file);
            try {
              const got = new Uint8Array(data.length);
              back.read(offset, got);
              expect(got.every((b) => b === 0x5c)).toBe(true);
            } finally {
              back.close();
            }
          } catch (err) {
            if (!(err instanceof ImageError)) throw err;
          }
        }),
      { numRuns: WRITE_RUNS },
    );
  }, 300_000);

  it("the unmutated seeds open and read cleanly", () => {
    for (const seed of seeds) {
      const file = path.join(dir, `clean${seed.ext}`);
      fs.writeFileSync(file, seed.bytes);
      const img = openImage(file);
      try {
        expect(img.check().corruptions, seed.name).toBe(0);
        img.read(0, new Uint8Array(img.virtualSize));
      } finally {
        img.close();
      }
    }
  });
});
