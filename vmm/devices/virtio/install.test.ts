// A virtio-blk function installed on the PC platform as firmware would: what Linux then finds.
import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.js";
import { PcPlatform } from "../platform.js";
import { memoryBlockBackend } from "./backends.js";
import { VirtioBlk, VirtioBlkType } from "./blk.js";
import { FlatGuestRam } from "./guest-ram.js";
import { installVirtioPci } from "./install.js";
import { VirtioPciDevice } from "./pci-transport.js";
import { IO_BAR_BASE, MEM_BAR_BASE, SLOT, TestDriver } from "./test-driver.js";

function platform() {
  const p = new PcPlatform({ clock: new ManualClock(), memoryBytes: 1 << 20, startTime: 0, apic: false });
  const ram = new Uint8Array(1 << 20);
  const device = new VirtioPciDevice(new VirtioBlk(memoryBlockBackend(new Uint8Array(1 << 16))), new FlatGuestRam(ram));
  installVirtioPci(p, device, { slot: SLOT, irq: 11, memBase: MEM_BAR_BASE, ioBase: IO_BAR_BASE });
  return { p, ram, device, driver: new TestDriver(p.io, p.mmio, ram) };
}

describe("installing virtio-pci on the PC platform", () => {
  it("assigns the BARs, sets the interrupt line and makes the IRQ level-triggered", () => {
    const { p, driver: drv, device } = platform();
    expect(drv.cfgRead(0x00)).toBe(0x10011af4);
    expect(drv.cfgRead(0x20)).toBe(MEM_BAR_BASE);
    expect(drv.cfgRead(0x10)).toBe(IO_BAR_BASE | 1);
    expect(drv.cfgRead(0x3c, 1)).toBe(11);
    expect(drv.cfgRead(0x04, 2) & 3).toBe(3);
    expect(device.barMapped(0) && device.barMapped(4)).toBe(true);
    expect(p.io.read(0x4d1, 1) & (1 << 3)).toBe(1 << 3);
    expect(drv.findCaps()).not.toBeNull();
  });

  it("drives ISA IRQ 11 from INTA#: high on completion, low once the driver read the ISR", () => {
    const { p, driver: drv } = platform();
    expect(drv.initModern((o) => o)).toBe(true);
    const hdr = drv.alloc(16, Uint8Array.of(VirtioBlkType.IN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    drv.post([{ gpa: hdr, len: 16 }, { gpa: drv.alloc(512), len: 512, write: true }, { gpa: drv.alloc(1), len: 1, write: true }]);
    drv.notify();
    expect(p.isaIrq[11].level).toBe(true);
    expect(drv.readIsr()).toBe(1);
    expect(p.isaIrq[11].level).toBe(false);
  });

  it("refuses IRQs a PCI interrupt cannot use", () => {
    const p = new PcPlatform({ clock: new ManualClock(), memoryBytes: 1 << 20, startTime: 0, apic: false });
    const device = new VirtioPciDevice(new VirtioBlk(memoryBlockBackend(new Uint8Array(512))), new FlatGuestRam(new Uint8Array(4096)));
    for (const irq of [0, 2, 8, 13, 16]) expect(() => installVirtioPci(p, device, { slot: 4, irq, memBase: MEM_BAR_BASE })).toThrow(RangeError);
  });
});
