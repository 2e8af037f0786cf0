// Guests for the whole-system tests, as nasm source.

import { multiboot } from "../hostile/run-harness.js";
import { pitInterrupts, realModeRom } from "./nasm.js";

/**
 * Real mode at the reset vector: the PIT ticks every ~0.1 ms; each tick mixes the TSC into a hash
 * and prints a character of it. Between ticks the code spins for a hash-dependent while, runs
 * `extra` (code that may use AX, CX, SI, DI and ES), mixes in the PIT's counter, and sometimes
 * halts. After 400 ticks it exits with the hash's low byte.
 */
export function timeMixingRom(extra = ""): string {
  return realModeRom(
  `
${pitInterrupts("irq0", 119)}
  mov dword [0x600], 0x12345678
  mov word [0x604], 0
  sti
main:
  mov ecx, [0x600]
  and ecx, 0x1ff
  add ecx, 50
  mov eax, ecx
.spin:
  imul eax, eax, 1103515245
  add eax, 12345
  dec ecx
  jnz .spin
  xor [0x608], eax
${extra}
  mov al, 0
  out 0x43, al
  in al, 0x40
  mov ah, al
  in al, 0x40
  movzx edx, ax
  xor [0x600], edx
  test byte [0x600], 1
  jz .check
  hlt
.check:
  cmp word [0x604], 400
  jb main
  mov al, [0x600]
  out 0xf4, al
  cli
  hlt
irq0:
  push eax
  push edx
  push dx
  rdtsc
  xor [0x600], eax
  rol dword [0x600], 5
  inc word [0x604]
  mov al, [0x600]
  and al, 0x3f
  add al, 0x30
  mov dx, 0x3f8
  out dx, al
  mov al, 0x20
  out 0x20, al
  pop dx
  pop edx
  pop eax
  iret
`,
  0xe000,
  );
}

export const TIME_MIXING_ROM = timeMixingRom();

/**
 * REP MOVSB and REP STOSW of lengths the hash gives: with timeMixingRom, every element counts
 * (a guest whose later path depends on when each instruction retired).
 */
export const HASHED_REPEATS = `
  xor ax, ax
  mov es, ax
  mov si, 0x1000
  mov di, 0x3000
  mov cx, [0x600]
  and cx, 0x7ff
  cld
  rep movsb
  mov cx, [0x602]
  and cx, 0x3ff
  mov ax, [0x608]
  mov di, 0x1000
  rep stosw`;

/** Prints L<n> lines (n from 1, as decimal digits) while it rewrites 64 pages at 8 MiB with n. */
export const COUNTER_GUEST = (): Uint8Array => multiboot(counterGuest(`
    mov edi, 0x800000
    mov ecx, 64 * 1024
    mov eax, [count]
    rep stosd`));

/**
 * Prints L<n> lines like COUNTER_GUEST, writing one page after another of the 256 at 8 MiB (n into
 * its first dword, round and round), 64 pages a line, about 20,000 instructions apart: a guest that
 * dirties memory at a steady rate, 50 pages per ms of its time.
 */
export const DIRTIER_GUEST = (): Uint8Array => multiboot(counterGuest(`
    mov ebx, 64
page: mov eax, [count]
    mov [esi], eax
    add esi, 4096
    cmp esi, 0x900000
    jb spin_start
    mov esi, 0x800000
spin_start: mov ecx, 10000
spin: dec ecx
    jnz spin
    dec ebx
    jnz page`));

/** Prints "L<count>\n" on COM1 (count: the dword at label `count`; uses labels digits and print). */
const PRINT_COUNT = `    mov dx, 0x3f8
    mov al, 'L'
    out dx, al
    mov eax, [count]
    xor ecx, ecx
    mov ebx, 10
digits: xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz digits
print: pop eax
    add al, '0'
    mov dx, 0x3f8
    out dx, al
    loop print
    mov al, 10
    out dx, al
`;

/** A guest that runs `work` and then prints L<count>, for count = 1, 2, ...; esi starts at 8 MiB. */
function counterGuest(work: string): string {
  return `
    mov esp, 0x90000
    mov dword [count], 0
    mov esi, 0x800000
next: inc dword [count]
${work}
${PRINT_COUNT}    jmp next
count: dd 0
`;
}

/**
 * Writes sector (n * stride) mod `sectors` (a power of two; an odd stride visits each sector once)
 * of /dev/vda with the dword n, for n = 1 to `writes` (a legacy virtio-blk driver: PCI slot 4, I/O
 * BAR at 0xc000, one request at a time, polled, no interrupts), and prints L<n> after each; `spin`
 * loop rounds between writes pace it; then prints DONE and halts. The data is 512 bytes of n
 * (little endian, 128 times).
 */
export const DISK_WRITER_GUEST = (writes: number, spin: number, stride = 1, sectors = 1 << 20): Uint8Array => multiboot(`
    mov esp, 0x90000
    mov dx, 0xcf8
    mov eax, 0x80002004
    out dx, eax
    mov dx, 0xcfc
    mov ax, 7
    out dx, ax
    mov dx, 0xc012
    mov al, 0
    out dx, al
    mov al, 3
    out dx, al
    mov dx, 0xc004
    xor eax, eax
    out dx, eax
    mov dx, 0xc00e
    xor ax, ax
    out dx, ax
    mov dx, 0xc00c
    in ax, dx
    movzx eax, ax
    mov [qsize], eax
    shl eax, 4
    add eax, 0x200000
    mov [avail], eax
    mov dx, 0xc008
    mov eax, 0x200
    out dx, eax
    mov dx, 0xc012
    mov al, 7
    out dx, al
    ; descriptors: header (16 bytes), data (512), status (1, device writes)
    mov dword [0x200000], 0x300000
    mov dword [0x200004], 0
    mov dword [0x200008], 16
    mov word [0x20000c], 1
    mov word [0x20000e], 1
    mov dword [0x200010], 0x301000
    mov dword [0x200014], 0
    mov dword [0x200018], 512
    mov word [0x20001c], 1
    mov word [0x20001e], 2
    mov dword [0x200020], 0x302000
    mov dword [0x200024], 0
    mov dword [0x200028], 1
    mov word [0x20002c], 2
    mov word [0x20002e], 0
    mov dword [count], 0
next: inc dword [count]
    mov eax, [count]
    cmp eax, ${writes}
    ja done
    mov dword [0x300000], 1
    mov dword [0x300004], 0
    imul eax, eax, ${stride}
    and eax, ${sectors - 1}
    mov [0x300008], eax
    mov dword [0x30000c], 0
    mov eax, [count]
    mov edi, 0x301000
    mov ecx, 128
    rep stosd
    mov byte [0x302000], 0xff
    mov ebx, [avail]
    movzx eax, word [ebx + 2]
    mov ecx, eax
    xor edx, edx
    div dword [qsize]
    mov word [ebx + 4 + edx * 2], 0
    inc ecx
    mov [ebx + 2], cx
    mov dx, 0xc010
    xor ax, ax
    out dx, ax
    cmp byte [0x302000], 0
    jne fail
    mov ecx, ${spin}
spin: dec ecx
    jnz spin
${PRINT_COUNT}    jmp next
fail: mov dx, 0x3f8
    mov al, 'E'
    out dx, al
    mov al, 10
    out dx, al
    jmp $
done: mov dx, 0x3f8
    mov esi, donemsg
.out: lodsb
    test al, al
    jz .end
    out dx, al
    jmp .out
.end: cli
    hlt
    jmp .end
donemsg: db "DONE", 10, 0
count: dd 0
qsize: dd 0
avail: dd 0
`);

/**
 * Prints L1..L<lines> like COUNTER_GUEST, each round rewriting the 64 pages at 8 MiB with n and one
 * dword (n + i) in each of the 1,024 pages at 12 MiB (4 MiB of RAM that is not zero); then a hash
 * of every dword of the first `memMiB` MiB of RAM as S<8 hex digits>, and isa-debug-exit with 0x21
 * (status 67). No interrupts and no clock: what it prints depends only on what RAM held, so a
 * migrated run must print what an unmigrated one does.
 */
export const RAM_HASH_GUEST = (lines: number, memMiB: number): Uint8Array => multiboot(`
    mov esp, 0x90000
    mov dword [count], 0
next: inc dword [count]
    mov edi, 0x800000
    mov ecx, 64 * 1024
    mov eax, [count]
    rep stosd
    mov edi, 0xC00000
    mov ecx, 1024
scatter: mov eax, [count]
    add eax, ecx
    mov [edi], eax
    add edi, 4096
    loop scatter
${PRINT_COUNT}    cmp dword [count], ${lines}
    jb next
    xor esi, esi
    xor ebx, ebx
hash: rol ebx, 5
    xor ebx, [esi]
    add esi, 4
    cmp esi, ${memMiB} * 0x100000
    jb hash
    mov dx, 0x3f8
    mov al, 'S'
    out dx, al
    mov ecx, 8
hex: rol ebx, 4
    mov al, bl
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe digit
    add al, 'a' - '0' - 10
digit: out dx, al
    loop hex
    mov al, 10
    out dx, al
    mov dx, 0xf4
    mov al, 0x21
    out dx, al
    hlt
count: dd 0
`);
