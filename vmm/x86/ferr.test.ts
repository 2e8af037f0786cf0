// The x87 error pins through the VcpuEngine contract: FERR# exits, the freeze of a waiting
// instruction under CR0.NE = 0 (reported as HLT with EIP at it), IGNNE# from the STA group.

import { describe, expect, it } from "vitest";
import { ExitReason, InjectionType } from "../../kernel/vcpu.js";
import { X87 } from "./fpu/x87.js";
import { CODE, Machine, SEL_CODE0 } from "./testing.js";

const HANDLER = 0x20000;
const IRQ13 = 0x2d;

/** Ring 0, CR0.NE clear (as `flat` leaves it), ZE unmasked, then 1/0 and more x87 work. */
function machine(handler: string): Machine {
  const m = new Machine();
  m.engine.attachFpu(new X87());
  m.flat(0);
  m.gate(IRQ13, SEL_CODE0, HANDLER, 0xe);
  m.code32(handler, HANDLER);
  m.code32(`
    fninit
    fldcw [cw]
    fld1
    fldz
    fdivp st1, st0
    mov ebx, 1
    fld1
    mov ecx, 2
    hlt
    cw: dw 0x037b
  `);
  return m;
}

/** Offsets in the code above. */
const AFTER_FDIVP = CODE + 2 + 6 + 2 + 2 + 2;
const FROZEN_AT = AFTER_FDIVP + 5;

function inject(m: Machine, vector: number): void {
  m.update((s) => {
    s.inj.valid = true;
    s.inj.type = InjectionType.EXTERNAL;
    s.inj.vector = vector;
  });
}

describe("x87 error pins", () => {
  it("without ferrExits the engine only tracks FERR#; the waiting instruction freezes", () => {
    const m = machine("iret");
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.eip).toBe(FROZEN_AT);
    expect(r.activity).toBe(1);
    expect(r.ferr).toBe(true);
    expect(r.ebx).toBe(1);
    const retired = m.engine.retired;
    expect(m.run()).toBe(ExitReason.HLT); // still frozen: nothing retires
    expect(m.engine.retired).toBe(retired);
  });

  it("FERR exits on both edges; an interrupt handler that clears the exception lets the instruction run", () => {
    const m = machine("mov esi, 0x55\nfnclex\niret");
    m.update((s) => (s.ferrExits = true));
    expect(m.run()).toBe(ExitReason.FERR);
    expect(m.regs.eip).toBe(AFTER_FDIVP); // asserted at the end of FDIVP (P6)
    expect(m.regs.ferr).toBe(true);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.eip).toBe(FROZEN_AT);
    inject(m, IRQ13);
    expect(m.run()).toBe(ExitReason.FERR); // FNCLEX in the handler
    expect(m.regs.ferr).toBe(false);
    expect(m.regs.esi).toBe(0x55);
    expect(m.run()).toBe(ExitReason.HLT); // IRET back to FLD1, which now runs
    const r = m.regs;
    expect(r.ecx).toBe(2);
    expect(r.activity).toBe(1);
    expect(m.r32(0x8000 - 12)).toBe(FROZEN_AT); // the interrupt's return EIP was the frozen FLD1
  });

  it("IGNNE# lets the frozen instruction run with the exception still flagged", () => {
    const m = machine("iret");
    expect(m.run()).toBe(ExitReason.HLT);
    m.update((s) => (s.ignne = true));
    expect(m.regs.ignne).toBe(true);
    inject(m, IRQ13);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ecx).toBe(2);
    expect(r.ferr).toBe(true);
  });

  it("with CR0.NE the same code takes #MF and no freeze", () => {
    const m = machine("iret");
    m.update((s) => {
      s.cr0 |= 0x20;
      s.exceptionBitmap = 1 << 16;
    });
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    const r = m.regs;
    expect(r.qual.address).toBe(16);
    expect(r.eip).toBe(FROZEN_AT);
    expect(r.activity).toBe(0);
  });
});
