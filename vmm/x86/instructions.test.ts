// i686 instructions the 80286 suite does not reach: CMPXCHG8B, CMOVcc, BSWAP, XADD, bit
// tests/scans, double shifts, 64/32 divide, LAR/LSL/VERR/VERW, segment limits, MSRs.

import { describe, expect, it } from "vitest";
import { ExitReason } from "../../kernel/vcpu.js";
import { CODE, Machine } from "./testing.js";

function run32(source: string, setup: (m: Machine) => void = () => {}): Machine {
  const m = new Machine();
  m.flat(0);
  setup(m);
  m.code32(source + "\nhlt");
  expect(m.run()).toBe(ExitReason.HLT);
  return m;
}

describe("i686 integer instructions", () => {
  it("CMPXCHG8B succeeds and fails as specified", () => {
    const m = run32(`
      mov dword [0x30000], 1
      mov dword [0x30004], 2
      mov eax, 1
      mov edx, 2
      mov ebx, 0x11
      mov ecx, 0x22
      lock cmpxchg8b [0x30000]
      setz [0x30010]
      cmpxchg8b [0x30000]     ; now EDX:EAX (2:1) differs from 0x22:0x11
      setz [0x30011]`);
    const r = m.regs;
    expect([m.r32(0x30000), m.r32(0x30004)]).toEqual([0x11, 0x22]);
    expect([m.ram[0x30010], m.ram[0x30011]]).toEqual([1, 0]);
    expect([r.eax, r.edx]).toEqual([0x11, 0x22]);
  });

  it("CMOVcc, BSWAP, XADD, CMPXCHG", () => {
    const r = run32(`
      mov eax, 5
      mov ebx, 9
      cmp eax, ebx
      cmovl ecx, ebx       ; taken
      cmovg edx, ebx       ; not taken (edx stays 0)
      mov esi, 0x12345678
      bswap esi
      mov edi, 10
      mov ebp, 3
      xadd edi, ebp        ; edi = 13, ebp = 10
      mov eax, 13
      mov ebx, 77
      cmpxchg edi, ebx     ; equal: edi = 77`).regs;
    expect([r.ecx, r.edx, r.esi, r.edi, r.ebp]).toEqual([9, 0, 0x78563412, 77, 10]);
  });

  it("bit tests with register offsets address beyond the operand; BSF/BSR", () => {
    const m = run32(`
      mov dword [0x30000], 0
      mov dword [0x30004], 0
      mov eax, 35
      bts [0x30000], eax    ; bit 3 of the next dword
      setc bl
      bt dword [0x30004], 3
      setc bh
      mov ecx, -1
      btr [0x30008], ecx    ; bit 31 of the dword before 0x30008
      mov edx, 0x00f00000
      bsf esi, edx
      bsr edi, edx`);
    const r = m.regs;
    expect(m.r32(0x30004)).toBe(8);
    expect(r.ebx & 0xffff).toBe(0x0100);
    expect([r.esi, r.edi]).toEqual([20, 23]);
  });

  it("SHLD/SHRD, 64/32 DIV and IDIV, IMUL overflow flags", () => {
    const r = run32(`
      mov eax, 0x12345678
      mov ebx, 0x9abcdef0
      shld eax, ebx, 8      ; 0x3456789a
      mov ecx, 0x12345678
      shrd ecx, ebx, 4      ; 0x01234567 | 0 << 28 -> 0x01234567
      mov edx, 0x1
      mov esi, 0
      push eax
      mov eax, 0x0           ; 0x1_00000000 / 0x10 = 0x10000000
      mov esi, 0x10
      div esi
      mov edi, eax
      pop eax
      mov edx, -1
      mov ebp, -7
      push eax
      mov eax, -100
      idiv ebp               ; 14 rem -2
      mov ebp, eax
      pop eax`).regs;
    expect(r.eax).toBe(0x3456789a);
    expect(r.ecx).toBe(0x01234567);
    expect(r.edi).toBe(0x10000000);
    expect(r.ebp).toBe(14);
    expect(r.edx | 0).toBe(-2);
  });

  it("DIV overflow raises #DE", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => (s.exceptionBitmap = 1));
    m.code32("mov edx, 5\nmov eax, 0\nmov ecx, 5\ndiv ecx\nhlt");
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.address).toBe(0);
  });

  it("LAR/LSL/VERR/VERW report descriptors the current privilege may see", () => {
    const r = run32(`
      mov ecx, 0x10
      lar eax, ecx
      lsl ebx, ecx
      verw cx
      setz dl
      mov ecx, 0x08
      verw cx               ; code: not writable
      setz dh
      mov ecx, 0x1234       ; beyond the GDT
      lsl esi, ecx
      setz cl`).regs;
    expect(r.eax).toBe(0x00cf9300);
    expect(r.ebx).toBe(0xffffffff);
    expect(r.edx & 0xffff).toBe(0x0001);
    expect(r.ecx & 0xff).toBe(0);
  });

  it("segment limits and expand-down segments raise #GP/#SS", () => {
    const m = new Machine();
    m.flat(0);
    m.descriptor(6, 0x40000, 0xfff, 0x93, 0x4); // byte-granular data, limit 0xfff
    m.descriptor(7, 0x50000, 0xfff, 0x97, 0x4); // expand-down: valid 0x1000..0xffffffff
    m.update((s) => {
      s.gdtrLimit = 8 * 8 - 1;
      s.exceptionBitmap = (1 << 13) | (1 << 12);
    });
    m.code32(`
      mov ax, 0x30
      mov es, ax
      mov ax, 0x38
      mov fs, ax
      mov dword [fs:0x2000], 7   ; fine: above the limit of an expand-down segment
      mov dword [es:0xffc], 1    ; fine
      mov dword [es:0xffe], 1    ; crosses the limit: #GP(0)
      hlt`);
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    expect(m.regs.qual.address).toBe(13);
    expect(m.r32(0x52000)).toBe(7);
    expect(m.r32(0x40ffc)).toBe(1);
  });

  it("reads and writes the SYSENTER and APIC base MSRs; unknown MSRs raise #GP", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    m.code32(`
      mov ecx, 0x175
      mov eax, 0xabcd0000
      xor edx, edx
      wrmsr
      xor eax, eax
      rdmsr
      mov esi, eax
      mov ecx, 0x1b
      rdmsr
      mov edi, eax
      mov ecx, 0x999
      rdmsr
      hlt`);
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    const r = m.regs;
    expect(r.esi).toBe(0xabcd0000);
    expect(r.edi).toBe(0xfee00900);
    expect(r.sysenterEsp).toBe(0xabcd0000);
  });

  it("reads the platform ID MSR as 0; writing it raises #GP", () => {
    const m = new Machine();
    m.flat(0);
    m.update((s) => (s.exceptionBitmap = 1 << 13));
    m.code32(`
      mov ecx, 0x17
      mov eax, -1
      mov edx, -1
      rdmsr
      mov esi, eax
      mov edi, edx
      wrmsr
      hlt`);
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    const r = m.regs;
    expect([r.esi, r.edi, r.qual.address]).toEqual([0, 0, 13]);
    expect(r.eip).toBe(CODE + 5 + 5 + 5 + 2 + 2 + 2); // at the WRMSR
  });
});
