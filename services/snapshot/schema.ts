// What the snapshot's records are, and the checks that turn decoded msgpack into them.
//
// Every parser takes an `unknown` straight from the decoder and either returns a typed record or
// throws a SnapshotError naming the section and field. Records have exactly the fields of format
// version 1: a missing field, an extra one or a value of the wrong type is refused.
import { quote, refuse } from "./errors.js";

export const PAGE_SIZE = 4096;
/** Guest RAM is at most the 32-bit physical space. */
export const MAX_MEMORY_BYTES = 4 * 1024 ** 3;
/** ROMs live in the 32-bit physical space too. */
export const ADDRESS_SPACE_BYTES = 4 * 1024 ** 3;
export const MAX_VCPUS = 256;
export const MAX_DRIVES = 64;
/** Names, paths and the like; longer strings are refused rather than printed. */
export const MAX_STRING = 4096;

export interface SnapshotHeader {
  /** VM name. */
  name: string;
  /** ISO time of the save. */
  createdAt: string;
  hvVersion: string;
  /** Guest RAM size: a multiple of PAGE_SIZE, > 0, <= 4 GiB. */
  memoryBytes: number;
  /** The VM's virtual time at the save, in nanoseconds (finite, >= 0). */
  vmTimeNs: number;
  /** 1..MAX_VCPUS; the vcpus section holds exactly this many records. */
  vcpuCount: number;
  /** Free-form description of how the VM was started (kernel name, cmdline...), for `info`. */
  boot?: Record<string, string | number | boolean>;
}

/** A ROM: page-aligned guest-physical address, contents; ROMs lie below 4 GiB and do not overlap. */
export interface RomRecord {
  gpa: number;
  bytes: Uint8Array;
}

export interface MemoryMap {
  /** Equals header.memoryBytes. */
  ramBytes: number;
  roms: RomRecord[];
}

export interface DriveRecord {
  path: string;
  format: string;
  sizeBytes: number;
  readOnly: boolean;
  /** What the VMM checks the image against at restore (e.g. size + mtime or a content hash). */
  identity: string;
  /** Copy-on-write overlay holding the guest's writes since the snapshot, if any. */
  overlay?: string;
}

type Fields = Record<string, unknown>;

/** A plain object with exactly the `required` keys and some of the `optional` ones. */
export function fields(value: unknown, section: string, field: string, required: readonly string[], optional: readonly string[] = []): Fields {
  if (!isRecord(value)) refuse(section, field || "(the section)", `is ${kindOf(value)}, not a record`);
  const record = value;
  for (const key of required) if (!Object.hasOwn(record, key)) refuse(section, join(field, key), "is missing");
  for (const key of Object.keys(record)) {
    if (!required.includes(key) && !optional.includes(key)) refuse(section, join(field, quote(key)), "is not a field of format version 1");
  }
  return record;
}

const join = (field: string, key: string) => (field ? `${field}.${key}` : key);

/** A decoded map: a plain object (the checked decoder makes nothing else of a msgpack map). */
export function isRecord(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

export function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array`;
  if (value instanceof Uint8Array) return "binary data";
  if (typeof value === "number") return Number.isNaN(value) ? "NaN" : `the number ${value}`;
  if (typeof value === "string") return "a string";
  return `a ${typeof value}`;
}

/** An integer in [min, max] (safe integers only). */
export function integer(value: unknown, section: string, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) refuse(section, field, `is ${kindOf(value)}, not an integer`);
  if (value < min || value > max) refuse(section, field, `is ${value}, outside ${min}..${max}`);
  return value;
}

export function string(value: unknown, section: string, field: string, allowEmpty = false): string {
  if (typeof value !== "string") refuse(section, field, `is ${kindOf(value)}, not a string`);
  if (!allowEmpty && value.length === 0) refuse(section, field, "is empty");
  if (value.length > MAX_STRING) refuse(section, field, `is ${value.length} characters long, more than ${MAX_STRING}`);
  return value;
}

function boolean(value: unknown, section: string, field: string): boolean {
  if (typeof value !== "boolean") refuse(section, field, `is ${kindOf(value)}, not a boolean`);
  return value;
}

export function array(value: unknown, section: string, field: string, maxLength: number): unknown[] {
  if (!Array.isArray(value)) refuse(section, field, `is ${kindOf(value)}, not an array`);
  if (value.length > maxLength) refuse(section, field, `has ${value.length} entries, more than ${maxLength}`);
  return value;
}

export function parseHeader(value: unknown): SnapshotHeader {
  const s = "header";
  const r = fields(value, s, "", ["name", "createdAt", "hvVersion", "memoryBytes", "vmTimeNs", "vcpuCount"], ["boot"]);
  const createdAt = string(r.createdAt, s, "createdAt");
  if (!Number.isFinite(Date.parse(createdAt))) refuse(s, "createdAt", `'${createdAt.slice(0, 40)}' is not an ISO time`);
  const memoryBytes = integer(r.memoryBytes, s, "memoryBytes", PAGE_SIZE, MAX_MEMORY_BYTES);
  if (memoryBytes % PAGE_SIZE !== 0) refuse(s, "memoryBytes", `${memoryBytes} is not a multiple of the ${PAGE_SIZE}-byte page`);
  if (typeof r.vmTimeNs !== "number" || !Number.isFinite(r.vmTimeNs) || r.vmTimeNs < 0) refuse(s, "vmTimeNs", `is ${kindOf(r.vmTimeNs)}, not a finite time >= 0`);
  const header: SnapshotHeader = {
    name: string(r.name, s, "name"),
    createdAt,
    hvVersion: string(r.hvVersion, s, "hvVersion"),
    memoryBytes,
    vmTimeNs: r.vmTimeNs,
    vcpuCount: integer(r.vcpuCount, s, "vcpuCount", 1, MAX_VCPUS),
  };
  if (r.boot !== undefined) header.boot = parseBoot(r.boot);
  return header;
}

/** Free-form, so only the kinds of its values are checked. */
function parseBoot(value: unknown): Record<string, string | number | boolean> {
  if (!isRecord(value)) refuse("header", "boot", `is ${kindOf(value)}, not a record`);
  for (const [key, v] of Object.entries(value)) {
    const f = `boot[${quote(key)}]`;
    string(key, "header", `${f} (the key)`);
    if (typeof v === "string") string(v, "header", f, true);
    else if (typeof v === "number" ? !Number.isFinite(v) : typeof v !== "boolean") refuse("header", f, `is ${kindOf(v)}, not a string, finite number or boolean`);
  }
  return value as Record<string, string | number | boolean>;
}

export function parseVcpus(value: unknown, header: SnapshotHeader): unknown[] {
  const vcpus = array(value, "vcpus", "(the section)", MAX_VCPUS);
  if (vcpus.length !== header.vcpuCount) refuse("vcpus", "length", `holds ${vcpus.length} records, the header says ${header.vcpuCount} vCPUs`);
  return vcpus;
}

export function parseDevices(value: unknown): Record<string, unknown> {
  if (!isRecord(value)) refuse("devices", "(the section)", `is ${kindOf(value)}, not a record of devices`);
  for (const name of Object.keys(value)) string(name, "devices", `name ${quote(name)}`);
  return value as Record<string, unknown>;
}

export function parseMemoryMap(value: unknown, header: SnapshotHeader): MemoryMap {
  const s = "memoryMap";
  const r = fields(value, s, "", ["ramBytes", "roms"]);
  const ramBytes = integer(r.ramBytes, s, "ramBytes", 0, MAX_MEMORY_BYTES);
  if (ramBytes !== header.memoryBytes) refuse(s, "ramBytes", `is ${ramBytes}, the header says ${header.memoryBytes}`);
  const roms = array(r.roms, s, "roms", 1024).map((rom, i): RomRecord => {
    const f = `roms[${i}]`;
    const rr = fields(rom, s, f, ["gpa", "bytes"]);
    const gpa = integer(rr.gpa, s, `${f}.gpa`, 0, ADDRESS_SPACE_BYTES - PAGE_SIZE);
    if (gpa % PAGE_SIZE !== 0) refuse(s, `${f}.gpa`, `0x${gpa.toString(16)} is not page aligned`);
    if (!(rr.bytes instanceof Uint8Array)) refuse(s, `${f}.bytes`, `is ${kindOf(rr.bytes)}, not binary data`);
    if (rr.bytes.length === 0) refuse(s, `${f}.bytes`, "is empty");
    if (gpa + rr.bytes.length > ADDRESS_SPACE_BYTES) refuse(s, `${f}.bytes`, `0x${gpa.toString(16)} + ${rr.bytes.length} bytes ends above 4 GiB`);
    return { gpa, bytes: rr.bytes };
  });
  const order = roms.map((rom, i) => ({ rom, i })).sort((a, b) => a.rom.gpa - b.rom.gpa);
  for (let k = 1; k < order.length; k++) {
    const prev = order[k - 1]!;
    const next = order[k]!;
    if (prev.rom.gpa + prev.rom.bytes.length > next.rom.gpa) refuse(s, `roms[${next.i}].gpa`, `overlaps roms[${prev.i}]`);
  }
  return { ramBytes, roms };
}

export function parseDrives(value: unknown): DriveRecord[] {
  const s = "drives";
  return array(value, s, "(the section)", MAX_DRIVES).map((drive, i): DriveRecord => {
    const f = `[${i}]`;
    const r = fields(drive, s, f, ["path", "format", "sizeBytes", "readOnly", "identity"], ["overlay"]);
    const record: DriveRecord = {
      path: string(r.path, s, `${f}.path`),
      format: string(r.format, s, `${f}.format`),
      sizeBytes: integer(r.sizeBytes, s, `${f}.sizeBytes`, 0, Number.MAX_SAFE_INTEGER),
      readOnly: boolean(r.readOnly, s, `${f}.readOnly`),
      identity: string(r.identity, s, `${f}.identity`, true),
    };
    if (r.overlay !== undefined) record.overlay = string(r.overlay, s, `${f}.overlay`);
    return record;
  });
}
