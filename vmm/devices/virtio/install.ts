// Putting a virtio-pci function on the PC platform the way firmware would: a slot, its BARs
// assigned and decoded, INTA# wired to an ISA IRQ, the interrupt line register set, and that IRQ
// switched to level triggering in the ELCR. The platform has no PIRQ router and no ACPI, so Linux
// takes the IRQ from the interrupt line register as it is; INTx is level-triggered and stays
// asserted until the driver reads the ISR, which an edge-triggered 8259 input would mishandle.
// Call again after a platform reset: the reset clears BARs, the interrupt line and the ELCR.

import type { PcPlatform } from "../platform.js";
import { COMMAND_IO, COMMAND_MEMORY, PCI_BAR0, PCI_COMMAND, PCI_INTERRUPT_LINE } from "../pci-device.js";
import { LEGACY_BAR, MODERN_BAR, type VirtioPciDevice } from "./pci-transport.js";

export interface VirtioPlacement {
  /** PCI device number on bus 0 (1-31; 0 is the host bridge). */
  slot: number;
  /** ISA IRQ INTA# drives (one per function: the ISA lines are not wired-OR). Default 11. */
  irq?: number;
  /** Guest-physical base of the 16 KiB modern BAR: 16 KiB aligned, outside RAM and other devices (e.g. 0xfebf0000). */
  memBase: number;
  /** I/O port base of the legacy BAR of a transitional device (default 0xc000 + 0x100 * slot). */
  ioBase?: number;
}

/** Add `device` to the platform's PCI bus and program it as firmware would. */
export function installVirtioPci(platform: PcPlatform, device: VirtioPciDevice, at: VirtioPlacement): void {
  const irq = at.irq ?? 11;
  if (irq < 3 || irq > 15 || irq === 8 || irq === 13) throw new RangeError(`IRQ ${irq} cannot be a level-triggered PCI interrupt`);
  device.irq = platform.irqLine(irq);
  platform.pci.add(device, at.slot);
  programVirtioPci(platform, device, { ...at, irq });
}

/** Redo the firmware part (BARs, interrupt line, ELCR) for a device already on the bus, e.g. after a reset. */
export function programVirtioPci(platform: PcPlatform, device: VirtioPciDevice, at: VirtioPlacement): void {
  const irq = at.irq ?? 11;
  let command = COMMAND_MEMORY;
  device.configWrite(PCI_BAR0 + 4 * MODERN_BAR, 4, at.memBase);
  if (device.transitional) {
    device.configWrite(PCI_BAR0 + 4 * LEGACY_BAR, 4, at.ioBase ?? 0xc000 + 0x100 * at.slot);
    command |= COMMAND_IO;
  }
  device.configWrite(PCI_INTERRUPT_LINE, 1, irq);
  device.configWrite(PCI_COMMAND, 2, device.command | command);
  const port = irq < 8 ? 0x4d0 : 0x4d1;
  platform.io.write(port, 1, platform.io.read(port, 1) | (1 << (irq & 7)));
}
