// FXSAVE/FXRSTOR: the x87 state round-trips through the 512-byte image, with the faults the P6 gives.
import { describe, expect, it } from "vitest";
import { ExitReason, Mtd, VcpuState } from "../../kernel/vcpu.js";
import { X87 } from "./fpu/x87.js";
import { Machine } from "./testing.js";

function machine(): Machine {
  const m = new Machine();
  m.flat(0);
  m.engine.cpu.fpu = new X87();
  return m;
}

function exceptionOf(m: Machine): number {
  const st = new VcpuState();
  m.engine.saveState(Mtd.QUAL, st);
  return st.qual.address;
}

describe("FXSAVE/FXRSTOR", () => {
  it("save the x87 stack and control words, and restore them after FNINIT", () => {
    const m = machine();
    m.code32(`
      fninit
      fldcw [cw]
      fld1
      fldpi
      fxsave [0x30000]
      fninit
      fxrstor [0x30000]
      fstp dword [0x31000]
      fstp dword [0x31004]
      fnstcw [0x31008]
      hlt
    cw: dw 0x0c7f`);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.r32(0x31000)).toBe(0x40490fda); // pi as a float, rounded toward zero (RC=11): below pi
    expect(m.r32(0x31004)).toBe(0x3f800000); // 1.0
    expect(m.r32(0x31008) & 0xffff).toBe(0x0c7f);
    // The image: FCW at 0, abridged tag (two valid registers) at 4, ST0 = pi at 32.
    expect(m.view.getUint16(0x30000, true)).toBe(0x0c7f);
    expect(m.ram[0x30004]).toBe(0xc0);
    expect(m.view.getUint16(0x30000 + 32 + 8, true)).toBe(0x4000);
  });

  it("fault: #GP on a misaligned image, #NM with CR0.TS, #UD for a register operand", () => {
    for (const [code, vector, setup] of [
      ["fxsave [0x30008]", 13, () => {}],
      ["fxsave [0x30000]", 7, (m: Machine) => m.update((st) => (st.cr0 |= 8))],
      ["db 0x0f, 0xae, 0xc0", 6, () => {}],
    ] as const) {
      const m = machine();
      m.update((st) => (st.exceptionBitmap = 1 << vector));
      setup(m);
      m.code32(`${code}\nhlt`);
      expect(m.run()).toBe(ExitReason.EXCEPTION);
      expect(exceptionOf(m)).toBe(vector);
    }
  });
});
