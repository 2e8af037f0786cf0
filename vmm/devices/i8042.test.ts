// Tests of the i8042 keyboard controller: Linux's controller and keyboard probes, aux port without
// a mouse, A20 and reset through the output port, interrupts, save/load.

import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { I8042 } from "./i8042.js";
import { IrqLine } from "./irq.js";
import { DeviceStateError } from "./state.js";
import { RecordingSink, throughMsgpack } from "./test-support.js";

function setup() {
  const sink = new RecordingSink();
  const kbdLine = new IrqLine([{ sink, pin: 1 }]);
  const auxLine = new IrqLine([{ sink, pin: 12 }]);
  const kbc = new I8042(kbdLine, auxLine);
  const io = new IoBus();
  kbc.attach(io);
  let resets = 0;
  kbc.onReset = () => resets++;
  const cmd = (c: number, data?: number): void => {
    io.write(0x64, 1, c);
    if (data !== undefined) io.write(0x60, 1, data);
  };
  /** Read everything in the output buffer, as i8042_flush does. */
  const drain = (): number[] => {
    const got: number[] = [];
    while (io.read(0x64, 1) & 1) got.push(io.read(0x60, 1));
    return got;
  };
  return { kbc, io, sink, cmd, drain, kbdLine, resets: () => resets };
}

describe("i8042", () => {
  it("passes the controller self test and interface tests", () => {
    const { io, cmd, drain } = setup();
    expect(drain()).toEqual([]);
    cmd(0xaa);
    expect(io.read(0x64, 1) & 0x0d).toBe(0x0d); // OBF, SYS, last write was a command
    expect(drain()).toEqual([0x55]);
    cmd(0xab);
    expect(drain()).toEqual([0x00]);
    cmd(0xa9);
    expect(drain()).toEqual([0x00]);
  });

  it("reads and writes the command byte and toggles the aux-disable bit", () => {
    const { cmd, drain, kbc } = setup();
    cmd(0x20);
    const ctr = drain()[0];
    expect(ctr & 0x40).toBe(0x40); // translation on
    cmd(0x60, (ctr & ~0x01) | 0x10);
    cmd(0x20);
    expect(drain()).toEqual([(ctr & ~0x01) | 0x10]);
    cmd(0xa7);
    expect(kbc.commandByte & 0x20).toBe(0x20);
    cmd(0xa8);
    expect(kbc.commandByte & 0x20).toBe(0);
  });

  it("echoes the aux loopback and fails aux device commands at once (no mouse)", () => {
    const { io, cmd, sink, drain } = setup();
    cmd(0x60, 0x47); // keyboard and aux interrupts on
    cmd(0xd3, 0x5a);
    expect(io.read(0x64, 1) & 0x21).toBe(0x21);
    expect(sink.level(12)).toBe(true);
    expect(drain()).toEqual([0x5a]);
    expect(sink.level(12)).toBe(false);
    cmd(0xd4, 0xf2);
    expect(io.read(0x64, 1) & 0x61).toBe(0x61); // timeout + aux + OBF
    expect(drain()).toEqual([0xfe]);
  });

  it("answers the keyboard probe: identify, reset, LEDs, with one IRQ1 edge per byte", () => {
    const { io, sink, drain } = setup();
    io.write(0x60, 1, 0xf2);
    expect(sink.level(1)).toBe(true);
    const got: number[] = [];
    while (io.read(0x64, 1) & 1) got.push(io.read(0x60, 1));
    expect(got).toEqual([0xfa, 0xab, 0x41]);
    expect(sink.risesOf(1)).toBe(3);
    io.write(0x60, 1, 0xff);
    expect(drain()).toEqual([0xfa, 0xaa]);
    io.write(0x60, 1, 0xed);
    io.write(0x60, 1, 0x07);
    expect(drain()).toEqual([0xfa, 0xfa]);
    io.write(0x60, 1, 0xf5);
    io.write(0x60, 1, 0xee);
    expect(drain()).toEqual([0xfa, 0xee]);
  });

  it("reports the untranslated identity when translation is off", () => {
    const { io, cmd, drain } = setup();
    cmd(0x60, 0x05);
    io.write(0x60, 1, 0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
  });

  it("holds host keys while the keyboard is disabled and delivers them in order", () => {
    const { kbc, cmd, drain, sink } = setup();
    cmd(0xad);
    kbc.keyboardInput([0x1e, 0x9e]);
    expect(drain()).toEqual([]);
    cmd(0xae);
    expect(sink.level(1)).toBe(true);
    expect(drain()).toEqual([0x1e, 0x9e]);
  });

  it("pulses reset with 0xFE and through the output port, and drives A20", () => {
    const { cmd, drain, kbc, resets } = setup();
    cmd(0xd0);
    expect(drain()[0] & 0x03).toBe(0x03);
    expect(kbc.a20.enabled).toBe(true);
    cmd(0xd1, 0x01);
    expect(kbc.a20.enabled).toBe(false);
    cmd(0xdf);
    expect(kbc.a20.enabled).toBe(true);
    expect(resets()).toBe(0);
    cmd(0xfe);
    expect(resets()).toBe(1);
    cmd(0xff); // bit 0 set: no pulse
    expect(resets()).toBe(1);
    cmd(0xd1, 0x02);
    expect(resets()).toBe(2);
  });

  it("reproduces output queue and pending commands after save → msgpack → load", () => {
    const a = setup();
    a.cmd(0x60, 0x47);
    a.io.write(0x60, 1, 0xf2);
    a.kbc.keyboardInput([0x10, 0x90]);
    a.io.read(0x60, 1);
    a.io.write(0x64, 1, 0xd3); // data byte still to come
    const b = setup();
    b.kbc.loadState(throughMsgpack(a.kbc.saveState()));
    expect(b.kbdLine.level).toBe(a.kbdLine.level);
    const trace = (s: ReturnType<typeof setup>): number[] => {
      s.io.write(0x60, 1, 0x77);
      const out: number[] = [];
      for (let i = 0; i < 6; i++) out.push(s.io.read(0x64, 1), s.io.read(0x60, 1));
      return out;
    };
    expect(trace(b)).toEqual(trace(a));
  });

  it("refuses a malformed state", () => {
    const { kbc } = setup();
    const good = kbc.saveState();
    expect(() => kbc.loadState({ ...good, out: [0x400] })).toThrow(DeviceStateError);
    expect(() => kbc.loadState({ ...good, ram: new Uint8Array(3) })).toThrow(DeviceStateError);
  });
});
