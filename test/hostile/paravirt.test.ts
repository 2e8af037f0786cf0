// Hostile guests against KVM's paravirtual interface: hypercalls with random registers (numbers,
// arguments, from ring 0) and kvm-clock MSRs written with random values (records at random
// addresses: beyond RAM, straddling its end, above 4 GiB), plus random MSRs of KVM's range.
// Every case must end as KVM's ABI says (a result in EAX, #GP for what is not there), never as a
// fault of the VMM or the host.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { KVM_ENOSYS, KvmHypercall, KvmMsr } from "../../vmm/paravirt/kvm.js";
import { assemble, hasNasm } from "../vm/nasm.js";

const nasm = hasNasm();
const RAM = 16 << 20;
/** The guest's own code, data and stack: random records must not land on them (the guest would break itself, not us). */
const GUEST_AREA = [0x80000, 0x200000];

const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Mostly numbers KVM knows or near them, some anywhere. */
const number = fc.oneof(fc.constantFrom(0, 1, 2, 5, 9, 10, 11, 12, 13, 1000), u32);
const call = fc.record({ eax: number, ebx: u32, ecx: u32, edx: u32, esi: u32 });
/** A record address: at RAM's end (straddling it), beyond it, anywhere, or above 4 GiB (EDX). */
const address = fc.oneof(fc.integer({ min: RAM - 48, max: RAM + 16 }), u32, fc.integer({ min: 0, max: RAM - 1 }));
const clockMsr = fc.constantFrom(KvmMsr.SYSTEM_TIME_NEW, KvmMsr.WALL_CLOCK_NEW, KvmMsr.SYSTEM_TIME, KvmMsr.WALL_CLOCK);
const msrWrite = fc.record({ index: clockMsr, lo: address, hi: fc.oneof(fc.constant(0), u32) }).filter((w) => w.hi !== 0 || w.lo + 64 < GUEST_AREA[0] || w.lo >= GUEST_AREA[1]);
const otherMsr = fc.integer({ min: 0x4b564d02, max: 0x4b564dff }).filter((i) => i !== KvmMsr.STEAL_TIME);

const dd = (values: readonly number[]) => values.map((v) => `dd 0x${(v >>> 0).toString(16)}`).join("\n");

/**
 * For each call: load the registers, VMCALL, print EAX and whether EBX, ECX, EDX, ESI survived.
 * For each write: WRMSR, RDMSR, print EDX:EAX. For each other MSR: RDMSR, whose #GP prints "GP".
 */
function guest(calls: { eax: number; ebx: number; ecx: number; edx: number; esi: number }[], writes: { index: number; lo: number; hi: number }[], others: number[]): string {
  return `
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
  mov esp, 0x90000
  mov eax, gp
  mov [idt + 13*8], ax
  shr eax, 16
  mov [idt + 13*8 + 6], ax
  mov [idt + 13*8 + 2], cs
  mov byte [idt + 13*8 + 5], 0x8e
  lidt [idtr]
  mov ebp, calls
  mov dword [left], ${calls.length}
.call:
  mov eax, [ebp]
  mov ebx, [ebp + 4]
  mov ecx, [ebp + 8]
  mov edx, [ebp + 12]
  mov esi, [ebp + 16]
  vmcall
  call out32
  xor eax, eax
  cmp ebx, [ebp + 4]
  setne al
  cmp ecx, [ebp + 8]
  setne ah
  or al, ah
  cmp edx, [ebp + 12]
  setne ah
  or al, ah
  cmp esi, [ebp + 16]
  setne ah
  or al, ah
  out 0xe9, al
  add ebp, 20
  dec dword [left]
  jnz .call
  mov ebp, writes
  mov dword [left], ${writes.length}
.write:
  mov ecx, [ebp]
  mov eax, [ebp + 4]
  mov edx, [ebp + 8]
  wrmsr
  xor eax, eax
  xor edx, edx
  rdmsr
  call out32
  mov eax, edx
  call out32
  add ebp, 12
  dec dword [left]
  jnz .write
  mov ebp, others
  mov dword [left], ${others.length}
.other:
  mov ecx, [ebp]
  mov dword [resume], .next
  rdmsr
  mov al, 'R'                      ; read without #GP: wrong
  out 0xe9, al
.next:
  add ebp, 4
  dec dword [left]
  jnz .other
  mov al, 0
  out 0xf4, al
  hlt
gp:                                ; #GP(0): print it, drop the error code and frame, go on
  mov al, 'G'
  out 0xe9, al
  add esp, 16
  jmp [resume]
out32:
  push ecx
  mov ecx, 4
.byte:
  out 0xe9, al
  shr eax, 8
  loop .byte
  pop ecx
  ret
left: dd 0
resume: dd 0
idtr: dw 16*8 - 1
      dd idt
align 8
idt: times 16 dq 0
calls:
${dd(calls.flatMap((c) => [c.eax, c.ebx, c.ecx, c.edx, c.esi]))}
writes:
${dd(writes.flatMap((w) => [w.index, w.lo, w.hi]))}
others:
${dd(others)}
end:
`;
}

describe.skipIf(!nasm)("hostile paravirtual guests", () => {
  it("random hypercalls and kvm-clock MSR values end as KVM's ABI says, never in the host", async () => {
    const seed = 0x5eed14;
    const calls = fc.sample(call, { numRuns: 300, seed });
    const writes = fc.sample(msrWrite, { numRuns: 200, seed });
    const others = fc.sample(otherMsr, { numRuns: 50, seed });
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: RAM, kernelImage: assemble(guest(calls, writes, others)), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 5e9 });
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe(1);
    const out = Uint8Array.from(con.debugcon);
    const view = new DataView(out.buffer);
    let at = 0;
    for (const c of calls) {
      const eax = view.getInt32(at, true);
      const known = [KvmHypercall.VAPIC_POLL_IRQ, KvmHypercall.KICK_CPU, KvmHypercall.SCHED_YIELD].includes(c.eax as 1);
      // SEND_IPI needs an APIC, which this PIC-only VM lacks.
      expect(eax, `hypercall ${c.eax}`).toBe(known ? 0 : -KVM_ENOSYS);
      expect(out[at + 4], `hypercall ${c.eax} kept its arguments`).toBe(0);
      at += 5;
    }
    for (const w of writes) {
      expect([view.getUint32(at, true), view.getUint32(at + 4, true)], `MSR ${w.index.toString(16)}`).toEqual([w.lo, w.hi]);
      at += 8;
    }
    expect(new TextDecoder().decode(out.subarray(at))).toBe("G".repeat(others.length));
  });
});
