// A two-vCPU Multiboot test kernel on the whole stack: the boot processor starts the other with
// INIT and SIPI (real mode at the SIPI vector, a trampoline into protected mode), then the two
// exchange IPIs (fixed to a physical and a logical destination, the all-but-self and all
// shorthands, NMI), race on atomic instructions and a spinlock, pass messages through memory,
// change code under each other (cross-modifying code after a serializing CPUID) and page tables
// (a changed PTE with and without an INVLPG shootdown IPI), and INIT and SIPI restart it. It prints name=value pairs on port
// 0xe9 and ends with isa-debug-exit; the tests check what x86 guarantees and what it allows.
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, DEBUGCON_PRINT, hasNasm, MULTIBOOT_HEADER } from "./nasm.js";

const nasm = hasNasm();
if (!nasm) console.warn("test/vm/smp: nasm is not installed; the SMP kernel tests are skipped");

/** Iterations of each CPU's atomic loops: each runs several of its vCPU's 1 ms quanta, so the two interleave. */
const ATOMIC_ROUNDS = 1_000_000;
const LOCKED_ROUNDS = 300_000;
/** Calls of the shared function before it is changed: past the x86 core's translation threshold. */
const CODE_CALLS = 50_000;

const SOURCE = `
bits 32
org 0x100000
${MULTIBOOT_HEADER}

LAPIC equ 0xFEE00000
IDT equ 0x300000
TRAMPOLINE equ 0x70000           ; SIPI vector 0x70
PD equ 0x200000
PT equ 0x201000
PAGE_A equ 0x210000
PAGE_B equ 0x211000
PAGE_C equ 0x212000
X equ 0x800000                   ; the linear page whose PTE changes
FN equ 0x400000                  ; the function the BSP rewrites

%macro SPIN_UNTIL 2              ; spin until dword [%1] == %2
%%w:
  pause
  cmp dword [%1], %2
  jne %%w
%endmacro

%macro HALT_UNTIL 2              ; halt until dword [%1] == %2 (an interrupt sets it)
%%w:
  cli
  cmp dword [%1], %2
  je %%d
  sti
  hlt
  jmp %%w
%%d:
  sti
%endmacro

%macro IPI 2                     ; ICR: destination %1, low word %2
  mov dword [LAPIC+0x310], (%1) << 24
  mov dword [LAPIC+0x300], %2
%endmacro

%macro PRINT 1                   ; " name=" and the dword at label %1
  mov esi, n_%1
  call puts
  mov eax, [%1]
  call hex32
%endmacro

start:
  mov esp, 0x90000
  lgdt [gdtr]
  jmp 0x08:.cs
.cs:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  lidt [idtr]
  mov eax, 2
  mov ebx, nmi
  call gate
  mov eax, 0x40
  mov ebx, isr40
  call gate
  mov eax, 0x41
  mov ebx, isr41
  call gate
  mov eax, 0x42
  mov ebx, isr42
  call gate
  mov eax, 0x43
  mov ebx, isr43
  call gate
  mov eax, 0x50
  mov ebx, isr50
  call gate
  call identify
  mov [bsp_id], eax
  mov [bsp_cpuid_id], ebx
  mov [bsp_features], edx
  ; the shared function: mov eax, 1; ret
  mov dword [FN], 0x000001B8
  mov dword [FN+4], 0xC300

  ; ---- start-up: INIT (assert, de-assert), SIPI; a second SIPI once it runs must be ignored
  mov esi, trampoline
  mov edi, TRAMPOLINE
  mov ecx, trampoline_end - trampoline
  rep movsb
  IPI 1, 0x00004500
  IPI 1, 0x00008500
  IPI 1, 0x00004670
  SPIN_UNTIL ap_up, 1
  IPI 1, 0x00004670

  ; ---- IPIs: fixed to APIC ID 1 (answered with 0x41 to us), to logical ID 2, all-but-self, all, NMI
  sti
  IPI 1, 0x00000040
  HALT_UNTIL ipi41, 1
  IPI 2, 0x00000840
  HALT_UNTIL ipi41, 2
  IPI 0, 0x000C0042
  SPIN_UNTIL ipi42, 1
  IPI 0, 0x00080043
  SPIN_UNTIL ipi43, 2
  IPI 1, 0x00000400
  SPIN_UNTIL ap_nmis, 1

  ; ---- atomics: both CPUs at once
  mov dword [phase], 3
  call atomics
  SPIN_UNTIL done3, 2

  ; ---- message passing: data then flag; the other CPU must see the data once it sees the flag
  mov dword [phase], 4
  mov ecx, 1
.mp:
  lea eax, [ecx*8 + 0x1000]
  mov [mp_data], eax
  mov [mp_flag], ecx
  SPIN_UNTIL mp_ack, ecx
  inc ecx
  cmp ecx, 5
  jne .mp

  ; ---- cross-modifying code: the AP ran FN hot; change it, then let the AP serialize and call it
  SPIN_UNTIL fn_hot, 1
  mov byte [FN+1], 2             ; mov eax, 2
  mov dword [phase], 5
  SPIN_UNTIL fn_after, 2

  ; ---- TLB shootdown: page tables, paging on both CPUs
  mov dword [PAGE_A], 0xAAAAAAAA
  mov dword [PAGE_B], 0xBBBBBBBB
  mov dword [PAGE_C], 0xCCCCCCCC
  mov dword [PD], 0x00000083     ; 4 MiB pages: 0-8 MiB identity
  mov dword [PD+4], 0x00400083
  mov dword [PD+8], PT + 3       ; 8-12 MiB through PT
  mov dword [PD+0x3FB*4], 0xFEC00083 ; the APICs
  mov dword [PT], PAGE_A + 3
  call paging_on
  mov dword [phase], 6
  SPIN_UNTIL ready6, 1           ; the AP has X -> A in its TLB
  mov dword [PT], PAGE_B + 3     ; change the PTE, invalidate only here
  invlpg [X]
  mov eax, [X]
  mov [bsp_x], eax
  mov dword [phase], 7
  SPIN_UNTIL ready7, 1           ; the AP read X without a shootdown
  mov dword [PT], PAGE_C + 3     ; change it again, with a shootdown IPI this time
  invlpg [X]
  IPI 1, 0x00000050
  SPIN_UNTIL ack50, 1
  mov dword [phase], 8
  SPIN_UNTIL ready8, 1

  ; ---- INIT and SIPI again: to the AP halted in its idle loop, then to the AP running its second
  ; start (spinning for a phase 3 that does not come back); each time it starts anew at the SIPI vector
  IPI 1, 0x00004500
  IPI 1, 0x00004670
  SPIN_UNTIL ap_starts, 2
  IPI 1, 0x00004500
  IPI 1, 0x00004670
  SPIN_UNTIL ap_starts, 3

  PRINT bsp_id
  PRINT bsp_cpuid_id
  PRINT bsp_features
  PRINT ap_id
  PRINT ap_cpuid_id
  PRINT ap_starts
  PRINT ipi40
  PRINT ipi41
  PRINT ipi42
  PRINT ipi43
  PRINT ap_nmis
  PRINT counter
  PRINT mix_bsp
  PRINT mix_ap
  PRINT locked
  PRINT mp_bad
  PRINT fn_before
  PRINT fn_after_value
  PRINT bsp_x
  PRINT ap_x1
  PRINT ap_x2
  PRINT ap_x3
  mov al, 0
  out 0xf4, al
  hlt

; The AP: real mode at 7000:0000, into protected mode, then its part of each phase.
trampoline:
bits 16
  cli
  mov ax, cs
  mov ds, ax
  lgdt [ap_gdtr - trampoline]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp dword 0x08:ap_main
ap_gdtr: dw gdt_end - gdt - 1
         dd gdt
bits 32
trampoline_end:

ap_main:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x80000
  lidt [idtr]
  lock inc dword [ap_starts]
  call identify
  mov [ap_id], eax
  mov [ap_cpuid_id], ebx
  sti
  mov dword [ap_up], 1
  SPIN_UNTIL phase, 3
  call atomics
  SPIN_UNTIL phase, 4
  mov ecx, 1
.mp:
  SPIN_UNTIL mp_flag, ecx
  lea eax, [ecx*8 + 0x1000]
  cmp [mp_data], eax
  je .mp_ok
  inc dword [mp_bad]
.mp_ok:
  mov [mp_ack], ecx
  inc ecx
  cmp ecx, 5
  jne .mp
  mov ecx, ${CODE_CALLS}
  xor edx, edx
.hot:
  call FN
  add edx, eax
  loop .hot
  mov [fn_before], edx
  mov dword [fn_hot], 1
  SPIN_UNTIL phase, 5
  xor eax, eax
  cpuid                          ; serializing: the changed code is fetched anew (SDM 8.1.3)
  call FN
  mov [fn_after_value], eax
  mov dword [fn_after], 2
  SPIN_UNTIL phase, 6
  call paging_on
  mov eax, [X]
  mov [ap_x1], eax
  mov dword [ready6], 1
  SPIN_UNTIL phase, 7
  mov eax, [X]                   ; old or new: no INVLPG here (SDM 4.10.5)
  mov [ap_x2], eax
  mov dword [ready7], 1
  SPIN_UNTIL phase, 8            ; the shootdown IPI came in between
  mov eax, [X]
  mov [ap_x3], eax
  mov dword [ready8], 1
.idle:
  hlt
  jmp .idle

; Both CPUs: LOCK XADD on one counter, noting each time the other CPU's increments came between
; two of ours; then a spinlock (XCHG) around a plain read-modify-write.
atomics:
  mov ebx, [counter]
  xor edx, edx
  mov ecx, ${ATOMIC_ROUNDS}
.x:
  mov eax, 1
  lock xadd [counter], eax
  cmp eax, ebx
  je .same
  inc edx
.same:
  lea ebx, [eax + 1]
  loop .x
  mov eax, [LAPIC+0x20]
  test eax, eax
  jnz .ap
  mov [mix_bsp], edx
  jmp .lock
.ap:
  mov [mix_ap], edx
.lock:
  mov ecx, ${LOCKED_ROUNDS}
.acquire:
  mov eax, 1
  xchg [spin], eax
  test eax, eax
  jz .held
  pause
  jmp .acquire
.held:
  mov eax, [locked]
  inc eax
  mov [locked], eax
  mov dword [spin], 0
  loop .acquire
  lock inc dword [done3]
  ret

; Enable this CPU's APIC (spurious vector 0xFF; flat logical ID 1 << APIC ID). Returns its APIC
; ID as the APIC says in EAX, as CPUID.1:EBX[31:24] says in EBX, and CPUID.1:EDX in EDX.
identify:
  mov dword [LAPIC+0xF0], 0x1FF
  mov dword [LAPIC+0xE0], 0xFFFFFFFF
  mov esi, [LAPIC+0x20]
  shr esi, 24
  mov ecx, esi
  mov eax, 0x01000000
  shl eax, cl
  mov [LAPIC+0xD0], eax
  mov eax, 1
  cpuid
  shr ebx, 24
  mov eax, esi
  ret

paging_on:
  mov eax, cr4
  or eax, 0x10                   ; PSE
  mov cr4, eax
  mov eax, PD
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  ret

nmi:
  lock inc dword [ap_nmis]
  iret
isr40:                           ; on the AP: count, answer the BSP with 0x41
  lock inc dword [ipi40]
  mov dword [LAPIC+0xB0], 0
  mov dword [LAPIC+0x310], 0
  mov dword [LAPIC+0x300], 0x41
  iret
%macro COUNTING_ISR 1            ; isr%1: count the IPI in [ipi%1], EOI
isr%1:
  lock inc dword [ipi%1]
  mov dword [LAPIC+0xB0], 0
  iret
%endmacro
COUNTING_ISR 41
COUNTING_ISR 42
COUNTING_ISR 43
isr50:                           ; the shootdown: invalidate X here too, then acknowledge
  invlpg [X]
  lock inc dword [ack50]
  mov dword [LAPIC+0xB0], 0
  iret

${DEBUGCON_PRINT}

gate:
  lea edi, [IDT + eax*8]
  mov [edi], bx
  mov word [edi+2], 0x08
  mov word [edi+4], 0x8E00
  shr ebx, 16
  mov [edi+6], bx
  ret

align 8
gdt: dq 0
     dq 0x00CF9A000000FFFF
     dq 0x00CF92000000FFFF
gdt_end:
gdtr: dw gdt_end - gdt - 1
      dd gdt
idtr: dw 256*8-1
      dd IDT

%macro VAR 1
%defstr %%name %1
n_%1: db " ", %%name, "=", 0
align 4
%1: dd 0
%endmacro
VAR bsp_id
VAR bsp_cpuid_id
VAR bsp_features
VAR ap_id
VAR ap_cpuid_id
VAR ap_starts
VAR ap_up
VAR ipi40
VAR ipi41
VAR ipi42
VAR ipi43
VAR ap_nmis
VAR phase
VAR counter
VAR mix_bsp
VAR mix_ap
VAR spin
VAR locked
VAR done3
VAR mp_data
VAR mp_flag
VAR mp_ack
VAR mp_bad
VAR fn_hot
VAR fn_before
VAR fn_after
VAR fn_after_value
VAR bsp_x
VAR ap_x1
VAR ap_x2
VAR ap_x3
VAR ready6
VAR ready7
VAR ready8
VAR ack50
end:
`;

async function run(cpus: number) {
  const con = new MemoryConsole();
  const result = await runVm({ memoryBytes: 32 << 20, kernelImage: assemble(SOURCE), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, apic: true, cpus, maxVirtualNs: 60e9 });
  const text = String.fromCharCode(...con.debugcon);
  const values: Record<string, number> = {};
  for (const m of text.matchAll(/ (\w+)=([0-9A-F]{8})/g)) values[m[1]] = parseInt(m[2], 16);
  return { result, text, values };
}

describe.skipIf(!nasm)("two vCPUs", () => {
  it("start with INIT/SIPI, exchange IPIs, keep atomics atomic, and see changed code and page tables as x86 allows", async () => {
    const { result, text, values: v } = await run(2);
    if (result.why !== VmEnd.DEBUG_EXIT) console.error(text, result);
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    // Start-up: APIC IDs 0 and 1, in the APIC ID register and CPUID.1:EBX[31:24]; CPUID reports the APIC.
    expect([v.bsp_id, v.bsp_cpuid_id, v.ap_id, v.ap_cpuid_id]).toEqual([0, 0, 1, 1]);
    expect(v.bsp_features & (1 << 9)).not.toBe(0);
    // Three starts: the first SIPI's (the second found it running and was ignored), then INIT and
    // SIPI to it halted, and to it running.
    expect(v.ap_starts).toBe(3);
    // IPIs: two fixed (physical, logical), all-but-self reached only the AP, all reached both, one NMI.
    expect([v.ipi40, v.ipi41, v.ipi42, v.ipi43, v.ap_nmis]).toEqual([2, 2, 1, 2, 1]);
    // Atomics: no increment lost, and the two CPUs' loops really interleaved.
    expect(v.counter).toBe(2 * ATOMIC_ROUNDS);
    expect(v.mix_bsp + v.mix_ap).toBeGreaterThan(0);
    expect(v.locked).toBe(2 * LOCKED_ROUNDS);
    // Message passing: stores are seen in order (x86's TSO).
    expect(v.mp_bad).toBe(0);
    // Cross-modifying code: the old code ran hot; after the change and a CPUID the new code runs.
    expect(v.fn_before).toBe(CODE_CALLS);
    expect(v.fn_after_value).toBe(2);
    // TLB: the changing CPU sees its change; the other may use its stale translation until its
    // INVLPG (either value is what hardware allows); after the shootdown it sees the new page.
    expect(v.ap_x1).toBe(0xaaaaaaaa);
    expect(v.bsp_x).toBe(0xbbbbbbbb);
    expect([0xaaaaaaaa, 0xbbbbbbbb]).toContain(v.ap_x2);
    expect(v.ap_x3).toBe(0xcccccccc);
  });

  it("runs exactly the same way twice (deterministic interleaving on virtual time)", async () => {
    const a = await run(2);
    const b = await run(2);
    expect(b.text).toBe(a.text);
    expect(b.result.why).toBe(VmEnd.DEBUG_EXIT);
  });
});
