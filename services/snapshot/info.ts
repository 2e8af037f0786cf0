// `hv snapshot info`: what a snapshot file holds, as a record (for --json) and as text.
import { encode } from "@msgpack/msgpack";
import { FORMAT_VERSION } from "./layout.js";
import type { SectionInfo, SnapshotReader } from "./reader.js";
import { type DriveRecord, PAGE_SIZE, type SnapshotHeader } from "./schema.js";

export interface SnapshotInfo {
  file: string;
  fileBytes: number;
  formatVersion: number;
  header: SnapshotHeader;
  sections: SectionInfo[];
  ram: {
    memoryBytes: number;
    pages: number;
    storedPages: number;
    /** Stored page bytes before compression, and in the file. */
    storedBytes: number;
    fileBytes: number;
    chunks: number;
    chunkPages: number;
    compressed: boolean;
  };
  roms: { gpa: number; bytes: number }[];
  /** msgpack size of each vCPU record. */
  vcpus: { recordBytes: number }[];
  /** Device name and the msgpack size of its record. */
  devices: { name: string; recordBytes: number }[];
  drives: DriveRecord[];
  /** Set when every RAM chunk was read and checked (`--verify`). */
  verified?: boolean;
}

export function snapshotInfo(reader: SnapshotReader): SnapshotInfo {
  const ram = reader.sections.find((s) => s.name === "ram")!;
  return {
    file: reader.path,
    fileBytes: reader.fileBytes,
    formatVersion: FORMAT_VERSION,
    header: reader.header,
    sections: [...reader.sections],
    ram: {
      memoryBytes: reader.header.memoryBytes,
      pages: reader.header.memoryBytes / PAGE_SIZE,
      storedPages: reader.pageCount,
      storedBytes: ram.decodedBytes,
      fileBytes: ram.bytes,
      chunks: reader.chunkCount,
      chunkPages: reader.chunkPages,
      compressed: ram.compressed,
    },
    roms: reader.memoryMap.roms.map((r) => ({ gpa: r.gpa, bytes: r.bytes.length })),
    vcpus: reader.vcpus.map((v) => ({ recordBytes: encode(v).length })),
    devices: Object.entries(reader.devices).map(([name, record]) => ({ name, recordBytes: encode(record).length })),
    drives: reader.drives,
  };
}

/** Sizes as people read them: 512 bytes, 64 KiB, 1.5 GiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** A string from the file, safe for a terminal: control characters escaped, long text cut. */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f-\u009f"\\ ]/.test(cut) || cut === "" ? JSON.stringify(cut) : cut;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

function table(rows: string[][], rightAligned: ReadonlySet<number>): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => `  ${r.map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ")}`.trimEnd());
}

export function renderInfo(info: SnapshotInfo): string {
  const h = info.header;
  const r = info.ram;
  const lines = [
    `snapshot: ${printable(info.file)} (format ${info.formatVersion}, ${formatBytes(info.fileBytes)})`,
    `name: ${printable(h.name)}`,
    `created: ${printable(h.createdAt)} by hv ${printable(h.hvVersion)}`,
    `VM time: ${(h.vmTimeNs / 1e9).toFixed(9)} s`,
    `vCPUs: ${h.vcpuCount}`,
  ];
  if (h.boot && Object.keys(h.boot).length > 0) {
    lines.push(`boot: ${Object.entries(h.boot).map(([k, v]) => `${printable(k, 40)}=${typeof v === "string" ? printable(v) : String(v)}`).join(" ")}`);
  }
  const packed = r.compressed ? `, ${formatBytes(r.fileBytes)} in the file` : "";
  lines.push(
    `RAM: ${formatBytes(r.memoryBytes)} (${r.pages} pages); ${r.storedPages} stored (${formatBytes(r.storedBytes)}${packed}), ${r.pages - r.storedPages} zero; ${r.chunks} chunks of up to ${r.chunkPages} pages`,
  );
  if (info.verified) lines.push("RAM checked: every chunk's checksum matches");
  lines.push("sections:");
  lines.push(
    ...table(
      [["name", "offset", "bytes", "decoded", "compressed", "checksum"], ...info.sections.map((s) => [s.name, String(s.offset), String(s.bytes), String(s.decodedBytes), s.compressed ? "yes" : "no", s.checksum])],
      new Set([1, 2, 3]),
    ),
  );
  lines.push(`ROMs (${info.roms.length}):`);
  for (const rom of info.roms) lines.push(`  ${hex(rom.gpa)}-${hex(rom.gpa + rom.bytes - 1)}  ${formatBytes(rom.bytes)}`);
  lines.push(`devices (${info.devices.length}):`);
  if (info.devices.length > 0) lines.push(...table(info.devices.map((d) => [printable(d.name, 60), formatBytes(d.recordBytes)]), new Set([1])));
  lines.push(`drives (${info.drives.length}):`);
  info.drives.forEach((d, i) => {
    const extra = [d.identity ? `identity=${printable(d.identity)}` : "", d.overlay ? `overlay=${printable(d.overlay)}` : ""].filter(Boolean).join("  ");
    lines.push(`  [${i}] ${printable(d.path)}  ${printable(d.format, 20)}  ${formatBytes(d.sizeBytes)}  ${d.readOnly ? "read-only" : "read-write"}${extra ? `  ${extra}` : ""}`);
  });
  return `${lines.join("\n")}\n`;
}
