// Multiboot test kernels against the PC platform's firmware interfaces, the way bare-metal test
// suites use them: fw_cfg (ports and DMA), the ACPI tables found by the RSDP scan, the ACPI PM
// timer, HPET timer 0 interrupts in legacy replacement mode, an NMI sent to self through the local
// APIC's ICR, and a kernel loaded at 0x8000. Each kernel prints what it found on port 0xe9 and
// ends with isa-debug-exit; the tests compare the printed text.
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, DEBUGCON_PRINT, hasNasm, MULTIBOOT_HEADER, realModeRom } from "./nasm.js";

const nasm = hasNasm();
if (!nasm) console.warn("test/vm/platform: nasm is not installed; the platform kernel tests are skipped");

/** Scratch memory of the kernels: the IDT, DMA records and buffers. */
const IDT = 0x300000;

/**
 * A Multiboot kernel (a.out kludge at 1 MiB) around `body`: a stack, helpers `puts` (ESI: a
 * NUL-terminated string), `hex32` (EAX as 8 hex digits), `gate` (EAX: vector, EBX: handler; an
 * interrupt gate in the IDT at IDT), the IDT loaded, and `done`, which exits with status 1.
 */
function kernel(body: string, data = ""): Uint8Array {
  return assemble(`
bits 32
org 0x100000
${MULTIBOOT_HEADER}
start:
  mov esp, 0x90000
  lidt [idtr]
${body}
done:
  mov al, 0
  out 0xf4, al
  hlt

${DEBUGCON_PRINT}

gate:
  push edi
  lea edi, [${IDT} + eax*8]
  mov [edi], bx
  mov word [edi+2], 0x10
  mov word [edi+4], 0x8E00
  push ebx
  shr ebx, 16
  mov [edi+6], bx
  pop ebx
  pop edi
  ret

; Sum ECX bytes at ESI; AL = 0 when the checksum is right.
sum:
  push esi
  push ecx
  xor eax, eax
.s:
  add al, [esi]
  inc esi
  loop .s
  pop ecx
  pop esi
  ret

idtr: dw 256*8-1
      dd ${IDT}
${data}
end:
`);
}

async function run(image: Uint8Array, options: { apic?: boolean; acpi?: boolean } = {}) {
  const con = new MemoryConsole();
  const result = await runVm({ memoryBytes: 32 << 20, kernelImage: image, console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 5e9, ...options });
  return { result, text: String.fromCharCode(...con.debugcon) };
}

/** fw_cfg through the ports (signature, CPU count) and DMA (the file directory, a hostile record). */
const FW_CFG = kernel(
  `
  mov dx, 0x510
  xor ax, ax
  out dx, ax                     ; select the signature
  mov dx, 0x511
  mov ecx, 4
.sig:
  in al, dx
  out 0xe9, al
  loop .sig
  mov esi, s_cpus
  call puts
  mov dx, 0x510
  mov ax, 0x05                   ; NB_CPUS
  out dx, ax
  mov dx, 0x511
  in al, dx
  mov bl, al
  in al, dx
  mov bh, al
  movzx eax, bx
  call hex32
  ; DMA: select FILE_DIR and read its 4-byte (big-endian) count into buf
  mov eax, 0x0019000A            ; key 0x19 << 16 | SELECT | READ
  mov ebx, buf
  call dma
  mov esi, s_dma
  call puts
  call hex32                     ; the control word afterwards
  mov esi, s_files
  call puts
  mov eax, [buf]
  bswap eax
  call hex32
  ; a target outside RAM: the ERROR bit, nothing written
  mov eax, 0x0000000A
  mov ebx, 0xFFFFFF00
  call dma
  mov esi, s_bad
  call puts
  call hex32
  jmp done

; DMA transfer: EAX control, EBX target address, 4 bytes; returns the record's control word in EAX.
dma:
  bswap eax
  mov [rec], eax
  mov eax, 4
  bswap eax
  mov [rec+4], eax
  mov dword [rec+8], 0
  bswap ebx
  mov [rec+12], ebx
  mov dx, 0x514
  xor eax, eax
  out dx, eax                    ; address high half
  mov dx, 0x518
  mov eax, rec
  bswap eax
  out dx, eax                    ; low half: runs the transfer
  mov eax, [rec]
  bswap eax
  ret
`,
  `
s_cpus: db " cpus=", 0
s_dma: db " dma=", 0
s_files: db " files=", 0
s_bad: db " bad=", 0
align 16
rec: times 16 db 0
buf: dd 0
`,
);

/** The RSDP scan, RSDT walk with checksums, the DSDT, the MADT's local APICs and the PM timer. */
const ACPI = kernel(
  `
  mov esi, 0xE0000
.scan:
  cmp dword [esi], 'RSD '
  jne .next
  cmp dword [esi+4], 'PTR '
  jne .next
  mov ecx, 20
  call sum
  test al, al
  jz .found
.next:
  add esi, 16
  cmp esi, 0x100000
  jb .scan
  mov esi, s_none
  call puts
  jmp done
.found:
  push esi
  mov esi, s_rsdp
  call puts
  pop esi
  mov eax, esi
  call hex32
  mov ebx, [esi+16]              ; the RSDT
  call table
  mov ecx, [ebx+4]
  sub ecx, 36
  shr ecx, 2
  lea edi, [ebx+36]
.entry:
  push ecx
  mov ebx, [edi]
  call table
  cmp dword [ebx], 'FACP'
  jne .notf
  mov [facp], ebx
.notf:
  cmp dword [ebx], 'APIC'
  jne .nota
  mov [madt], ebx
.nota:
  add edi, 4
  pop ecx
  loop .entry
  mov ebx, [facp]
  mov ebx, [ebx+40]              ; the DSDT
  call table
  ; local APICs in the MADT (type 0, enabled)
  mov esi, s_lapics
  call puts
  xor eax, eax
  mov ebx, [madt]
  test ebx, ebx
  jz .count
  mov ecx, ebx
  add ecx, [ebx+4]               ; end
  lea esi, [ebx+44]
.madt:
  cmp esi, ecx
  jae .count
  cmp byte [esi], 0
  jne .skip
  test byte [esi+4], 1
  jz .skip
  inc eax
.skip:
  movzx edx, byte [esi+1]
  add esi, edx
  jmp .madt
.count:
  call hex32
  ; the PM timer at the FADT's PM_TMR_BLK advances
  mov esi, s_pm
  call puts
  mov ebx, [facp]
  mov edx, [ebx+76]
  mov eax, edx
  call hex32
  in eax, dx
  mov ebx, eax
  mov ecx, 2000
.spin:
  in eax, dx
  loop .spin
  sub eax, ebx
  and eax, 0xFFFFFF
  mov esi, s_yes
  jnz .adv
  mov esi, s_no
.adv:
  call puts
  jmp done

; Print " SIG ok" (or " SIG BAD") for the table at EBX.
table:
  push esi
  push ecx
  mov al, ' '
  out 0xe9, al
  mov ecx, 4
  mov esi, ebx
.sig:
  lodsb
  out 0xe9, al
  loop .sig
  mov esi, ebx
  mov ecx, [ebx+4]
  call sum
  mov esi, s_ok
  test al, al
  jz .ok
  mov esi, s_badsum
.ok:
  call puts
  pop ecx
  pop esi
  ret
`,
  `
s_none: db "no RSDP", 0
s_rsdp: db "RSDP@", 0
s_ok: db " ok", 0
s_badsum: db " BAD", 0
s_lapics: db " lapics=", 0
s_pm: db " pm=", 0
s_yes: db " advances", 0
s_no: db " stands", 0
facp: dd 0
madt: dd 0
`,
);

/** HPET timer 0, periodic every 1 ms in legacy replacement mode: IRQ 0 through the 8259 to vector 0x20. */
const HPET = kernel(
  `
  ; 8259: master at 0x20, slave at 0x28, only IRQ 0 open
  mov al, 0x11
  out 0x20, al
  out 0xA0, al
  mov al, 0x20
  out 0x21, al
  mov al, 0x28
  out 0xA1, al
  mov al, 4
  out 0x21, al
  mov al, 2
  out 0xA1, al
  mov al, 1
  out 0x21, al
  out 0xA1, al
  mov al, 0xFE
  out 0x21, al
  mov al, 0xFF
  out 0xA1, al
  mov eax, 0x20
  mov ebx, irq0
  call gate
  mov edi, 0xFED00000
  mov esi, s_vendor
  call puts
  mov eax, [edi]
  shr eax, 16
  call hex32
  mov esi, s_period
  call puts
  mov eax, [edi+4]
  call hex32
  mov dword [edi+0x10], 0        ; halted
  mov dword [edi+0x100], (1 << 2) | (1 << 3) | (1 << 6) | (1 << 8) ; INT_ENB, PERIODIC, SET_VALUE, 32-bit
  mov dword [edi+0x108], 100000  ; first match at 1 ms
  mov dword [edi+0x108], 100000  ; then every 1 ms
  mov dword [edi+0x10], 3        ; ENABLE_CNF | LEG_RT_CNF
  sti
.wait:
  hlt
  cmp dword [ticks], 5
  jb .wait
  cli
  mov esi, s_ticks
  call puts
  mov eax, [ticks]
  call hex32
  mov eax, [edi+0xF0]            ; the main counter: at least 5 periods have passed
  mov esi, s_late
  cmp eax, 500000
  jae .ok
  mov esi, s_early
.ok:
  call puts
  jmp done

irq0:
  inc dword [ticks]
  push eax
  mov al, 0x20
  out 0x20, al
  pop eax
  iret
`,
  `
s_vendor: db "vendor=", 0
s_period: db " period=", 0
s_ticks: db " ticks=", 0
s_late: db " counter>=500000", 0
s_early: db " counter<500000", 0
ticks: dd 0
`,
);

/** An NMI sent to the CPU's own APIC ID through the ICR, and one more from inside its handler. */
const NMI = kernel(
  `
  cli
  mov eax, 2
  mov ebx, nmi
  call gate
  mov dword [0xFEE000F0], 0x1FF  ; software-enable the local APIC
  mov eax, [0xFEE00020]          ; own APIC ID in bits 24-31
  and eax, 0xFF000000
  mov [0xFEE00310], eax
  mov dword [0xFEE00300], 0x400  ; delivery mode NMI, physical destination
  nop
  nop
  mov esi, s_nmis
  call puts
  mov eax, [nmis]
  call hex32
  mov esi, s_seen
  call puts
  mov eax, [seen]
  call hex32
  jmp done

nmi:
  inc dword [nmis]
  cmp dword [nmis], 1
  jne .out
  mov dword [0xFEE00300], 0x400  ; another NMI: blocked until this handler's IRET
  nop
  nop
  nop
  mov eax, [nmis]
  mov [seen], eax
.out:
  iret
`,
  `
s_nmis: db "nmis=", 0
s_seen: db " in-handler=", 0
nmis: dd 0
seen: dd 0
`,
);

/** A kernel whose code is at 0x8000, where the loader used to keep its own data. */
const LOW = assemble(`
bits 32
org 0x8000
${MULTIBOOT_HEADER}
start:
  cmp eax, 0x2BADB002
  jne .bad
  test dword [ebx], 1            ; the info structure has its memory fields
  jz .bad
  cmp ebx, end                   ; and lies clear of the kernel
  jb .bad
  mov al, 0x21
  out 0xf4, al
.bad:
  mov al, 0x7f
  out 0xf4, al
  hlt
end:
`);

/** A 64 KiB ROM (at 0xF0000 below 1 MiB) scanning 0xE0000-0xEFFFF in real mode for the RSDP the VMM placed there. */
const ROM_SCAN = realModeRom(`
  mov ax, 0xE000
  mov es, ax
  xor di, di
.scan:
  cmp dword [es:di], 'RSD '
  jne .next
  cmp dword [es:di+4], 'PTR '
  je .found
.next:
  add di, 16
  jnz .scan
  mov al, 0x7e
  out 0xf4, al
  hlt
.found:
  mov al, 0x22
  out 0xf4, al
  hlt
`);

describe.skipIf(!nasm)("platform test kernels", () => {
  it("fw_cfg: the signature and CPU count through the ports, the file directory by DMA, ERROR for a hostile target", async () => {
    const { result, text } = await run(FW_CFG);
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(text).toBe("QEMU cpus=00000001 dma=00000000 files=00000003 bad=00000001");
  });

  it("ACPI: finds the RSDP, every table's checksum is right, the MADT has one local APIC, the PM timer advances", async () => {
    const { result, text } = await run(ACPI, { apic: true });
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(text).toBe("RSDP@000E0000 RSDT ok FACP ok APIC ok HPET ok DSDT ok lapics=00000001 pm=00000608 advances");
  });

  it("ACPI without an APIC: no MADT; with --no-acpi no RSDP at all", async () => {
    expect((await run(ACPI)).text).toBe("RSDP@000E0000 RSDT ok FACP ok HPET ok DSDT ok lapics=00000000 pm=00000608 advances");
    expect((await run(ACPI, { acpi: false })).text).toBe("no RSDP");
  });

  it("HPET: timer 0 in legacy replacement mode interrupts through IRQ 0 every millisecond", async () => {
    const { result, text } = await run(HPET);
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(text).toBe("vendor=00008086 period=00989680 ticks=00000005 counter>=500000");
  });

  it("NMI: an ICR write with delivery mode NMI runs the vector 2 handler; a second waits for its IRET", async () => {
    const { result, text } = await run(NMI, { apic: true });
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(text).toBe("nmis=00000002 in-handler=00000001");
  });

  it("Multiboot: a kernel at 0x8000 loads and gets its information structure clear of it", async () => {
    const { result } = await run(LOW);
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe((0x21 << 1) | 1);
  });

  it("a ROM that leaves 0xE0000 free finds the RSDP there in real mode", async () => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 4 << 20, bios: assemble(ROM_SCAN), console: con, engine: createX86Engine, debugExitPort: 0xf4, maxVirtualNs: 1e9 });
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe((0x22 << 1) | 1);
  });
});
