// System-path benchmark: the per-iteration cost of guest loops around CPUID (answered by the core
// and as a CPUID exit), MOV CR0, MOV CR4, INVLPG and MOV CR3, each as a ratio to a plain ALU loop
// measured in the same run. The guest runs in 32-bit protected mode with paging on and a TLB
// warmed with many pages (global and not), so a flush that costs the size of the TLB or of the
// translation tables shows. Prints a table, then one `key=value` line:
// `sys_alu_ns=<n> sys_cpuid=<ratio> sys_cpuid_exit=<ratio> sys_cr0=<ratio> ...`.
//
// Options: --iterations N (ALU loop iterations; the others run N/4), --only NAME[,NAME...].

import { ExitReason, type VcpuExitHandler } from "../../kernel/vcpu.js";
import { Machine } from "../../vmm/x86/testing.js";

const PD = 0x100000;
/** Pages mapped (global from WARM_GLOBAL on) and touched before the loop: a busy guest's TLB. */
const WARM_PAGES = 1536;
const WARM_GLOBAL = 1024;

interface Loop {
  name: string;
  /** What one iteration does besides `dec ebp / jnz`. */
  body: string;
  cpuidExits?: boolean;
}

const LOOPS: readonly Loop[] = [
  { name: "alu", body: "add eax, ebx\n xor edx, eax" },
  { name: "cpuid", body: "xor eax, eax\n cpuid" },
  { name: "cpuid_exit", body: "xor eax, eax\n cpuid", cpuidExits: true },
  // TS only: no flush on any CPU.
  { name: "cr0_ts", body: "mov eax, cr0\n xor eax, 8\n mov cr0, eax" },
  // WP: a full TLB flush.
  { name: "cr0_wp", body: "mov eax, cr0\n xor eax, 0x10000\n mov cr0, eax" },
  // PGE off and on (Linux's __flush_tlb_global): two full flushes.
  { name: "cr4_pge", body: "mov eax, cr4\n xor eax, 0x80\n mov cr4, eax\n xor eax, 0x80\n mov cr4, eax" },
  { name: "invlpg", body: "invlpg [0x400000]\n mov eax, [0x400000]" },
  // Same CR3 again: flushes the non-global entries.
  { name: "cr3", body: "mov eax, cr3\n mov cr3, eax\n mov eax, [0x400000]" },
];

function setup(loop: Loop, iterations: number): Machine {
  const m = new Machine(16 << 20);
  m.flat(0);
  // Identity map the first 8 MiB; pages from WARM_GLOBAL on are global.
  for (let i = 0; i < 2048; i++) m.w32(0x101000 + i * 4, (i << 12) | 3 | (i >= WARM_GLOBAL ? 0x100 : 0));
  m.w32(PD, 0x101003);
  m.w32(PD + 4, 0x102003);
  m.code32(`
      mov ecx, 0
    .warm:
      mov eax, ecx
      shl eax, 12
      mov eax, [eax]
      inc ecx
      cmp ecx, ${WARM_PAGES}
      jb .warm
      mov ebp, ${iterations}
      xor eax, eax
      mov ebx, 3
    .loop:
      ${loop.body}
      dec ebp
      jnz .loop
      hlt`);
  m.update((s) => {
    s.cr3 = PD;
    s.cr4 = 0x90; // PSE, PGE
    s.cr0 = (s.cr0 | 0x80000000) >>> 0;
    s.cpuidExits = loop.cpuidExits === true;
  });
  return m;
}

/** Seconds for `iterations` of the loop (the warm-up part of the guest is not counted: run apart). */
function time(loop: Loop, iterations: number): number {
  const base = run(loop, 0);
  const full = run(loop, iterations);
  return Math.max(full - base, 1e-9);
}

function run(loop: Loop, iterations: number): number {
  const m = setup(loop, Math.max(1, iterations));
  // A VMM that answers CPUID with fixed values and counts (the harness's log would allocate).
  let cpuids = 0;
  const handler: VcpuExitHandler = {
    exit: (reason, st) => {
      if (reason !== ExitReason.CPUID) return false;
      cpuids++;
      st.qual.data = 1;
      st.qual.ebx = st.qual.ecx = st.qual.edx = 0;
      return true;
    },
  };
  const t0 = process.hrtime.bigint();
  let reason: ExitReason;
  do reason = m.engine.run(50_000_000, handler);
  while (reason === ExitReason.BUDGET);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (reason !== ExitReason.HLT) throw new Error(`${loop.name} ended with ${ExitReason[reason]}`);
  if (loop.cpuidExits && cpuids !== Math.max(1, iterations)) throw new Error(`${loop.name}: ${cpuids} CPUID exits`);
  return seconds;
}

function option(name: string): string | undefined {
  const k = process.argv.indexOf(name);
  return k >= 0 ? process.argv[k + 1] : undefined;
}

export function main(): void {
  const iterations = Number(option("--iterations") ?? 8_000_000);
  const only = option("--only")?.split(",");
  const loops = LOOPS.filter((l) => l.name === "alu" || only === undefined || only.includes(l.name));
  const nsPer = new Map<string, number>();
  for (const l of loops) {
    const n = l.name === "alu" ? iterations : Math.max(1, Math.floor(iterations / 4));
    time(l, Math.min(n, 10_000)); // warm up the JIT on this loop
    let best = Infinity;
    for (let k = 0; k < 3; k++) best = Math.min(best, time(l, n));
    nsPer.set(l.name, (best / n) * 1e9);
  }
  const alu = nsPer.get("alu")!;
  console.log(`${"loop".padEnd(12)} ${"ns/iter".padStart(10)} ${"x alu".padStart(8)}`);
  for (const [name, ns] of nsPer) console.log(`${name.padEnd(12)} ${ns.toFixed(1).padStart(10)} ${(ns / alu).toFixed(1).padStart(8)}`);
  const parts = [`sys_alu_ns=${alu.toFixed(2)}`];
  for (const [name, ns] of nsPer) if (name !== "alu") parts.push(`sys_${name}=${(ns / alu).toFixed(1)}`);
  console.log(parts.join(" "));
}

main();
