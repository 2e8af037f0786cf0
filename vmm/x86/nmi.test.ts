// NMI delivery by the engine, the way the VMM injects it after a recall: through IDT vector 2
// regardless of IF, and no second NMI until the first handler's IRET (SDM vol. 3, 6.7.1).

import { describe, expect, it } from "vitest";
import { ExitReason, InjectionType, type VcpuExitHandler } from "../../kernel/vcpu.js";
import { CODE, Machine, SEL_CODE0 } from "./testing.js";

const HANDLER = 0x20000;

describe("NMI delivery", () => {
  it("takes an NMI with IF clear, holds the next one until IRET, then delivers it", () => {
    const m = new Machine();
    m.flat(0);
    m.gate(2, SEL_CODE0, HANDLER, 0xe);
    // Handler: count, stop at a port write (where the test injects the next NMI), note ESP, IRET.
    m.code32("inc ebx\nout 0x80, al\nmov [0x7000], esp\niret", HANDLER);
    m.code32("cli\nout 0x81, al\nnop\nhlt");
    let stop = false;
    const ports: number[] = [];
    const handler: VcpuExitHandler = {
      exit: (reason, st) => {
        if (reason === ExitReason.PIO) {
          ports.push(st.qual.address);
          stop = true;
        }
        return true;
      },
      get stopRequested() {
        return stop;
      },
    };
    const run = () => {
      stop = false;
      return m.engine.run(1_000_000, handler);
    };
    const injectNmi = () =>
      m.update((s) => {
        s.inj.valid = true;
        s.inj.type = InjectionType.NMI;
        s.inj.vector = 2;
      });

    expect(run()).toBe(ExitReason.BUDGET); // stopped after OUT 0x81, interrupts off
    expect(m.regs.eflags & 0x200).toBe(0);
    injectNmi();
    expect(run()).toBe(ExitReason.BUDGET); // in the handler, at its OUT
    expect(m.regs.ebx).toBe(1);
    expect(m.regs.interruptibility & 8).toBe(8); // NMIs blocked
    const frameEsp = m.regs.esp;
    expect(frameEsp).toBe(0x8000 - 12);
    expect(m.r32(frameEsp)).toBe(CODE + 3); // return EIP: the NOP after OUT 0x81
    injectNmi(); // a second NMI while the first handler runs
    expect(run()).toBe(ExitReason.BUDGET);
    // It came only after the IRET: the first handler got to note its ESP, the stack is one frame deep.
    expect(m.r32(0x7000)).toBe(frameEsp);
    expect(m.regs.esp).toBe(frameEsp);
    expect(m.regs.ebx).toBe(2);
    expect(m.r32(frameEsp)).toBe(CODE + 3);
    expect(run()).toBe(ExitReason.HLT);
    expect(m.regs.interruptibility & 8).toBe(0);
    expect(m.regs.eip).toBe(CODE + 5);
    expect(ports).toEqual([0x81, 0x80, 0x80]);
  });
});
