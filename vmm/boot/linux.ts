// Linux bzImage loader, boot protocol 2.02+ with the 32-bit entry (Documentation/x86/boot.rst):
// the protected-mode kernel at 1 MiB, a zero page (boot_params) with the setup header, an E820 map
// and the command line, the initrd as high as the header allows, and a flat protected-mode CPU at
// code32_start with ESI pointing to boot_params.
import {
  BootImageError,
  ByteReader,
  ByteWriter,
  MIB,
  alignDown,
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

/** "HdrS" at offset 0x202. */
export const HDRS_MAGIC = 0x53726448;
/** Guest-physical layout of what the loader places below 1 MiB. */
export const LINUX_LAYOUT = {
  gdt: 0x1000,
  /** Initial ESP; the kernel sets up its own stack at once. */
  stack: 0x7000,
  bootParams: 0x7000,
  cmdline: 0x20000,
  /** Where the protected-mode kernel goes (code32_start). */
  kernel: MIB,
} as const;

/** Loadflags bits. */
export const LOADED_HIGH = 0x01;
export const KEEP_SEGMENTS = 0x40;
export const CAN_USE_HEAP = 0x80;

/** The setup header fields the loader reads (offsets are into the file and into boot_params). */
export interface SetupHeader {
  /** Protocol version as 0xMMmm (0x020f = 2.15). */
  version: number;
  setupSects: number;
  /** Protected-mode code size in 16-byte units (2.04+; 0 before). */
  syssize: number;
  loadflags: number;
  code32Start: number;
  /** Highest address the initrd's last byte may occupy. */
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatable: boolean;
  /** Longest command line without the NUL. */
  cmdlineSize: number;
  /** Where the kernel wants to run (2.10+; 0 before). */
  prefAddress: number;
  /** Bytes of memory the kernel needs from its run address during decompression (2.10+; 0 before). */
  initSize: number;
  /** Offset of the end of the setup header (0x202 + byte at 0x201). */
  headerEnd: number;
  /** The kernel version string from the setup code, when present. */
  kernelVersion: string;
}

/** Reads and checks the setup header. `what` names the file in errors. */
export function parseSetupHeader(image: Uint8Array, what = "kernel"): SetupHeader {
  if (image.length < 0x206) {
    throw new BootImageError("NOT_A_KERNEL", `${what}: ${image.length} bytes is too short to be a Linux bzImage`);
  }
  const r = new ByteReader(image, what);
  if (r.u32(0x202) !== HDRS_MAGIC) throw new BootImageError("NOT_A_KERNEL", `${what}: not a Linux bzImage (no "HdrS" setup header at 0x202)`);
  if (r.u16(0x1fe) !== 0xaa55) throw new BootImageError("NOT_A_KERNEL", `${what}: not a Linux bzImage (no 0xAA55 boot flag at 0x1FE)`);
  const version = r.u16(0x206);
  if (version < 0x202) {
    throw new BootImageError("UNSUPPORTED", `${what}: boot protocol ${formatVersion(version)} is too old; the 32-bit entry needs 2.02 or newer`);
  }
  const headerEnd = 0x202 + r.u8(0x201);
  if (image.length < headerEnd) throw new BootImageError("TRUNCATED", `${what}: setup header runs to 0x${headerEnd.toString(16)}, file ends at 0x${image.length.toString(16)}`);
  const has = (minVersion: number, offset: number, size: number) => version >= minVersion && offset + size <= headerEnd;
  const setupSects = r.u8(0x1f1) === 0 ? 4 : r.u8(0x1f1);
  const kernelVersionPtr = r.u16(0x20e);
  let kernelVersion = "";
  if (kernelVersionPtr !== 0 && kernelVersionPtr + 0x200 < image.length) {
    const start = kernelVersionPtr + 0x200;
    let end = start;
    while (end < image.length && end - start < 256 && image[end] !== 0) end++;
    kernelVersion = Buffer.from(image.subarray(start, end)).toString("latin1");
  }
  return {
    version,
    setupSects,
    syssize: has(0x204, 0x1f4, 4) ? r.u32(0x1f4) : 0,
    loadflags: r.u8(0x211),
    code32Start: r.u32(0x214),
    initrdAddrMax: has(0x203, 0x22c, 4) ? r.u32(0x22c) : 0x37ffffff,
    kernelAlignment: has(0x205, 0x230, 4) ? r.u32(0x230) : 0,
    relocatable: has(0x205, 0x234, 1) ? r.u8(0x234) !== 0 : false,
    cmdlineSize: has(0x206, 0x238, 4) ? r.u32(0x238) : 255,
    prefAddress: has(0x20a, 0x258, 8) ? r.u64(0x258) : 0,
    initSize: has(0x20a, 0x260, 4) ? r.u32(0x260) : 0,
    headerEnd,
    kernelVersion,
  };
}

export function formatVersion(v: number): string {
  return `${v >> 8}.${(v & 0xff).toString().padStart(2, "0")}`;
}

export interface LinuxLoadOptions {
  /** Guest RAM in bytes. */
  memSize: number;
  cmdline?: string;
  initrd?: Uint8Array;
  /** Names the kernel file in error messages. */
  name?: string;
}

/** Offsets inside boot_params (the zero page) outside the setup header. */
const BP = { altMemK: 0x1e0, e820Entries: 0x1e8, sentinel: 0x1ef, e820Table: 0x2d0, e820Max: 128 } as const;

/** Builds the boot plan for a bzImage. Checks everything first; throws BootImageError on a bad image. */
export function loadLinux(image: Uint8Array, opts: LinuxLoadOptions): BootPlan {
  const what = opts.name ?? "kernel";
  checkMemorySize(opts.memSize);
  const hdr = parseSetupHeader(image, what);
  if ((hdr.loadflags & LOADED_HIGH) === 0) {
    throw new BootImageError("UNSUPPORTED", `${what}: a zImage (loaded below 1 MiB) is not supported; use a bzImage`);
  }
  const setupSize = (hdr.setupSects + 1) * 512;
  if (image.length <= setupSize) throw new BootImageError("TRUNCATED", `${what}: ${image.length} bytes, but the setup code alone is ${setupSize}`);
  const payload = image.subarray(setupSize);
  if (hdr.syssize !== 0 && payload.length < hdr.syssize * 16 - 15) {
    throw new BootImageError("TRUNCATED", `${what}: protected-mode part is ${payload.length} bytes, the header says ${hdr.syssize * 16}`);
  }
  const cmdline = cString(opts.cmdline ?? "");
  if (cmdline.length - 1 > hdr.cmdlineSize) {
    throw new BootImageError("BAD_OPTION", `command line is ${cmdline.length - 1} bytes; ${what} accepts at most ${hdr.cmdlineSize}`);
  }

  // Memory the kernel occupies while it decompresses: from its run address (the load address
  // aligned up, but not below its preferred address) for init_size bytes.
  const load = LINUX_LAYOUT.kernel;
  let kernelEnd = load + payload.length;
  if (hdr.initSize > 0) {
    const aligned = hdr.relocatable && hdr.kernelAlignment > 0 ? alignUp(load, hdr.kernelAlignment) : load;
    const runAt = hdr.relocatable ? Math.max(aligned, hdr.prefAddress) : Math.max(hdr.prefAddress, load);
    kernelEnd = Math.max(kernelEnd, runAt + hdr.initSize);
  }
  if (kernelEnd > opts.memSize) {
    throw new BootImageError(
      "TOO_LARGE",
      `${what}: needs memory up to ${(kernelEnd / MIB).toFixed(1)} MiB to start (init_size 0x${hdr.initSize.toString(16)}), the guest has ${opts.memSize / MIB} MiB`,
    );
  }

  let ramdiskImage = 0;
  const initrd = opts.initrd;
  if (initrd !== undefined && initrd.length > 0) {
    const limit = Math.min(hdr.initrdAddrMax + 1, opts.memSize);
    ramdiskImage = alignDown(limit - initrd.length, 4096);
    if (ramdiskImage < alignUp(kernelEnd, 4096)) {
      throw new BootImageError(
        "INITRD_DOES_NOT_FIT",
        `initrd of ${(initrd.length / MIB).toFixed(1)} MiB does not fit between the kernel (up to ${(kernelEnd / MIB).toFixed(1)} MiB) ` +
          `and the limit of ${(limit / MIB).toFixed(1)} MiB (memory ${opts.memSize / MIB} MiB, initrd_addr_max 0x${hdr.initrdAddrMax.toString(16)})`,
      );
    }
  }

  // All checks done; build the zero page.
  const memoryMap = pcMemoryMap(opts.memSize);
  const bootParams = new Uint8Array(4096);
  bootParams.set(image.subarray(0x1f1, hdr.headerEnd), 0x1f1);
  const w = new ByteWriter(bootParams);
  w.u8(0x210, 0xff); // type_of_loader: undefined loader
  w.u8(0x211, (hdr.loadflags | CAN_USE_HEAP) & ~KEEP_SEGMENTS);
  w.u32(0x214, load); // code32_start
  w.u32(0x218, ramdiskImage);
  w.u32(0x21c, ramdiskImage === 0 ? 0 : initrd!.length);
  w.u16(0x224, 0xfe00); // heap_end_ptr: only the 16-bit setup code (not run here) uses it
  w.u32(0x228, LINUX_LAYOUT.cmdline);
  w.u32(BP.altMemK, (opts.memSize - MIB) / 1024);
  w.u8(BP.sentinel, 0);
  w.u8(BP.e820Entries, memoryMap.length);
  memoryMap.forEach((region, i) => {
    const at = BP.e820Table + i * 20;
    w.u64(at, region.base);
    w.u64(at + 8, region.size);
    w.u32(at + 16, region.type);
  });

  const writes: BootWrite[] = [
    { gpa: LINUX_LAYOUT.gdt, bytes: flatGdt() },
    { gpa: LINUX_LAYOUT.bootParams, bytes: bootParams },
    { gpa: LINUX_LAYOUT.cmdline, bytes: cmdline },
    { gpa: load, bytes: payload },
  ];
  if (ramdiskImage !== 0) writes.push({ gpa: ramdiskImage, bytes: initrd! });
  checkWrites(writes, opts.memSize, what);

  const state = protectedModeState(LINUX_LAYOUT.gdt, load);
  state.esi = LINUX_LAYOUT.bootParams;
  state.esp = LINUX_LAYOUT.stack;
  return { writes, roms: [], state, memoryMap };
}
