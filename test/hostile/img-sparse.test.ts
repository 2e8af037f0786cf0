// A big sparse raw image converted: its holes are neither copied nor written, and the output stays small.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BlockImage } from "../../drivers/block/image.js";
import { chainStatus } from "../../drivers/block/image.js";
import { openImage } from "../../drivers/block/open.js";
import { compareImages } from "../../drivers/block/ops/compare.js";
import { convertImage, copyContent } from "../../drivers/block/ops/convert.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { scratchDir } from "../../drivers/block/test-util.js";

const SIZE = 2 ** 31;
const CLUSTER = 65536;
/** Where the source holds data: one cluster each, first, in the middle (unaligned), last. */
const DATA = [0, 2 ** 30 + 12345, SIZE - CLUSTER];

let dir: string;
let source: string;
beforeAll(() => {
  dir = scratchDir("hv-hostile-sparse-");
  source = path.join(dir, "sparse.raw");
  const fd = fs.openSync(source, "w");
  fs.ftruncateSync(fd, SIZE);
  for (const at of DATA) fs.writeSync(fd, Buffer.alloc(CLUSTER, 0x5a), 0, CLUSTER, at);
  fs.closeSync(fd);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Clusters holding data in one layer, counted from its own map. */
function dataClusters(image: BlockImage): number {
  let n = 0;
  for (let at = 0; at < image.virtualSize; ) {
    const ext = chainStatus(image, at, image.virtualSize - at);
    if (ext.kind === "data") n += Math.ceil(ext.length / image.clusterSize);
    at += ext.length;
  }
  return n;
}

describe("converting a sparse 2 GiB raw image", () => {
  it("to qcow2: a small file holding only the data clusters, same content", async () => {
    const out = path.join(dir, "out.qcow2");
    await convertImage(source, out, { sourceFormat: "raw", targetFormat: "qcow2" });
    expect(fs.statSync(out).size).toBeLessThan(1 << 20);
    const img = openImage(out);
    try {
      expect(img.virtualSize).toBe(SIZE);
      // The unaligned piece straddles two clusters.
      expect(dataClusters(img)).toBe(DATA.length + 1);
    } finally {
      img.close();
    }
    expect(compareImages(source, out, { a: "raw" }).identical).toBe(true);
  });

  it("the copy writes only the clusters that hold data, and no zeros", async () => {
    const out = path.join(dir, "counted.qcow2");
    createImage(out, "qcow2", SIZE);
    const src = openImage(source, { format: "raw" });
    const dst = openImage(out, { writable: true });
    let written = 0;
    let zeroWrites = 0;
    const counting: BlockImage = Object.assign(Object.create(dst) as BlockImage, {
      write: (offset: number, data: Uint8Array) => {
        written += data.length;
        dst.write(offset, data);
      },
      writeZeroes: (offset: number, length: number) => {
        zeroWrites++;
        dst.writeZeroes(offset, length);
      },
    });
    try {
      await copyContent(src, counting, { fresh: true });
    } finally {
      dst.close();
      src.close();
    }
    expect(written).toBe((DATA.length + 1) * CLUSTER);
    expect(zeroWrites).toBe(0);
  });

  it("to raw: the holes stay holes", async () => {
    const out = path.join(dir, "out.raw");
    await convertImage(source, out, { sourceFormat: "raw", targetFormat: "raw" });
    const st = fs.statSync(out);
    expect(st.size).toBe(SIZE);
    expect(st.blocks * 512).toBeLessThan(1 << 20);
  });
});
