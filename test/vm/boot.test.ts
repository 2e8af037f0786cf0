// Whole-system tests: a guest boots through the root task, memory manager, console driver and VMM
// components on the kernel, and runs on the x86 core.
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { VmEnd } from "../../services/protocols.js";
import { runVm } from "../../services/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, hasNasm } from "./nasm.js";

const nasm = hasNasm();
if (!nasm) console.warn("test/vm: nasm is not installed; the boot tests are skipped");

/** A Multiboot kernel (a.out kludge) that prints to 0xe9 and COM1, echoes one input byte, then exits. */
const MULTIBOOT = `
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
  cmp eax, 0x2BADB002            ; the loader's magic
  jne fail
  mov esp, 0x90000
  mov esi, msg
.next:
  lodsb
  test al, al
  jz .serial
  out 0xe9, al
  jmp .next
.serial:
  mov dx, 0x3f8
  mov al, 'S'
  out dx, al
.wait:                             ; poll the UART's line status for a received byte
  mov dx, 0x3fd
  in al, dx
  test al, 1
  jz .wait
  mov dx, 0x3f8
  in al, dx
  out dx, al                       ; echo it
  out 0xf4, al                     ; and exit with it
  hlt
fail:
  mov al, 0x7f
  out 0xf4, al
  hlt
msg: db "hello", 0
end:
`;

/** A 64 KiB ROM: real mode at the reset vector, counts with the PIT's IRQ0 through the PIC, then halts with IF=0. */
const ROM = `
bits 16
org 0
times 0xF000 - ($ - $$) db 0xff
entry:
  cli
  xor ax, ax
  mov ss, ax
  mov sp, 0x7000
  mov ds, ax
  mov word [8*4], irq0             ; IVT entry for vector 8 (IRQ0 with the BIOS's PIC base)
  mov word [8*4+2], 0xF000
  mov al, 0x11                     ; PIC: ICW1..ICW4, vectors 8-15, only IRQ0 unmasked
  out 0x20, al
  mov al, 8
  out 0x21, al
  mov al, 4
  out 0x21, al
  mov al, 1
  out 0x21, al
  mov al, 0xfe
  out 0x21, al
  mov al, 0x34                     ; PIT counter 0, mode 2, 1193 ticks = ~1 ms
  out 0x43, al
  mov ax, 1193
  out 0x40, al
  mov al, ah
  out 0x40, al
  mov cx, 0
  sti
.idle:
  hlt                              ; woken by each tick
  cmp cx, 5
  jb .idle
  mov al, 'T'
  out 0xe9, al
  cli
  hlt                              ; interrupts off: the machine is off
irq0:
  inc cx
  mov al, 0x20
  out 0x20, al
  iret
times 0xFFF0 - ($ - $$) db 0xff
  jmp 0xF000:entry
times 0x10000 - ($ - $$) db 0xff
`;

describe.skipIf(!nasm)("a VM on the whole stack", () => {
  it("boots a Multiboot kernel: debug console, serial out and in, isa-debug-exit", async () => {
    const con = new MemoryConsole();
    let typed = false;
    const result = await runVm({
      memoryBytes: 16 << 20,
      kernelImage: assemble(MULTIBOOT),
      console: con,
      engine: createX86Engine,
      debugExitPort: 0xf4,
      debugcon: true,
      maxVirtualNs: 1e9,
      onStart: (_k, raiseInput) => {
        con.onOutput = (text) => {
          if (text.includes("S") && !typed) {
            typed = true;
            con.type("A");
            raiseInput();
          }
        };
      },
    });
    expect(result.stop).toBe("ended");
    expect(String.fromCharCode(...con.debugcon)).toBe("hello");
    expect(con.text).toBe("SA");
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe((0x41 << 1) | 1);
  });

  it("boots a ROM at the reset vector and takes timer interrupts while halted", async () => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 4 << 20, bios: assemble(ROM), console: con, engine: createX86Engine, debugcon: true, maxVirtualNs: 5e9 });
    expect(result.message).toBe("the CPU halted with interrupts disabled");
    expect(result.stop).toBe("ended");
    expect(result.why).toBe(VmEnd.HALTED);
    expect(String.fromCharCode(...con.debugcon)).toBe("T");
    // Five ticks ~1 ms apart (the first comes when the counter is programmed): the guest halted
    // in between, so virtual time skipped ahead instead of running millions of instructions.
    expect(result.kernel.clock.now).toBeGreaterThan(3_000_000);
    expect(result.kernel.clock.now).toBeLessThan(50_000_000);
  });

  it("refuses a file that is not a kernel before anything starts", async () => {
    await expect(runVm({ memoryBytes: 16 << 20, kernelImage: new Uint8Array(100_000), console: new MemoryConsole(), engine: createX86Engine })).rejects.toThrow(/neither a Linux bzImage/);
  });
});
