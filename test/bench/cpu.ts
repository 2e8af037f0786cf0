// CPU benchmark: fixed guest workloads (CRC-32, insertion sort, byte-copy loop, REP MOVSD) in
// 32-bit protected mode with paging on, assembled with nasm at bench time. Prints a table and
// last the line `cpu_mips=<n>` (instructions per second / 1e6 over the non-REP workloads).

import { benchmarkFpu } from "../../vmm/x86/fpu/bench.js";
import { ExitReason } from "../../kernel/vcpu.js";
import { Machine } from "../../vmm/x86/testing.js";

const PD = 0x100000;

const WORKLOADS: ReadonlyArray<{ name: string; rep: boolean; source: string }> = [
  {
    name: "crc32 (bitwise, 128 KiB)",
    rep: false,
    source: `
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
      hlt`,
  },
  {
    name: "insertion sort (3000 dwords)",
    rep: false,
    source: `
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
      hlt`,
  },
  {
    name: "string copy loop (16 x 64 KiB)",
    rep: false,
    source: `
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
      hlt`,
  },
  {
    name: "rep movsd (64 x 256 KiB)",
    rep: true,
    source: `
      mov ebp, 64
    .again:
      mov esi, 0x200000
      mov edi, 0x600000
      mov ecx, 65536
      cld
      rep movsd
      dec ebp
      jnz .again
      hlt`,
  },
];

function setup(source: string): Machine {
  const m = new Machine(8 << 20);
  m.flat(0);
  for (let i = 0; i < 2048; i++) m.w32(0x101000 + i * 4, (i << 12) | 3);
  m.w32(PD, 0x101003);
  m.w32(PD + 4, 0x102003);
  for (let k = 0; k < 0x80000; k++) m.ram[0x200000 + k] = (k * 2654435761) >>> 24;
  m.code32(source);
  m.update((s) => {
    s.cr3 = PD;
    s.cr0 = (s.cr0 | 0x80000000) >>> 0;
  });
  return m;
}

function runOnce(source: string): { instructions: number; seconds: number; result: number } {
  const m = setup(source);
  const t0 = process.hrtime.bigint();
  let reason: ExitReason;
  do reason = m.run(50_000_000);
  while (reason === ExitReason.BUDGET);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (reason !== ExitReason.HLT) throw new Error(`workload ended with ${ExitReason[reason]}`);
  return { instructions: m.engine.retired, seconds, result: m.regs.edx };
}

export function main(): void {
  // Warm up the JIT on a short run of each workload.
  for (const w of WORKLOADS) runOnce(w.source);
  const rows: string[] = [];
  let totalInstructions = 0, totalSeconds = 0;
  for (const w of WORKLOADS) {
    let best = { instructions: 0, seconds: Infinity, result: 0 };
    for (let k = 0; k < 3; k++) {
      const r = runOnce(w.source);
      if (r.seconds < best.seconds) best = r;
    }
    const mips = best.instructions / best.seconds / 1e6;
    rows.push(`${w.name.padEnd(32)} ${String(best.instructions).padStart(11)} ${best.seconds.toFixed(3).padStart(8)} ${mips.toFixed(1).padStart(8)}`);
    if (!w.rep) {
      totalInstructions += best.instructions;
      totalSeconds += best.seconds;
    }
  }
  console.log(`${"workload".padEnd(32)} ${"instrs".padStart(11)} ${"seconds".padStart(8)} ${"MIPS".padStart(8)}`);
  for (const r of rows) console.log(r);
  console.log("(rep movsd counts each iteration as one instruction; cpu_mips excludes it)");
  // The x87 unit on a fixed workload (degree-16 Horner evaluation through its execute path).
  console.log(`fpu_mflops=${benchmarkFpu().toFixed(2)}`);
  console.log(`cpu_mips=${(totalInstructions / totalSeconds / 1e6).toFixed(1)}`);
}

main();
