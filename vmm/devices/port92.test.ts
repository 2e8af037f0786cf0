// Tests of port 0x92 and the A20 gate.

import { describe, expect, it } from "vitest";
import { A20Gate } from "./a20.js";
import { IoBus } from "./bus.js";
import { Port92 } from "./port92.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";

describe("port 0x92", () => {
  it("gates A20 with bit 1, ORed with the keyboard controller's A20", () => {
    const gate = new A20Gate();
    const changes: boolean[] = [];
    gate.onChange = (on) => changes.push(on);
    const p = new Port92(gate);
    const io = new IoBus();
    p.attach(io);
    io.write(0x92, 1, io.read(0x92, 1) | 2);
    expect(gate.enabled).toBe(true);
    expect(io.read(0x92, 1)).toBe(2);
    gate.set("keyboard-controller", true);
    io.write(0x92, 1, 0);
    expect(gate.enabled).toBe(true);
    gate.set("keyboard-controller", false);
    expect(changes).toEqual([true, false]);
  });

  it("resets on a rising write of bit 0 only", () => {
    const p = new Port92();
    const io = new IoBus();
    p.attach(io);
    let resets = 0;
    p.onReset = () => resets++;
    io.write(0x92, 1, 0x02);
    expect(resets).toBe(0);
    io.write(0x92, 1, 0x03);
    io.write(0x92, 1, 0x03);
    expect(resets).toBe(1);
  });

  it("round-trips its state and refuses a malformed one", () => {
    const p = new Port92();
    const io = new IoBus();
    p.attach(io);
    io.write(0x92, 1, 0x02);
    const q = new Port92();
    q.loadState(throughMsgpack(p.saveState()));
    expect(q.fastA20).toBe(true);
    expect(q.a20.enabled).toBe(true);
    expect(() => q.loadState({ value: -1 })).toThrow(DeviceStateError);
  });
});
