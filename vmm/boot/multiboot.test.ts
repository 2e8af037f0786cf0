// Tests of the Multiboot v1 loader with synthetic ELF32 and a.out-kludge kernels.
import { describe, expect, it } from "vitest";
import {
  MBI_CMDLINE,
  MBI_MEMORY,
  MBI_MMAP,
  MBI_MODS,
  MB_AOUT_KLUDGE,
  MB_MEMORY_INFO,
  MULTIBOOT_BOOTLOADER_MAGIC,
  MULTIBOOT_HEADER_MAGIC,
  findMultibootHeader,
  loadMultiboot,
} from "./multiboot.js";
import { BOOT_CS, BootImageError, MIB, type BootPlan } from "./plan.js";
import { kernelKind, loadKernel } from "./index.js";

const MEM = 32 * MIB;

function header(flags: number, kludge?: { headerAddr: number; loadAddr: number; loadEndAddr: number; bssEndAddr: number; entryAddr: number }): Uint8Array {
  const out = new Uint8Array(kludge ? 32 : 12);
  const v = new DataView(out.buffer);
  v.setUint32(0, MULTIBOOT_HEADER_MAGIC, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, (-(MULTIBOOT_HEADER_MAGIC + flags) >>> 0) & 0xffffffff, true);
  if (kludge) [kludge.headerAddr, kludge.loadAddr, kludge.loadEndAddr, kludge.bssEndAddr, kludge.entryAddr].forEach((x, i) => v.setUint32(12 + 4 * i, x, true));
  return out;
}

interface Seg {
  vaddr: number;
  paddr: number;
  data: Uint8Array;
  memsz: number;
}

/** An ELF32 i386 executable with the given PT_LOAD segments and a Multiboot header in its first page. */
function elfKernel(segments: Seg[], entry: number, flags = MB_MEMORY_INFO): Uint8Array {
  const phoff = 52;
  const mbOffset = 0x100;
  let offset = 0x1000;
  const placed = segments.map((s) => {
    const at = offset;
    offset += Math.ceil(s.data.length / 16) * 16 + 16;
    return { ...s, offset: at };
  });
  const image = new Uint8Array(offset);
  const v = new DataView(image.buffer);
  image.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  v.setUint16(16, 2, true);
  v.setUint16(18, 3, true);
  v.setUint32(20, 1, true);
  v.setUint32(24, entry, true);
  v.setUint32(28, phoff, true);
  v.setUint16(40, 52, true);
  v.setUint16(42, 32, true);
  v.setUint16(44, placed.length, true);
  placed.forEach((s, i) => {
    const p = phoff + i * 32;
    v.setUint32(p, 1, true);
    v.setUint32(p + 4, s.offset, true);
    v.setUint32(p + 8, s.vaddr, true);
    v.setUint32(p + 12, s.paddr, true);
    v.setUint32(p + 16, s.data.length, true);
    v.setUint32(p + 20, s.memsz, true);
    image.set(s.data, s.offset);
  });
  image.set(header(flags), mbOffset);
  return image;
}

/** Byte-equal (fast for large arrays, unlike toEqual). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

function filled(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);
}

/** Reads guest memory as the plan would leave it. */
function memoryOf(plan: BootPlan, size = MEM): Uint8Array {
  const mem = new Uint8Array(size);
  for (const w of plan.writes) mem.set(w.bytes, w.gpa);
  return mem;
}

function expectCode(fn: () => unknown, code: string): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BootImageError);
    expect((err as BootImageError).code).toBe(code);
    return (err as BootImageError).message;
  }
  throw new Error(`expected a BootImageError ${code}`);
}

describe("loadMultiboot (ELF)", () => {
  const text = filled(5000, 1);
  const data = filled(300, 2);
  // Linked at 3 GiB + 1 MiB, loaded at 1 MiB: the entry must be translated to a physical address.
  const kernel = elfKernel(
    [
      { vaddr: 0xc0100000, paddr: 0x100000, data: text, memsz: text.length },
      { vaddr: 0xc0200000, paddr: 0x200000, data, memsz: 0x8000 },
    ],
    0xc0100010,
  );

  it("loads PT_LOAD segments at their physical addresses and enters at the physical entry", () => {
    const plan = loadMultiboot(kernel, { memSize: MEM, cmdline: "kernel arg=1" });
    const mem = memoryOf(plan);
    expect(same(mem.subarray(0x100000, 0x100000 + text.length), text)).toBe(true);
    expect(same(mem.subarray(0x200000, 0x200000 + data.length), data)).toBe(true);
    expect(plan.state.eip).toBe(0x100010);
    expect(plan.state.eax).toBe(MULTIBOOT_BOOTLOADER_MAGIC);
    expect(plan.state.cs.selector).toBe(BOOT_CS);
    expect(plan.state.cs.limit).toBe(0xffffffff);
    expect(plan.state.eflags).toBe(2);
  });

  it("builds the information structure: memory, command line, memory map, modules", () => {
    const initrd = filled(10_000, 3);
    const extra = filled(100, 4);
    const plan = loadMultiboot(kernel, { memSize: MEM, cmdline: "hello world", initrd, modules: [{ bytes: extra, cmdline: "mod2 x" }] });
    const mem = memoryOf(plan);
    const v = new DataView(mem.buffer);
    const mbi = plan.state.ebx;
    const flags = v.getUint32(mbi, true);
    for (const f of [MBI_MEMORY, MBI_CMDLINE, MBI_MMAP, MBI_MODS]) expect(flags & f).toBe(f);
    expect(v.getUint32(mbi + 4, true)).toBe(639);
    expect(v.getUint32(mbi + 8, true)).toBe((MEM - MIB) / 1024);
    const cstr = (at: number) => Buffer.from(mem.subarray(at, mem.indexOf(0, at))).toString("latin1");
    expect(cstr(v.getUint32(mbi + 16, true))).toBe("hello world");
    // memory map: size-prefixed entries
    const mmapLength = v.getUint32(mbi + 44, true);
    const mmapAddr = v.getUint32(mbi + 48, true);
    const regions: Array<[number, number, number]> = [];
    for (let at = mmapAddr; at < mmapAddr + mmapLength; at += v.getUint32(at, true) + 4) {
      regions.push([Number(v.getBigUint64(at + 4, true)), Number(v.getBigUint64(at + 12, true)), v.getUint32(at + 20, true)]);
    }
    expect(regions).toEqual([
      [0, 0x9fc00, 1],
      [0x9fc00, 0x60400, 2],
      [MIB, MEM - MIB, 1],
    ]);
    // modules: page aligned, after the kernel's bss (0x208000), contents and strings intact
    expect(v.getUint32(mbi + 20, true)).toBe(2);
    const mods = v.getUint32(mbi + 24, true);
    const m0 = [v.getUint32(mods, true), v.getUint32(mods + 4, true)];
    const m1 = [v.getUint32(mods + 16, true), v.getUint32(mods + 20, true)];
    expect(m0[0]! % 4096).toBe(0);
    expect(m0[0]).toBeGreaterThanOrEqual(0x208000);
    expect(same(mem.subarray(m0[0]!, m0[1]!), initrd)).toBe(true);
    expect(same(mem.subarray(m1[0]!, m1[1]!), extra)).toBe(true);
    expect(m1[0]).toBeGreaterThanOrEqual(m0[1]!);
    expect(cstr(v.getUint32(mods + 24, true))).toBe("mod2 x");
  });

  it("accepts a segment in the low loader area (0x8000) by moving its own data after the modules, as QEMU does", () => {
    const low = filled(0x800, 5);
    const k = elfKernel(
      [
        { vaddr: 0x8000, paddr: 0x8000, data: low, memsz: 0x1000 },
        { vaddr: 0x100000, paddr: 0x100000, data: text, memsz: 0x3000 },
      ],
      0x8000,
    );
    const initrd = filled(5000, 6);
    const plan = loadMultiboot(k, { memSize: MEM, cmdline: "low kernel", initrd });
    const mem = memoryOf(plan);
    const v = new DataView(mem.buffer);
    expect(same(mem.subarray(0x8000, 0x8800), low)).toBe(true);
    expect(plan.state.eip).toBe(0x8000);
    const mbi = plan.state.ebx;
    const modStart = v.getUint32(v.getUint32(mbi + 24, true), true);
    const modEnd = v.getUint32(v.getUint32(mbi + 24, true) + 4, true);
    // Info and GDT lie above the module, not in 0x1000-0x10000 where the kernel is.
    expect(plan.state.gdtrBase).toBeGreaterThanOrEqual(modEnd);
    expect(mbi).toBeGreaterThan(plan.state.gdtrBase);
    expect(modStart).toBeGreaterThanOrEqual(0x103000);
    const cstr = (at: number) => Buffer.from(mem.subarray(at, mem.indexOf(0, at))).toString("latin1");
    expect(cstr(v.getUint32(mbi + 16, true))).toBe("low kernel");
    // The GDT the state points at is the flat one (code descriptor at 0x10).
    expect(mem[plan.state.gdtrBase + 0x10 + 5]).toBe(0x9b);
    expect(same(mem.subarray(modStart, modEnd), initrd)).toBe(true);
    // A kernel that leaves low memory free keeps the GRUB-like layout.
    expect(loadMultiboot(kernel, { memSize: MEM }).state.ebx).toBe(0x9000);
  });

  it("refuses real overlaps only, naming both ranges", () => {
    const a = filled(0x100, 7);
    const overlapping = elfKernel(
      [
        { vaddr: 0x100000, paddr: 0x100000, data: a, memsz: 0x2000 },
        { vaddr: 0x101000, paddr: 0x101000, data: a, memsz: 0x100 },
      ],
      0x100000,
    );
    const message = expectCode(() => loadMultiboot(overlapping, { memSize: MEM }), "OVERLAP");
    expect(message).toMatch(/segment 0x100000-0x102000 overlaps kernel segment 0x101000-0x101100/);
    // No room after the kernel for the loader's data when the kernel fills memory up to its end and also uses low memory.
    const full = elfKernel(
      [
        { vaddr: 0x8000, paddr: 0x8000, data: a, memsz: 0x100 },
        { vaddr: 0x100000, paddr: 0x100000, data: a, memsz: 2 * MIB - 0x100000 },
      ],
      0x8000,
    );
    expect(expectCode(() => loadMultiboot(full, { memSize: 2 * MIB }), "TOO_LARGE")).toMatch(/Multiboot information at 0x200040-/);
  });

  it("is picked by loadKernel", () => {
    expect(kernelKind(kernel)).toBe("multiboot");
    expect(loadKernel(kernel, { memSize: MEM }).state.eax).toBe(MULTIBOOT_BOOTLOADER_MAGIC);
  });

  it("refuses truncated segments, oversized kernels and modules that do not fit", () => {
    expectCode(() => loadMultiboot(kernel.subarray(0, kernel.length - 400), { memSize: MEM }), "TRUNCATED");
    expectCode(() => loadMultiboot(kernel, { memSize: 2 * MIB }), "TOO_LARGE");
    expectCode(() => loadMultiboot(kernel, { memSize: 4 * MIB, initrd: new Uint8Array(2 * MIB) }), "INITRD_DOES_NOT_FIT");
  });

  it("refuses non-i386 ELF and unknown required features", () => {
    const arm = kernel.slice();
    new DataView(arm.buffer).setUint16(18, 40, true);
    expectCode(() => loadMultiboot(arm, { memSize: MEM }), "UNSUPPORTED");
    const odd = elfKernel([{ vaddr: 0x100000, paddr: 0x100000, data: text, memsz: text.length }], 0x100000, 1 << 5);
    expectCode(() => loadMultiboot(odd, { memSize: MEM }), "UNSUPPORTED");
  });
});

describe("loadMultiboot (a.out kludge)", () => {
  // A flat binary loaded at 1 MiB whose header sits at file offset 0x40.
  const body = filled(0x3000, 9);
  const image = body.slice();
  image.set(header(MB_AOUT_KLUDGE, { headerAddr: 0x100040, loadAddr: 0x100000, loadEndAddr: 0x102000, bssEndAddr: 0x110000, entryAddr: 0x100080 }), 0x40);

  it("loads load_addr..load_end_addr from the file and enters at entry_addr", () => {
    const plan = loadMultiboot(image, { memSize: MEM });
    const mem = memoryOf(plan);
    expect(same(mem.subarray(0x100000, 0x102000), image.subarray(0, 0x2000))).toBe(true);
    expect(mem[0x102000]).toBe(0); // not loaded: beyond load_end_addr
    expect(plan.state.eip).toBe(0x100080);
  });

  it("refuses an entry outside the image and a file shorter than the header says", () => {
    const bad = body.slice();
    bad.set(header(MB_AOUT_KLUDGE, { headerAddr: 0x100040, loadAddr: 0x100000, loadEndAddr: 0x102000, bssEndAddr: 0, entryAddr: 0x200000 }), 0x40);
    expectCode(() => loadMultiboot(bad, { memSize: MEM }), "NOT_A_KERNEL");
    const short = body.slice(0, 0x1000);
    short.set(header(MB_AOUT_KLUDGE, { headerAddr: 0x100040, loadAddr: 0x100000, loadEndAddr: 0x102000, bssEndAddr: 0, entryAddr: 0x100080 }), 0x40);
    expectCode(() => loadMultiboot(short, { memSize: MEM }), "TRUNCATED");
  });
});

describe("findMultibootHeader", () => {
  it("needs a valid checksum, 4-byte alignment and the first 8 KiB", () => {
    const good = new Uint8Array(16384);
    good.set(header(0), 8192 - 12);
    expect(findMultibootHeader(good)?.offset).toBe(8192 - 12);
    const late = new Uint8Array(16384);
    late.set(header(0), 8192);
    expect(findMultibootHeader(late)).toBeNull();
    const misaligned = new Uint8Array(4096);
    misaligned.set(header(0), 102);
    expect(findMultibootHeader(misaligned)).toBeNull();
    const badSum = new Uint8Array(4096);
    badSum.set(header(0), 0);
    badSum[8]! ^= 1;
    expect(findMultibootHeader(badSum)).toBeNull();
    expectCode(() => loadKernel(badSum, { memSize: MEM }), "NOT_A_KERNEL");
  });
});
