// ACPI tables of the PC platform: RSDP, RSDT and XSDT, FADT (ACPI 1.0 layout) with FACS and a
// minimal DSDT, MADT and HPET, built as one blob for a fixed guest-physical address.
//
// The blob sits at ACPI_BASE in the BIOS area (0xE0000-0xFFFFF, reserved in every memory map the
// loaders report), where an OS finds the RSDP by its 16-byte-aligned "RSD PTR " scan. Facts from
// the ACPI spec (6.x, section 5.2) and QEMU's pc machine: PM blocks at piix4's ports, the SCI on
// IRQ 9 (level, active high), IRQ 0 overridden to GSI 2, the I/O APIC at 0xFEC00000 with GSI base
// 0, local APIC NMI on LINT1, the HPET at 0xFED00000. Without an APIC there is no MADT (a PIC-only
// PC). Every table's bytes sum to 0 (mod 256); the RSDP's first 20 bytes and all 36 do too.

import { HPET_BASE, HPET_CAP_LOW } from "../devices/hpet.js";
import { PM1A_CNT_BLK, PM1A_EVT_BLK, PM1_CNT_LEN, PM1_EVT_LEN, PM_TMR_BLK, PM_TMR_LEN, SCI_IRQ, SLP_TYP_S5 } from "../devices/acpi-pm.js";

/** Where the blob goes: the start of the BIOS area; the RSDP is its first 36 bytes. */
export const ACPI_BASE = 0xe0000;
/** The BIOS area an OS scans for the RSDP (16-byte aligned). */
export const RSDP_SCAN = { start: 0xe0000, end: 0x100000 } as const;
export const LAPIC_BASE = 0xfee00000;
export const IOAPIC_BASE = 0xfec00000;
export const OEM_ID = "NOVATS";
export const OEM_TABLE_ID = "HVPC    ";

/** Table header (36 bytes) field offsets. */
export const HEADER = { SIGNATURE: 0, LENGTH: 4, REVISION: 8, CHECKSUM: 9, OEM_ID: 10, OEM_TABLE_ID: 16, OEM_REVISION: 24, CREATOR_ID: 28, CREATOR_REVISION: 32, SIZE: 36 } as const;
/** RSDP field offsets (revision 2: 36 bytes). */
export const RSDP = { CHECKSUM: 8, OEM_ID: 9, REVISION: 15, RSDT: 16, LENGTH: 20, XSDT: 24, EXT_CHECKSUM: 32, SIZE: 36, V1_SIZE: 20 } as const;
/** FADT (revision 1, 116 bytes) field offsets. */
export const FADT = {
  FIRMWARE_CTRL: 36,
  DSDT: 40,
  INT_MODEL: 44,
  SCI_INT: 46,
  SMI_CMD: 48,
  PM1A_EVT_BLK: 56,
  PM1A_CNT_BLK: 64,
  PM_TMR_BLK: 76,
  PM1_EVT_LEN: 88,
  PM1_CNT_LEN: 89,
  PM_TMR_LEN: 91,
  P_LVL2_LAT: 96,
  P_LVL3_LAT: 98,
  CENTURY: 108,
  FLAGS: 112,
  SIZE: 116,
} as const;
/** FADT flags: WBINVD works, C1 on all CPUs, power and sleep buttons not fixed features. */
export const FADT_FLAGS = (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5);
/** MADT entry types and flags. */
export const MADT = { LOCAL_APIC: 0, IO_APIC: 1, SOURCE_OVERRIDE: 2, LOCAL_APIC_NMI: 4, PCAT_COMPAT: 1, ENABLED: 1 } as const;
/** MPS INTI flags: active high (1) and level triggered (3 << 2). */
export const INTI_LEVEL_HIGH = 0x000d;

export interface AcpiOptions {
  /** vCPUs: one enabled local APIC each, APIC IDs 0..cpus-1. */
  cpus: number;
  /** Local APIC and I/O APIC present: a MADT. */
  apic: boolean;
  /** The I/O APIC's ID (its ID register after reset). */
  ioapicId?: number;
  /** Guest-physical address of the blob (default ACPI_BASE). */
  base?: number;
  /** PCI interrupt routing for the DSDT's `_PRT`: INTA# of the function in `slot` drives `gsi`. */
  pciIrqs?: readonly PciIrqRoute[];
}

/** One slot's INTA# and the GSI (ISA IRQ number, I/O APIC input) it is wired to. */
export interface PciIrqRoute {
  slot: number;
  gsi: number;
}

export interface AcpiTables {
  /** Guest-physical address of `bytes` (the RSDP is at `base`). */
  base: number;
  /** RSDP and tables, as placed. */
  bytes: Uint8Array;
  /** The RSDP alone (fw_cfg "etc/acpi/rsdp"). */
  rsdp: Uint8Array;
  /** The tables after the RSDP (fw_cfg "etc/acpi/tables"), at `base + tablesOffset`. */
  tables: Uint8Array;
  tablesOffset: number;
  /** Where each table lies, by signature. */
  addresses: Record<string, number>;
}

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** The byte that makes `bytes` sum to 0 mod 256 with the checksum field (assumed 0) included. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** A table: header with `signature`, `revision` and `body`, checksum set. */
function table(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER.SIZE + body.length);
  const v = new DataView(out.buffer);
  out.set(ascii(signature), HEADER.SIGNATURE);
  v.setUint32(HEADER.LENGTH, out.length, true);
  out[HEADER.REVISION] = revision;
  out.set(ascii(OEM_ID), HEADER.OEM_ID);
  out.set(ascii(OEM_TABLE_ID), HEADER.OEM_TABLE_ID);
  v.setUint32(HEADER.OEM_REVISION, 1, true);
  out.set(ascii("NVTS"), HEADER.CREATOR_ID);
  v.setUint32(HEADER.CREATOR_REVISION, 1, true);
  out.set(body, HEADER.SIZE);
  out[HEADER.CHECKSUM] = checksum(out);
  return out;
}

/** A little-endian body writer. */
class Body {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
}

function fadt(facs: number, dsdt: number, apic: boolean): Uint8Array {
  const b = new Body(FADT.SIZE - HEADER.SIZE);
  const at = (o: number) => o - HEADER.SIZE;
  const v = b.view;
  v.setUint32(at(FADT.FIRMWARE_CTRL), facs, true);
  v.setUint32(at(FADT.DSDT), dsdt, true);
  v.setUint8(at(FADT.INT_MODEL), apic ? 1 : 0);
  v.setUint16(at(FADT.SCI_INT), SCI_IRQ, true);
  // SMI_CMD 0: no SMM handshake, the system is always in ACPI mode.
  v.setUint32(at(FADT.SMI_CMD), 0, true);
  v.setUint32(at(FADT.PM1A_EVT_BLK), PM1A_EVT_BLK, true);
  v.setUint32(at(FADT.PM1A_CNT_BLK), PM1A_CNT_BLK, true);
  v.setUint32(at(FADT.PM_TMR_BLK), PM_TMR_BLK, true);
  v.setUint8(at(FADT.PM1_EVT_LEN), PM1_EVT_LEN);
  v.setUint8(at(FADT.PM1_CNT_LEN), PM1_CNT_LEN);
  v.setUint8(at(FADT.PM_TMR_LEN), PM_TMR_LEN);
  // Latencies above 100 and 1000 us: no C2, no C3.
  v.setUint16(at(FADT.P_LVL2_LAT), 0xfff, true);
  v.setUint16(at(FADT.P_LVL3_LAT), 0xfff, true);
  v.setUint8(at(FADT.CENTURY), 0x32);
  v.setUint32(at(FADT.FLAGS), FADT_FLAGS, true);
  return table("FACP", 1, b.bytes);
}

function madt(cpus: number, ioapicId: number): Uint8Array {
  const entries: number[][] = [];
  for (let id = 0; id < cpus; id++) entries.push([MADT.LOCAL_APIC, 8, id, id, ...le32(MADT.ENABLED)]);
  entries.push([MADT.IO_APIC, 12, ioapicId, 0, ...le32(IOAPIC_BASE), ...le32(0)]);
  // ISA bus 0: IRQ 0 arrives at GSI 2 (edge, as the bus); the SCI is level, active high.
  entries.push([MADT.SOURCE_OVERRIDE, 10, 0, 0, ...le32(2), 0, 0]);
  entries.push([MADT.SOURCE_OVERRIDE, 10, 0, SCI_IRQ, ...le32(SCI_IRQ), INTI_LEVEL_HIGH & 0xff, INTI_LEVEL_HIGH >> 8]);
  // NMI on LINT1 of every processor (UID 0xFF), as QEMU has it.
  entries.push([MADT.LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
  const flat = entries.flat();
  const b = new Body(8 + flat.length);
  b.view.setUint32(0, LAPIC_BASE, true);
  b.view.setUint32(4, MADT.PCAT_COMPAT, true);
  b.bytes.set(flat, 8);
  return table("APIC", 1, b.bytes);
}

function hpetTable(): Uint8Array {
  const b = new Body(20);
  b.view.setUint32(0, HPET_CAP_LOW >>> 0, true);
  // Generic address: system memory (space 0), 64-bit register width, offset 0, access size 0.
  b.view.setUint8(4, 0);
  b.view.setUint8(5, 64);
  b.view.setBigUint64(8, BigInt(HPET_BASE), true);
  // HPET number 0, minimum tick 0, no page protection.
  return table("HPET", 1, b.bytes);
}

/** AML opcodes and encodings used by the DSDT (ACPI spec 20.2). */
export const AML = { ZERO: 0x00, ONE: 0x01, NAME: 0x08, BYTE: 0x0a, DWORD: 0x0c, SCOPE: 0x10, PACKAGE: 0x12, ROOT: 0x5c, EXT: 0x5b, DEVICE: 0x82 } as const;
/** EISA ID "PNP0A03" (PCI host bridge) as AML's compressed DWORD. */
export const EISA_PNP0A03 = 0x030ad041;

/** A PkgLength (ACPI 20.2.4) for `content` bytes after it, followed by the content. */
function pkg(content: number[]): number[] {
  const total = content.length + 1;
  if (total < 0x40) return [total, ...content];
  const two = content.length + 2;
  if (two >= 0x1000) throw new RangeError("AML package too long for a 2-byte PkgLength");
  return [0x40 | (two & 0xf), two >> 4, ...content];
}

const nameSeg = (s: string) => Array.from(s, (c) => c.charCodeAt(0));

/** An integer as the shortest AML constant. */
function amlInteger(v: number): number[] {
  if (v === 0) return [AML.ZERO];
  if (v === 1) return [AML.ONE];
  if (v < 0x100) return [AML.BYTE, v];
  return [AML.DWORD, ...le32(v)];
}

/** Package(n) { integers... } */
function amlPackage(elements: number[][]): number[] {
  return [AML.PACKAGE, ...pkg([elements.length, ...elements.flat()])];
}

/**
 * The DSDT's AML: \_S5 (soft-off, sleep type SLP_TYP_S5, so that Linux powers off through PM1
 * control) and \_SB.PCI0, a PCI host bridge (PNP0A03) at bus 0, so that Linux with ACPI on still
 * scans the PCI bus (without it, it finds no root bridge and no PCI device), with `_PRT`: each
 * slot's INTA# on a fixed GSI (source 0), which in APIC mode is the I/O APIC input and in PIC mode
 * the ISA IRQ (the same numbers: every route is an ISA IRQ wired to both).
 */
export function dsdtAml(pciIrqs: readonly PciIrqRoute[] = []): Uint8Array {
  const name = (seg: string, value: number[]) => [AML.NAME, ...nameSeg(seg), ...value];
  // _PRT entries: { address (device in the high word, any function), pin (0 = INTA#), source, source index }.
  const prt = amlPackage(pciIrqs.map((r) => amlPackage([amlInteger(((r.slot << 16) | 0xffff) >>> 0), amlInteger(0), amlInteger(0), amlInteger(r.gsi)])));
  const device = [AML.EXT, AML.DEVICE, ...pkg([...nameSeg("PCI0"), ...name("_HID", [AML.DWORD, ...le32(EISA_PNP0A03)]), ...name("_ADR", [AML.ZERO]), ...name("_UID", [AML.ZERO]), ...name("_PRT", prt)])];
  const s5 = [AML.NAME, AML.ROOT, ...nameSeg("_S5_"), ...amlPackage([amlInteger(SLP_TYP_S5), amlInteger(SLP_TYP_S5), amlInteger(0), amlInteger(0)])];
  return Uint8Array.from([...s5, AML.SCOPE, ...pkg([AML.ROOT, ...nameSeg("_SB_"), ...device])]);
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

const align = (v: number, a: number) => Math.ceil(v / a) * a;

/** The RSDP and every table for `options`, laid out from `base`. */
export function buildAcpiTables(options: AcpiOptions): AcpiTables {
  const base = options.base ?? ACPI_BASE;
  const cpus = options.cpus;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 255) throw new RangeError(`ACPI tables for ${cpus} vCPUs: must be 1 to 255`);
  // FACS: 64 bytes, 64-byte aligned, no checksum.
  const facs = new Uint8Array(64);
  facs.set(ascii("FACS"));
  new DataView(facs.buffer).setUint32(4, 64, true);
  const dsdt = table("DSDT", 1, dsdtAml(options.pciIrqs));
  const parts: { name: string; bytes: Uint8Array; at: number }[] = [];
  let cursor: number = RSDP.SIZE;
  const place = (name: string, bytes: Uint8Array, alignment = 16) => {
    cursor = align(cursor, alignment);
    parts.push({ name, bytes, at: cursor });
    cursor += bytes.length;
    return base + cursor - bytes.length;
  };
  const tablesOffset = 64;
  cursor = tablesOffset;
  const facsAt = place("FACS", facs, 64);
  const dsdtAt = place("DSDT", dsdt);
  const others = [fadt(facsAt, dsdtAt, options.apic), ...(options.apic ? [madt(cpus, options.ioapicId ?? 0)] : []), hpetTable()];
  const pointers = others.map((t) => place(String.fromCharCode(...t.subarray(0, 4)), t));
  const rsdtBody = new Body(4 * pointers.length);
  pointers.forEach((p, i) => rsdtBody.view.setUint32(4 * i, p, true));
  const rsdtAt = place("RSDT", table("RSDT", 1, rsdtBody.bytes));
  const xsdtBody = new Body(8 * pointers.length);
  pointers.forEach((p, i) => xsdtBody.view.setBigUint64(8 * i, BigInt(p), true));
  const xsdtAt = place("XSDT", table("XSDT", 1, xsdtBody.bytes));

  const rsdp = new Uint8Array(RSDP.SIZE);
  const rv = new DataView(rsdp.buffer);
  rsdp.set(ascii("RSD PTR "));
  rsdp.set(ascii(OEM_ID), RSDP.OEM_ID);
  rsdp[RSDP.REVISION] = 2;
  rv.setUint32(RSDP.RSDT, rsdtAt, true);
  rv.setUint32(RSDP.LENGTH, RSDP.SIZE, true);
  rv.setBigUint64(RSDP.XSDT, BigInt(xsdtAt), true);
  rsdp[RSDP.CHECKSUM] = checksum(rsdp.subarray(0, RSDP.V1_SIZE));
  rsdp[RSDP.EXT_CHECKSUM] = checksum(rsdp);

  const bytes = new Uint8Array(align(cursor, 16));
  bytes.set(rsdp, 0);
  const addresses: Record<string, number> = { RSDP: base };
  for (const p of parts) {
    bytes.set(p.bytes, p.at);
    addresses[p.name] = base + p.at;
  }
  return { base, bytes, rsdp, tables: bytes.subarray(tablesOffset), tablesOffset, addresses };
}
