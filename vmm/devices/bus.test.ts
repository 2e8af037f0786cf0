// Tests of the I/O port and MMIO buses.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BusConflictError, IoBus, MmioBus, PORT_ACCESS_NS, type AccessSize, type BusHandler } from "./bus.js";

/** A byte-addressed register file that logs the accesses it sees. */
class Regs implements BusHandler {
  readonly bytes = new Uint8Array(16);
  readonly log: string[] = [];
  constructor(readonly base: number) {}
  read(addr: number, size: AccessSize): number {
    this.log.push(`r${size}@${addr - this.base}`);
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.bytes[addr - this.base + i];
    return v;
  }
  write(addr: number, size: AccessSize, value: number): void {
    this.log.push(`w${size}@${addr - this.base}=${value.toString(16)}`);
    for (let i = 0; i < size; i++) this.bytes[addr - this.base + i] = Math.floor(value / 256 ** i) & 0xff;
  }
}

describe("IoBus", () => {
  it("dispatches native accesses and reads unclaimed ports as all-ones", () => {
    const bus = new IoBus();
    const dev = new Regs(0x60);
    bus.register({ name: "dev", base: 0x60, length: 4, sizes: 1 | 2 | 4, handler: dev });
    bus.write(0x60, 4, 0x11223344);
    expect(bus.read(0x60, 4)).toBe(0x11223344);
    expect(bus.read(0x61, 2)).toBe(0x2233);
    expect(dev.log).toEqual(["w4@0=11223344", "r4@0", "r2@1"]);
    expect(bus.read(0x80, 1)).toBe(0xff);
    expect(bus.read(0x80, 2)).toBe(0xffff);
    expect(bus.read(0x80, 4)).toBe(0xffffffff);
    bus.write(0x80, 4, 1);
    expect(bus.unclaimedReads).toBe(1 + 2 + 4);
    expect(bus.unclaimedWrites).toBe(4);
  });

  it("splits wide accesses for a byte-only device, low byte first", () => {
    const bus = new IoBus();
    const dev = new Regs(0x3f8);
    bus.register({ name: "uart", base: 0x3f8, length: 8, sizes: 1, handler: dev });
    bus.write(0x3f8, 4, 0xa1b2c3d4);
    expect(dev.log).toEqual(["w1@0=d4", "w1@1=c3", "w1@2=b2", "w1@3=a1"]);
    expect(bus.read(0x3f8, 2)).toBe(0xc3d4);
  });

  it("serves narrow accesses from a dword-only device by extracting / read-modify-write", () => {
    const bus = new IoBus();
    const dev = new Regs(0xcfc);
    bus.register({ name: "d", base: 0xcfc, length: 4, sizes: 4, handler: dev });
    bus.write(0xcfc, 4, 0x44332211);
    expect(bus.read(0xcfe, 1)).toBe(0x33);
    expect(bus.read(0xcfe, 2)).toBe(0x4433);
    bus.write(0xcfd, 1, 0xee);
    expect(bus.read(0xcfc, 4)).toBe(0x4433ee11);
  });

  it("splits an access that straddles two devices and an unclaimed port", () => {
    const bus = new IoBus();
    const a = new Regs(0x10);
    const b = new Regs(0x12);
    bus.register({ name: "a", base: 0x10, length: 1, sizes: 1, handler: a });
    bus.register({ name: "b", base: 0x12, length: 2, sizes: 1 | 2, handler: b });
    a.bytes[0] = 0x01;
    b.bytes[0] = 0x03;
    b.bytes[1] = 0x04;
    expect(bus.read(0x10, 4)).toBe(0x0403ff01);
    expect(bus.unclaimedReads).toBe(1);
  });

  it("refuses overlapping ranges and frees unregistered ones", () => {
    const bus = new IoBus();
    const r = bus.register({ name: "a", base: 0x40, length: 4, sizes: 1, handler: new Regs(0x40) });
    expect(() => bus.register({ name: "b", base: 0x43, length: 1, sizes: 1, handler: new Regs(0x43) })).toThrow(BusConflictError);
    expect(() => bus.register({ name: "c", base: 0xffff, length: 2, sizes: 1, handler: new Regs(0) })).toThrow(BusConflictError);
    bus.unregister(r);
    expect(bus.read(0x41, 1)).toBe(0xff);
    bus.register({ name: "b", base: 0x43, length: 1, sizes: 1, handler: new Regs(0x43) });
  });

  it("reports unclaimed accesses to a listener", () => {
    const bus = new IoBus();
    const seen: string[] = [];
    bus.onUnclaimed = (addr, size, write, value) => seen.push(`${write ? "w" : "r"}${addr.toString(16)}=${value}`);
    bus.write(0x80, 1, 5);
    bus.read(0x81, 1);
    expect(seen).toEqual(["w80=5", "r81=255"]);
  });
});

describe("MmioBus", () => {
  it("dispatches by guest-physical address above 2^31", () => {
    const bus = new MmioBus();
    const apic = new Regs(0xfee00000);
    bus.register({ name: "apic", base: 0xfee00000, length: 16, sizes: 4, handler: apic });
    bus.write(0xfee00004, 4, 0xdeadbeef);
    expect(bus.read(0xfee00004, 4)).toBe(0xdeadbeef);
    expect(bus.read(0xfee00006, 2)).toBe(0xdead);
    expect(bus.read(0xfec00000, 4)).toBe(0xffffffff);
    expect(() => bus.register({ name: "x", base: 0xfffffff0, length: 0x20, sizes: 4, handler: apic })).toThrow(BusConflictError);
  });
});

describe("access times", () => {
  it("are the range's, else the bus's: ports a microsecond, MMIO nothing", () => {
    const io = new IoBus();
    io.register({ name: "fast", base: 0x60, length: 4, sizes: 1, handler: new Regs(0x60), readNs: 10, writeNs: 20 });
    io.register({ name: "isa", base: 0x70, length: 2, sizes: 1, handler: new Regs(0x70) });
    expect([io.accessNs(0x61, false), io.accessNs(0x61, true), io.accessNs(0x70, false), io.accessNs(0x1234, true)]).toEqual([10, 20, PORT_ACCESS_NS, PORT_ACCESS_NS]);
    const mmio = new MmioBus();
    mmio.register({ name: "hpet", base: 0xfed00000, length: 0x400, sizes: 4, handler: new Regs(0xfed00000), readNs: 500 });
    expect([mmio.accessNs(0xfed000f0, false), mmio.accessNs(0xfed000f0, true), mmio.accessNs(0xfec00000, false)]).toEqual([500, 0, 0]);
  });
});

describe("bus adaptation, random accesses", () => {
  it("agrees with a flat little-endian memory for byte-only and dword-only devices", () => {
    const access = fc.record({
      offset: fc.integer({ min: 0, max: 12 }),
      size: fc.constantFrom(1, 2, 4) as fc.Arbitrary<AccessSize>,
      write: fc.boolean(),
      value: fc.integer({ min: 0, max: 0xffffffff }),
    });
    fc.assert(
      fc.property(fc.array(access, { maxLength: 30 }), (accesses) => {
        const model = new Uint8Array(16);
        const buses = [1, 4, 7].map((sizes) => {
          const bus = new IoBus();
          bus.register({ name: "d", base: 0x100, length: 16, sizes, handler: new Regs(0x100) });
          return bus;
        });
        for (const a of accesses) {
          if (a.write) {
            for (let i = 0; i < a.size; i++) model[a.offset + i] = Math.floor(a.value / 256 ** i) & 0xff;
            for (const bus of buses) bus.write(0x100 + a.offset, a.size, a.value);
          } else {
            let expected = 0;
            for (let i = a.size - 1; i >= 0; i--) expected = expected * 256 + model[a.offset + i];
            for (const bus of buses) expect(bus.read(0x100 + a.offset, a.size)).toBe(expected);
          }
        }
      }),
    );
  });
});
