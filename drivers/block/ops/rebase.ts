// `img rebase`: point an image at a new backing file; safe mode keeps what the guest sees.
import fs from "node:fs";
import { ImageBackingError, ImageError } from "../errors.js";
import { readBacking, type BackingRef, type BlockImage, type FormatName } from "../image.js";
import { openImage, probeFormat, resolveBacking } from "../open.js";

export interface RebaseOptions {
  format?: FormatName;
  /** New backing file as it should be written ("" = no backing file). */
  backing: string;
  backingFormat?: FormatName;
  /** Only rewrite the name; do not copy data (the caller vouches the content is the same). */
  unsafe?: boolean;
}

const CHUNK = 4 * 1024 * 1024;

/**
 * Rebase `path`. Everything is checked (new backing exists, opens, does not lead back to the image)
 * before the image is changed. Formats: qcow2, differencing VHD (VHD parent), VMDK (VMDK parent).
 */
export function rebaseImage(path: string, options: RebaseOptions): void {
  const image = openImage(path, { format: options.format, writable: true });
  let newBacking: BlockImage | null = null;
  try {
    let ref: BackingRef | null = null;
    if (options.backing !== "") {
      const target = resolveBacking({ file: options.backing }, path);
      if (!fs.existsSync(target)) {
        if (!options.unsafe) throw new ImageBackingError("BACKING_NOT_FOUND", `new backing file ${options.backing} not found`, path);
        ref = { file: options.backing, format: options.backingFormat };
      } else {
        if (fs.realpathSync(target) === fs.realpathSync(path)) throw new ImageBackingError("BACKING_LOOP", "an image cannot back itself", path);
        ref = { file: options.backing, format: options.backingFormat ?? probeFormat(target) };
        try {
          newBacking = openImage(target, { format: ref.format });
        } catch (err) {
          if (!options.unsafe || !(err instanceof ImageError) || err.code === "BACKING_LOOP") throw err;
        }
      }
    }
    for (let layer: BlockImage | null = newBacking; layer; layer = layer.backing) {
      if (fs.realpathSync(layer.path) === fs.realpathSync(path)) {
        throw new ImageBackingError("BACKING_LOOP", `the new backing chain contains ${path} itself`, path);
      }
    }
    if (!options.unsafe) copyDifferences(image, newBacking);
    image.setBackingRef(ref, newBacking);
  } finally {
    newBacking?.close();
    image.close();
  }
}

/** Where `image` does not hold data itself, write the old backing's content if the new one differs. */
function copyDifferences(image: BlockImage, newBacking: BlockImage | null): void {
  if (image.backing === null && newBacking === null) return;
  const cs = image.clusterSize;
  const len = Math.max(CHUNK, cs);
  const oldBuf = new Uint8Array(len);
  const newBuf = new Uint8Array(len);
  let offset = 0;
  while (offset < image.virtualSize) {
    const ext = image.status(offset, Math.min(len, image.virtualSize - offset));
    if (ext.kind !== "unallocated") {
      offset += ext.length;
      continue;
    }
    const n = ext.length;
    const oldPart = oldBuf.subarray(0, n);
    const newPart = newBuf.subarray(0, n);
    readBacking(image.backing, offset, oldPart);
    readBacking(newBacking, offset, newPart);
    // Compare cluster by cluster so only differing clusters get allocated.
    for (let at = 0; at < n; ) {
      const end = Math.min(n, (Math.floor((offset + at) / cs) + 1) * cs - offset);
      if (Buffer.compare(oldPart.subarray(at, end), newPart.subarray(at, end)) !== 0) {
        image.write(offset + at, oldPart.subarray(at, end));
      }
      at = end;
    }
    offset += n;
  }
}
