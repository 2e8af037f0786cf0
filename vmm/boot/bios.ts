// Firmware / test ROM loader: the ROM is mapped at the top of the 4 GiB space and its last
// 128 KiB also just below 1 MiB (0xE0000-0xFFFFF), the way a PC chipset decodes the BIOS flash;
// the CPU starts at the reset vector in real mode (CS 0xF000 with base 0xFFFF0000, IP 0xFFF0).
import { VcpuState } from "../../kernel/vcpu.js";
import { ATTR, BootImageError, INITIAL_MTD, MIB, alignUp, checkMemorySize, pcMemoryMap, segment, type BootPlan } from "./plan.js";

/** Largest ROM accepted: 16 MiB, the top-of-4-GiB flash window. */
export const MAX_ROM_SIZE = 16 * MIB;
/** How much of the ROM's end is also visible below 1 MiB. */
export const LOW_ROM_WINDOW = 128 * 1024;
export const FOUR_GIB = 0x1_0000_0000;

export interface BiosLoadOptions {
  memSize: number;
  name?: string;
  /** EDX at reset: the processor signature (family/model/stepping), like CPUID.1:EAX. */
  cpuSignature?: number;
}

/**
 * Builds the plan for a ROM image. A ROM whose size is not a multiple of 4 KiB is padded at the
 * front with 0xFF (erased flash) so that it still ends at 4 GiB and its regions are page aligned.
 */
export function loadBios(rom: Uint8Array, opts: BiosLoadOptions): BootPlan {
  const what = opts.name ?? "bios";
  checkMemorySize(opts.memSize);
  if (rom.length < 16) throw new BootImageError("TRUNCATED", `${what}: ${rom.length} bytes cannot hold a reset vector (the last 16 bytes of a ROM)`);
  if (rom.length > MAX_ROM_SIZE) throw new BootImageError("TOO_LARGE", `${what}: ${(rom.length / MIB).toFixed(1)} MiB is larger than the ${MAX_ROM_SIZE / MIB} MiB flash window`);
  const size = alignUp(rom.length, 4096);
  const highBase = FOUR_GIB - size;
  if (opts.memSize > highBase) {
    throw new BootImageError("TOO_LARGE", `${what}: memory of ${opts.memSize / MIB} MiB reaches into the ROM at 0x${highBase.toString(16)}`);
  }
  let image = rom;
  if (size !== rom.length) {
    image = new Uint8Array(size).fill(0xff);
    image.set(rom, size - rom.length);
  }
  const lowSize = Math.min(size, LOW_ROM_WINDOW);

  const s = new VcpuState();
  s.cs = segment(0xf000, 0xffff0000, 0xffff, ATTR.CODE16);
  for (const name of ["ds", "es", "ss", "fs", "gs"] as const) s[name] = segment(0, 0, 0xffff, ATTR.DATA16);
  s.tr = segment(0, 0, 0xffff, ATTR.TSS32_BUSY);
  s.ldtr = segment(0, 0, 0xffff, ATTR.LDT);
  s.gdtrBase = 0;
  s.gdtrLimit = 0xffff;
  s.idtrBase = 0;
  s.idtrLimit = 0xffff;
  s.cr0 = 0x60000010;
  s.eflags = 0x2;
  s.eip = 0xfff0;
  s.edx = opts.cpuSignature ?? 0x00000600;
  s.mtd = INITIAL_MTD;
  return {
    writes: [],
    roms: [
      { gpa: highBase, bytes: image },
      { gpa: MIB - lowSize, bytes: image.subarray(size - lowSize) },
    ],
    state: s,
    memoryMap: pcMemoryMap(opts.memSize),
  };
}
