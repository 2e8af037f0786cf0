// Corners of the architecture that test ROMs probe (issue 17): stack-size transitions of POP SS
// and ENTER, a task switch into a 16-bit TSS, real-mode INT n at the end of the stack segment, and
// what AAM 0's divide error leaves. Expected values follow the SDM where it speaks, else what
// Bochs and QEMU agree on (noted per test).

import { describe, expect, it } from "vitest";
import { ExitReason } from "../../kernel/vcpu.js";
import { CODE, Machine, SEL_CODE0, SEL_TSS } from "./testing.js";

/** GDT[6] (selector 0x30): a writable data segment with base 0, limit 64 KiB and B=0 (16-bit stack). */
const SEL_DATA16 = 0x30;

function withStack16(m: Machine): void {
  m.descriptor(6, 0, 0xffff, 0x93, 0);
  m.update((s) => (s.gdtrLimit = 8 * 8 - 1));
}

/** Real mode at 0:ip with SS:SP, DS = 0, interrupt vectors at 0. */
function realMode(m: Machine, ip: number, ss: number, sp: number): void {
  m.update((s) => {
    s.cr0 = 0x60000010;
    const seg = (x: typeof s.cs, sel: number, attr: number) => {
      x.selector = sel; x.base = sel << 4; x.limit = 0xffff; x.attributes = attr;
    };
    seg(s.cs, 0, 0x9b);
    for (const x of [s.ds, s.es, s.fs, s.gs]) seg(x, 0, 0x93);
    seg(s.ss, ss, 0x93);
    s.idtrBase = 0; s.idtrLimit = 0x3ff;
    s.eip = ip; s.esp = sp; s.eflags = 2;
  });
}

describe("POP SS across stack sizes", () => {
  it("moves ESP by the old, 32-bit stack when it loads a 16-bit stack segment", () => {
    const m = new Machine();
    m.flat(0);
    withStack16(m);
    m.w32(0x1fffc, SEL_DATA16);
    // ESP + 4 carries into the upper half: only a 32-bit update gives 0x20000.
    m.code32(`mov esp, 0x1fffc\npop ss\nmov ebx, esp\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ss.selector).toBe(SEL_DATA16);
    expect(r.ebx).toBe(0x20000);
  });

  it("moves only SP, by the old 16-bit stack, when it loads a 32-bit stack segment", () => {
    const m = new Machine();
    m.flat(0);
    withStack16(m);
    m.w32(0xfffc, 0x10);
    // The pop reads SS:SP = 0xfffc and SP wraps to 0 under ESP's upper half.
    m.code32(`mov ax, ${SEL_DATA16}\nmov ss, ax\nmov esp, 0x1234fffc\npop ss\nmov ebx, esp\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ss.selector).toBe(0x10);
    expect(r.ebx).toBe(0x12340000);
  });

  it("o16 POP SS on a 32-bit stack adds 2 to ESP", () => {
    const m = new Machine();
    m.flat(0);
    withStack16(m);
    m.w32(0x1fffe, SEL_DATA16);
    m.code32(`mov esp, 0x1fffe\no16 pop ss\nmov ebx, esp\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.ebx).toBe(0x20000);
  });
});

describe("ENTER across operand and stack sizes", () => {
  it("a 32-bit ENTER on a 16-bit stack keeps ESP's and gives EBP the upper half of ESP", () => {
    const m = new Machine();
    m.flat(0);
    withStack16(m);
    // Bochs and QEMU: EBP = ESP after the push (upper half kept), SP -= size, upper half kept.
    m.code32(`mov ax, ${SEL_DATA16}\nmov ss, ax\nmov esp, 0xabcd0100\nmov ebp, 0x55550200\nenter 8, 0\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ebp).toBe(0xabcd00fc);
    expect(r.esp).toBe(0xabcd00f4);
    expect(m.r32(0xfc)).toBe(0x55550200);
  });

  it("a 32-bit ENTER with nesting on a 16-bit stack reads the outer frames through BP", () => {
    const m = new Machine();
    m.flat(0);
    withStack16(m);
    // Level 2 copies one outer frame pointer, read at SS:BP - 4 = 2 (BP, not EBP, on a 16-bit stack).
    m.code32(`mov ax, ${SEL_DATA16}\nmov ss, ax\nmov esp, 0x77770200\nmov ebp, 0x99990006\nenter 0, 2\nhlt`);
    m.w32(0x0002, 0xdeadbeef);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    // push EBP at 0x1fc; copy [BP - 4] = [0x0002]; push frame pointer 0x777701fc.
    expect(m.r32(0x1fc)).toBe(0x99990006);
    expect(m.r32(0x1f8)).toBe(0xdeadbeef);
    expect(m.r32(0x1f4)).toBe(0x777701fc);
    expect(r.ebp).toBe(0x777701fc);
    expect(r.esp).toBe(0x777701f4);
  });

  it("a 16-bit ENTER on a 32-bit stack moves all of ESP and only BP", () => {
    const m = new Machine();
    m.flat(0);
    m.code32(`mov esp, 0x20002\nmov ebp, 0x12345678\no16 enter 4, 0\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(m.ram[0x20000] | (m.ram[0x20001] << 8)).toBe(0x5678);
    expect(r.ebp).toBe(0x12340000); // BP = low half of ESP (0x20000)
    expect(r.esp).toBe(0x1fffc);
  });

  it("a 16-bit ENTER on a 16-bit stack at SP 0 wraps to the segment's top", () => {
    const m = new Machine();
    m.flat(0);
    withStack16(m);
    m.code32(`mov ax, ${SEL_DATA16}\nmov ss, ax\nmov esp, 0x30000\nmov ebp, 0x4444abcd\no16 enter 6, 0\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(m.ram[0xfffe] | (m.ram[0xffff] << 8)).toBe(0xabcd);
    expect(r.ebp).toBe(0x4444fffe);
    expect(r.esp).toBe(0x3fff8);
  });
});

describe("task switch into a 16-bit TSS", () => {
  it("sets the upper halves of the general registers to 0xFFFF and clears FS and GS", () => {
    const m = new Machine();
    m.flat(0);
    const t = 0x5000;
    m.descriptor(7, t, 43, 0x81, 0); // 286 TSS, available
    m.update((s) => (s.gdtrLimit = 8 * 8 - 1));
    const w16 = (o: number, v: number) => {
      m.ram[t + o] = v & 0xff;
      m.ram[t + o + 1] = v >> 8;
    };
    w16(14, 0x6000); // IP
    w16(16, 0x0002); // FLAGS
    const regs = [0x1111, 0x2222, 0x3333, 0x4444, 0x7000, 0x5555, 0x6666, 0x7777];
    regs.forEach((v, k) => w16(18 + 2 * k, v));
    for (const [o, sel] of [[34, 0x10], [36, SEL_CODE0], [38, 0x10], [40, 0x10], [42, 0]]) w16(o, sel);
    m.code32("hlt", 0x6000);
    m.code32(`mov eax, 0x12345678\nmov esi, 0x9abcdef0\nmov fs, [fsel]\njmp 0x38:0\nfsel: dw 0x10`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.tr.selector).toBe(0x38);
    expect([r.eax, r.ecx, r.edx, r.ebx, r.esp, r.ebp, r.esi, r.edi]).toEqual(regs.map((v) => (0xffff0000 | v) >>> 0));
    expect(r.eip).toBe(0x6001);
    expect([r.fs.selector, r.gs.selector]).toEqual([0, 0]);
    expect(m.r32(0x2000 + 40)).toBe(0x12345678); // the old 32-bit task kept its full EAX
    expect((m.r32(0x1000 + (SEL_TSS >> 3) * 8 + 4) >> 8) & 0xf).toBe(9); // and is no longer busy
  });
});

describe("real-mode INT n at the end of the stack segment", () => {
  const HANDLER = 0x7100;

  function intAt(sp: number): Machine {
    const m = new Machine();
    m.code32("bits 16\nmov bx, sp\nmov cx, [ss:0xfffa]\nmov dx, [ss:0xfffe]\niret", HANDLER);
    m.code32("bits 16\nint 0x40\nhlt", 0x7000);
    m.w32(0x40 * 4, HANDLER);
    realMode(m, 0x7000, 0x2000, sp);
    return m;
  }

  it("SP 0 wraps: the frame sits at the top of the segment and IRET brings SP back to 0", () => {
    const m = intAt(0);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ebx & 0xffff).toBe(0xfffa); // SP in the handler
    expect(r.ecx & 0xffff).toBe(0x7002); // return IP
    expect(r.edx & 0xffff).toBe(0x0002); // FLAGS image
    expect(r.esp & 0xffff).toBe(0);
    expect(r.eip).toBe(0x7003);
  });

  for (const sp of [1, 3, 5]) {
    it(`SP ${sp}: a pushed word crosses the segment's end: #SS, whose delivery faults again: shutdown`, () => {
      // SDM (PUSH, IA-32 compatibility): #SS, its delivery raises #SS again, #DF, then shutdown.
      const m = intAt(sp);
      m.w32(12 * 4, HANDLER);
      m.w32(8 * 4, HANDLER);
      expect(m.run()).toBe(ExitReason.TRIPLE_FAULT);
      expect(m.regs.esp & 0xffff).toBe(sp); // the faulting INT left SP as it was
    });
  }
});

describe("AAM 0", () => {
  for (const translateAfter of [1, 40000]) {
    it(`raises #DE leaving AX and every flag as they were (translateAfter ${translateAfter})`, () => {
      // A fault: nothing of the instruction happens (SDM); Bochs, QEMU and the host agree.
      const m = new Machine();
      m.flat(0);
      m.engine.translateAfter = translateAfter;
      m.gate(0, SEL_CODE0, 0x20000, 0xe);
      // Each pass: flags from an ALU op (lazy), then AAM 0; the #DE handler records them and
      // returns past the AAM.
      m.code32(`
        xor ebx, ebx
      again:
        mov eax, ebx
        imul eax, eax, 0x9e3779b1
        mov edx, eax
        add dl, bl       ; flags vary with the pass
        mov [0x30200 + ebx*4], eax
        pushfd
        pop dword [0x30300 + ebx*4]
        aam 0
        inc ebx
        cmp ebx, 40
        jb again
        hlt`);
      // The #DE handler: count, record EFLAGS and EAX, resume after the 2-byte AAM with its flags.
      m.code32(`add dword [0x30000], 1
        pop ecx                  ; EIP of the AAM
        pop edx                  ; CS
        pop edx                  ; EFLAGS
        mov [0x30004 + ebx*4], edx
        mov [0x30100 + ebx*4], eax
        add ecx, 2
        push edx
        popfd
        jmp ecx`, 0x20000);
      expect(m.run(10_000_000)).toBe(ExitReason.HLT);
      expect(m.r32(0x30000)).toBe(40);
      for (let k = 0; k < 40; k++) {
        expect(m.r32(0x30004 + k * 4) & 0x8d5).toBe(m.r32(0x30300 + k * 4) & 0x8d5);
        expect(m.r32(0x30100 + k * 4)).toBe(m.r32(0x30200 + k * 4));
      }
    });
  }
});
