// Creating empty qcow2 images (versions 2 and 3), sized so the refcount table rarely needs to grow.
import { viewOf } from "../bytes.js";
import { ImageArgumentError } from "../errors.js";
import { HostFile } from "../host-file.js";
import type { BackingRef } from "../image.js";
import { l2Entries, serializeHeader, type Qcow2Header } from "./header.js";
import { writeEntry } from "./refcounts.js";

export interface Qcow2CreateOptions {
  /** 2 (compat=0.10) or 3 (compat=1.1, the default). */
  version?: 2 | 3;
  /** Power of two between 512 and 2 MiB; default 64 KiB. */
  clusterSize?: number;
  backing?: BackingRef | null;
}

/** Write a new, empty qcow2 image of `size` bytes at `path` (the file is replaced). */
export function createQcow2(path: string, size: number, options: Qcow2CreateOptions = {}): void {
  const cs = options.clusterSize ?? 65536;
  const clusterBits = Math.log2(cs);
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) {
    throw new ImageArgumentError("BAD_CLUSTER_SIZE", `cluster size ${cs} must be a power of two between 512 and 2M`);
  }
  if (!Number.isSafeInteger(size) || size < 0 || size > 2 ** 53 - cs) {
    throw new ImageArgumentError("SIZE_OVERFLOW", `image size ${size} is out of range`);
  }
  const refcountOrder = 4;
  const perBlock = (cs * 8) / 2 ** refcountOrder;
  const l1Entries = Math.ceil(size / (cs * l2Entries(clusterBits)));
  const l1Clusters = Math.max(1, Math.ceil((l1Entries * 8) / cs));
  // Enough refcount-table entries for a fully allocated image plus its metadata.
  const maxClusters = 16 + l1Clusters + l1Entries + Math.ceil(size / cs);
  const tableEntries = Math.ceil((maxClusters * 1.02) / perBlock) + 2;
  const tableClusters = Math.max(1, Math.ceil((tableEntries * 8) / cs));
  let blocks = 1;
  while (Math.ceil((1 + tableClusters + blocks + l1Clusters) / perBlock) > blocks) blocks++;
  const used = 1 + tableClusters + blocks + l1Clusters;
  if (l1Entries > 2 ** 32 - 1) throw new ImageArgumentError("SIZE_OVERFLOW", "image too large for this cluster size");

  const header: Qcow2Header = {
    version: options.version ?? 3,
    clusterBits,
    size,
    l1Size: l1Entries,
    l1TableOffset: (1 + tableClusters + blocks) * cs,
    refcountTableOffset: cs,
    refcountTableClusters: tableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatible: 0,
    compatible: 0,
    autoclear: 0,
    refcountOrder,
    headerLength: options.version === 2 ? 72 : 104,
    backingFile: options.backing?.file ?? null,
    backingFormat: options.backing?.format ?? null,
    backingFormatRaw: options.backing?.format ?? null,
    extensions: [],
  };
  const headerBytes = serializeHeader(header);
  const table = new Uint8Array(tableClusters * cs);
  const tv = viewOf(table);
  for (let b = 0; b < blocks; b++) tv.setBigUint64(b * 8, BigInt((1 + tableClusters + b) * cs));
  const blockBytes = new Uint8Array(blocks * cs);
  for (let c = 0; c < used; c++) {
    writeEntry(blockBytes.subarray(Math.floor(c / perBlock) * cs, (Math.floor(c / perBlock) + 1) * cs), c % perBlock, 16, 1);
  }
  HostFile.createWith(path, (file) => {
    file.write(0, headerBytes);
    file.write(cs, table);
    file.write((1 + tableClusters) * cs, blockBytes);
    file.truncate(used * cs);
    file.sync();
  });
}
