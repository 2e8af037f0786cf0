// KVM's paravirtual interface on the whole stack: a Multiboot kernel reads the hypervisor CPUID
// leaves, makes hypercalls and registers kvm-clock records through the MSRs; with the interface
// hidden (pv: false), the same kernel sees a plain PC and VMCALL raises #UD.
import { copyRam } from "../support/ram.js";
import { decode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import type { ControlCommand, ControlHost, ControlResult } from "../../services/vm-control.js";
import type { VmState } from "../../vmm/protocol.js";
import { loadKernel, type BootPlan } from "../../vmm/boot/index.js";
import type { Kernel } from "../../kernel/index.js";
import { vcpuFromRecord } from "../../vmm/vcpu-record.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { scaleDelta } from "../../vmm/paravirt/pvclock.js";
import { assemble, hasNasm } from "./nasm.js";
import { buildGuest, hasGcc32 } from "../guest/build.js";
import { checkHvRecord } from "../../vmm/paravirt/hv-state.js";
import { HV_HYPERCALL_BASE, HV_PEER_SELF, HvOp, HvPortState, HvVirq, MulticallEntry } from "../../vmm/paravirt/hv-abi.js";

const nasm = hasNasm();

/** Everything the guest learns goes out on port 0xE9 as little-endian dwords; it exits with 0. */
const GUEST = `
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
REC equ 0x8000
WALL equ 0x8040
start:
  mov esp, 0x90000
  mov eax, ud                      ; #UD (vector 6): print 'U' and exit with 0x55
  mov [idt + 6*8], ax
  shr eax, 16
  mov [idt + 6*8 + 6], ax
  mov [idt + 6*8 + 2], cs
  mov byte [idt + 6*8 + 5], 0x8e
  lidt [idtr]
  mov eax, 1
  cpuid
  mov eax, ecx
  call out32                       ; 1: CPUID.1:ECX
  mov eax, 0x40000000
  cpuid
  call out32                       ; 2: max hypervisor leaf
  mov eax, ebx
  call out32                       ; 3-5: signature
  mov eax, ecx
  call out32
  mov eax, edx
  call out32
  mov eax, 0x40000001
  cpuid
  call out32                       ; 6: features
  mov eax, 1                       ; KVM_HC_VAPIC_POLL_IRQ
  vmcall
  call out32                       ; 7
  mov eax, 12345                   ; no such hypercall
  mov ebx, 0xdeadbeef
  vmcall
  call out32                       ; 8
  mov eax, ebx
  call out32                       ; 9: EBX kept
  mov ecx, 0x4b564d01              ; MSR_KVM_SYSTEM_TIME_NEW, enabled
  mov eax, REC + 1
  xor edx, edx
  wrmsr
  rdtsc
  call out32                       ; 10-11: TSC right after
  mov eax, edx
  call out32
  mov ecx, 0x4b564d00              ; MSR_KVM_WALL_CLOCK_NEW
  mov eax, WALL
  xor edx, edx
  wrmsr
  mov esi, REC                     ; 12-19: the time record
  mov ecx, 8
.rec:
  lodsd
  call out32
  loop .rec
  mov esi, WALL                    ; 20-22: the wall clock record
  mov ecx, 3
.wall:
  lodsd
  call out32
  loop .wall
  mov ecx, 0x4b564d01              ; a record beyond RAM: taken, not written
  mov eax, 0xfffff001
  mov edx, 0
  wrmsr
  rdmsr
  call out32                       ; 23
  mov al, 0
  out 0xf4, al
  hlt
out32:
  push ecx
  mov ecx, 4
.byte:
  out 0xe9, al
  shr eax, 8
  loop .byte
  pop ecx
  ret
ud:
  mov al, 'U'
  out 0xe9, al
  mov al, 0x55
  out 0xf4, al
  hlt
idtr: dw 8*8 - 1
      dd idt
align 8
idt: times 8 dq 0
end:
`;

async function run(pv: boolean) {
  const con = new MemoryConsole();
  const result = await runVm({ memoryBytes: 16 << 20, kernelImage: assemble(GUEST), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, pv, maxVirtualNs: 1e9 });
  const bytes = Uint8Array.from(con.debugcon);
  const words = Array.from({ length: bytes.length >> 2 }, (_, i) => new DataView(bytes.buffer).getUint32(4 * i, true));
  return { result, bytes, words };
}

/** Registers kvm-clock, spins ~40 ms of VM time (a save comes meanwhile), then prints what the MSRs read and exits. */
const SPINNER = `
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
  mov esp, 0x90000
  mov ecx, 0x4b564d01
  mov eax, 0x8001
  mov edx, 0
  wrmsr
  mov ecx, 0x4b564d00
  mov eax, 0x8040
  wrmsr
  mov ecx, 20000000
.spin:
  dec ecx
  jnz .spin
  mov ecx, 0x4b564d01
  rdmsr
  call out32
  mov ecx, 0x4b564d00
  rdmsr
  call out32
  mov eax, [0x8010]                ; the record's system time: written once, before the save
  call out32
  mov al, 0
  out 0xf4, al
  hlt
out32:
  push ecx
  mov ecx, 4
.byte:
  out 0xe9, al
  shr eax, 8
  loop .byte
  pop ecx
  ret
end:
`;

/** Drops to ring 3 (IOPL 3, so it may print and exit) and makes a hypercall from there. */
const USER = `
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
  mov esp, 0x90000
  lgdt [gdtr]
  push dword 0x23                  ; SS: ring-3 data
  push dword 0x80000
  push dword 0x3002                ; EFLAGS: IOPL 3
  push dword 0x1b                  ; CS: ring-3 code
  push dword user
  iret
user:
  mov eax, 1                       ; KVM_HC_VAPIC_POLL_IRQ, but from user mode
  vmcall
  mov ecx, 4
.byte:
  out 0xe9, al
  shr eax, 8
  loop .byte
  mov al, 0
  out 0xf4, al
  jmp $
gdtr: dw 5*8 - 1
      dd gdt
align 8
gdt: dq 0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00cffa000000ffff, 0x00cff2000000ffff
end:
`;

/** A control host: commands queued by the test, saves kept. */
class Control implements ControlHost {
  readonly queue: ControlCommand[] = [];
  readonly saves: Uint8Array[] = [];
  readonly ram: Uint8Array[] = [];
  take(): ControlCommand | null {
    return this.queue.shift() ?? null;
  }
  done(command: ControlCommand, result: ControlResult): void {
    if (command.op === "save" && "state" in result) {
      this.saves.push(result.state.slice());
      this.ram.push(copyRam(result.ram));
    }
  }
}

interface Saved {
  state: VmState;
  ram: Uint8Array;
}

/**
 * Run the Multiboot kernel of `plan` (16 MiB, debugcon, exit port 0xF4) to its end; saved once,
 * at the first slice `saveWhen` agrees to, or (with `resume`) resumed from a save instead.
 */
async function runSaved(plan: BootPlan, saveWhen: (k: Kernel) => boolean, resume?: Saved) {
  const con = new MemoryConsole();
  const ctl = new Control();
  let raise = () => {};
  let asked = false;
  if (resume) ctl.queue.push({ vm: 0, op: "resume" });
  const page = (ram: Uint8Array, n: number) => ram.subarray(n * 4096, (n + 1) * 4096);
  // A resumed VM's plan: its ROMs and the saved vCPU, no writes (as openSavedVm makes it).
  const resumePlan = resume && { ...plan, writes: [], state: vcpuFromRecord(resume.state.vcpu, "vcpu") };
  const result = await runVm({
    memoryBytes: 16 << 20, plan, console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, control: ctl, maxVirtualNs: 1e9,
    resume: resumePlan && resume && { plan: resumePlan, state: resume.state, ram: { hasPage: (n) => page(resume.ram, n).some((b) => b !== 0), readPage: (n, into) => into.set(page(resume.ram, n)) } },
    onStart: (_k, r) => {
      raise = r.control;
      if (resume) raise();
    },
    onSlice: (k) => {
      if (resume || asked || !saveWhen(k)) return;
      asked = true;
      ctl.queue.push({ vm: 0, op: "save" });
      raise();
    },
  });
  return { result, out: Uint8Array.from(con.debugcon), ctl };
}

describe.skipIf(!nasm)("KVM's paravirtual interface on the whole stack", () => {
  it("keeps the kvm-clock MSRs across a save and a resume", async () => {
    const plan = loadKernel(assemble(SPINNER), { memSize: 16 << 20, cmdline: "" });
    const run = (resume?: Saved) => runSaved(plan, (k) => k.clock.now >= 10e6, resume);
    const first = await run();
    expect(first.result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(first.ctl.saves.length).toBe(1);
    const state = decode(first.ctl.saves[0]) as VmState;
    expect(state.kvm).toEqual({ systemTimeLo: 0x8001, systemTimeHi: 0, wallClockLo: 0x8040, wallClockHi: 0, stealTimeLo: 0, stealTimeHi: 0 });
    const words = (b: Uint8Array) => Array.from({ length: b.length >> 2 }, (_, i) => new DataView(b.buffer).getUint32(4 * i, true));
    expect(words(first.out).slice(0, 2)).toEqual([0x8001, 0x8040]);
    const second = await run({ state, ram: first.ctl.ram[0] });
    expect(second.result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(words(second.out)).toEqual(words(first.out));
  });

  it("shows KVM to the guest, answers hypercalls and writes kvm-clock records that tell VM time", async () => {
    const { result, bytes, words } = await run(true);
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe(1); // the guest wrote 0: it got to the end
    expect(words.length).toBe(23);
    expect(words[0] >>> 31).toBe(1);
    expect(words[1]).toBe(0x40000001);
    expect(new TextDecoder("latin1").decode(bytes.subarray(8, 20))).toBe("KVMKVMKVM\0\0\0");
    expect(words[5] & (1 << 3)).not.toBe(0); // CLOCKSOURCE2
    expect(words[5] & (1 << 24)).not.toBe(0); // CLOCKSOURCE_STABLE_BIT
    expect(words[6]).toBe(0);
    expect(words[7] | 0).toBe(-1000); // -KVM_ENOSYS
    expect(words[8]).toBe(0xdeadbeef);
    const tscAfter = BigInt(words[9]) | (BigInt(words[10]) << 32n);
    const rec = new DataView(bytes.buffer, 11 * 4, 32);
    expect(rec.getUint32(0, true) % 2).toBe(0);
    const tscStamp = rec.getBigUint64(8, true);
    const systemTime = rec.getBigUint64(16, true);
    const scale = { mul: rec.getUint32(24, true), shift: rec.getInt8(28) };
    expect(scale).toEqual({ mul: 2 ** 31, shift: 1 }); // 1 GHz: one tick per instruction-ns
    expect(rec.getUint8(29) & 1).toBe(1); // PVCLOCK_TSC_STABLE_BIT
    // The record was made at the WRMSR, a few instructions before the RDTSC that followed it.
    expect(tscStamp).toBeLessThanOrEqual(tscAfter);
    expect(tscAfter - tscStamp).toBeLessThan(10n);
    // The guest's clock at that RDTSC is VM time: the TSC started with the vCPU, at VM time
    // (kernel time then) under a millisecond; the guest ran about a few thousand instructions.
    const guestNs = systemTime + scaleDelta(tscAfter - tscStamp, scale);
    expect(guestNs - tscAfter).toBeGreaterThanOrEqual(0n);
    expect(guestNs - tscAfter).toBeLessThan(1_000_000n);
    expect(guestNs).toBeGreaterThan(0n);
    // The wall clock at system time 0: the RTC's start (hv's default 1,700,000,000) less VM time then.
    const wall = new DataView(bytes.buffer, 19 * 4, 12);
    expect(wall.getUint32(0, true) % 2).toBe(0);
    const bootSeconds = wall.getUint32(4, true) + wall.getUint32(8, true) / 1e9;
    expect(bootSeconds).toBeGreaterThan(1_700_000_000 - 1);
    expect(bootSeconds).toBeLessThanOrEqual(1_700_000_000);
    expect(words[22]).toBe(0xfffff001);
  });

  it("refuses a hypercall from user mode with -KVM_EPERM", async () => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 16 << 20, kernelImage: assemble(USER), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 1e9 });
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe(1);
    expect(new DataView(Uint8Array.from(con.debugcon).buffer).getInt32(0, true)).toBe(-1);
  });

  it("hides it all with pv off: no hypervisor bit, empty leaves, VMCALL raises #UD", async () => {
    const { result, bytes, words } = await run(false);
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    expect(result.status).toBe((0x55 << 1) | 1);
    expect(words[0] >>> 31).toBe(0);
    expect(words.slice(1, 6)).toEqual([0, 0, 0, 0, 0]);
    expect(bytes.length).toBe(6 * 4 + 1);
    expect(String.fromCharCode(bytes[24])).toBe("U");
  });
});

/**
 * Code the VMM rewrites: a multicall entry (EVTCHN_ALLOC_UNBOUND, a new port each time) lies in
 * the code, and its result field is the immediate of \`mov eax, imm32; ret\` the guest calls right
 * after the VMCALL. ROUNDS times: the port it got, as the code returns it, against the one it
 * should have got. Out: the mismatches, then the rounds + 1.
 */
const REWRITTEN = (rounds: number) => `
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
  mov esp, 0x90000
  xor edi, edi
  mov esi, 1                       ; ports come in order from 1
.round:
  mov eax, 0x${(HV_HYPERCALL_BASE + HvOp.MULTICALL).toString(16)}
  mov ebx, entry
  mov ecx, 1
  xor edx, edx
  vmcall
  call result
  cmp eax, esi
  je .same
  inc edi
.same:
  inc esi
  cmp esi, ${rounds + 1}
  jne .round
  mov eax, edi
  call out32
  mov eax, esi
  call out32
  mov al, 0
  out 0xf4, al
  hlt
out32:
  push ecx
  mov ecx, 4
.byte:
  out 0xe9, al
  shr eax, 8
  loop .byte
  pop ecx
  ret
align ${MulticallEntry.BYTES}
entry:
  dd 0x${(HV_HYPERCALL_BASE + HvOp.EVTCHN_ALLOC_UNBOUND).toString(16)}, 0x${HV_PEER_SELF.toString(16)}, 0, 0, 0
  db 0, 0, 0                       ; the last argument's low bytes, then its high byte is the opcode:
result equ $
  db 0xb8                          ; mov eax, <the entry's result>
  dd 0
  db 0xc3, 0x90, 0x90, 0x90        ; ret; the entry's reserved word
end:
`;

describe.skipIf(!nasm)("a VMCALL's reply and the engine's cached code", () => {
  it("code the VMM wrote while it handled a VMCALL runs as written, though the guest runs it after every call", async () => {
    const rounds = 1000;
    const image = assemble(REWRITTEN(rounds));
    // The entry's result field is the immediate (the VMM writes it), right after the opcode.
    const at = image.indexOf(0xb8, image.length - 16);
    expect(at % MulticallEntry.BYTES).toBe(MulticallEntry.RESULT - 1);
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 16 << 20, kernelImage: image, console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, pv: true, maxVirtualNs: 1e9 });
    expect(result.why).toBe(VmEnd.DEBUG_EXIT);
    const bytes = Uint8Array.from(con.debugcon);
    const words = Array.from({ length: bytes.length >> 2 }, (_, i) => new DataView(bytes.buffer).getUint32(4 * i, true));
    expect(words).toEqual([0, rounds + 1]);
  });
});

describe.skipIf(!hasGcc32())("hv PV ABI across a save and a resume", () => {
  it("a resumed VM keeps its ports, its upcall and its timer: it goes on exactly as the saved one did", async () => {
    const plan = loadKernel(buildGuest("evtloop", { ROUNDS: 32768, SPIN: 40000 }), { memSize: 16 << 20, cmdline: "" });
    // Saved in the middle of the rounds (checked below), after 10 ms.
    const first = await runSaved(plan, (k) => k.clock.now >= 10e6);
    expect(first.result.why).toBe(VmEnd.DEBUG_EXIT);
    const words = (b: Uint8Array) => Array.from({ length: b.length >> 2 }, (_, i) => new DataView(b.buffer).getUint32(4 * i, true));
    const all = words(first.out);
    expect(all.slice(0, 4)).toEqual([0x504f4f4c, 2, 1, 3]);
    expect(all.slice(-4)).toEqual([32768, 32768, 512, 0x454e4f44]);
    const state = decode(first.ctl.saves[0]) as VmState;
    const hv = checkHvRecord(state.hv, "hv");
    expect(hv.upcallVector).toBe(0x41);
    expect(hv.events.ports).toEqual([
      [1, HvPortState.INTERDOMAIN, HV_PEER_SELF, 2, 0],
      [2, HvPortState.INTERDOMAIN, HV_PEER_SELF, 1, 0],
      [3, HvPortState.VIRQ, 0, 0, HvVirq.TIMER],
    ]);
    expect(hv.events.sharedInfo).toBeGreaterThan(0);
    const never = () => false;
    const second = await runSaved(plan, never, { state, ram: first.ctl.ram[0] });
    expect(second.result.why).toBe(VmEnd.DEBUG_EXIT);
    // What the resumed VM wrote is what the original wrote after the save.
    const rest = words(second.out);
    expect(rest.length).toBeGreaterThan(8);
    expect(rest.length).toBeLessThan(all.length - 8);
    expect(all.slice(-rest.length)).toEqual(rest);

    // The same save without the ABI's record: the resumed guest's ports are gone and it never finishes.
    const lost = await runSaved(plan, never, { state: { ...state, hv: undefined }, ram: first.ctl.ram[0] });
    expect(lost.result.why).not.toBe(VmEnd.DEBUG_EXIT);
  });
});
