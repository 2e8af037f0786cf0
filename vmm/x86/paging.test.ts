// Paging, page faults, the exception bitmap, MMIO exits and self-modifying code.

import { describe, expect, it } from "vitest";
import { ExitReason } from "../../kernel/vcpu.js";
import { Machine, SEL_CODE0 } from "./testing.js";

const PD = 0x100000, PT = 0x101000, HANDLER = 0x20000;

/** Identity-map the first 4 MiB with 4 KiB pages (user, writable), then apply `edit` to PTEs. */
function pageTables(m: Machine, edit: (pte: number[]) => void = () => {}): void {
  const ptes = Array.from({ length: 1024 }, (_, i) => (i << 12) | 7);
  edit(ptes);
  ptes.forEach((v, i) => m.w32(PT + i * 4, v));
  m.w32(PD, PT | 7);
}

const ENABLE_PAGING = `
  mov eax, ${PD}
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80010000
  mov cr0, eax
`;

describe("paging", () => {
  it("delivers #PF with CR2 and the error code (not present, read)", () => {
    const m = new Machine();
    m.flat(0);
    pageTables(m, (p) => (p[0x50] = 0));
    m.gate(14, SEL_CODE0, HANDLER, 0xe);
    m.code32("pop ebx\nmov ecx, cr2\nhlt", HANDLER);
    m.code32(`${ENABLE_PAGING}\nmov eax, [0x50004]\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ebx).toBe(0);
    expect(r.ecx).toBe(0x50004);
    expect(r.cr2).toBe(0x50004);
  });

  it("honours CR0.WP for supervisor writes to read-only pages and sets A/D bits", () => {
    const m = new Machine();
    m.flat(0);
    pageTables(m, (p) => (p[0x51] = 0x51000 | 5));
    m.gate(14, SEL_CODE0, HANDLER, 0xe);
    m.code32("pop ebx\nmov ecx, cr2\nhlt", HANDLER);
    m.code32(`${ENABLE_PAGING}\nmov dword [0x52000], 1\nmov eax, [0x51000]\nmov [0x51008], eax\nhlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect(r.ebx).toBe(3); // present, write, supervisor
    expect(r.ecx).toBe(0x51008);
    expect(m.r32(PT + 0x52 * 4) & 0x60).toBe(0x60); // accessed + dirty
    expect(m.r32(PT + 0x51 * 4) & 0x60).toBe(0x20); // accessed only
    expect(m.r32(PD) & 0x20).toBe(0x20);
  });

  it("maps 4 MiB pages with CR4.PSE and reports user faults on supervisor pages", () => {
    const m = new Machine(16 << 20);
    m.flat(0);
    m.w32(PD, 0x87); // 0-4M: present, writable, user, 4M
    m.w32(PD + 4, 0x400000 | 0x83); // 4M-8M: supervisor only
    m.w32(PD + 8, 0x400000 | 0x87); // 8M-12M -> physical 4M-8M
    m.w32(0x400010, 0x1234);
    m.code32(`
      mov eax, cr4
      or eax, 0x10
      mov cr4, eax
      ${ENABLE_PAGING}
      mov eax, [0x800010]
      hlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.eax).toBe(0x1234);
  });

  it("turns exceptions in the bitmap into EXCEPTION exits with the qualification", () => {
    const m = new Machine();
    m.flat(0);
    pageTables(m, (p) => (p[0x60] = 0));
    m.update((s) => (s.exceptionBitmap = 1 << 14));
    m.code32(`${ENABLE_PAGING}\nmov dword [0x60010], 5\nhlt`);
    expect(m.run()).toBe(ExitReason.EXCEPTION);
    const r = m.regs;
    expect(r.qual.address).toBe(14);
    expect(r.qual.errorCode).toBe(2);
    expect(r.qual.linear).toBe(0x60010);
    expect(m.ram[0x60010]).toBe(0);
  });

  it("INVLPG and CR3 reloads drop stale translations", () => {
    const m = new Machine();
    m.flat(0);
    pageTables(m, (p) => (p[0x70] = 0x71000 | 7));
    m.w32(0x71000, 111);
    m.w32(0x72000, 222);
    m.code32(`${ENABLE_PAGING}
      mov eax, [0x70000]
      mov dword [${PT + 0x70 * 4}], 0x72007
      mov ebx, [0x70000]
      invlpg [0x70000]
      mov ecx, [0x70000]
      hlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect([r.eax, r.ebx, r.ecx]).toEqual([111, 111, 222]);
  });

  it("MOV CR3 keeps global pages (CR4.PGE) and drops the others, also a page that stopped being global", () => {
    const m = new Machine();
    m.flat(0);
    pageTables(m, (p) => (p[0x70] = 0x71000 | 0x107));
    m.w32(0x71000, 111);
    m.w32(0x72000, 222);
    m.code32(`${ENABLE_PAGING}
      mov eax, cr4
      or eax, 0x80
      mov cr4, eax
      mov eax, [0x70000]                    ; global entry for 0x70000 -> 0x71000
      mov dword [${PT + 0x70 * 4}], 0x72007 ; not global any more, other frame
      mov edx, cr3
      mov cr3, edx
      mov ebx, [0x70000]                    ; the global entry survived
      invlpg [0x70000]
      mov ecx, [0x70000]                    ; refilled, not global
      mov dword [${PT + 0x70 * 4}], 0x71007
      mov cr3, edx
      mov esi, [0x70000]                    ; the non-global entry is gone
      hlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    const r = m.regs;
    expect([r.eax, r.ebx, r.ecx, r.esi]).toEqual([111, 111, 222, 111]);
  });

  for (const translateAfter of [1, 40000]) {
    it(`runs patched code between TLB flushes (translateAfter ${translateAfter})`, () => {
      const m = new Machine();
      m.flat(0);
      m.engine.translateAfter = translateAfter;
      pageTables(m);
      m.code32(`${ENABLE_PAGING}
        mov ecx, 40
        xor ebx, ebx
      again:
        mov eax, 1          ; its immediate is patched below
        add ebx, eax
        mov edx, cr0
        xor edx, 0x10000
        mov cr0, edx        ; a full flush (WP under paging)
        inc dword [again + 1]
        mov edx, cr3
        mov cr3, edx        ; and one more right after the code write
        loop again
        hlt`);
      expect(m.run()).toBe(ExitReason.HLT);
      expect(m.regs.ebx).toBe((40 * 41) / 2);
    });

    it(`runs the new code after the page holding it is remapped (translateAfter ${translateAfter})`, () => {
      const m = new Machine();
      m.flat(0);
      m.engine.translateAfter = translateAfter;
      pageTables(m, (p) => (p[0x70] = 0x71000 | 7));
      m.code32("mov eax, 1\nret", 0x71000);
      m.code32("mov eax, 2\nret", 0x72000);
      m.code32(`${ENABLE_PAGING}
        mov ecx, 100
        xor ebx, ebx
      again:
        call 0x70000
        add ebx, eax
        cmp ecx, 50
        jne .same
        mov dword [${PT + 0x70 * 4}], 0x72007
        mov edx, cr3
        mov cr3, edx
      .same:
        loop again
        hlt`);
      expect(m.run()).toBe(ExitReason.HLT);
      expect(m.regs.ebx).toBe(51 * 1 + 49 * 2);
    });
  }

  it("exits for MMIO on unmapped guest-physical pages (reads and writes)", () => {
    const m = new Machine();
    m.flat(0);
    m.readValue = 0xcafe1234;
    m.code32("mov dword [0x7ff00010], 0xdeadbeef\nmov eax, [0x7ff00020]\nmov bl, [0x7ff00030]\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    const mmio = m.exits.filter((e) => e.reason === ExitReason.MMIO);
    expect(mmio).toEqual([
      { reason: ExitReason.MMIO, address: 0x7ff00010, size: 4, write: true, data: 0xdeadbeef },
      { reason: ExitReason.MMIO, address: 0x7ff00020, size: 4, write: false, data: 0 },
      { reason: ExitReason.MMIO, address: 0x7ff00030, size: 1, write: false, data: 0 },
    ]);
    expect(m.regs.eax).toBe(0xcafe1234);
    expect(m.regs.ebx & 0xff).toBe(0x34);
  });

  it("executes code the guest just wrote (decoded-instruction cache stays coherent)", () => {
    const m = new Machine();
    m.flat(0);
    m.code32(`
      mov ecx, 3
      xor ebx, ebx
    again:
      mov eax, 1          ; its immediate is patched below
      add ebx, eax
      inc dword [again + 1]
      loop again
      hlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.ebx).toBe(1 + 2 + 3);
  });

  it("sees a write to the very next instruction (self-modifying code inside a block)", () => {
    const m = new Machine();
    m.flat(0);
    m.code32(`
      mov ecx, 2
    again:
      mov byte [patch + 1], cl
    patch:
      mov eax, 1
      dec ecx
      jnz again
      hlt`);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.eax).toBe(1);
    expect(m.ram[0x10000 + 5 + 6 + 1]).toBe(1);
  });

  it("sees external changes to code (DMA into executed pages)", () => {
    const m = new Machine();
    m.flat(0);
    m.code32("mov eax, 1\nhlt");
    expect(m.run()).toBe(ExitReason.HLT);
    m.code32("mov eax, 2\nhlt");
    m.update((s) => {
      s.eip = 0x10000;
      s.activity = 0;
    });
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.eax).toBe(2);
  });
});
