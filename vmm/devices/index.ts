// PC platform device models and their shared plumbing: the public surface the VMM imports.

export { A20Gate, type A20Source } from "./a20.js";
export { AcpiPm, PM1A_CNT_BLK, PM1A_EVT_BLK, PM_TIMER_HZ, PM_TMR_BLK, SCI_IRQ } from "./acpi-pm.js";
export { BusConflictError, IoBus, MmioBus, maskToSize, type AccessSize, type BusHandler, type BusRange, type Device, type SizeMask, type UnclaimedListener } from "./bus.js";
export { ManualClock, type DeviceClock, type TimerHandle } from "./clock.js";
export { DebugConsole, DebugExit } from "./debug-ports.js";
export { FW_CFG_DATA_PORT, FW_CFG_DMA_PORT, FW_CFG_SELECTOR_PORT, FwCfg, FwCfgError, FwCfgKey, type FwCfgOptions } from "./fw-cfg.js";
export { HPET_BASE, HPET_PERIOD_FS, Hpet, HpetReg, type HpetOutputs } from "./hpet.js";
export { I8042 } from "./i8042.js";
export { IOAPIC_BASE, IOAPIC_PINS, IoApic } from "./ioapic.js";
export { IrqLine, SharedIrq, type IrqSink, type IrqTarget } from "./irq.js";
export { DeliveryMode, LAPIC_BASE, LAPIC_TIMER_HZ, LocalApic, type ApicMessage, type ApicMessageTarget } from "./lapic.js";
export { PciHost, hostBridge440fx } from "./pci.js";
export { PciDefinitionError, PciDevice, type BarDefinition, type PciIds } from "./pci-device.js";
export { PicPair, type InterruptController } from "./pic.js";
export { PIT_HZ, Pit, nsToTicks, ticksToNs } from "./pit.js";
export { PcPlatform, SERIAL_PORTS, e820File, isaIrqToGsi, type PcPlatformOptions } from "./platform.js";
export { Port92 } from "./port92.js";
export { Rtc, type RtcOptions } from "./rtc.js";
export { DeviceStateError, StateReader } from "./state.js";
export { IIR, Uart16550, type UartOptions } from "./uart.js";
