// Tests of the ACPI tables: parsed back the way an OS finds and walks them.
import { describe, expect, it } from "vitest";
import { ACPI_BASE, AML, EISA_PNP0A03, dsdtAml, FADT, FADT_FLAGS, HEADER, INTI_LEVEL_HIGH, IOAPIC_BASE, LAPIC_BASE, MADT, RSDP, buildAcpiTables } from "./acpi.js";
import { HPET_BASE } from "../devices/hpet.js";
import { SLP_TYP_S5 } from "../devices/acpi-pm.js";

type AmlValue = number | AmlValue[];

/**
 * The names the subset of AML the DSDT uses declares (Scope, Device, Name with integers and
 * packages), by full path: every PkgLength must end exactly where its content does.
 */
function parseAml(aml: Uint8Array): Record<string, AmlValue> {
  const out: Record<string, AmlValue> = {};
  let at = 0;
  const pkgEnd = (): number => {
    const start = at;
    const lead = aml[at++];
    const extra = lead >> 6;
    let length = extra === 0 ? lead & 0x3f : lead & 0x0f;
    for (let i = 0; i < extra; i++) length |= aml[at++] << (4 + 8 * i);
    return start + length;
  };
  const nameString = (): string => {
    let prefix = "";
    if (aml[at] === AML.ROOT) {
      prefix = "\\";
      at++;
    }
    const seg = String.fromCharCode(...aml.subarray(at, at + 4));
    at += 4;
    return prefix + seg;
  };
  const value = (): AmlValue => {
    const op = aml[at++];
    if (op === AML.ZERO) return 0;
    if (op === AML.ONE) return 1;
    if (op === AML.BYTE) return aml[at++];
    if (op === AML.DWORD) {
      const v = new DataView(aml.buffer, aml.byteOffset + at, 4).getUint32(0, true);
      at += 4;
      return v;
    }
    if (op === AML.PACKAGE) {
      const end = pkgEnd();
      const count = aml[at++];
      const items: AmlValue[] = [];
      while (at < end) items.push(value());
      expect(at).toBe(end);
      expect(items.length).toBe(count);
      return items;
    }
    throw new Error(`unexpected AML opcode 0x${op.toString(16)} at ${at - 1}`);
  };
  const terms = (end: number, scope: string): void => {
    while (at < end) {
      const op = aml[at++];
      const join = (n: string) => (n.startsWith("\\") ? n : scope === "" ? n : `${scope}.${n}`);
      if (op === AML.NAME) {
        const n = join(nameString());
        out[n] = value();
      } else if (op === AML.SCOPE) {
        const e = pkgEnd();
        terms(e, join(nameString()));
      } else if (op === AML.EXT && aml[at] === AML.DEVICE) {
        at++;
        const e = pkgEnd();
        terms(e, join(nameString()));
      } else {
        throw new Error(`unexpected AML opcode 0x${op.toString(16)} at ${at - 1}`);
      }
    }
    expect(at).toBe(end);
  };
  terms(aml.length, "");
  return out;
}

/** Guest memory holding the blob where it belongs; reads by guest-physical address. */
function memoryWith(t: ReturnType<typeof buildAcpiTables>) {
  const mem = new Uint8Array(0x100000);
  mem.set(t.bytes, t.base);
  const v = new DataView(mem.buffer);
  return { mem, v };
}

const sum = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);
const sig = (mem: Uint8Array, at: number) => String.fromCharCode(...mem.subarray(at, at + 4));

/** Scan 0xE0000-0xFFFFF on 16-byte boundaries for "RSD PTR " with a valid checksum, as an OS does. */
function findRsdp(mem: Uint8Array): number {
  for (let at = 0xe0000; at < 0x100000; at += 16) {
    if (String.fromCharCode(...mem.subarray(at, at + 8)) === "RSD PTR " && sum(mem.subarray(at, at + 20)) === 0) return at;
  }
  return -1;
}

/** Every table the RSDT points at, checked: signature, length, checksum. */
function walk(mem: Uint8Array, v: DataView, rsdt: number, entry: 4 | 8) {
  expect(sum(mem.subarray(rsdt, rsdt + v.getUint32(rsdt + 4, true)))).toBe(0);
  const length = v.getUint32(rsdt + HEADER.LENGTH, true);
  const found: Record<string, number> = {};
  for (let at = rsdt + 36; at < rsdt + length; at += entry) {
    const p = entry === 4 ? v.getUint32(at, true) : Number(v.getBigUint64(at, true));
    const len = v.getUint32(p + HEADER.LENGTH, true);
    expect(len).toBeGreaterThanOrEqual(36);
    expect(sum(mem.subarray(p, p + len))).toBe(0);
    found[sig(mem, p)] = p;
  }
  return found;
}

describe("ACPI tables", () => {
  it("are found by the RSDP scan, with both RSDP checksums right, and RSDT and XSDT agree", () => {
    const t = buildAcpiTables({ cpus: 2, apic: true });
    const { mem, v } = memoryWith(t);
    const at = findRsdp(mem);
    expect(at).toBe(ACPI_BASE);
    expect(mem[at + RSDP.REVISION]).toBe(2);
    expect(sum(mem.subarray(at, at + 36))).toBe(0);
    const viaRsdt = walk(mem, v, v.getUint32(at + RSDP.RSDT, true), 4);
    const viaXsdt = walk(mem, v, Number(v.getBigUint64(at + RSDP.XSDT, true)), 8);
    expect(Object.keys(viaRsdt).sort()).toEqual(["APIC", "FACP", "HPET"]);
    expect(viaXsdt).toEqual(viaRsdt);
    // Everything lies in the BIOS area and in the blob.
    for (const p of Object.values(t.addresses)) expect(p >= 0xe0000 && p < ACPI_BASE + t.bytes.length).toBe(true);
  });

  it("FADT: PM blocks at piix4's ports, SCI 9, a valid DSDT and a 64-byte-aligned FACS", () => {
    const t = buildAcpiTables({ cpus: 1, apic: true });
    const { mem, v } = memoryWith(t);
    const f = walk(mem, v, v.getUint32(ACPI_BASE + RSDP.RSDT, true), 4).FACP;
    expect(v.getUint32(f + HEADER.LENGTH, true)).toBe(FADT.SIZE);
    expect(v.getUint32(f + FADT.PM1A_EVT_BLK, true)).toBe(0x600);
    expect(v.getUint32(f + FADT.PM1A_CNT_BLK, true)).toBe(0x604);
    expect(v.getUint32(f + FADT.PM_TMR_BLK, true)).toBe(0x608);
    expect(mem[f + FADT.PM_TMR_LEN]).toBe(4);
    expect(v.getUint16(f + FADT.SCI_INT, true)).toBe(9);
    expect(v.getUint32(f + FADT.FLAGS, true)).toBe(FADT_FLAGS);
    const dsdt = v.getUint32(f + FADT.DSDT, true);
    expect(sig(mem, dsdt)).toBe("DSDT");
    expect(sum(mem.subarray(dsdt, dsdt + v.getUint32(dsdt + 4, true)))).toBe(0);
    const facs = v.getUint32(f + FADT.FIRMWARE_CTRL, true);
    expect(sig(mem, facs)).toBe("FACS");
    expect(facs % 64).toBe(0);
    expect(v.getUint32(facs + 4, true)).toBe(64);
  });

  it("MADT: one enabled local APIC per vCPU, the I/O APIC at GSI 0, IRQ0->GSI2, SCI level/high", () => {
    const t = buildAcpiTables({ cpus: 4, apic: true, ioapicId: 0 });
    const { mem, v } = memoryWith(t);
    const m = walk(mem, v, v.getUint32(ACPI_BASE + RSDP.RSDT, true), 4).APIC;
    expect(v.getUint32(m + 36, true)).toBe(LAPIC_BASE);
    expect(v.getUint32(m + 40, true) & MADT.PCAT_COMPAT).toBe(1);
    const end = m + v.getUint32(m + 4, true);
    const lapics: number[] = [];
    const overrides: Array<[number, number, number]> = [];
    let ioapic: [number, number] | null = null;
    for (let at = m + 44; at < end; at += mem[at + 1]) {
      expect(mem[at + 1]).toBeGreaterThan(0);
      if (mem[at] === MADT.LOCAL_APIC) {
        expect(v.getUint32(at + 4, true) & 1).toBe(1);
        lapics.push(mem[at + 3]);
      } else if (mem[at] === MADT.IO_APIC) ioapic = [v.getUint32(at + 4, true), v.getUint32(at + 8, true)];
      else if (mem[at] === MADT.SOURCE_OVERRIDE) overrides.push([mem[at + 3], v.getUint32(at + 4, true), v.getUint16(at + 8, true)]);
    }
    expect(lapics).toEqual([0, 1, 2, 3]);
    expect(ioapic).toEqual([IOAPIC_BASE, 0]);
    expect(overrides).toEqual([
      [0, 2, 0],
      [9, 9, INTI_LEVEL_HIGH],
    ]);
  });

  it("HPET table: the capabilities' low half and the MMIO base", () => {
    const t = buildAcpiTables({ cpus: 1, apic: false });
    const { mem, v } = memoryWith(t);
    const found = walk(mem, v, v.getUint32(ACPI_BASE + RSDP.RSDT, true), 4);
    // No APIC: no MADT.
    expect(Object.keys(found).sort()).toEqual(["FACP", "HPET"]);
    const h = found.HPET;
    expect(v.getUint32(h + 4, true)).toBe(56);
    expect(v.getUint32(h + 36, true) >>> 16).toBe(0x8086);
    expect(Number(v.getBigUint64(h + 44, true))).toBe(HPET_BASE);
  });

  it("splits into the fw_cfg files: the RSDP and the tables after it", () => {
    const t = buildAcpiTables({ cpus: 1, apic: true });
    expect(t.rsdp).toEqual(t.bytes.subarray(0, 36));
    expect(sig(t.tables, 0)).toBe("FACS");
    expect(t.tablesOffset + t.tables.length).toBe(t.bytes.length);
    expect(() => buildAcpiTables({ cpus: 0, apic: true })).toThrow(RangeError);
  });

  it("DSDT: \\_S5 and \\_SB.PCI0 as a PNP0A03 host bridge with its _PRT, with package lengths that add up", () => {
    const routes = [{ slot: 3, gsi: 15 }, { slot: 4, gsi: 11 }, { slot: 7, gsi: 5 }];
    const aml = dsdtAml(routes);
    const names = parseAml(aml);
    expect(names["\\_S5_"]).toEqual([SLP_TYP_S5, SLP_TYP_S5, 0, 0]);
    expect(names["\\_SB_.PCI0._HID"]).toBe(EISA_PNP0A03);
    expect(names["\\_SB_.PCI0._ADR"]).toBe(0);
    expect(names["\\_SB_.PCI0._PRT"]).toEqual(routes.map((r) => [r.slot * 0x10000 + 0xffff, 0, 0, r.gsi]));
    // The EISA ID decodes to "PNP0A03": three 5-bit letters, big-endian, then the product number.
    const b = [EISA_PNP0A03 & 0xff, (EISA_PNP0A03 >> 8) & 0xff, (EISA_PNP0A03 >> 16) & 0xff, EISA_PNP0A03 >>> 24];
    const id = (b[0] << 8) | b[1];
    expect(String.fromCharCode(((id >> 10) & 31) + 64, ((id >> 5) & 31) + 64, (id & 31) + 64)).toBe("PNP");
    expect(((b[2] << 8) | b[3]).toString(16).padStart(4, "0")).toBe("0a03");
    const t = buildAcpiTables({ cpus: 1, apic: false, pciIrqs: routes });
    const dsdt = t.addresses.DSDT - t.base;
    expect(t.bytes.subarray(dsdt + 36, dsdt + 36 + aml.length)).toEqual(aml);
  });
});
