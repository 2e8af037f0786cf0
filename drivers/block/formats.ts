// The table of image formats: probing, opening and creating, one record per format.
import { ImageArgumentError } from "./errors.js";
import type { HostFile } from "./host-file.js";
import type { BackingRef, BlockImage, FormatName, Opener } from "./image.js";
import { createQcow2 } from "./qcow2/create.js";
import { Qcow2Image } from "./qcow2/image.js";
import { RawImage } from "./raw.js";
import { openImage, resolveBacking } from "./open.js";
import { createVhd } from "./vhd/create.js";
import { VhdImage } from "./vhd/image.js";
import { createVmdk } from "./vmdk/create.js";
import { looksLikeDescriptor } from "./vmdk/descriptor.js";
import { VmdkImage } from "./vmdk/image.js";

/** Options for creating an image (`-o` on the command line maps onto these). */
export interface CreateOptions {
  backing?: BackingRef | null;
  /** qcow2 compat level: "0.10" (v2) or "1.1" (v3). */
  compat?: string;
  clusterSize?: number;
  /** vpc: "dynamic" | "fixed"; vmdk: "monolithicSparse" | "monolithicFlat". */
  subformat?: string;
}

export interface FormatDriver {
  readonly name: FormatName;
  /** Does the file look like this format? `head` = first 4 KiB, `tail` = last 512 bytes. */
  probe(head: Uint8Array, tail: Uint8Array): boolean;
  open(file: HostFile, opener: Opener): BlockImage;
  create(path: string, size: number, options: CreateOptions): void;
  /** Can an image of this format name a backing file? */
  readonly supportsBacking: boolean;
}

const ascii = (bytes: Uint8Array, at: number, text: string): boolean =>
  bytes.length >= at + text.length && [...text].every((ch, i) => bytes[at + i] === ch.charCodeAt(0));

const noBacking = (name: string, options: CreateOptions): void => {
  if (options.backing) throw new ImageArgumentError("BAD_ARGUMENT", `format ${name} cannot have a backing file`);
};

export const FORMATS: Record<FormatName, FormatDriver> = {
  qcow2: {
    name: "qcow2",
    probe: (head) => ascii(head, 0, "QFI\xfb"),
    open: (file, opener) => Qcow2Image.open(file, opener),
    create: (path, size, o) => {
      if (o.compat !== undefined && o.compat !== "0.10" && o.compat !== "1.1" && o.compat !== "v2" && o.compat !== "v3") {
        throw new ImageArgumentError("BAD_ARGUMENT", `qcow2 compat must be 0.10 or 1.1, not ${o.compat}`);
      }
      createQcow2(path, size, {
        version: o.compat === "0.10" || o.compat === "v2" ? 2 : 3,
        clusterSize: o.clusterSize,
        backing: o.backing ?? null,
      });
    },
    supportsBacking: true,
  },
  vpc: {
    name: "vpc",
    probe: (head, tail) => ascii(head, 0, "conectix") || ascii(tail, 0, "conectix"),
    open: (file, opener) => VhdImage.open(file, opener),
    create: (path, size, o) => {
      if (o.subformat !== undefined && o.subformat !== "dynamic" && o.subformat !== "fixed") {
        throw new ImageArgumentError("BAD_ARGUMENT", `vpc subformat must be dynamic or fixed, not ${o.subformat}`);
      }
      if (o.backing && o.subformat === "fixed") throw new ImageArgumentError("BAD_ARGUMENT", "a fixed VHD cannot have a backing file");
      if (!o.backing) {
        createVhd(path, size, { subformat: o.subformat as "dynamic" | "fixed" | undefined });
        return;
      }
      const parent = openImage(resolveBacking(o.backing, path), { format: o.backing.format });
      try {
        if (!(parent instanceof VhdImage)) throw new ImageArgumentError("BAD_ARGUMENT", "the parent of a differencing VHD must be a VHD");
        createVhd(path, size, { parent: { file: o.backing.file, image: parent } });
      } finally {
        parent.close();
      }
    },
    supportsBacking: true,
  },
  vmdk: {
    name: "vmdk",
    probe: (head) => ascii(head, 0, "KDMV") || looksLikeDescriptor(head),
    open: (file, opener) => VmdkImage.open(file, opener),
    create: (path, size, o) => {
      if (o.subformat !== undefined && o.subformat !== "monolithicSparse" && o.subformat !== "monolithicFlat") {
        throw new ImageArgumentError("BAD_ARGUMENT", `vmdk subformat must be monolithicSparse or monolithicFlat, not ${o.subformat}`);
      }
      const subformat = o.subformat as "monolithicSparse" | "monolithicFlat" | undefined;
      if (!o.backing) {
        createVmdk(path, size, { subformat });
        return;
      }
      const parent = openImage(resolveBacking(o.backing, path), { format: o.backing.format });
      try {
        if (!(parent instanceof VmdkImage)) throw new ImageArgumentError("BAD_ARGUMENT", "the parent of a VMDK must be a VMDK");
        createVmdk(path, parent.virtualSize, { subformat, parent: { file: o.backing.file, cid: parent.descriptor.cid } });
      } finally {
        parent.close();
      }
    },
    supportsBacking: true,
  },
  raw: {
    name: "raw",
    probe: () => true,
    open: (file) => new RawImage(file),
    create: (path, size, o) => {
      noBacking("raw", o);
      RawImage.create(path, size);
    },
    supportsBacking: false,
  },
};

/** Probe order: specific magics first, raw last. */
export const PROBE_ORDER: FormatName[] = ["qcow2", "vmdk", "vpc", "raw"];

/** Accept qemu-img spellings plus "vhd" for vpc. */
export function parseFormatName(name: string): FormatName {
  const n = name.toLowerCase();
  if (n === "vhd" || n === "vpc") return "vpc";
  if (n === "raw" || n === "qcow2" || n === "vmdk") return n;
  throw new ImageArgumentError("UNKNOWN_FORMAT", `unknown format '${name}' (expected raw, qcow2, vpc/vhd or vmdk)`);
}
