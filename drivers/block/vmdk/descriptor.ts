// VMDK descriptor text: create type, extent lines, CIDs and the parent hint; parsing and writing.
import { ImageFormatError, ImageUnsupportedError } from "../errors.js";

export type ExtentType = "SPARSE" | "FLAT" | "ZERO" | "VMFS";

export interface ExtentLine {
  access: "RW" | "RDONLY" | "NOACCESS";
  /** Size in sectors. */
  sectors: number;
  type: ExtentType;
  file: string;
  /** Start of the extent inside a flat file, in sectors. */
  offset: number;
}

export interface Descriptor {
  createType: string;
  cid: number;
  parentCid: number;
  parentFileNameHint: string | null;
  extents: ExtentLine[];
  /** ddb.* entries, in order. */
  ddb: [string, string][];
}

export const NO_PARENT_CID = 0xffffffff;
/** Descriptor files larger than this are refused. */
export const MAX_DESCRIPTOR_BYTES = 1 << 20;

/** True if `bytes` starts like a text descriptor. */
export function looksLikeDescriptor(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, 256)).replace(/^\s+/, "");
  return head.startsWith("# Disk DescriptorFile") || /^version\s*=\s*\d+\s*\n/i.test(head) && /createType/i.test(head);
}

export function parseDescriptor(text: string, path: string): Descriptor {
  const d: Descriptor = { createType: "", cid: NO_PARENT_CID, parentCid: NO_PARENT_CID, parentFileNameHint: null, extents: [], ddb: [] };
  const unquote = (s: string): string => s.trim().replace(/^"(.*)"$/, "$1");
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.replace(/\0.*$/, "").trim();
    if (!line || line.startsWith("#")) continue;
    const extent = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)\s*(?:"([^"]*)"(?:\s+(\d+))?)?\s*$/.exec(line);
    if (extent) {
      const type = extent[3]!.toUpperCase();
      if (type !== "SPARSE" && type !== "FLAT" && type !== "ZERO" && type !== "VMFS") {
        throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", `VMDK extent type ${type} is not supported`, path);
      }
      const sectors = Number(extent[2]);
      const offset = Number(extent[5] ?? 0);
      if (!Number.isSafeInteger(sectors * 512) || !Number.isSafeInteger(offset * 512)) {
        throw new ImageFormatError("SIZE_OVERFLOW", "VMDK extent size too large", path);
      }
      if (type !== "ZERO" && extent[4] === undefined) throw new ImageFormatError("BAD_DESCRIPTOR", `extent without a file: ${line}`, path);
      d.extents.push({ access: extent[1] as ExtentLine["access"], sectors, type, file: extent[4] ?? "", offset });
      continue;
    }
    const kv = /^([\w.]+)\s*=\s*(.*)$/.exec(line);
    if (!kv) throw new ImageFormatError("BAD_DESCRIPTOR", `unreadable descriptor line: ${line.slice(0, 80)}`, path);
    const key = kv[1]!;
    const value = unquote(kv[2]!);
    if (key === "createType") d.createType = value;
    else if (key === "CID") d.cid = Number.parseInt(value, 16) >>> 0;
    else if (key === "parentCID") d.parentCid = Number.parseInt(value, 16) >>> 0;
    else if (key === "parentFileNameHint") d.parentFileNameHint = value;
    else if (key.startsWith("ddb.")) d.ddb.push([key, value]);
  }
  if (!d.createType) throw new ImageFormatError("BAD_DESCRIPTOR", "descriptor has no createType", path);
  return d;
}

const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

export function serializeDescriptor(d: Descriptor): string {
  const lines = [
    "# Disk DescriptorFile",
    "version=1",
    `CID=${hex(d.cid)}`,
    `parentCID=${hex(d.parentCid)}`,
    `createType="${d.createType}"`,
  ];
  if (d.parentFileNameHint !== null) lines.push(`parentFileNameHint="${d.parentFileNameHint}"`);
  lines.push("", "# Extent description");
  for (const e of d.extents) {
    lines.push(`${e.access} ${e.sectors} ${e.type}${e.type === "ZERO" ? "" : ` "${e.file}"`}${e.type === "FLAT" ? ` ${e.offset}` : ""}`);
  }
  lines.push("", "# The Disk Data Base", "#DDB", "");
  for (const [k, v] of d.ddb) lines.push(`${k} = "${v}"`);
  return `${lines.join("\n")}\n`;
}

/** Default disk database: geometry as qemu-img writes it (16 heads, 63 sectors). */
export function defaultDdb(sectors: number): [string, string][] {
  return [
    ["ddb.virtualHWVersion", "4"],
    ["ddb.geometry.cylinders", String(Math.min(16383, Math.floor(sectors / (16 * 63))))],
    ["ddb.geometry.heads", "16"],
    ["ddb.geometry.sectors", "63"],
    ["ddb.adapterType", "ide"],
  ];
}
