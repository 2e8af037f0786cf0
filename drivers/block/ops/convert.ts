// `img convert`: copy the visible content of an image chain into a new image, skipping zeros.
import fs from "node:fs";
import path from "node:path";
import { alignUp, isZero } from "../bytes.js";
import { FORMATS, type CreateOptions } from "../formats.js";
import { chainStatus, type BlockImage, type FormatName } from "../image.js";
import { openImage } from "../open.js";

export interface ConvertOptions {
  sourceFormat?: FormatName;
  targetFormat: FormatName;
  create?: CreateOptions;
  /** Called with bytes done and total as the copy advances. */
  progress?: (done: number, total: number) => void;
}

const CHUNK = 8 * 1024 * 1024;

/** Smallest run of zeros worth leaving unwritten in a fresh image of this format. */
function zeroGranule(image: BlockImage): number {
  if (image.format === "raw") return 4096;
  if (image.format === "vpc") return 65536;
  return Math.min(Math.max(image.clusterSize, 4096), 2 * 1024 * 1024);
}

/**
 * Convert `source` into a new image at `target`. The image is built in a temporary folder next to
 * the target and renamed into place at the end, so a failed convert leaves no partial target.
 */
export function convertImage(source: string, target: string, options: ConvertOptions): void {
  const src = openImage(source, { format: options.sourceFormat });
  const dir = path.dirname(path.resolve(target));
  let tmpDir: string | null = null;
  try {
    tmpDir = fs.mkdtempSync(path.join(dir, ".hv-convert-"));
    const staged = path.join(tmpDir, path.basename(target));
    FORMATS[options.targetFormat].create(staged, alignUp(src.virtualSize, 512), { ...options.create, backing: null });
    const dst = openImage(staged, { format: options.targetFormat, writable: true });
    try {
      copyContent(src, dst, options.progress);
    } finally {
      dst.close();
    }
    // Extents first, the image that names them last.
    const files = fs.readdirSync(tmpDir).sort((a, b) => (a === path.basename(target) ? 1 : b === path.basename(target) ? -1 : 0));
    for (const f of files) fs.renameSync(path.join(tmpDir, f), path.join(dir, f));
  } finally {
    src.close();
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/** Copy every non-zero range of `src` (whole chain) into the fresh image `dst`. */
export function copyContent(src: BlockImage, dst: BlockImage, progress?: (done: number, total: number) => void): void {
  const size = Math.min(src.virtualSize, dst.virtualSize);
  const granule = zeroGranule(dst);
  const buf = new Uint8Array(CHUNK);
  let offset = 0;
  while (offset < size) {
    // Ask for the whole rest: holes of any size are skipped in one step, data is copied in chunks.
    const ext = chainStatus(src, offset, size - offset);
    const end = offset + ext.length;
    if (ext.kind !== "data") offset = end;
    while (offset < end) {
      const part = buf.subarray(0, Math.min(CHUNK, end - offset));
      src.read(offset, part);
      writeNonZero(dst, offset, part, granule);
      offset += part.length;
      progress?.(offset, size);
    }
    progress?.(offset, size);
  }
}

/** Write `data` at `offset`, leaving out granule-aligned runs of zeros. */
function writeNonZero(dst: BlockImage, offset: number, data: Uint8Array, granule: number): void {
  let runStart = -1;
  let at = 0;
  while (at < data.length) {
    const next = Math.min(data.length, (Math.floor((offset + at) / granule) + 1) * granule - offset);
    const zero = isZero(data.subarray(at, next));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      dst.write(offset + runStart, data.subarray(runStart, at));
      runStart = -1;
    }
    at = next;
  }
  if (runStart >= 0) dst.write(offset + runStart, data.subarray(runStart));
}
