// Tests of the bzImage loader with synthetic images, plus the real Debian kernel when it is cached.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CAN_USE_HEAP, HDRS_MAGIC, LINUX_LAYOUT, loadLinux, parseSetupHeader } from "./linux.js";
import { BOOT_CS, BOOT_DS, BootImageError, E820_RAM, E820_RESERVED, MIB } from "./plan.js";

const MEM = 64 * MIB;

interface FakeOptions {
  version?: number;
  setupSects?: number;
  payload?: number;
  loadflags?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
  prefAddress?: number;
  initSize?: number;
  relocatable?: boolean;
}

/** A bzImage-shaped file: setup sectors with a setup header, then a recognisable payload. */
function fakeBzImage(o: FakeOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const payload = o.payload ?? 8192;
  const image = new Uint8Array((setupSects + 1) * 512 + payload);
  const v = new DataView(image.buffer);
  image[0x1f1] = setupSects;
  v.setUint32(0x1f4, Math.ceil(payload / 16), true);
  v.setUint16(0x1fe, 0xaa55, true);
  image[0x200] = 0xeb;
  image[0x201] = 0x6a; // header ends at 0x26c (protocol 2.15)
  v.setUint32(0x202, HDRS_MAGIC, true);
  v.setUint16(0x206, o.version ?? 0x020f, true);
  image[0x211] = o.loadflags ?? 0x01;
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, o.initrdAddrMax ?? 0x7fffffff, true);
  v.setUint32(0x230, 0x200000, true);
  image[0x234] = o.relocatable === false ? 0 : 1;
  v.setUint32(0x238, o.cmdlineSize ?? 2047, true);
  v.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x1000000), true);
  v.setUint32(0x260, o.initSize ?? 0x400000, true);
  for (let i = 0; i < payload; i++) image[(setupSects + 1) * 512 + i] = (i * 7 + 3) & 0xff;
  return image;
}

function write(plan: ReturnType<typeof loadLinux>, gpa: number) {
  const w = plan.writes.find((x) => x.gpa === gpa);
  if (w === undefined) throw new Error(`no write at 0x${gpa.toString(16)}`);
  return w.bytes;
}

function expectCode(fn: () => unknown, code: string) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BootImageError);
    expect((err as BootImageError).code).toBe(code);
    return (err as BootImageError).message;
  }
  throw new Error(`expected a BootImageError ${code}`);
}

describe("loadLinux", () => {
  it("places the protected-mode kernel at 1 MiB and enters it in flat 32-bit mode", () => {
    const image = fakeBzImage({ setupSects: 6 });
    const plan = loadLinux(image, { memSize: MEM, cmdline: "console=ttyS0" });
    expect(Buffer.from(write(plan, MIB)).equals(Buffer.from(image.subarray(7 * 512)))).toBe(true);
    const s = plan.state;
    expect(s.eip).toBe(MIB);
    expect(s.esi).toBe(LINUX_LAYOUT.bootParams);
    expect([s.ebp, s.edi, s.ebx]).toEqual([0, 0, 0]);
    expect(s.cs.selector).toBe(BOOT_CS);
    for (const seg of [s.ds, s.es, s.ss]) expect(seg.selector).toBe(BOOT_DS);
    expect(s.cs).toMatchObject({ base: 0, limit: 0xffffffff });
    expect(s.cr0 & 1).toBe(1);
    expect(s.cr0 & 0x80000000).toBe(0);
    expect(s.eflags & 0x200).toBe(0);
    // The GDT in memory has flat code at 0x10 and flat data at 0x18.
    const gdt = write(plan, s.gdtrBase);
    expect(s.gdtrLimit).toBeGreaterThanOrEqual(0x1f);
    expect([...gdt.subarray(0x10, 0x18)]).toEqual([0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0]);
    expect([...gdt.subarray(0x18, 0x20)]).toEqual([0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0]);
  });

  it("fills boot_params: header copy, loader fields, command line, E820 map", () => {
    const image = fakeBzImage();
    const plan = loadLinux(image, { memSize: MEM, cmdline: "root=/dev/ram0 quiet" });
    const bp = write(plan, LINUX_LAYOUT.bootParams);
    const v = new DataView(bp.buffer, bp.byteOffset);
    expect(v.getUint32(0x202, true)).toBe(HDRS_MAGIC);
    expect(v.getUint16(0x206, true)).toBe(0x020f);
    expect(bp[0x210]).toBe(0xff);
    expect(bp[0x211]! & CAN_USE_HEAP).toBe(CAN_USE_HEAP);
    expect(bp[0x211]! & 1).toBe(1);
    expect(v.getUint32(0x214, true)).toBe(MIB);
    expect(v.getUint32(0x218, true)).toBe(0);
    expect(v.getUint32(0x228, true)).toBe(LINUX_LAYOUT.cmdline);
    expect(Buffer.from(write(plan, LINUX_LAYOUT.cmdline)).toString("latin1")).toBe("root=/dev/ram0 quiet\0");
    // Bytes outside the setup header stay zero (no stale setup code in the zero page).
    expect(bp.subarray(0, 0x1e0).every((b) => b === 0)).toBe(true);
    expect(bp[0x1e8]).toBe(3);
    const e820 = [0, 1, 2].map((i) => ({
      base: Number(v.getBigUint64(0x2d0 + i * 20, true)),
      size: Number(v.getBigUint64(0x2d0 + i * 20 + 8, true)),
      type: v.getUint32(0x2d0 + i * 20 + 16, true),
    }));
    expect(e820).toEqual([
      { base: 0, size: 0x9fc00, type: E820_RAM },
      { base: 0x9fc00, size: MIB - 0x9fc00, type: E820_RESERVED },
      { base: MIB, size: MEM - MIB, type: E820_RAM },
    ]);
  });

  it("puts the initrd as high as memory and initrd_addr_max allow, page aligned", () => {
    const initrd = new Uint8Array(300_000).fill(0x5a);
    const high = loadLinux(fakeBzImage(), { memSize: MEM, initrd });
    const bp = new DataView(write(high, LINUX_LAYOUT.bootParams).buffer);
    const at = bp.getUint32(0x218, true);
    expect(bp.getUint32(0x21c, true)).toBe(initrd.length);
    expect(at % 4096).toBe(0);
    expect(at + initrd.length).toBeLessThanOrEqual(MEM);
    expect(MEM - (at + initrd.length)).toBeLessThan(4096);
    expect(write(high, at)).toBe(initrd);

    const capped = loadLinux(fakeBzImage({ initrdAddrMax: 0x2000000 - 1 }), { memSize: MEM, initrd });
    const at2 = new DataView(write(capped, LINUX_LAYOUT.bootParams).buffer).getUint32(0x218, true);
    expect(at2 + initrd.length).toBeLessThanOrEqual(0x2000000);
    expect(0x2000000 - (at2 + initrd.length)).toBeLessThan(4096);
  });

  it("refuses files that are not bzImages", () => {
    expectCode(() => loadLinux(new Uint8Array(100), { memSize: MEM }), "NOT_A_KERNEL");
    const elf = new Uint8Array(4096);
    elf.set([0x7f, 0x45, 0x4c, 0x46]);
    expect(expectCode(() => loadLinux(elf, { memSize: MEM }), "NOT_A_KERNEL")).toMatch(/HdrS/);
    const noFlag = fakeBzImage();
    noFlag[0x1fe] = 0;
    expectCode(() => loadLinux(noFlag, { memSize: MEM }), "NOT_A_KERNEL");
  });

  it("refuses old protocols and zImages", () => {
    expect(expectCode(() => loadLinux(fakeBzImage({ version: 0x0201 }), { memSize: MEM }), "UNSUPPORTED")).toMatch(/2\.01/);
    expect(expectCode(() => loadLinux(fakeBzImage({ loadflags: 0 }), { memSize: MEM }), "UNSUPPORTED")).toMatch(/zImage/);
  });

  it("refuses truncated images", () => {
    const image = fakeBzImage({ setupSects: 8, payload: 65536 });
    expectCode(() => loadLinux(image.subarray(0, 3 * 512), { memSize: MEM }), "TRUNCATED");
    expectCode(() => loadLinux(image.subarray(0, image.length - 4096), { memSize: MEM }), "TRUNCATED");
  });

  it("refuses a kernel that does not fit in memory, and an initrd that does not fit", () => {
    // Runs at 16 MiB and needs 12 MiB from there: 16 MiB of RAM is not enough.
    const image = fakeBzImage({ initSize: 12 * MIB });
    expect(expectCode(() => loadLinux(image, { memSize: 16 * MIB }), "TOO_LARGE")).toMatch(/16 MiB/);
    expect(() => loadLinux(image, { memSize: 32 * MIB })).not.toThrow();
    const initrd = new Uint8Array(5 * MIB);
    expectCode(() => loadLinux(image, { memSize: 32 * MIB, initrd }), "INITRD_DOES_NOT_FIT");
    // initrd_addr_max below the kernel's end leaves no room either.
    expectCode(() => loadLinux(fakeBzImage({ initrdAddrMax: 0x1200000 }), { memSize: MEM, initrd: new Uint8Array(4096) }), "INITRD_DOES_NOT_FIT");
  });

  it("refuses a command line longer than cmdline_size", () => {
    const image = fakeBzImage({ cmdlineSize: 16 });
    expect(() => loadLinux(image, { memSize: MEM, cmdline: "x".repeat(16) })).not.toThrow();
    expectCode(() => loadLinux(image, { memSize: MEM, cmdline: "x".repeat(17) }), "BAD_OPTION");
  });

  it("produces non-overlapping writes inside memory", () => {
    const plan = loadLinux(fakeBzImage(), { memSize: MEM, cmdline: "a", initrd: new Uint8Array(12345) });
    const sorted = [...plan.writes].sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i - 1]!.gpa + sorted[i - 1]!.bytes.length).toBeLessThanOrEqual(sorted[i]!.gpa);
    expect(sorted.at(-1)!.gpa + sorted.at(-1)!.bytes.length).toBeLessThanOrEqual(MEM);
  });
});

/** The bzImage of the cached default guest, if it was fetched (services/guest). */
function cachedKernel(): string | null {
  const cache = process.env["HV_CACHE_DIR"] || join(homedir(), ".cache", "hv", "guest");
  const dir = join(cache, "extract");
  if (!existsSync(dir)) return null;
  for (const sub of readdirSync(dir)) {
    const path = join(dir, sub, "vmlinuz");
    if (existsSync(path)) return path;
  }
  return null;
}

describe("loadLinux with the real Debian kernel", () => {
  const path = cachedKernel();
  it.skipIf(path === null)("parses its setup header and plans a 128 MiB boot", () => {
    const image = new Uint8Array(readFileSync(path!));
    const hdr = parseSetupHeader(image, path!);
    expect(hdr.version).toBeGreaterThanOrEqual(0x020a);
    expect(hdr.kernelVersion).toMatch(/^6\.1\.0-\d+-686 /);
    expect(hdr.relocatable).toBe(true);
    expect(hdr.initSize).toBeGreaterThan(0);
    expect((hdr.setupSects + 1) * 512 + hdr.syssize * 16).toBeLessThanOrEqual(image.length + 15);
    const plan = loadLinux(image, { memSize: 128 * MIB, cmdline: "console=ttyS0", initrd: new Uint8Array(2 * MIB) });
    expect(plan.state.eip).toBe(MIB);
    expect(() => loadLinux(image, { memSize: 16 * MIB })).toThrow(BootImageError);
  });
  if (path === null) console.info("linux.test: no cached Debian kernel (run services/guest to fetch it); real-image test skipped");
});
