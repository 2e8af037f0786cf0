// The wasm tier against the JS tier on one hot loop of integer code with memory operands, shaped
// like the XZ decompressor's range decoder (issue 15): CPU seconds per run of each machine,
// alternated. Usage: npx tsx test/bench/wasm-tier.ts [--iterations 3000000] [--rounds 3]

import { parseArgs } from "node:util";
import { ExitReason } from "../../kernel/vcpu.js";
import { Machine } from "../../vmm/x86/testing.js";

const LOOP = `
  mov ecx, ITER
  mov ebx, 0x200000        ; probabilities
  mov esi, 0x12345678      ; range
  mov edi, 0x0badf00d      ; code
  xor ebp, ebp
top:
  mov eax, ecx
  and eax, 0x3ff
  movzx edx, word [ebx + eax*2]
  mov eax, esi
  shr eax, 11
  imul eax, edx
  cmp edi, eax
  jae .one
  mov esi, eax
  mov eax, 2048
  sub eax, edx
  shr eax, 5
  add edx, eax
  mov eax, ecx
  and eax, 0x3ff
  mov [ebx + eax*2], dx
  add ebp, 1
  jmp .next
.one:
  sub esi, eax
  sub edi, eax
  mov eax, edx
  shr eax, 5
  sub edx, eax
  mov eax, ecx
  and eax, 0x3ff
  mov [ebx + eax*2], dx
.next:
  cmp esi, 0x1000000
  jae .norm
  shl esi, 8
  shl edi, 8
  or edi, ecx
.norm:
  dec ecx
  jnz top
  hlt`;

function cpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function machine(arena: boolean, iterations: number): Machine {
  const m = new Machine(8 << 20, 0, arena);
  m.flat(0);
  m.code32(LOOP.replace("ITER", String(iterations)));
  for (let k = 0; k < 1024; k++) m.view.setUint16(0x200000 + 2 * k, 1024, true);
  return m;
}

function runOnce(arena: boolean, iterations: number): { s: number; retired: number; eax: number } {
  const m = machine(arena, iterations);
  const t = cpu();
  let r: ExitReason;
  do r = m.run(10_000_000);
  while (r === ExitReason.BUDGET);
  if (r !== ExitReason.HLT) throw new Error(`ended with ${ExitReason[r]}`);
  return { s: cpu() - t, retired: m.engine.retired, eax: m.engine.cpu.r[5] };
}

const { values } = parseArgs({ options: { iterations: { type: "string", default: "3000000" }, rounds: { type: "string", default: "3" } } });
const n = Number(values.iterations);
for (let k = 0; k < Number(values.rounds); k++) {
  for (const arena of [false, true]) {
    const r = runOnce(arena, n);
    console.log(`${arena ? "wasm" : "js  "} ${r.s.toFixed(2)} s  ${(r.retired / r.s / 1e6).toFixed(0)} MIPS  retired=${r.retired} ebp=${r.eax}`);
  }
}
