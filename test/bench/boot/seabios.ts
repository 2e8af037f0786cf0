// Where the v86 runner finds SeaBIOS: Debian's `seabios` package (override with HV_SEABIOS_DIR).
import { existsSync } from "node:fs";
import { join } from "node:path";

export interface SeabiosFiles {
  /** The 128 KiB SeaBIOS image for an i440FX-style PC. */
  bios: string;
  /** SeaVGABIOS for the Bochs/QEMU standard VGA (PCI 1234:1111), the card v86 models. */
  vgaBios: string;
}

export const SEABIOS_HINT = "install Debian's seabios package (apt-get install seabios) or point HV_SEABIOS_DIR at a folder with bios.bin and vgabios-stdvga.bin";

/** The SeaBIOS files for v86, or a message saying which file is missing and how to get it. */
export function findSeabios(dir = process.env.HV_SEABIOS_DIR || "/usr/share/seabios"): SeabiosFiles | { missing: string } {
  const files = { bios: join(dir, "bios.bin"), vgaBios: join(dir, "vgabios-stdvga.bin") };
  for (const f of [files.bios, files.vgaBios]) {
    if (!existsSync(f)) return { missing: `${f} not found: ${SEABIOS_HINT}` };
  }
  return files;
}
