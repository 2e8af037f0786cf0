// Creating VHD images: fixed, dynamic, and differencing disks with parent locators.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { alignUp } from "../bytes.js";
import { ImageArgumentError } from "../errors.js";
import { HostFile } from "../host-file.js";
import {
  CREATOR_APP, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, DYN_HEADER_SIZE, FOOTER_SIZE, VHD_EPOCH,
  geometryFor, serializeDynamicHeader, serializeFooter, sizeForCreate, vhdNow, type DynamicHeader, type VhdFooter,
} from "./footer.js";
import type { VhdImage } from "./image.js";
import { parentLocators } from "./parent.js";

export interface VhdCreateOptions {
  subformat?: "dynamic" | "fixed";
  /** Block size of dynamic disks (default 2 MiB). */
  blockSize?: number;
  /** Parent of a differencing disk: its name as written, and the opened parent. */
  parent?: { file: string; image: VhdImage } | null;
}

/** Write a new VHD at `path` (replacing it). Sizes are rounded up to a CHS geometry, like qemu-img. */
export function createVhd(filePath: string, requested: number, options: VhdCreateOptions = {}): void {
  const parent = options.parent ?? null;
  const subformat = parent ? "differencing" : options.subformat ?? "dynamic";
  if (subformat !== "dynamic" && subformat !== "fixed" && subformat !== "differencing") {
    throw new ImageArgumentError("BAD_ARGUMENT", `vpc subformat must be dynamic or fixed, not ${String(subformat)}`);
  }
  let size: number;
  let geometry;
  if (parent) {
    size = parent.image.virtualSize;
    geometry = geometryFor(size / 512);
  } else {
    ({ size, geometry } = sizeForCreate(requested));
  }
  const blockSize = options.blockSize ?? 2 * 1024 * 1024;
  const footer: VhdFooter = {
    dataOffset: subformat === "fixed" ? null : FOOTER_SIZE,
    timestamp: vhdNow(),
    creatorApp: CREATOR_APP,
    originalSize: size,
    currentSize: size,
    geometry,
    diskType: subformat === "fixed" ? DISK_FIXED : subformat === "dynamic" ? DISK_DYNAMIC : DISK_DIFFERENCING,
    uniqueId: new Uint8Array(crypto.randomBytes(16)),
    virtualSize: size,
  };
  const footerBytes = serializeFooter(footer);
  HostFile.createWith(filePath, (file) => {
    if (subformat === "fixed") {
      file.truncate(size);
      file.write(size, footerBytes);
    } else {
      const entries = Math.ceil(size / blockSize);
      const tableOffset = FOOTER_SIZE + DYN_HEADER_SIZE;
      const bat = new Uint8Array(alignUp(Math.max(entries * 4, 1), 512)).fill(0xff);
      let end = tableOffset + bat.length;
      const dyn: DynamicHeader = {
        tableOffset,
        maxTableEntries: entries,
        blockSize,
        parentUniqueId: new Uint8Array(16),
        parentTimestamp: 0,
        parentName: "",
        locators: [],
      };
      if (parent) {
        const loc = parentLocators(parent.file, filePath, end);
        dyn.parentUniqueId = parent.image.footer.uniqueId;
        dyn.parentTimestamp = Math.max(0, Math.floor(fs.statSync(parent.image.path).mtimeMs / 1000) - VHD_EPOCH) >>> 0;
        dyn.parentName = path.basename(parent.file);
        dyn.locators = loc.locators;
        for (const d of loc.data) file.write(d.offset, d.bytes);
        end = loc.locators.reduce((m, l) => Math.max(m, l.dataOffset + l.dataSpace), end);
      }
      file.write(0, footerBytes);
      file.write(FOOTER_SIZE, serializeDynamicHeader(dyn));
      file.write(tableOffset, bat);
      file.truncate(end);
      file.write(end, footerBytes);
    }
    file.sync();
  });
}
