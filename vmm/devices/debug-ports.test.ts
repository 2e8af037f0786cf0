// Tests of the debug exit port and the 0xe9 debug console.

import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { DebugConsole, DebugExit } from "./debug-ports.js";
import { DeviceStateError } from "./state.js";

describe("debug ports", () => {
  it("ends with status (v << 1) | 1 for byte and dword writes", () => {
    const io = new IoBus();
    const statuses: number[] = [];
    new DebugExit((s) => statuses.push(s)).attach(io);
    io.write(0xf4, 1, 0x00);
    io.write(0xf4, 1, 0x10);
    io.write(0xf4, 4, 0x31);
    expect(statuses).toEqual([1, 0x21, 0x63]);
  });

  it("takes another base port", () => {
    const io = new IoBus();
    const statuses: number[] = [];
    new DebugExit((s) => statuses.push(s), 0x501, 2).attach(io);
    io.write(0x501, 2, 3);
    io.write(0xf4, 1, 3);
    expect(statuses).toEqual([7]);
  });

  it("sends 0xe9 bytes to the sink (a word write only its low byte) and reads back 0xe9", () => {
    const io = new IoBus();
    const bytes: number[] = [];
    const con = new DebugConsole((b) => bytes.push(b));
    con.attach(io);
    for (const c of "ok") io.write(0xe9, 1, c.charCodeAt(0));
    io.write(0xe9, 2, 0x0a21);
    expect(String.fromCharCode(...bytes)).toBe("ok!");
    expect(io.read(0xe9, 1)).toBe(0xe9);
    expect(() => con.loadState(7)).toThrow(DeviceStateError);
  });
});
