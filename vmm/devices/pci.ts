// PCI host bridge with configuration mechanism #1 (ports 0xcf8-0xcff) and bus 0.
//
// 0xcf8 (dword) is CONFIG_ADDRESS: bit 31 enable, bus 23-16, device 15-11, function 10-8,
// register 7-2; 0xcfc-0xcff is CONFIG_DATA. Device 0 is an Intel 440FX host bridge; other slots
// hold whatever the VMM adds. Reads of absent functions (and of other buses) return all-ones,
// writes to them are dropped. The byte at 0xcf9 is the reset control register: writing bit 2
// with bit 1 set requests a reset (Linux's reboot=pci).

import type { AccessSize, BusHandler, Device, IoBus, MmioBus } from "./bus.js";
import { PciDevice } from "./pci-device.js";
import { DeviceStateError, StateReader } from "./state.js";

/** The Intel 82441FX (440FX) host bridge QEMU's "pc" machine also shows at 00:00.0. */
export function hostBridge440fx(): PciDevice {
  return new PciDevice("i440fx", { vendorId: 0x8086, deviceId: 0x1237, classCode: 0x060000, revision: 0x02 });
}

/** Slot key "dd.f" of a bus-0 function. */
function key(device: number, fn: number): string {
  return `${device.toString(16).padStart(2, "0")}.${fn}`;
}

export class PciHost implements Device, BusHandler {
  readonly name = "pci";
  /** Functions on bus 0 by devfn (device << 3 | function). */
  private readonly functions = new Map<number, PciDevice>();
  private address = 0;
  private resetControl = 0;
  /** Called on a reset request through 0xcf9. */
  onReset: (() => void) | null = null;
  readonly bridge: PciDevice;

  /** BARs of added functions are mapped on `io` and `mmio`. */
  constructor(private readonly io: IoBus, private readonly mmio: MmioBus) {
    this.bridge = hostBridge440fx();
    this.add(this.bridge, 0);
  }

  /** Claim ports 0xcf8-0xcff. */
  attach(io: IoBus): void {
    io.register({ name: this.name, base: 0xcf8, length: 8, sizes: 1 | 2 | 4, handler: this });
  }

  /** Place `fn` at bus 0, device `device` (0-31), function `fnNumber` (0-7). */
  add(fn: PciDevice, device: number, fnNumber = 0): void {
    if (device < 0 || device > 31 || fnNumber < 0 || fnNumber > 7) throw new RangeError(`bad PCI slot ${device}.${fnNumber}`);
    const devfn = (device << 3) | fnNumber;
    if (this.functions.has(devfn)) throw new RangeError(`PCI slot ${key(device, fnNumber)} taken`);
    this.functions.set(devfn, fn);
    fn.connect(this.io, this.mmio);
  }

  /** The function at bus 0 `device`.`fnNumber`, if any. */
  at(device: number, fnNumber = 0): PciDevice | undefined {
    return this.functions.get((device << 3) | fnNumber);
  }

  reset(): void {
    this.address = 0;
    this.resetControl = 0;
    for (const fn of this.functions.values()) fn.reset();
  }

  read(port: number, size: AccessSize): number {
    if (port < 0xcfc) {
      if (port === 0xcf8 && size === 4) return this.address >>> 0;
      if (port === 0xcf9 && size === 1) return this.resetControl;
      return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    }
    const fn = this.target(port, size);
    if (!fn) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    return fn.configRead((this.address & 0xfc) + (port & 3), size);
  }

  write(port: number, size: AccessSize, value: number): void {
    if (port < 0xcfc) {
      if (port === 0xcf8 && size === 4) this.address = (value & 0x80fffffc) >>> 0;
      else if (port === 0xcf9 && size === 1) {
        this.resetControl = value & 0x0e;
        if (value & 0x04) this.onReset?.();
      }
      return;
    }
    this.target(port, size)?.configWrite((this.address & 0xfc) + (port & 3), size, value);
  }

  /** The function CONFIG_ADDRESS selects for an access at `port`, or undefined (disabled, absent, other bus, straddling). */
  private target(port: number, size: AccessSize): PciDevice | undefined {
    const a = this.address;
    if (!(a & 0x80000000) || (a >> 16) & 0xff || (port & 3) + size > 4) return undefined;
    return this.functions.get((a >> 8) & 0xff);
  }

  saveState(): object {
    const functions: Record<string, object> = {};
    for (const [devfn, fn] of this.functions) functions[key(devfn >> 3, devfn & 7)] = fn.saveState();
    return { address: this.address, resetControl: this.resetControl, functions };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const address = r.int("address", 0, 0xffffffff);
    const resetControl = r.int("resetControl", 0, 0x0e);
    r.record("functions");
    const raw = (state as { functions: Record<string, unknown> }).functions;
    const slots = [...this.functions.keys()];
    const names = slots.map((d) => key(d >> 3, d & 7));
    const saved = Object.keys(raw);
    if (saved.length !== names.length || !names.every((n) => n in raw)) {
      throw new DeviceStateError("pci.functions", `slots [${saved.join(" ")}] do not match [${names.join(" ")}]`);
    }
    // All or nothing: if one function refuses its record, put back the ones already loaded.
    const backup = slots.map((d) => this.functions.get(d)!.saveState());
    let done = 0;
    try {
      for (; done < slots.length; done++) this.functions.get(slots[done])!.loadState(raw[names[done]]);
    } catch (e) {
      for (let i = 0; i < done; i++) this.functions.get(slots[i])!.loadState(backup[i]);
      throw e;
    }
    this.address = address;
    this.resetControl = resetControl;
  }
}
