// The VcpuEngine contract: reset vector, real->protected transition, HLT, injection and the
// interrupt window, CPUID (own answer and exits), RDTSC, the opcode table and disassembler.

import { describe, expect, it } from "vitest";
import { MemRights } from "../../kernel/guest-memory.js";
import { ExitReason, InjectionType, Mtd, VcpuState } from "../../kernel/vcpu.js";
import { disassemble } from "./disasm.js";
import { unresolvedHandlers } from "./handlers/index.js";
import { OPCODES } from "./opcodes.js";
import { CODE, Machine, nasm, SEL_CODE0 } from "./testing.js";

describe("engine", () => {
  it("starts at the reset vector and switches from real to protected mode", () => {
    const m = new Machine();
    const rom = new Uint8Array(0x10000);
    for (let p = 0; p < 16; p++) {
      m.memory.map(0xffff0 + p, rom, p * 0x1000, MemRights.R | MemRights.X); // top of 4G
      m.memory.map(0xf0 + p, rom, p * 0x1000, MemRights.R | MemRights.X); // and below 1M, as on a PC
    }
    rom.set(nasm("bits 16\norg 0xfff0\njmp 0xf000:0xe000\n"), 0xfff0);
    rom.set(nasm(`bits 16
      org 0xe000
      mov eax, 0x1000
      mov dword [0x1000], 0
      mov dword [0x1004], 0
      mov dword [0x1008], 0x0000ffff
      mov dword [0x100c], 0x00cf9b00
      mov dword [0x1010], 0x0000ffff
      mov dword [0x1014], 0x00cf9300
      o32 lgdt [cs:gdtr]
      mov eax, cr0
      or al, 1
      mov cr0, eax
      jmp dword 0x08:${CODE}
      gdtr: dw 23
            dd 0x1000
    `), 0xe000);
    m.code32("mov ax, 0x10\nmov ds, ax\nmov ss, ax\nmov esp, 0x8000\npush 0x55\npop ebx\nhlt");
    const st = new VcpuState();
    m.engine.saveState(Mtd.ALL, st);
    expect([st.cs.selector, st.cs.base, st.eip]).toEqual([0xf000, 0xffff0000, 0xfff0]);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.cs.selector).toBe(SEL_CODE0);
    expect(r.ebx).toBe(0x55);
    expect(r.eip).toBe(CODE + 17);
  });

  it("HLT exits with EIP past the HLT and stays halted until an interrupt is injected", () => {
    const m = new Machine();
    m.flat(0);
    m.gate(0x30, SEL_CODE0, 0x20000, 0xe);
    m.code32("mov eax, 0x30\nhlt", 0x20000);
    m.code32("sti\nhlt\nmov ebx, 1\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.eip).toBe(CODE + 2);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.engine.retired).toBe(2);
    m.update((s) => {
      s.inj.valid = true;
      s.inj.type = InjectionType.EXTERNAL;
      s.inj.vector = 0x30;
    });
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.eax).toBe(0x30);
    expect(m.r32(0x8000 - 12)).toBe(CODE + 2); // return EIP: after the first HLT
  });

  it("keeps the retired count and the TSC continuous when it rebases c.retired", () => {
    const m = new Machine();
    m.flat(0);
    const start = 2 ** 28 + 5;
    m.engine.cpu.retired = start;
    m.code32("rdtsc\nnop\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.eax).toBe(start); // the TSC counted on from the old c.retired
    expect(m.engine.retired).toBe(start + 3);
    expect(m.engine.cpu.retired).toBe(3); // small again: a V8 small integer in translated code
  });

  it("reports the interrupt window after STI's shadow; external interrupts wait for IF", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => {
      s.eflags = 2;
      s.inj.requestWindow = true;
    });
    m.code32("nop\nnop\nsti\nnop\nnop\nhlt");
    expect(m.run()).toBe(ExitReason.INTR_WINDOW);
    expect(m.regs.eip).toBe(CODE + 4); // after STI and the shadowed NOP
    expect(m.engine.retired).toBe(4);
  });

  it("injects a hardware exception with an error code", () => {
    const m = new Machine();
    m.flat(0);
    m.gate(13, SEL_CODE0, 0x20000, 0xe);
    m.code32("pop ecx\nhlt", 0x20000);
    m.code32("nop\nhlt");
    m.update((s) => {
      s.inj.valid = true;
      s.inj.type = InjectionType.HARDWARE_EXCEPTION;
      s.inj.vector = 13;
      s.inj.errorCode = 0x18;
    });
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.ecx).toBe(0x18);
  });

  it("answers CPUID as a Pentium II, or exits to the VMM when asked", () => {
    const m = new Machine();
    m.flat(0);
    m.code32("xor eax, eax\ncpuid\nmov esi, ebx\nmov eax, 1\ncpuid\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    let r = m.regs;
    expect(r.esi).toBe(0x756e6547);
    expect(r.eax).toBe(0x652);
    expect(r.edx & (1 << 15)).not.toBe(0); // CMOV
    expect(r.edx & (1 << 8)).not.toBe(0); // CX8
    expect(r.edx & 1).toBe(0); // no FPU yet
    const m2 = new Machine();
    m2.flat(0);
    m2.update((s) => (s.cpuidExits = true));
    m2.handler.exit = (reason, st) => {
      expect(reason).toBe(ExitReason.CPUID);
      st.qual.data = st.qual.address + 100;
      st.qual.ebx = 1;
      st.qual.ecx = 2;
      st.qual.edx = 3;
      return true;
    };
    m2.code32("mov eax, 7\ncpuid\nhlt");
    expect(m2.run()).toBe(ExitReason.HLT);
    r = m2.regs;
    expect([r.eax, r.ebx, r.ecx, r.edx]).toEqual([107, 1, 2, 3]);
  });

  it("reports the local APIC and its initial APIC ID in CPUID leaf 1 while IA32_APIC_BASE enables it", () => {
    const program = "mov eax, 1\ncpuid\nmov esi, edx\nmov edi, ebx\nmov ecx, 0x1b\nrdmsr\nhlt";
    const withApic = new Machine();
    withApic.flat(0);
    withApic.update((s) => {
      s.apicBase = 0xfee00800;
      s.apicId = 3;
    });
    withApic.code32(program);
    expect(withApic.run()).toBe(ExitReason.HLT);
    expect(withApic.regs.esi & (1 << 9)).not.toBe(0);
    expect(withApic.regs.edi >>> 24).toBe(3);
    expect(withApic.regs.eax >>> 0).toBe(0xfee00800);
    // No APIC: CPUID says so and IA32_APIC_BASE does not exist (#GP).
    const without = new Machine();
    without.flat(0);
    without.update((s) => {
      s.apicBase = 0;
      s.exceptionBitmap = 1 << 13;
    });
    without.code32(program);
    expect(without.run()).toBe(ExitReason.EXCEPTION);
    expect(without.regs.qual.address).toBe(13);
    expect(without.regs.esi & (1 << 9)).toBe(0);
  });

  it("derives RDTSC from retired instructions; WRMSR to the TSC moves it", () => {
    const m = new Machine();
    m.flat(0);
    m.code32(`
      rdtsc
      mov esi, eax
      nop
      rdtsc
      mov edi, eax
      mov ecx, 0x10
      xor edx, edx
      mov eax, 1000
      wrmsr
      rdtsc
      hlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.edi - r.esi).toBe(3);
    expect(r.eax).toBe(1001);
  });

  it("counts a stalled access as retired time: RDTSC sees it, and a polling loop stops at its budget", () => {
    for (const translate of [false, true]) {
      const m = new Machine();
      m.engine.translate = translate;
      m.engine.translateAfter = 1;
      const stall = m.handler.exit;
      m.handler.exit = (reason, st) => (m.engine.stall(1000), stall(reason, st));
      m.flat(0);
      m.code32(`
        rdtsc
        mov esi, eax
        in al, 0x61
        rdtsc
        mov edi, eax
        poll: in al, 0x61
        test al, 0x20
        jz poll
        hlt`);
      m.readValue = 0;
      // The budget ends right after the read that crossed it: the 10th, at 10 * (3 + 1000).
      expect(m.run(10_000)).toBe(ExitReason.BUDGET);
      expect(m.regs.edi - m.regs.esi).toBe(3 + 1000);
      expect(m.engine.retired).toBe(10 * (3 + 1000));
      expect(m.exits.length).toBe(10);
      m.readValue = 0x20;
      expect(m.run(10_000)).toBe(ExitReason.HLT);
      expect(m.exits.length).toBe(11);
    }
  });

  it("raises #NM for x87 escapes when CR0.EM/TS say so, #UD without an FPU", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => (s.exceptionBitmap = (1 << 7) | (1 << 6)));
    m.code32("fninit");
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.address).toBe(6);
    m.flat(0);
    m.update((s) => {
      s.exceptionBitmap = (1 << 7) | (1 << 6);
      s.cr0 |= 8;
    });
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.address).toBe(7);
  });

  it("hands ESC opcodes to an attached FPU, which CPUID then reports", () => {
    const m = new Machine();
    m.flat(0);
    const seen: number[] = [];
    m.engine.attachFpu({
      execute: (c, i) => void seen.push(c.dec.opc[i], c.dec.modrm[i]),
      wait: () => void seen.push(0x9b),
      ferr: false,
      ignne: false,
      save: () => new Uint8Array(512),
      load: () => {},
    });
    m.code32("fninit\nfwait\nmov eax, 1\ncpuid\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    expect(seen).toEqual([0xdb, 0xe3, 0x9b]);
    expect(m.regs.edx & 1).toBe(1);
  });
});

describe("opcode table and disassembler", () => {
  it("every table record resolves to handlers", () => {
    expect(unresolvedHandlers()).toEqual([]);
    expect(OPCODES.filter((e) => e !== null).length).toBeGreaterThan(350);
  });

  it("disassembles both modes from the same table", () => {
    const b = (...x: number[]) => new Uint8Array(x);
    expect(disassemble(b(0x00, 0x5f, 0x0e), 0, 16)).toEqual({ text: "add byte [bx+0xe], bl", length: 3 });
    expect(disassemble(b(0x8b, 0x44, 0x8b, 0xfc), 0, 32)).toEqual({ text: "mov eax, dword [ebx+ecx*4-0x4]", length: 4 });
    expect(disassemble(b(0x66, 0xb8, 0x34, 0x12), 0, 32)).toEqual({ text: "mov ax, 0x1234", length: 4 });
    expect(disassemble(b(0xf3, 0xa5), 0, 32).text).toBe("rep movsd");
    expect(disassemble(b(0x0f, 0xc7, 0x0e), 0, 32).text).toBe("cmpxchg8b [esi]");
    expect(disassemble(b(0x90, 0xeb, 0xfe), 1, 16).text).toBe("jmp 0x1");
    expect(disassemble(b(0x0f, 0x0b), 0, 32).text).toBe("ud2");
    expect(disassemble(b(0x0f, 0xff), 0, 32).text).toBe("(bad)");
  });
});
