// Assemble small test guests with nasm (installed by .ci/run); tests skip when it is missing.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostHas } from "../support/host-tools.js";

export function hasNasm(): boolean {
  return hostHas("nasm", ["-v"]);
}

/** Assemble `source` as a flat binary. */
export function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "hv-nasm-"));
  try {
    writeFileSync(join(dir, "a.asm"), source);
    execFileSync("nasm", ["-f", "bin", "-o", join(dir, "a.bin"), join(dir, "a.asm")], { stdio: ["ignore", "ignore", "pipe"] });
    return new Uint8Array(readFileSync(join(dir, "a.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Real-mode code that initialises the master 8259 (ICW1-ICW4, vectors 8-15) and sets its mask. */
export function masterPic(mask: number): string {
  return ["mov al, 0x11", "out 0x20, al", "mov al, 8", "out 0x21, al", "mov al, 4", "out 0x21, al", "mov al, 1", "out 0x21, al",
    `mov al, 0x${mask.toString(16)}`, "out 0x21, al"].map((line) => `  ${line}`).join("\n").trimStart();
}

/**
 * A 64 KiB ROM around real-mode `body` (which starts at `entry` and is placed at `at`): data and
 * stack segment 0, stack below 0x7000, and the reset vector's far jump to `entry`.
 */
export function realModeRom(body: string, at = 0xf000): string {
  return `
bits 16
org 0
times 0x${at.toString(16)} - ($ - $$) db 0xff
entry:
  cli
  xor ax, ax
  mov ss, ax
  mov sp, 0x7000
  mov ds, ax
${body}
times 0xFFF0 - ($ - $$) db 0xff
  jmp 0xF000:entry
times 0x10000 - ($ - $$) db 0xff
`;
}

/** Real-mode code that routes IRQ0 to `handler` (IVT vector 8, master 8259 with only IRQ0 open) and starts the PIT at `reload` ticks (mode 2). */
export function pitInterrupts(handler: string, reload: number): string {
  return `  mov word [8*4], ${handler}
  mov word [8*4+2], 0xF000
  ${masterPic(0xfe)}
  mov al, 0x34
  out 0x43, al
  mov ax, ${reload}
  out 0x40, al
  mov al, ah
  out 0x40, al`;
}

/**
 * The Multiboot header of a 32-bit kernel (the a.out kludge: load from `header` to `end`, enter at
 * `start`); the kernel defines those labels.
 */
export const MULTIBOOT_HEADER = "header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start";

/**
 * 32-bit debug console helpers: `puts` writes the NUL-terminated string at ESI to port 0xe9,
 * `hex32` writes EAX as 8 hex digits there (both keep EAX and ECX).
 */
export const DEBUGCON_PRINT = `
puts:
  push eax
.l:
  lodsb
  test al, al
  jz .d
  out 0xe9, al
  jmp .l
.d:
  pop eax
  ret

hex32:
  push ecx
  push eax
  mov ecx, 8
.h:
  rol eax, 4
  push eax
  and al, 0xf
  add al, '0'
  cmp al, '9'
  jbe .o
  add al, 7
.o:
  out 0xe9, al
  pop eax
  loop .h
  pop eax
  pop ecx
  ret
`;
