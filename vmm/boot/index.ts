// Boot loaders: pick the right one for a kernel file (bzImage or Multiboot) like QEMU's -kernel.
import { HDRS_MAGIC, loadLinux, type LinuxLoadOptions } from "./linux.js";
import { findMultibootHeader, loadMultiboot } from "./multiboot.js";
import { BootImageError, type BootPlan } from "./plan.js";

export { ACPI_BASE, buildAcpiTables, type AcpiOptions, type AcpiTables } from "./acpi.js";
export { loadBios, type BiosLoadOptions } from "./bios.js";
export { loadLinux, parseSetupHeader, type LinuxLoadOptions, type SetupHeader } from "./linux.js";
export { loadMultiboot, findMultibootHeader, type MultibootLoadOptions } from "./multiboot.js";
export { BootImageError, type BootImageErrorCode, type BootPlan, type BootWrite, type MemoryRegion } from "./plan.js";

export type KernelKind = "linux" | "multiboot";

/** What kind of kernel `image` is, or null. A bzImage is recognised by "HdrS" at 0x202. */
export function kernelKind(image: Uint8Array): KernelKind | null {
  if (image.length >= 0x206 && new DataView(image.buffer, image.byteOffset, image.byteLength).getUint32(0x202, true) === HDRS_MAGIC) return "linux";
  if (findMultibootHeader(image) !== null) return "multiboot";
  return null;
}

/** Loads a kernel of either kind; anything else is a NOT_A_KERNEL error. */
export function loadKernel(image: Uint8Array, opts: LinuxLoadOptions): BootPlan {
  switch (kernelKind(image)) {
    case "linux":
      return loadLinux(image, opts);
    case "multiboot":
      return loadMultiboot(image, opts);
    default:
      throw new BootImageError(
        "NOT_A_KERNEL",
        `${opts.name ?? "kernel"}: neither a Linux bzImage (no "HdrS" at 0x202) nor a Multiboot kernel (no header in the first 8 KiB)`,
      );
  }
}
