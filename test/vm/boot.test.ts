// Whole-system tests: a guest boots through the root task, memory manager, console driver and VMM
// components on the kernel, and runs on the x86 core.
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, hasNasm, masterPic, pitInterrupts, realModeRom } from "./nasm.js";

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
const ROM = realModeRom(`
${pitInterrupts("irq0", 1193)}                 ; IRQ0 ~1 ms (PIT mode 2, 1193 ticks) to vector 8
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
`);

/**
 * A ROM that handles x87 errors the MS-DOS way (CR0.NE = 0): FERR# raises IRQ 13 on the slave PIC,
 * the handler writes port F0h (IGNNE#: its own x87 code runs) and clears the exception. Round 2
 * masks IRQ 13 first, so the next waiting instruction freezes until the PIT's interrupt unmasks it.
 * Prints "A" and "B" on port E9h for the two rounds, "X" when a check fails.
 */
const X87_ERRORS = realModeRom(
  `
  mov word [8*4], irq0
  mov word [8*4+2], 0xF000
  mov word [0x75*4], irq13         ; slave PIC at 70h: IRQ 13 is vector 75h
  mov word [0x75*4+2], 0xF000
  ${masterPic(0xfb)}                 ; master: only the cascade
  mov al, 0x11
  out 0xa0, al
  mov al, 0x70
  out 0xa1, al
  mov al, 2
  out 0xa1, al
  mov al, 1
  out 0xa1, al
  mov al, 0xdf                     ; slave: only IRQ 13
  out 0xa1, al
  mov word [0x500], 0              ; IRQ 13 count
  mov word [0x502], 0              ; IRQ 0 count
  mov word [0x504], 0              ; status word the IRQ 13 handler saw
  fninit
  fldcw [cs:cw]
  sti
  fld1                             ; round 1: IRQ 13 comes right after FDIVP
  fldz
  fdivp st1, st0
  fld1
  fstp st0
  fstp st0
  cmp word [0x500], 1
  jne fail
  mov ax, [0x504]
  and ax, 0x84                     ; ZE and ES
  cmp ax, 0x84
  jne fail
  mov al, 'A'
  out 0xe9, al
  cli                              ; round 2: IRQ 13 masked, the timer armed (mode 0, ~55 ms)
  mov al, 0xff
  out 0xa1, al
  mov al, 0xfa
  out 0x21, al
  fld1
  fldz
  fdivp st1, st0
  mov al, 0x30
  out 0x43, al
  mov al, 0xff
  out 0x40, al
  out 0x40, al
  sti
  nop
  fld1                             ; freezes until IRQ 0, then until IRQ 13
  fstp st0
  fstp st0
  cmp word [0x500], 2
  jne fail
  cmp word [0x502], 1
  jne fail
  mov al, 'B'
  out 0xe9, al
  cli
  hlt
fail:
  mov al, 'X'
  out 0xe9, al
  cli
  hlt
irq0:
  push ax
  inc word [0x502]
  mov al, 0xdf                     ; unmask IRQ 13, mask the timer
  out 0xa1, al
  mov al, 0xfb
  out 0x21, al
  mov al, 0x20
  out 0x20, al
  pop ax
  iret
irq13:
  push ax
  out 0xf0, al                     ; clear the request; IGNNE# lets the next FLD1 run
  fld1
  fstp st0
  fnstsw ax
  mov [0x504], ax
  fnclex
  inc word [0x500]
  mov al, 0x20
  out 0xa0, al
  out 0x20, al
  pop ax
  iret
cw: dw 0x037b                      ; ZE unmasked
`,
  0xe000,
);

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
      onStart: (_k, { input: raiseInput }) => {
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

  it("routes x87 errors through FERR#, IRQ 13 and port F0h when CR0.NE is clear", async () => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 4 << 20, bios: assemble(X87_ERRORS), console: con, engine: createX86Engine, debugcon: true, maxVirtualNs: 5e9 });
    expect(String.fromCharCode(...con.debugcon)).toBe("AB");
    expect(result.why).toBe(VmEnd.HALTED);
    // The freeze waited for the timer (~55 ms of virtual time) instead of spinning.
    expect(result.kernel.clock.now).toBeGreaterThan(50_000_000);
  });

  it("refuses a file that is not a kernel before anything starts", async () => {
    await expect(runVm({ memoryBytes: 16 << 20, kernelImage: new Uint8Array(100_000), console: new MemoryConsole(), engine: createX86Engine })).rejects.toThrow(/neither a Linux bzImage/);
  });
});
