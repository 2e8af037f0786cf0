// Tests of the FERR#/IGNNE# logic behind port F0h.

import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { FpuErrorLogic } from "./fpu-error.js";
import { IrqLine } from "./irq.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";

function setup() {
  const levels: boolean[] = [];
  const irq = new IrqLine([{ sink: { setIrq: (_pin, level) => void levels.push(level) }, pin: 13 }]);
  const logic = new FpuErrorLogic(irq);
  const ignne: boolean[] = [];
  logic.onIgnne = (level) => void ignne.push(level);
  const io = new IoBus();
  logic.attach(io);
  return { logic, irq, io, levels, ignne };
}

describe("FERR# and IGNNE#", () => {
  it("a rising FERR# requests IRQ 13; a write to F0h clears it and asserts IGNNE# until FERR# drops", () => {
    const { logic, irq, io, levels, ignne } = setup();
    logic.setFerr(true);
    expect(irq.level).toBe(true);
    io.write(0xf0, 1, 0);
    expect(irq.level).toBe(false);
    expect(logic.ignne).toBe(true);
    logic.setFerr(true); // no edge: no new request
    expect(irq.level).toBe(false);
    logic.setFerr(false);
    expect(logic.ignne).toBe(false);
    expect(levels).toEqual([true, false]);
    expect(ignne).toEqual([true, false]);
  });

  it("a handler that clears the exception before writing F0h leaves IGNNE# off", () => {
    const { logic, irq, io, ignne } = setup();
    logic.setFerr(true);
    logic.setFerr(false); // FNCLEX first
    expect(irq.level).toBe(true); // the request stays latched until F0h
    io.write(0xf0, 1, 0);
    expect(irq.level).toBe(false);
    expect(ignne).toEqual([]);
  });

  it("reads float; reset drops everything", () => {
    const { logic, irq, io, ignne } = setup();
    expect(io.read(0xf0, 1)).toBe(0xff);
    logic.setFerr(true);
    io.write(0xf0, 1, 0);
    logic.setFerr(false);
    logic.setFerr(true);
    logic.reset();
    expect([logic.ferr, logic.ignne, irq.level]).toEqual([false, false, false]);
    expect(ignne).toEqual([true, false]);
  });

  it("saves and restores its latches; refuses a malformed record", () => {
    const a = setup();
    a.logic.setFerr(true);
    a.io.write(0xf0, 1, 0);
    a.logic.setFerr(false);
    a.logic.setFerr(true);
    const saved = throughMsgpack(a.logic.saveState());
    const b = setup();
    b.logic.loadState(saved);
    expect([b.logic.ferr, b.logic.ignne, b.irq.level]).toEqual([true, false, true]);
    expect(() => b.logic.loadState({ ferr: 1, ignne: false, request: false })).toThrow(DeviceStateError);
    expect([b.logic.ferr, b.irq.level]).toEqual([true, true]);
  });
});
