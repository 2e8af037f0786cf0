// The guest of `bench:cpu`: one Multiboot kernel (a.out kludge, flat binary at 1 MiB) that both
// our core and v86 run, so their times are for the same instructions. It turns on paging (4 KiB
// pages, 16 MiB identity-mapped), fills its data, then runs each workload `reps[w]` times (none
// at all for 0) and writes to COM1's data port:
//   WORKLOAD_MARK | w   before workload w's first repetition,
//   REP_MARK | w        after each repetition,
//   `R<w>=<8 hex digits>\n` after the last one: the sum of its repetitions' results,
//   END_MARK            and halts after the last workload.
// No interrupts are enabled: the instruction stream is the same on any PC.

import { assemble } from "../../vm/nasm.js";

export const WORKLOAD_MARK = 0xc0, REP_MARK = 0x80, END_MARK = 0xff;
export const LOAD_ADDRESS = 0x100000;
/** Guest RAM either side gives the kernel. */
export const RAM_BYTES = 32 << 20;

export interface Workload {
  name: string;
  /** REP string work: each iteration counts as one instruction (it is excluded from cpu_mips). */
  rep: boolean;
  /** A subroutine (label `w<i>` is added) that may use any register but ESP and returns a result in EAX. */
  body: string;
}

export const WORKLOADS: readonly Workload[] = [
  {
    name: "crc32 (bitwise, 128 KiB)",
    rep: false,
    body: `
      mov esi, 0x200000
      mov ecx, 131072
      mov edx, 0xffffffff
    .byte:
      xor dl, [esi]
      inc esi
      mov ebx, 8
    .bit:
      shr edx, 1
      jnc .nox
      xor edx, 0xedb88320
    .nox:
      dec ebx
      jnz .bit
      dec ecx
      jnz .byte
      not edx
      mov eax, edx
      ret`,
  },
  {
    name: "insertion sort (3000 dwords)",
    rep: false,
    body: `
      N equ 3000
      mov edi, 0x300000
      mov ecx, N
      mov eax, 12345
    .fill:
      imul eax, eax, 1103515245
      add eax, 12345
      mov [edi], eax
      add edi, 4
      loop .fill
      mov esi, 1
    .outer:
      cmp esi, N
      jae .done
      mov eax, [0x300000 + esi*4]
      mov edi, esi
    .inner:
      test edi, edi
      jz .place
      mov edx, [0x300000 + edi*4 - 4]
      cmp edx, eax
      jbe .place
      mov [0x300000 + edi*4], edx
      dec edi
      jmp .inner
    .place:
      mov [0x300000 + edi*4], eax
      inc esi
      jmp .outer
    .done:
      mov eax, [0x300000 + 1500*4]
      ret`,
  },
  {
    // The shape of the kernel's XZ decompressor (most of a Linux boot's first third): a range
    // decoder's bit (a call, a normalization branch, a 16-bit probability update) walking a bit tree.
    name: "range decoder bit tree (16 Ki symbols)",
    rep: false,
    body: `
      mov edi, 0x400000
      mov ecx, 4096
      mov eax, 1024
    .init:
      mov [edi + ecx*2 - 2], ax
      loop .init
      mov esi, 0x200000
      mov ebx, 0xffffffff
      xor edx, edx
      mov ebp, 16384
      xor eax, eax
      push eax
    .sym:
      mov ecx, 1
    .bit:
      call .rc_bit
      lea ecx, [ecx*2 + eax]
      cmp ecx, 256
      jb .bit
      add [esp], ecx
      dec ebp
      jnz .sym
      pop eax
      ret
    .rc_bit:
      push ebp
      cmp ebx, 0x1000000
      jae .nn
      shl ebx, 8
      shl edx, 8
      movzx eax, byte [esi]
      or edx, eax
      inc esi
      and esi, 0x27ffff
    .nn:
      movzx eax, word [edi + ecx*2]
      mov ebp, ebx
      shr ebp, 11
      imul ebp, eax
      cmp edx, ebp
      jae .one
      mov ebx, ebp
      mov ebp, 2048
      sub ebp, eax
      shr ebp, 5
      add eax, ebp
      mov [edi + ecx*2], ax
      xor eax, eax
      pop ebp
      ret
    .one:
      sub ebx, ebp
      sub edx, ebp
      mov ebp, eax
      shr ebp, 5
      sub eax, ebp
      mov [edi + ecx*2], ax
      mov eax, 1
      pop ebp
      ret`,
  },
  {
    name: "byte copy loop (16 x 64 KiB)",
    rep: false,
    body: `
      mov ebp, 16
    .again:
      mov esi, 0x200000
      mov edi, 0x500000
      mov ecx, 65536
    .b:
      mov al, [esi]
      mov [edi], al
      inc esi
      inc edi
      dec ecx
      jnz .b
      dec ebp
      jnz .again
      mov eax, [0x500000 + 4096]
      ret`,
  },
  {
    name: "rep movsd (64 x 256 KiB)",
    rep: true,
    body: `
      mov ebp, 64
    .again:
      mov esi, 0x200000
      mov edi, 0x600000
      mov ecx, 65536
      cld
      rep movsd
      dec ebp
      jnz .again
      mov eax, [0x600000 + 8192]
      ret`,
  },
];

/** The kernel's source; its repetition table starts at `repsOffset` of the binary. */
function source(): string {
  const n = WORKLOADS.length;
  const runs = WORKLOADS.map((_, w) => `
      mov eax, [reps + ${w * 4}]
      test eax, eax
      jz .skip${w}
      mov [left], eax
      mov al, ${WORKLOAD_MARK | w}
      out dx, al
      xor edi, edi
      mov [result], edi
    .rep${w}:
      call w${w}
      add [result], eax
      mov dx, 0x3f8
      mov al, ${REP_MARK | w}
      out dx, al
      dec dword [left]
      jnz .rep${w}
      mov al, 'R'
      out dx, al
      mov al, '0' + ${w}
      out dx, al
      mov al, '='
      out dx, al
      mov eax, [result]
      call hex
      mov al, 10
      out dx, al
    .skip${w}:`).join("\n");
  const bodies = WORKLOADS.map((w, i) => `w${i}:${w.body}`).join("\n");
  return `
bits 32
org ${LOAD_ADDRESS}
MAGIC equ 0x1BADB002
FLAGS equ 0x00010000
header:
  dd MAGIC, FLAGS, -(MAGIC + FLAGS)
  dd header, ${LOAD_ADDRESS}, 0, 0, start
reps: times ${n} dd 1
left: dd 0
result: dd 0

start:
  cli
  mov esp, 0x7f0000
  ; Page tables: 16 MiB identity-mapped with 4 KiB pages.
  mov edi, 0x801000
  mov eax, 3
  mov ecx, 4096
.pte:
  mov [edi], eax
  add edi, 4
  add eax, 4096
  loop .pte
  mov edi, 0x800000
  mov eax, 0x801003
  mov ecx, 4
.pde:
  mov [edi], eax
  add edi, 4
  add eax, 4096
  loop .pde
  mov eax, 0x800000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  ; 512 KiB of source bytes: byte k = (k * 2654435761) >> 24.
  xor ecx, ecx
.fill:
  imul eax, ecx, 2654435761
  shr eax, 24
  mov [0x200000 + ecx], al
  inc ecx
  cmp ecx, 0x80000
  jb .fill
  mov dx, 0x3f8
${runs}
  mov al, ${END_MARK}
  out dx, al
.halt:
  hlt
  jmp .halt

; EAX as 8 hex digits on port DX.
hex:
  mov ecx, 8
.digit:
  rol eax, 4
  mov ebx, eax
  and ebx, 15
  mov bl, [digits + ebx]
  xchg eax, ebx
  out dx, al
  xchg eax, ebx
  loop .digit
  ret
digits: db "0123456789abcdef"

${bodies}
`;
}

export interface Kernel {
  image: Uint8Array;
  /** Entry point (Multiboot's entry_addr). */
  entry: number;
}

/** The kernel with `reps[w]` repetitions of workload w (0: left out, no marks). */
export function buildKernel(reps: readonly number[]): Kernel {
  if (reps.length !== WORKLOADS.length || !reps.every((r) => Number.isInteger(r) && r >= 0 && r <= 0xffffffff)) {
    throw new RangeError(`repetitions ${reps.join(",")}: one whole number from 0 per workload (${WORKLOADS.length})`);
  }
  const image = assemble(source());
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  // The header is 32 bytes; the repetition table follows it.
  reps.forEach((r, w) => view.setUint32(32 + w * 4, r, true));
  return { image, entry: view.getUint32(28, true) };
}

/** What a run of the kernel wrote: marks with their times, and the result lines. */
export class KernelOutput {
  /** Per workload: the time (and count, when known) at its start and at the end of each repetition. */
  readonly marks: Array<Array<{ cpu: number; retired: number }>> = WORKLOADS.map(() => []);
  readonly results: string[] = [];
  ended = false;
  private line = "";

  byte(b: number, cpu: number, retired = 0): void {
    if (b === END_MARK) this.ended = true;
    else if ((b & 0xc0) === WORKLOAD_MARK || (b & 0xc0) === REP_MARK) this.marks[b & 0x3f]?.push({ cpu, retired });
    else if (b === 10) {
      this.results.push(this.line);
      this.line = "";
    } else this.line += String.fromCharCode(b);
  }
}

/** How the v86 runner's last line starts; the rest is a PeerReport as JSON. */
export const RESULT_PREFIX = "RESULT ";

export interface PeerReport {
  ok: boolean;
  detail: string;
  marks: KernelOutput["marks"];
  results: string[];
}
