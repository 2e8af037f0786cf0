// Protected-mode system architecture: gates and privilege changes, task switches, double fault
// through a task gate, virtual-8086 mode, SYSENTER/SYSEXIT and the I/O permission bitmap.

import { describe, expect, it } from "vitest";
import { ExitReason } from "../../kernel/vcpu.js";
import { CODE, Machine, SEL_CODE0, SEL_CODE3, SEL_TSS, STACK0, TSS } from "./testing.js";

const HANDLER = 0x20000;

describe("privilege transitions", () => {
  it("INT from ring 3 through a DPL-3 trap gate switches to the TSS stack; IRET returns", () => {
    const m = new Machine();
    m.flat(3);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    m.gate(0x80, SEL_CODE0, HANDLER, 0xf, 3);
    m.code32(`
      mov [0x30000], esp
      mov eax, ss
      mov [0x30004], eax
      mov eax, [esp + 4]
      mov [0x30008], eax     ; pushed CS
      mov eax, [esp + 16]
      mov [0x3000c], eax     ; pushed SS
      mov eax, 77
      iretd`, HANDLER);
    m.code32("mov eax, 1\nint 0x80\nmov ebx, eax\nhlt");
    expect(m.run()).toBe(ExitReason.EXCEPTION); // HLT at ring 3: #GP(0)
    const r = m.regs;
    expect(r.qual.address).toBe(13);
    expect(r.qual.errorCode).toBe(0);
    expect(r.cs.selector).toBe(SEL_CODE3);
    expect(r.ebx).toBe(77);
    expect(r.esp).toBe(0x8000);
    expect(m.r32(0x30000)).toBe(STACK0 - 20);
    expect(m.r32(0x30004)).toBe(0x10);
    expect(m.r32(0x30008)).toBe(SEL_CODE3);
    expect(m.r32(0x3000c)).toBe(0x23);
  });

  it("denies INT n through a DPL-0 gate from ring 3 with #GP(vector*8+2)", () => {
    const m = new Machine();
    m.flat(3);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    m.gate(0x40, SEL_CODE0, HANDLER, 0xe, 0);
    m.code32("int 0x40");
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.errorCode).toBe(0x40 * 8 + 2);
  });

  it("a call gate from ring 3 to ring 0 copies parameters and RETF returns to ring 3", () => {
    const m = new Machine();
    m.flat(3);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    // GDT[6]: 32-bit call gate, DPL 3, one parameter, to ring-0 code at HANDLER.
    m.w32(0x1000 + 6 * 8, (SEL_CODE0 << 16) | (HANDLER & 0xffff));
    m.w32(0x1000 + 6 * 8 + 4, (HANDLER & 0xffff0000) | 0xec00 | 1);
    m.update((s) => (s.gdtrLimit = 8 * 8 - 1));
    m.code32(`
      mov eax, [esp + 8]     ; parameter
      mov ebx, [esp + 12]    ; caller ESP
      mov ecx, cs
      retf 4`, HANDLER);
    m.code32("push 0x1234\ncall 0x33:0\nhlt");
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    const r = m.regs;
    expect(r.eax).toBe(0x1234);
    expect(r.ebx).toBe(0x8000 - 4);
    expect(r.ecx).toBe(SEL_CODE0);
    expect(r.cs.selector).toBe(SEL_CODE3);
    expect(r.esp).toBe(0x8000);
  });

  it("RETF to an outer ring nulls data segments the outer ring may not use", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    m.code32(`
      push 0x23
      push 0x7000
      push 0x1b
      push ${CODE + 0x100}
      retf`);
    m.code32("mov eax, ds\nmov ebx, es\nhlt", CODE + 0x100);
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    const r = m.regs;
    expect(r.cs.selector).toBe(SEL_CODE3);
    expect(r.esp).toBe(0x7000);
    expect(r.eax).toBe(0);
    expect(r.ds.attributes & 0x10000).toBe(0x10000);
  });
});

describe("tasks", () => {
  /** A second 32-bit TSS at 0x5000 (GDT[7], selector 0x38) starting at `eip`. */
  function secondTask(m: Machine, eip: number): void {
    const t = 0x5000;
    m.descriptor(7, t, 0x67, 0x89, 0);
    m.update((s) => (s.gdtrLimit = 8 * 8 - 1));
    m.w32(t + 28, 0); // cr3
    m.w32(t + 32, eip);
    m.w32(t + 36, 2); // eflags
    m.w32(t + 40, 0x11); // eax
    m.w32(t + 56, 0x6000); // esp
    for (const [off, sel] of [[72, 0x10], [76, 0x08], [80, 0x10], [84, 0x10], [88, 0x10], [92, 0x10]]) m.w32(t + off, sel);
  }

  it("JMP to a TSS switches tasks, saves the old one and moves the busy bit", () => {
    const m = new Machine();
    m.flat(0);
    secondTask(m, HANDLER);
    m.code32("add eax, 1\nhlt", HANDLER);
    m.code32("mov ebx, 0x99\njmp 0x38:0\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.tr.selector).toBe(0x38);
    expect(r.eax).toBe(0x12);
    expect(r.esp).toBe(0x6000);
    expect(r.cr0 & 8).toBe(8); // TS set by the switch
    expect(m.r32(TSS + 32)).toBe(CODE + 12); // old EIP: after the JMP
    expect(m.r32(TSS + 52)).toBe(0x99); // old EBX
    expect((m.r32(0x1000 + 5 * 8 + 4) >> 8) & 0xf).toBe(9); // old TSS available
    expect((m.r32(0x1000 + 7 * 8 + 4) >> 8) & 0xf).toBe(11); // new TSS busy
  });

  it("a double fault goes through a task gate to a new task with error code 0", () => {
    const m = new Machine();
    m.flat(0);
    secondTask(m, HANDLER);
    m.gate(8, 0x38, 0, 0x5);
    m.code32("pop ecx\nhlt", HANDLER);
    // #GP with a not-present IDT entry 13 -> #NP while delivering a contributory fault -> #DF.
    m.code32("mov ax, 0x1234\nmov ds, ax\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.tr.selector).toBe(0x38);
    expect(r.ecx).toBe(0);
    expect(m.r32(0x5000) & 0xffff).toBe(SEL_TSS); // back link
    expect(r.eflags & 0x4000).toBe(0x4000); // NT
  });

  it("a fault with no way to deliver it becomes a triple fault", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => (s.idtrLimit = 0));
    m.code32("ud2");
    expect(m.run()).toBe(ExitReason.TRIPLE_FAULT);
  });
});

describe("virtual-8086 mode", () => {
  it("IRET enters v86; INT with IOPL 0 raises #GP(0) to the ring-0 monitor", () => {
    const m = new Machine();
    m.flat(0);
    m.gate(13, SEL_CODE0, HANDLER, 0xe);
    m.code32(`
      mov ax, 0x10            ; the v86 exit left DS/ES null
      mov ds, ax
      mov es, ax
      mov esi, esp
      mov edi, 0x30000
      mov ecx, 10
      rep movsd
      hlt`, HANDLER);
    m.write(0x40000, [0xb8, 0x07, 0x00, 0x8e, 0xd8, 0x8b, 0x1e, 0x10, 0x00, 0xcd, 0x21]); // mov ax,7; mov ds,ax; mov bx,[0x10]; int 0x21
    m.view.setUint16(0x80, 0xbeef, true); // 0007:0010
    m.code32(`
      push 0      ; gs
      push 0      ; fs
      push 0      ; ds
      push 0      ; es
      push 0x3000 ; ss
      push 0xfffe ; esp
      push 0x20002 ; eflags: VM, IOPL 0
      push 0x4000 ; cs
      push 0      ; eip
      iretd`);
    expect(m.run()).toBe(ExitReason.HLT);
    const frame = Array.from({ length: 10 }, (_, k) => m.r32(0x30000 + 4 * k));
    expect(frame[0]).toBe(0); // error code
    expect(frame[1]).toBe(9); // EIP of the INT
    expect(frame[2]).toBe(0x4000); // CS
    expect(frame[3] & 0x20000).toBe(0x20000); // VM
    expect(frame[5]).toBe(0x3000); // SS
    expect(frame[7]).toBe(7); // DS
    expect(m.regs.ebx & 0xffff).toBe(0xbeef);
  });
});

describe("fast system calls and I/O permission", () => {
  it("SYSEXIT to ring 3 and SYSENTER back to ring 0", () => {
    const m = new Machine();
    m.flat(0);
    m.code32("mov ebx, 6\nhlt", HANDLER);
    m.code32(`
      mov ecx, 0x174
      xor edx, edx
      mov eax, 0x08
      wrmsr
      mov ecx, 0x175
      mov eax, 0x7800
      wrmsr
      mov ecx, 0x176
      mov eax, ${HANDLER}
      wrmsr
      mov edx, user
      mov ecx, 0x6000
      sysexit
    user:
      mov eax, cs
      mov esi, esp
      sysenter`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.eax).toBe(SEL_CODE3);
    expect(r.esi).toBe(0x6000);
    expect(r.ebx).toBe(6);
    expect(r.cs.selector).toBe(SEL_CODE0);
    expect(r.esp).toBe(0x7800);
  });

  it("ring 3 with IOPL 0 reaches only the ports the TSS bitmap allows", () => {
    const m = new Machine();
    m.flat(3);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    m.ram.fill(0xff, TSS + 0x68, TSS + 0x68 + 0x2001);
    m.ram[TSS + 0x68 + 0x10] = 0xfe; // port 0x80 allowed
    m.code32("mov al, 1\nout 0x80, al\nin al, 0x80\nout 0x81, al");
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.address).toBe(13);
    expect(m.exits.filter((e) => e.reason === ExitReason.PIO).map((e) => [e.address, e.write])).toEqual([
      [0x80, true],
      [0x80, false],
    ]);
  });
});
