// `img compare`: do two images show the same content? (Extra bytes of the larger one must be zero.)
import { isZero } from "../bytes.js";
import { chainStatus, type BlockImage, type FormatName } from "../image.js";
import { openImage } from "../open.js";

export interface CompareResult {
  identical: boolean;
  /** First differing byte offset (when not identical). */
  offset?: number;
  sizeMismatch: boolean;
}

const CHUNK = 4 * 1024 * 1024;

export function compareImages(a: string, b: string, formats: { a?: FormatName; b?: FormatName } = {}): CompareResult {
  const ia = openImage(a, { format: formats.a });
  try {
    const ib = openImage(b, { format: formats.b });
    try {
      return compareOpened(ia, ib);
    } finally {
      ib.close();
    }
  } finally {
    ia.close();
  }
}

export function compareOpened(a: BlockImage, b: BlockImage): CompareResult {
  const common = Math.min(a.virtualSize, b.virtualSize);
  const sizeMismatch = a.virtualSize !== b.virtualSize;
  const ba = new Uint8Array(CHUNK);
  const bb = new Uint8Array(CHUNK);
  let offset = 0;
  while (offset < common) {
    // Status over the whole rest, so that holes of any size are skipped in one step.
    const sa = chainStatus(a, offset, common - offset);
    const sb = chainStatus(b, offset, sa.length);
    const end = offset + sb.length;
    if (sa.kind !== "data" && sb.kind !== "data") {
      offset = end;
      continue;
    }
    while (offset < end) {
      const n = Math.min(CHUNK, end - offset);
      const pa = ba.subarray(0, n);
      const pb = bb.subarray(0, n);
      if (sa.kind === "data") a.read(offset, pa);
      else pa.fill(0);
      if (sb.kind === "data") b.read(offset, pb);
      else pb.fill(0);
      if (Buffer.compare(pa, pb) !== 0) {
        let i = 0;
        while (pa[i] === pb[i]) i++;
        return { identical: false, offset: offset + i, sizeMismatch };
      }
      offset += n;
    }
  }
  const larger = a.virtualSize > b.virtualSize ? a : b;
  while (offset < larger.virtualSize) {
    const s = chainStatus(larger, offset, larger.virtualSize - offset);
    const end = offset + s.length;
    if (s.kind !== "data") offset = end;
    while (offset < end) {
      const p = ba.subarray(0, Math.min(CHUNK, end - offset));
      larger.read(offset, p);
      if (!isZero(p)) {
        let i = 0;
        while (p[i] === 0) i++;
        return { identical: false, offset: offset + i, sizeMismatch };
      }
      offset += p.length;
    }
  }
  return { identical: true, sizeMismatch };
}
