// Multiboot v1 loader: finds the header in the first 8 KiB, loads an ELF32 image's PT_LOAD
// segments (or the a.out kludge's address fields), builds the multiboot information structure
// (memory, command line, memory map, modules) and enters flat protected mode with
// EAX = 0x2BADB002, EBX = the information structure.
import {
  BootImageError,
  ByteReader,
  ByteWriter,
  MIB,
  alignUp,
  checkMemorySize,
  checkWrites,
  cString,
  flatGdt,
  pcMemoryMap,
  protectedModeState,
  type BootPlan,
  type BootWrite,
} from "./plan.js";

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** Header flags. */
export const MB_PAGE_ALIGN = 1 << 0;
export const MB_MEMORY_INFO = 1 << 1;
export const MB_VIDEO_MODE = 1 << 2;
export const MB_AOUT_KLUDGE = 1 << 16;
/** Info flags. */
export const MBI_MEMORY = 1 << 0;
export const MBI_CMDLINE = 1 << 2;
export const MBI_MODS = 1 << 3;
export const MBI_MMAP = 1 << 6;
export const MBI_LOADER_NAME = 1 << 9;

/**
 * Where the loader's own data (GDT, information structure, command lines, memory map, module
 * list) goes: low memory, as GRUB has it, when no kernel segment uses that area; otherwise the
 * first page after the kernel and its modules, as QEMU does (it puts the information structure
 * after the modules). Either way it never overlaps the kernel.
 */
export const MULTIBOOT_LAYOUT = {
  gdt: 0x1000,
  info: 0x9000,
  /** Command lines, memory map and module list follow the info structure, up to `infoEnd`. */
  infoEnd: 0x10000,
} as const;

/** Largest loader data area (GDT + info + strings + tables), bytes. */
const AREA_MAX = MULTIBOOT_LAYOUT.infoEnd - MULTIBOOT_LAYOUT.info;
/** Where the info structure starts in a relocated area: after the 32-byte GDT, 16-byte aligned. */
const RELOCATED_INFO_OFFSET = 0x40;

export const LOADER_NAME = "hv";

export interface MultibootHeader {
  /** File offset of the header. */
  offset: number;
  flags: number;
  /** a.out kludge fields (valid when flags has MB_AOUT_KLUDGE). */
  headerAddr: number;
  loadAddr: number;
  loadEndAddr: number;
  bssEndAddr: number;
  entryAddr: number;
}

/** Finds a Multiboot v1 header (4-byte aligned, within the first 8192 bytes, checksum valid), or null. */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | null {
  const r = new ByteReader(image, "kernel");
  const limit = Math.min(8192, image.length) - 12;
  for (let off = 0; off <= limit; off += 4) {
    if (r.u32(off) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = r.u32(off + 4);
    if (((MULTIBOOT_HEADER_MAGIC + flags + r.u32(off + 8)) & 0xffffffff) >>> 0 !== 0) continue;
    const kludge = (flags & MB_AOUT_KLUDGE) !== 0;
    const field = (i: number) => (kludge ? r.u32(off + 12 + 4 * i) : 0);
    return { offset: off, flags, headerAddr: field(0), loadAddr: field(1), loadEndAddr: field(2), bssEndAddr: field(3), entryAddr: field(4) };
  }
  return null;
}

export interface MultibootModule {
  bytes: Uint8Array;
  /** The module's string (GRUB passes the module's command line). */
  cmdline?: string;
}

export interface MultibootLoadOptions {
  memSize: number;
  cmdline?: string;
  /** Loaded as the first module (what QEMU does with -initrd for a Multiboot kernel). */
  initrd?: Uint8Array;
  modules?: MultibootModule[];
  name?: string;
}

interface Segment {
  gpa: number;
  bytes: Uint8Array;
  /** Bytes to reserve in memory (>= bytes.length; the rest is zero, i.e. bss). */
  memSize: number;
}

/** Builds the boot plan for a Multiboot v1 kernel. Checks everything before building anything. */
export function loadMultiboot(image: Uint8Array, opts: MultibootLoadOptions): BootPlan {
  const what = opts.name ?? "kernel";
  checkMemorySize(opts.memSize);
  const header = findMultibootHeader(image);
  if (header === null) throw new BootImageError("NOT_A_KERNEL", `${what}: no Multiboot header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB`);
  const unknown = header.flags & 0xfff8;
  if (unknown !== 0) throw new BootImageError("UNSUPPORTED", `${what}: Multiboot header requires features 0x${unknown.toString(16)} this loader does not know`);
  // MB_VIDEO_MODE asks for a graphics mode; there is no display, so the kernel gets no VBE info
  // (info flag 11 stays clear) and keeps the text console it must handle anyway.

  const { segments, entry } = (header.flags & MB_AOUT_KLUDGE) !== 0 ? aoutSegments(image, header, what) : elfSegments(image, what);
  let kernelEnd = 0;
  for (const s of segments) {
    if (s.gpa + s.memSize > opts.memSize) {
      throw new BootImageError("TOO_LARGE", `${what}: segment at 0x${s.gpa.toString(16)} (${s.memSize} bytes) ends beyond ${opts.memSize / MIB} MiB of memory`);
    }
    if (s.gpa < MIB && s.gpa + s.memSize > 0x9fc00) throw new BootImageError("UNSUPPORTED", `${what}: segment at 0x${s.gpa.toString(16)} lies in the legacy hole below 1 MiB`);
    kernelEnd = Math.max(kernelEnd, s.gpa + s.memSize);
  }

  // Modules after the kernel, page aligned (always: MB_PAGE_ALIGN asks for it and it costs nothing).
  const modules: MultibootModule[] = [...(opts.initrd !== undefined ? [{ bytes: opts.initrd, cmdline: "initrd" }] : []), ...(opts.modules ?? [])];
  let cursor = alignUp(Math.max(kernelEnd, MIB), 4096);
  const placed = modules.map((m) => {
    const gpa = cursor;
    cursor = alignUp(gpa + m.bytes.length, 4096);
    return { gpa, ...m };
  });
  if (cursor > opts.memSize) {
    throw new BootImageError("INITRD_DOES_NOT_FIT", `${what}: modules end at ${(cursor / MIB).toFixed(1)} MiB, beyond ${opts.memSize / MIB} MiB of memory`);
  }

  // The loader's data: in low memory when the kernel leaves it free, else after the modules.
  const lowFree = segments.every((seg) => seg.gpa >= MULTIBOOT_LAYOUT.infoEnd || seg.gpa + seg.memSize <= MULTIBOOT_LAYOUT.gdt);
  const memoryMap = pcMemoryMap(opts.memSize);
  let gdtAt: number = MULTIBOOT_LAYOUT.gdt;
  let infoAt: number = MULTIBOOT_LAYOUT.info;
  if (!lowFree) {
    gdtAt = alignUp(cursor, 4096);
    infoAt = gdtAt + RELOCATED_INFO_OFFSET;
  }
  const info = buildInfo(infoAt, opts, memoryMap, placed, what);
  const ranges: Array<{ what: string; start: number; end: number }> = [
    ...segments.map((seg) => ({ what: `${what} segment`, start: seg.gpa, end: seg.gpa + seg.memSize })),
    ...placed.map((m, i) => ({ what: `module ${i}`, start: m.gpa, end: m.gpa + m.bytes.length })),
    { what: "the loader's GDT", start: gdtAt, end: gdtAt + 32 },
    { what: "the Multiboot information", start: infoAt, end: infoAt + info.length },
  ];
  checkOverlaps(ranges, what);
  if (infoAt + info.length > opts.memSize) {
    throw new BootImageError("TOO_LARGE", `${what}: the Multiboot information at 0x${infoAt.toString(16)}-0x${(infoAt + info.length).toString(16)} does not fit in ${opts.memSize / MIB} MiB of memory after the kernel and modules`);
  }

  const writes: BootWrite[] = [
    { gpa: gdtAt, bytes: flatGdt() },
    { gpa: infoAt, bytes: info },
    ...segments.filter((s) => s.bytes.length > 0).map((s) => ({ gpa: s.gpa, bytes: s.bytes })),
    ...placed.filter((m) => m.bytes.length > 0).map((m) => ({ gpa: m.gpa, bytes: m.bytes })),
  ];
  // bss is not written: guest RAM starts zeroed (fresh frames from the memory manager).
  checkWrites(writes, opts.memSize, what);
  const state = protectedModeState(gdtAt, entry);
  state.eax = MULTIBOOT_BOOTLOADER_MAGIC;
  state.ebx = infoAt;
  return { writes, roms: [], state, memoryMap };
}

/** Throws an OVERLAP error naming both ranges if any two of `ranges` (half-open, bytes) share a byte; empty ranges share none. */
function checkOverlaps(ranges: Array<{ what: string; start: number; end: number }>, what: string): void {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const hex = (r: { start: number; end: number }) => `0x${r.start.toString(16)}-0x${r.end.toString(16)}`;
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.start < a.end) throw new BootImageError("OVERLAP", `${what}: ${a.what} ${hex(a)} overlaps ${b.what} ${hex(b)}`);
  }
}

/** The information structure at guest-physical `base`, followed by the strings and tables it points to. */
function buildInfo(base: number, opts: MultibootLoadOptions, memoryMap: ReturnType<typeof pcMemoryMap>, placed: Array<MultibootModule & { gpa: number }>, what: string): Uint8Array {
  const area = new Uint8Array(AREA_MAX);
  const w = new ByteWriter(area);
  let next = 0x60; // after the 88-byte info structure (rounded)
  const put = (bytes: Uint8Array) => {
    if (next + bytes.length > area.length) throw new BootImageError("BAD_OPTION", `${what}: command lines too long for the Multiboot info area`);
    area.set(bytes, next);
    const gpa = base + next;
    next = alignUp(next + bytes.length, 4);
    return gpa;
  };
  let flags = MBI_MEMORY | MBI_MMAP | MBI_LOADER_NAME | MBI_CMDLINE;
  w.u32(4, 639); // mem_lower: KiB below the EBDA
  w.u32(8, (opts.memSize - MIB) / 1024); // mem_upper: KiB from 1 MiB up to the first hole
  w.u32(16, put(cString(opts.cmdline ?? "")));
  const mmap = new Uint8Array(memoryMap.length * 24);
  const mw = new ByteWriter(mmap);
  memoryMap.forEach((region, i) => {
    mw.u32(i * 24, 20);
    mw.u64(i * 24 + 4, region.base);
    mw.u64(i * 24 + 12, region.size);
    mw.u32(i * 24 + 20, region.type);
  });
  w.u32(44, mmap.length);
  w.u32(48, put(mmap));
  w.u32(64, put(cString(LOADER_NAME)));
  if (placed.length > 0) {
    flags |= MBI_MODS;
    const list = new Uint8Array(placed.length * 16);
    const lw = new ByteWriter(list);
    placed.forEach((m, i) => {
      lw.u32(i * 16, m.gpa);
      lw.u32(i * 16 + 4, m.gpa + m.bytes.length);
      lw.u32(i * 16 + 8, put(cString(m.cmdline ?? "")));
    });
    w.u32(20, placed.length);
    w.u32(24, put(list));
  }
  w.u32(0, flags);
  return area.subarray(0, next);
}

function aoutSegments(image: Uint8Array, h: MultibootHeader, what: string): { segments: Segment[]; entry: number } {
  if (h.loadAddr > h.headerAddr) throw new BootImageError("NOT_A_KERNEL", `${what}: Multiboot load_addr 0x${h.loadAddr.toString(16)} is above header_addr`);
  const fileStart = h.offset - (h.headerAddr - h.loadAddr);
  if (fileStart < 0) throw new BootImageError("NOT_A_KERNEL", `${what}: Multiboot header_addr/load_addr put the image before the start of the file`);
  const loadEnd = h.loadEndAddr === 0 ? h.loadAddr + (image.length - fileStart) : h.loadEndAddr;
  if (loadEnd < h.loadAddr) throw new BootImageError("NOT_A_KERNEL", `${what}: Multiboot load_end_addr is below load_addr`);
  const length = loadEnd - h.loadAddr;
  if (fileStart + length > image.length) {
    throw new BootImageError("TRUNCATED", `${what}: Multiboot header asks for ${length} bytes from offset ${fileStart}, the file has ${image.length}`);
  }
  const bssEnd = h.bssEndAddr === 0 ? loadEnd : h.bssEndAddr;
  if (bssEnd < loadEnd) throw new BootImageError("NOT_A_KERNEL", `${what}: Multiboot bss_end_addr is below load_end_addr`);
  if (h.entryAddr < h.loadAddr || h.entryAddr >= bssEnd) {
    throw new BootImageError("NOT_A_KERNEL", `${what}: Multiboot entry_addr 0x${h.entryAddr.toString(16)} is outside the loaded image`);
  }
  return {
    segments: [{ gpa: h.loadAddr, bytes: image.subarray(fileStart, fileStart + length), memSize: bssEnd - h.loadAddr }],
    entry: h.entryAddr,
  };
}

const PT_LOAD = 1;

function elfSegments(image: Uint8Array, what: string): { segments: Segment[]; entry: number } {
  const r = new ByteReader(image, what);
  if (image.length < 52 || r.u32(0) !== 0x464c457f) {
    throw new BootImageError("NOT_A_KERNEL", `${what}: Multiboot header without the a.out kludge, but the file is not ELF`);
  }
  if (r.u8(4) !== 1 || r.u8(5) !== 1) throw new BootImageError("UNSUPPORTED", `${what}: only little-endian ELF32 Multiboot kernels are supported`);
  if (r.u16(18) !== 3) throw new BootImageError("UNSUPPORTED", `${what}: ELF machine ${r.u16(18)} is not i386`);
  if (r.u16(16) !== 2) throw new BootImageError("UNSUPPORTED", `${what}: ELF type ${r.u16(16)} is not an executable`);
  const entry = r.u32(24);
  const phoff = r.u32(28);
  const phentsize = r.u16(42);
  const phnum = r.u16(44);
  if (phentsize < 32) throw new BootImageError("NOT_A_KERNEL", `${what}: ELF program header size ${phentsize} is too small`);
  const segments: Segment[] = [];
  let physEntry = entry;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (r.u32(p) !== PT_LOAD) continue;
    const offset = r.u32(p + 4);
    const vaddr = r.u32(p + 8);
    const paddr = r.u32(p + 12);
    const filesz = r.u32(p + 16);
    const memsz = r.u32(p + 20);
    if (memsz === 0) continue;
    if (filesz > memsz) throw new BootImageError("NOT_A_KERNEL", `${what}: ELF segment ${i} has p_filesz > p_memsz`);
    if (offset + filesz > image.length) {
      throw new BootImageError("TRUNCATED", `${what}: ELF segment ${i} needs file bytes up to ${offset + filesz}, the file has ${image.length}`);
    }
    segments.push({ gpa: paddr, bytes: image.subarray(offset, offset + filesz), memSize: memsz });
    // The entry point is virtual; translate it when the segments are linked above their load address.
    if (entry >= vaddr && entry < vaddr + memsz) physEntry = entry - vaddr + paddr;
  }
  if (segments.length === 0) throw new BootImageError("NOT_A_KERNEL", `${what}: ELF file has no loadable segment`);
  return { segments, entry: physEntry };
}
