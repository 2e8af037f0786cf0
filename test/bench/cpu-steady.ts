// Steady translator benchmark (issue 15): loop-heavy guest workloads, each run on one machine
// until its blocks are translated and optimized, then measured over a few hundred million
// instructions of CPU time, alternating with the interpreter alone on the same code. The interpreter is the
// yardstick: the ratio translated MIPS / interpreted MIPS, measured in the same run, changes only
// when the translator does, while the machine's load moves both.
// Usage: npm run bench:cpu-steady [-- --seconds S --rounds N]   Last line: `steady_ratio=<geometric mean>`.

import { parseArgs } from "node:util";
import { ExitReason } from "../../kernel/vcpu.js";
import { Machine } from "../../vmm/x86/testing.js";

const PD = 0x100000;

const WORKLOADS: ReadonlyArray<{ name: string; source: string }> = [
  {
    // The shape of the XZ decompressor's hot code: a range decoder's bit (a call, a
    // normalization branch, a 16-bit probability update) walking a bit tree.
    name: "range decoder bit tree",
    source: `
      mov esp, 0x700000
      mov edi, 0x400000
      mov ecx, 4096
      mov eax, 1024
    .init:
      mov [edi + ecx*2 - 2], ax
      loop .init
      mov esi, 0x200000
      mov ebx, 0xffffffff
      xor edx, edx
      mov ebp, 0x7fffffff
    .sym:
      mov ecx, 1
    .bit:
      call rc_bit
      lea ecx, [ecx*2 + eax]
      cmp ecx, 256
      jb .bit
      dec ebp
      jnz .sym
      hlt
    rc_bit:
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
    name: "crc32 (bitwise)",
    source: `
    .again:
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
      jmp .again`,
  },
  {
    name: "insertion sort (3000 dwords)",
    source: `
      N equ 3000
    .again:
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
      jae .again
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
      jmp .outer`,
  },
  {
    name: "byte copy loop",
    source: `
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
      jmp .again`,
  },
];

function setup(source: string, translate: boolean): Machine {
  const m = new Machine(8 << 20);
  m.engine.translate = translate;
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

/** CPU seconds of this process (less disturbed than wall time by other processes on the machine). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Run `m` for about `seconds` of CPU time; instructions per CPU second / 1e6. */
function measure(m: Machine, seconds: number): number {
  const e = m.engine;
  const r0 = e.retired;
  const t0 = cpuSeconds();
  let t = 0;
  do {
    const reason = m.run(10_000_000);
    if (reason !== ExitReason.BUDGET) throw new Error(`workload ended with ${ExitReason[reason]}`);
    t = cpuSeconds() - t0;
  } while (t < seconds);
  return (e.retired - r0) / t / 1e6;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const { values } = parseArgs({ options: { seconds: { type: "string" }, rounds: { type: "string" } } });
  const seconds = Number(values.seconds ?? 0.4);
  const rounds = Number(values.rounds ?? 7);
  const ratios: number[] = [];
  console.log(`${"workload".padEnd(28)} ${"interp".padStart(8)} ${"transl".padStart(8)} ${"ratio".padStart(7)}`);
  for (const w of WORKLOADS) {
    const fast = setup(w.source, true);
    const slow = setup(w.source, false);
    measure(fast, 4 * seconds); // translate the hot blocks and let V8 optimize them
    measure(slow, seconds / 2);
    // Alternate short measurements; the median of the ratios of neighbours cancels most of the
    // changes in the machine's load.
    const slows: number[] = [], fasts: number[] = [], pairs: number[] = [];
    for (let k = 0; k < rounds; k++) {
      const s = measure(slow, seconds / 2);
      const f = measure(fast, seconds);
      slows.push(s);
      fasts.push(f);
      pairs.push(f / s);
    }
    const ratio = median(pairs);
    ratios.push(ratio);
    console.log(`${w.name.padEnd(28)} ${median(slows).toFixed(1).padStart(8)} ${median(fasts).toFixed(1).padStart(8)} ${ratio.toFixed(2).padStart(7)}`);
  }
  const mean = Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length);
  console.log(`steady_ratio=${mean.toFixed(2)}`);
}

main();
