// Tests of the PCI host (configuration mechanism #1) and the PciDevice plumbing.

import { describe, expect, it } from "vitest";
import { IoBus, MmioBus, type AccessSize, type BusHandler } from "./bus.js";
import { IrqLine } from "./irq.js";
import { PciHost } from "./pci.js";
import { PciDefinitionError, PciDevice } from "./pci-device.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";

class Echo implements BusHandler {
  readonly seen: string[] = [];
  read(addr: number, size: AccessSize): number {
    this.seen.push(`r${size}@${addr.toString(16)}`);
    return 0x42;
  }
  write(addr: number, size: AccessSize, value: number): void {
    this.seen.push(`w${size}@${addr.toString(16)}=${value.toString(16)}`);
  }
}

function testDevice(io: Echo, mem: Echo): PciDevice {
  const d = new PciDevice("test", { vendorId: 0x1af4, deviceId: 0x1000, classCode: 0x020000, interruptPin: 1, subsystemId: 1 });
  d.defineBar(0, { kind: "io", size: 32, sizes: 1 | 2 | 4, handler: io });
  d.defineBar(1, { kind: "mem32", size: 4096, sizes: 4, handler: mem });
  return d;
}

function setup() {
  const io = new IoBus();
  const mmio = new MmioBus();
  const host = new PciHost(io, mmio);
  host.attach(io);
  const cfg = (dev: number, reg: number, fn = 0, bus = 0): void => {
    io.write(0xcf8, 4, (0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xfc)) >>> 0);
  };
  const read = (dev: number, reg: number, size: AccessSize = 4): number => {
    cfg(dev, reg);
    return io.read(0xcfc + (reg & 3), size);
  };
  const write = (dev: number, reg: number, size: AccessSize, v: number): void => {
    cfg(dev, reg);
    io.write(0xcfc + (reg & 3), size, v);
  };
  return { io, mmio, host, cfg, read, write };
}

describe("PCI host, configuration mechanism #1", () => {
  it("passes Linux's type-1 check and sanity check (a host bridge at 00:00.0)", () => {
    const { io, read } = setup();
    io.write(0xcfb, 1, 0x01);
    const tmp = io.read(0xcf8, 4);
    io.write(0xcf8, 4, 0x80000000);
    expect(io.read(0xcf8, 4)).toBe(0x80000000);
    io.write(0xcf8, 4, tmp);
    expect(read(0, 0x0a, 2)).toBe(0x0600);
    expect(read(0, 0x00, 4)).toBe(0x12378086);
    expect(read(0, 0x08, 1)).toBe(0x02);
  });

  it("shows an empty bus otherwise: all-ones for absent functions, other buses and a disabled address", () => {
    const { io, read, write, cfg } = setup();
    let present = 0;
    for (let dev = 0; dev < 32; dev++) if (read(dev, 0) !== 0xffffffff) present++;
    expect(present).toBe(1);
    expect(read(5, 0x0a, 2)).toBe(0xffff);
    write(5, 0x04, 2, 0x7);
    expect(read(5, 0x04, 2)).toBe(0xffff);
    cfg(0, 0, 0, 1);
    expect(io.read(0xcfc, 4)).toBe(0xffffffff);
    io.write(0xcf8, 4, 0x00000000);
    expect(io.read(0xcfc, 4)).toBe(0xffffffff);
  });

  it("requests a reset through 0xcf9", () => {
    const { io, host } = setup();
    let resets = 0;
    host.onReset = () => resets++;
    io.write(0xcf9, 1, 0x02);
    expect(resets).toBe(0);
    io.write(0xcf9, 1, 0x06);
    expect(resets).toBe(1);
  });
});

describe("PciDevice", () => {
  it("sizes BARs by writing all-ones and maps them while decoding is enabled", () => {
    const { io, mmio, host, read, write } = setup();
    const ioh = new Echo();
    const memh = new Echo();
    const d = testDevice(ioh, memh);
    host.add(d, 3);
    write(3, 0x10, 4, 0xffffffff);
    expect(read(3, 0x10)).toBe(0xffffffe1);
    write(3, 0x14, 4, 0xffffffff);
    expect(read(3, 0x14)).toBe(0xfffff000);
    expect(read(3, 0x18)).toBe(0); // undefined BAR
    write(3, 0x10, 4, 0xc040);
    write(3, 0x14, 4, 0xfebf1000);
    expect(d.barMapped(0)).toBe(false);
    write(3, 0x04, 2, 0x0003);
    expect(io.read(0xc044, 2)).toBe(0x42);
    expect(mmio.read(0xfebf1008, 4)).toBe(0x42);
    expect(ioh.seen).toEqual(["r2@c044"]);
    write(3, 0x10, 4, 0xd000); // move
    expect(io.read(0xc044, 1)).toBe(0xff);
    io.write(0xd000, 1, 9);
    expect(ioh.seen).toContain("w1@d000=9");
    write(3, 0x04, 2, 0x0001); // memory decode off
    expect(mmio.read(0xfebf1008, 4)).toBe(0xffffffff);
    expect(d.barAddress(1)).toBe(0xfebf1000);
  });

  it("masks the command register, clears status errors by writing ones and keeps ids read-only", () => {
    const { host, read, write } = setup();
    const d = testDevice(new Echo(), new Echo());
    host.add(d, 4);
    write(4, 0x04, 2, 0xffff);
    expect(read(4, 0x04, 2)).toBe(0x0547);
    d.config[0x07] = 0xf9; // errors latched by the device
    write(4, 0x06, 2, 0x8000);
    expect(read(4, 0x06, 2)).toBe(0x7900);
    write(4, 0x00, 4, 0);
    expect(read(4, 0x00)).toBe(0x10001af4);
    write(4, 0x3c, 2, 0xffff);
    expect(read(4, 0x3c, 2)).toBe(0x01ff); // line writable, pin read-only
  });

  it("drives INTx through command bit 10 and reports it in status bit 3", () => {
    const { host, read, write } = setup();
    const d = testDevice(new Echo(), new Echo());
    const sink = new RecordingSink();
    d.irq = new IrqLine([{ sink, pin: 11 }]);
    host.add(d, 2);
    d.setIrqLevel(true);
    expect(sink.level(11)).toBe(true);
    expect(read(2, 0x06, 2) & 0x08).toBe(0x08);
    write(2, 0x04, 2, 0x0400);
    expect(sink.level(11)).toBe(false);
    write(2, 0x04, 2, 0x0000);
    expect(sink.level(11)).toBe(true);
    d.setIrqLevel(false);
    expect(read(2, 0x06, 2) & 0x08).toBe(0);
  });

  it("chains capabilities from 0x34", () => {
    const { host, read } = setup();
    const d = testDevice(new Echo(), new Echo());
    const first = d.addCapability(0x09, new Uint8Array([14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]));
    const second = d.addCapability(0x05, new Uint8Array(12));
    host.add(d, 6);
    expect(read(6, 0x06, 2) & 0x10).toBe(0x10);
    expect(read(6, 0x34, 1)).toBe(first);
    expect(read(6, first, 2)).toBe((second << 8) | 0x09);
    expect(read(6, second, 2)).toBe(0x0005);
    expect(() => d.defineBar(0, { kind: "io", size: 16, sizes: 1, handler: new Echo() })).toThrow(PciDefinitionError);
    expect(() => d.defineBar(2, { kind: "mem32", size: 100, sizes: 4, handler: new Echo() })).toThrow(PciDefinitionError);
  });

  it("restores configuration and BAR mappings after save → msgpack → load", () => {
    const a = setup();
    const ha = new Echo();
    a.host.add(testDevice(ha, new Echo()), 3);
    a.write(3, 0x10, 4, 0xc100);
    a.write(3, 0x04, 2, 0x0005);
    a.write(3, 0x3c, 1, 11);
    a.cfg(3, 0x3c);
    const b = setup();
    const hb = new Echo();
    b.host.add(testDevice(hb, new Echo()), 3);
    b.host.loadState(throughMsgpack(a.host.saveState()));
    expect(b.io.read(0xcfc, 1)).toBe(11); // address register restored too
    expect(b.io.read(0xc100, 1)).toBe(0x42);
    expect(hb.seen).toEqual(["r1@c100"]);
    expect(b.read(3, 0x04, 2)).toBe(0x0005);
  });

  it("refuses a snapshot with other slots or another device, changing nothing", () => {
    const a = setup();
    a.host.add(testDevice(new Echo(), new Echo()), 3);
    const state = a.host.saveState() as { functions: Record<string, { config: Uint8Array }> };
    const b = setup();
    expect(() => b.host.loadState(state)).toThrow(DeviceStateError);
    b.host.add(testDevice(new Echo(), new Echo()), 3);
    b.write(3, 0x3c, 1, 5);
    const other = structuredClone(state);
    other.functions["03.0"].config[0] = 0x86;
    other.functions["00.0"].config[0x3c] = 9;
    expect(() => b.host.loadState(other)).toThrow(DeviceStateError);
    expect(b.read(3, 0x3c, 1)).toBe(5);
    expect(b.read(0, 0x3c, 1)).toBe(0);
  });
});
