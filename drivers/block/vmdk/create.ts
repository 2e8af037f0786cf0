// Creating VMDK images: monolithicSparse (embedded descriptor, redundant tables) and monolithicFlat.
import crypto from "node:crypto";
import path from "node:path";
import { alignUp, formatSize, viewOf } from "../bytes.js";
import { ImageArgumentError } from "../errors.js";
import { HostFile } from "../host-file.js";
import { NO_PARENT_CID, defaultDdb, serializeDescriptor, type Descriptor } from "./descriptor.js";
import { FLAG_NL_TEST, FLAG_REDUNDANT, MAX_GRAIN_TABLES, serializeSparseHeader } from "./header.js";

export interface VmdkCreateOptions {
  subformat?: "monolithicSparse" | "monolithicFlat";
  /** Parent image: the name to record and its CID. */
  parent?: { file: string; cid: number } | null;
}

const GRAIN_SECTORS = 128;
const GTES_PER_GT = 512;
const DESCRIPTOR_SECTORS = 20;

/** Write a new VMDK at `filePath` (and its flat extent for monolithicFlat). */
export function createVmdk(filePath: string, size: number, options: VmdkCreateOptions = {}): void {
  const subformat = options.subformat ?? "monolithicSparse";
  if (subformat !== "monolithicSparse" && subformat !== "monolithicFlat") {
    throw new ImageArgumentError("BAD_ARGUMENT", `vmdk subformat must be monolithicSparse or monolithicFlat, not ${String(subformat)}`);
  }
  const capacity = Math.ceil(size / 512);
  const descriptor: Descriptor = {
    createType: subformat,
    cid: crypto.randomBytes(4).readUInt32LE(0) & 0xfffffffe,
    parentCid: options.parent?.cid ?? NO_PARENT_CID,
    parentFileNameHint: options.parent?.file ?? null,
    extents: [],
    ddb: defaultDdb(capacity),
  };
  const base = path.basename(filePath);
  if (subformat === "monolithicFlat") {
    const flatName = base.replace(/\.vmdk$/i, "") + "-flat.vmdk";
    HostFile.checkCreatable(path.join(path.dirname(filePath), flatName));
    HostFile.checkCreatable(filePath);
    descriptor.extents.push({ access: "RW", sectors: capacity, type: "FLAT", file: flatName, offset: 0 });
    // The descriptor is made inside the extent's create, so that a failure removes both.
    HostFile.createWith(path.join(path.dirname(filePath), flatName), (flat) => {
      flat.truncate(capacity * 512);
      HostFile.createWith(filePath, (file) => file.write(0, new TextEncoder().encode(serializeDescriptor(descriptor))));
    });
    return;
  }
  descriptor.extents.push({ access: "RW", sectors: capacity, type: "SPARSE", file: base, offset: 0 });
  const text = new TextEncoder().encode(serializeDescriptor(descriptor));
  if (text.length > DESCRIPTOR_SECTORS * 512) throw new ImageArgumentError("BAD_ARGUMENT", "VMDK descriptor too long");
  const grains = Math.ceil(capacity / GRAIN_SECTORS);
  const gtSectors = (GTES_PER_GT * 4) / 512;
  const gtCount = Math.ceil(grains / GTES_PER_GT);
  if (gtCount > MAX_GRAIN_TABLES) {
    const limit = MAX_GRAIN_TABLES * GTES_PER_GT * GRAIN_SECTORS * 512;
    throw new ImageArgumentError("SIZE_OVERFLOW", `VMDK sparse images are limited to ${formatSize(limit)} (${limit} bytes), not ${size}`);
  }
  const gdSectors = Math.ceil((gtCount * 4) / 512);
  const rgdOffset = 1 + DESCRIPTOR_SECTORS;
  const gdOffset = rgdOffset + gdSectors + gtSectors * gtCount;
  const overhead = alignUp(gdOffset + gdSectors + gtSectors * gtCount, GRAIN_SECTORS);
  const header = serializeSparseHeader({
    version: 1,
    flags: FLAG_NL_TEST | FLAG_REDUNDANT,
    capacity,
    grainSize: GRAIN_SECTORS,
    descriptorOffset: 1,
    descriptorSize: DESCRIPTOR_SECTORS,
    numGTEsPerGT: GTES_PER_GT,
    rgdOffset,
    gdOffset,
    overhead,
    compressAlgorithm: 0,
  });
  const directory = (start: number): Uint8Array => {
    const raw = new Uint8Array(gdSectors * 512);
    const v = viewOf(raw);
    for (let i = 0; i < gtCount; i++) v.setUint32(i * 4, start + gdSectors + i * gtSectors, true);
    return raw;
  };
  HostFile.createWith(filePath, (file) => {
    file.write(0, header);
    file.write(512, text);
    file.write(rgdOffset * 512, directory(rgdOffset));
    file.write(gdOffset * 512, directory(gdOffset));
    file.truncate(overhead * 512);
    file.sync();
  });
}
