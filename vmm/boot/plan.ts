// Boot plans: what a loader wants written into guest memory and the vCPU's first register state.
// Loaders only compute plans; the VMM applies them (copies `writes` into RAM, maps `roms` read-only,
// loads `state`), so a refused image changes nothing.
import { Mtd, VcpuState, type SegmentState } from "../../kernel/vcpu.js";

/** Bytes to place at a guest-physical address. */
export interface BootWrite {
  gpa: number;
  bytes: Uint8Array;
}

export interface BootPlan {
  /** RAM contents, non-overlapping, each inside RAM. */
  writes: BootWrite[];
  /** Read-only regions (firmware): mapped over whatever RAM or hole is there. */
  roms: BootWrite[];
  /** Initial register state; `state.mtd` names the groups that are set. */
  state: VcpuState;
  /** The E820-style memory map the loader told the guest about (also useful for the VMM). */
  memoryMap: MemoryRegion[];
}

export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface MemoryRegion {
  base: number;
  size: number;
  type: number;
}

export type BootImageErrorCode =
  /** The file is not a kernel/ROM of the kind asked for. */
  | "NOT_A_KERNEL"
  /** The file ends before the headers/segments it declares. */
  | "TRUNCATED"
  /** The image (or a segment of it) does not fit in the guest's memory. */
  | "TOO_LARGE"
  /** The initrd/module cannot be placed below the limit the kernel allows. */
  | "INITRD_DOES_NOT_FIT"
  /** A valid image asking for something this loader does not do (e.g. zImage, video mode). */
  | "UNSUPPORTED"
  /** Bad loader options (memory size, command line too long). */
  | "BAD_OPTION"
  /** Two parts of the image (segments, modules, the loader's own data) claim the same bytes. */
  | "OVERLAP";

/** A refused boot image; `code` says what was wrong, the message names the file and the problem. */
export class BootImageError extends Error {
  constructor(
    readonly code: BootImageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "BootImageError";
  }
}

/** 1 MiB: start of extended memory. */
export const MIB = 0x100000;
/** Start of the EBDA/ROM hole below 1 MiB (639 KiB of conventional memory below it). */
export const LOW_MEMORY_END = 0x9fc00;

/** The PC memory map every loader reports: low RAM, the legacy hole, RAM from 1 MiB. */
export function pcMemoryMap(memSize: number): MemoryRegion[] {
  return [
    { base: 0, size: LOW_MEMORY_END, type: E820_RAM },
    { base: LOW_MEMORY_END, size: MIB - LOW_MEMORY_END, type: E820_RESERVED },
    { base: MIB, size: memSize - MIB, type: E820_RAM },
  ];
}

/** Largest guest RAM the loaders accept: a 32-bit guest-physical space below the 4 GiB ROM area. */
export const MAX_MEMORY = 0xfec00000;

export function checkMemorySize(memSize: number): void {
  if (!Number.isInteger(memSize) || memSize < 2 * MIB || memSize > MAX_MEMORY || memSize % 4096 !== 0) {
    throw new BootImageError("BAD_OPTION", `memory size ${memSize} must be a multiple of 4 KiB between 2 MiB and ${MAX_MEMORY / MIB} MiB`);
  }
}

/** Segment attribute words (VMX packing, see SegmentState). */
export const ATTR = {
  /** 32-bit flat code: type 0xB (execute/read, accessed), S, P, D, G. */
  CODE32: 0xc09b,
  /** 32-bit flat data: type 3 (read/write, accessed), S, P, D/B, G. */
  DATA32: 0xc093,
  /** Real-mode code (execute/read, accessed), 16-bit. */
  CODE16: 0x009b,
  /** Real-mode data (read/write, accessed), 16-bit. */
  DATA16: 0x0093,
  /** Busy 32-bit TSS, present (what VMX requires of TR). */
  TSS32_BUSY: 0x008b,
  /** LDT, present. */
  LDT: 0x0082,
} as const;

export function segment(selector: number, base: number, limit: number, attributes: number): SegmentState {
  return { selector, base, limit, attributes };
}

/** Selectors of the flat GDT loaders place in guest memory (Linux's __BOOT_CS/__BOOT_DS). */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;

/** An 8-byte GDT descriptor for a flat 4 GiB segment with access byte `access`, 32-bit, 4 KiB granular. */
function flatDescriptor(access: number): number[] {
  // limit 0xFFFFF (G=1 → 4 GiB), base 0, flags D/B=1 G=1.
  return [0xff, 0xff, 0x00, 0x00, 0x00, access, 0xcf, 0x00];
}

/** A 4-entry GDT: null, unused, flat code at 0x10, flat data at 0x18. */
export function flatGdt(): Uint8Array {
  return new Uint8Array([...new Array<number>(16).fill(0), ...flatDescriptor(0x9b), ...flatDescriptor(0x93)]);
}

/**
 * The register state of a CPU entering 32-bit protected mode with flat segments and a GDT at
 * `gdtBase`: paging off, interrupts off (EFLAGS = 2), CS = BOOT_CS, other segments BOOT_DS.
 */
export function protectedModeState(gdtBase: number, eip: number): VcpuState {
  const s = new VcpuState();
  const data = () => segment(BOOT_DS, 0, 0xffffffff, ATTR.DATA32);
  s.cs = segment(BOOT_CS, 0, 0xffffffff, ATTR.CODE32);
  s.ds = data();
  s.es = data();
  s.ss = data();
  s.fs = data();
  s.gs = data();
  s.tr = segment(0, 0, 0xffff, ATTR.TSS32_BUSY);
  s.ldtr = segment(0, 0, 0xffff, ATTR.LDT);
  s.gdtrBase = gdtBase;
  s.gdtrLimit = 4 * 8 - 1;
  s.idtrBase = 0;
  s.idtrLimit = 0;
  s.cr0 = 0x00000011; // PE, ET; paging and caches as a boot loader leaves them
  s.cr3 = 0;
  s.cr4 = 0;
  s.eflags = 0x2;
  s.eip = eip;
  s.mtd = INITIAL_MTD;
  return s;
}

/** State groups a boot plan sets. */
export const INITIAL_MTD =
  Mtd.GPR_ACDB | Mtd.GPR_BSD | Mtd.ESP | Mtd.EIP_LEN | Mtd.EFLAGS | Mtd.DS_ES | Mtd.FS_GS | Mtd.CS_SS | Mtd.TR | Mtd.LDTR | Mtd.GDTR | Mtd.IDTR | Mtd.CR | Mtd.STA;

/** Throws unless every write lies inside RAM below `memSize` and no two writes overlap. */
export function checkWrites(writes: BootWrite[], memSize: number, what: string): void {
  const sorted = [...writes].sort((a, b) => a.gpa - b.gpa);
  for (let i = 0; i < sorted.length; i++) {
    const w = sorted[i]!;
    if (w.gpa < 0 || w.gpa + w.bytes.length > memSize) {
      throw new BootImageError("TOO_LARGE", `${what}: ${w.bytes.length} bytes at 0x${w.gpa.toString(16)} do not fit in ${memSize / MIB} MiB of memory`);
    }
    const next = sorted[i + 1];
    if (next !== undefined && w.gpa + w.bytes.length > next.gpa) {
      throw new BootImageError("TOO_LARGE", `${what}: data at 0x${w.gpa.toString(16)} overlaps data at 0x${next.gpa.toString(16)}`);
    }
  }
}

/** Little-endian field access on file bytes, with bounds that throw a TRUNCATED error. */
export class ByteReader {
  private readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(offset: number, size: number): void {
    if (offset < 0 || offset + size > this.bytes.length) {
      throw new BootImageError("TRUNCATED", `${this.what}: file ends at ${this.bytes.length} bytes, needs ${offset + size}`);
    }
  }
  u8(o: number): number {
    this.need(o, 1);
    return this.view.getUint8(o);
  }
  u16(o: number): number {
    this.need(o, 2);
    return this.view.getUint16(o, true);
  }
  u32(o: number): number {
    this.need(o, 4);
    return this.view.getUint32(o, true);
  }
  u64(o: number): number {
    this.need(o, 8);
    return Number(this.view.getBigUint64(o, true));
  }
  slice(o: number, length: number): Uint8Array {
    this.need(o, length);
    return this.bytes.subarray(o, o + length);
  }
}

/** Writes little-endian values into a buffer being built (boot_params, multiboot info). */
export class ByteWriter {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u8(o: number, v: number): void {
    this.view.setUint8(o, v);
  }
  u16(o: number, v: number): void {
    this.view.setUint16(o, v, true);
  }
  u32(o: number, v: number): void {
    this.view.setUint32(o, v >>> 0, true);
  }
  u64(o: number, v: number): void {
    this.view.setBigUint64(o, BigInt(v), true);
  }
}

/** A NUL-terminated command line as bytes (Latin-1 / ASCII). */
export function cString(text: string): Uint8Array {
  const out = new Uint8Array(text.length + 1);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c > 0xff) throw new BootImageError("BAD_OPTION", `command line has a character that cannot be passed (code ${c})`);
    out[i] = c;
  }
  return out;
}

export const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;
export const alignDown = (v: number, a: number) => Math.floor(v / a) * a;
