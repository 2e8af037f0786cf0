// The paravirtual exits of the VcpuEngine contract: hypervisor CPUID leaves, MSR exits for MSRs
// the core does not implement, and VMCALL as a synchronous exit (interpreted and translated).

import { describe, expect, it } from "vitest";
import { ExitReason, type VcpuState } from "../../kernel/vcpu.js";
import { HYPERVISOR_PRESENT } from "./cpuid.js";
import { disassemble } from "./disasm.js";
import { CODE, Machine } from "./testing.js";

/** A machine in flat ring 0 whose synchronous exits `answer` handles. */
function machine(controls: Partial<Pick<VcpuState, "hypervisorLeaves" | "msrExits" | "vmcallExits">>, answer?: (reason: ExitReason, st: VcpuState) => boolean): Machine {
  const m = new Machine();
  m.flat(0);
  m.update((s) => Object.assign(s, controls));
  if (answer) m.handler.exit = answer;
  return m;
}

describe("hypervisor CPUID leaves", () => {
  it("leaf 1 shows the hypervisor bit and leaves 0x4000000x exit only when offered", () => {
    const program = "mov eax, 1\ncpuid\nmov esi, ecx\nmov eax, 0x40000000\ncpuid\nhlt";
    const plain = machine({}, () => {
      throw new Error("no exit expected");
    });
    plain.code32(program);
    expect(plain.run()).toBe(ExitReason.HLT);
    expect(plain.regs.esi & HYPERVISOR_PRESENT).toBe(0);
    expect([plain.regs.eax, plain.regs.ebx, plain.regs.ecx, plain.regs.edx]).toEqual([0, 0, 0, 0]);

    const leaves: number[] = [];
    const pv = machine({ hypervisorLeaves: true }, (reason, st) => {
      expect(reason).toBe(ExitReason.CPUID);
      leaves.push(st.qual.address);
      st.qual.data = 0x40000001;
      st.qual.ebx = 0x4b4d564b;
      st.qual.ecx = 0x564b4d56;
      st.qual.edx = 0x4d;
      return true;
    });
    pv.code32(program);
    expect(pv.run()).toBe(ExitReason.HLT);
    const r = pv.regs;
    expect(r.esi >>> 31).toBe(1);
    expect(HYPERVISOR_PRESENT >>> 0).toBe(0x80000000);
    expect(leaves).toEqual([0x40000000]); // leaf 1 stays the core's
    expect([r.eax, r.ebx, r.ecx, r.edx]).toEqual([0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d]);
  });
});

describe("MSR exits", () => {
  const program = `
    mov ecx, 0x4b564d01
    mov eax, 0x12345679
    mov edx, 0xabc
    wrmsr
    rdmsr
    hlt`;

  it("hands unknown MSRs to the VMM: the write's value, a read's answer", () => {
    const seen: { write: boolean; address: number; data: number; edx: number; size: number }[] = [];
    const m = machine({ msrExits: true }, (reason, st) => {
      expect(reason).toBe(ExitReason.MSR);
      const q = st.qual;
      seen.push({ write: q.write, address: q.address, data: q.data, edx: q.edx, size: q.size });
      if (!q.write) {
        q.data = 0xdead0001;
        q.edx = 0x77;
      }
      return true;
    });
    m.code32(program);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(seen).toEqual([
      { write: true, address: 0x4b564d01, data: 0x12345679, edx: 0xabc, size: 8 },
      { write: false, address: 0x4b564d01, data: 0, edx: 0, size: 8 },
    ]);
    expect([m.regs.eax, m.regs.edx]).toEqual([0xdead0001, 0x77]);
  });

  it("keeps the core's own MSRs in the core (no exit for the TSC or SYSENTER_CS)", () => {
    const m = machine({ msrExits: true }, () => {
      throw new Error("no exit expected");
    });
    m.code32("mov ecx, 0x174\nmov eax, 0x08\nxor edx, edx\nwrmsr\nmov ecx, 0x10\nrdmsr\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.sysenterCs).toBe(0x08);
  });

  for (const [what, controls, refuse] of [
    ["without MSR exits", {}, false],
    ["when the VMM refuses", { msrExits: true }, true],
  ] as const) {
    it(`raises #GP(0) ${what}`, () => {
      let exits = 0;
      const m = machine(controls, (_reason, st) => {
        exits++;
        st.qual.refused = refuse;
        return true;
      });
      m.update((s) => (s.exceptionBitmap = 1 << 13));
      m.code32(program);
      expect(m.run()).toBe(ExitReason.EXCEPTION);
      expect(m.regs.qual.address).toBe(13);
      expect(m.regs.eip).toBe(CODE + 15); // at the WRMSR
      expect(exits).toBe(refuse ? 1 : 0);
    });
  }
});

describe("VMCALL", () => {
  it("disassembles as vmcall (and SGDT stays SGDT)", () => {
    expect(disassemble(Uint8Array.of(0x0f, 0x01, 0xc1), 0, 32)).toEqual({ text: "vmcall", length: 3 });
    expect(disassemble(Uint8Array.of(0x0f, 0x01, 0x01), 0, 32).text).toMatch(/^sgdt /);
  });

  it("raises #UD without VMCALL exits", () => {
    const m = machine({});
    m.update((s) => (s.exceptionBitmap = 1 << 6));
    m.code32("mov eax, 1\nvmcall\nhlt");
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.address).toBe(6);
    expect(m.regs.eip).toBe(CODE + 5);
  });

  it("leaves the other mod=3 forms of 0F 01 /0 undefined", () => {
    for (const insn of ["vmlaunch", "vmresume", "vmxoff"]) {
      const m = machine({ vmcallExits: true });
      m.update((s) => (s.exceptionBitmap = 1 << 6));
      m.code32(`${insn}\nhlt`);
      expect(m.run()).toBe(ExitReason.EXCEPTION);
      expect(m.regs.qual.address).toBe(6);
    }
  });

  it("exits in the instruction with its registers; the answer is EAX, the run goes on", () => {
    const seen: number[][] = [];
    const m: Machine = machine({ vmcallExits: true }, (reason, st) => {
      expect(reason).toBe(ExitReason.VMCALL);
      // The registers as the engine has them in the exit (the kernel moves the portal's groups so).
      seen.push([st.qual.address, m.regs.eax, m.regs.ebx]);
      st.qual.data = 0xfffffc18;
      return true;
    });
    m.code32("mov eax, 5\nmov ebx, 6\nvmcall\nmov esi, eax\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(seen).toEqual([[5, 5, 6]]);
    expect([m.regs.esi, m.regs.ebx]).toEqual([0xfffffc18, 6]);
  });

  it("leaves EAX as it was when no VMM answers", () => {
    const m = machine({ vmcallExits: true }, () => false);
    m.code32("mov eax, 7\nvmcall\nmov esi, eax\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.esi).toBe(7);
  });

  it("in translated code: every iteration of a hot loop exits once, within one run", () => {
    let calls = 0;
    let sum = 0;
    const m = machine({ vmcallExits: true }, (_reason, st) => {
      calls++;
      // Result: twice the number: the guest adds what came back.
      st.qual.data = st.qual.address * 2;
      sum += 2 * st.qual.address;
      return true;
    });
    m.engine.translateAfter = 2;
    m.code32("mov ecx, 100\nagain: mov eax, ecx\nvmcall\nadd edi, eax\nloop again\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(calls).toBe(100);
    expect(m.regs.edi).toBe(sum);
  });
});
