// The block translator against the interpreter: the same programs run on two machines, one
// translating hot blocks and one interpreting only, with the whole state, the lazy flag record,
// the retired count, the exits and guest memory compared after every run. Runs end at random
// budgets (mid-block), on faults in the middle of blocks, MMIO exits and self-modifying code.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExitReason, Mtd, VcpuState } from "../../kernel/vcpu.js";
import { CODE, Machine, nasm } from "./testing.js";
import { ALU, DATA, HOLE, MMIO, PD, RAM, image, instruction, program } from "./random-programs.js";
import { blockSource, hasInlineForm } from "./translate.js";
import { wasmCanTranslate } from "./wasm/translate.js";
import { prng } from "../../test/support/prng.js";

/** The raw CPU state both machines must agree on, including the lazy flag record. */
function snapshot(m: Machine): unknown {
  const c = m.engine.cpu;
  const raw = {
    // Bits of c.flags under lzMask are don't-care (the translator drops dead eager flag updates).
    eip: c.eip, nextEip: c.nextEip, retired: c.retired, flags: c.flags & ~c.lzMask, lzMask: c.lzMask,
    lz: c.lzMask !== 0 ? [c.lzOp, c.lzA, c.lzB, c.lzR, c.lzBit] : null,
    attention: c.attention, stop: c.stop, activity: c.activity, inhibitUntil: c.inhibitUntil,
  };
  const st = new VcpuState();
  m.engine.saveState(Mtd.ALL & ~Mtd.FPU, st);
  return { raw, st: JSON.parse(JSON.stringify(st, (_k, v) => (typeof v === "bigint" ? v.toString() : v))) };
}

function sameMemory(a: Machine, b: Machine): boolean {
  return Buffer.compare(a.ram, b.ram) === 0;
}

interface Pair {
  fast: LoggingMachine;
  slow: LoggingMachine;
}

/** A machine whose exit log also holds the whole state at each synchronous exit (as a VMM sees it). */
class LoggingMachine extends Machine {
  override readonly handler = {
    exit: (reason: ExitReason, st: VcpuState): boolean => {
      const q = st.qual;
      const seen = new VcpuState();
      this.engine.saveState(Mtd.ALL & ~(Mtd.FPU | Mtd.QUAL), seen);
      this.exits.push({ reason, address: q.address, size: q.size, write: q.write, data: q.data });
      this.states.push(JSON.stringify(seen, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
      if (!q.write) q.data = this.readValue;
      // Every access is a slow one (a device on a slow bus): the stall moves time and the TSC at
      // the next boundary, which translated code must reach exactly where the interpreter does.
      this.engine.stall(3);
      return true;
    },
  };
  readonly states: string[] = [];
}

/** Two machines; with `arena`, the translating one has its RAM in a WebAssembly arena (wasm tier). */
function makePair(arena: boolean): Pair {
  const fast = new LoggingMachine(RAM, 0, arena);
  const slow = new LoggingMachine(RAM);
  slow.engine.translate = false;
  return { fast, slow };
}

/** Start both machines at `eip` with the same registers; paging on, every exception exits. */
function start(p: Pair, ram: Uint8Array, eip: number, cpl: 0 | 3, rnd: () => number): void {
  const regs = Array.from({ length: 5 }, () => Math.floor(rnd() * 2 ** 32));
  const flags = Math.floor(rnd() * 0x1000) & 0x8d5;
  for (const m of [p.fast, p.slow]) {
    m.ram.set(ram);
    m.exits.length = 0;
    m.states.length = 0;
    m.flat(cpl, eip, 0x8000);
    m.update((s) => {
      [s.eax, s.ebx, s.edx, s.esi, s.edi] = regs;
      s.ebp = DATA + 0x800;
      s.eflags = 0x202 | flags;
      s.cr3 = PD;
      s.cr0 = (s.cr0 | 0x80010000) >>> 0;
      s.exceptionBitmap = 0xffffffff;
    });
  }
}

/** Start both machines in real mode at CS:IP = 1000:ip, data and stack in segment 2000 (EBP = 800h). */
function startReal(p: Pair, ram: Uint8Array, ip: number, rnd: () => number): void {
  const regs = Array.from({ length: 5 }, () => Math.floor(rnd() * 2 ** 32));
  const flags = Math.floor(rnd() * 0x1000) & 0x8d5;
  for (const m of [p.fast, p.slow]) {
    m.ram.set(ram);
    m.exits.length = 0;
    m.states.length = 0;
    m.flat(0);
    m.update((s) => {
      [s.eax, s.ebx, s.edx, s.esi, s.edi] = regs;
      s.ebp = 0x800;
      s.esp = 0x8000;
      s.eip = ip;
      s.eflags = 0x202 | flags;
      s.cr0 = 0x60000010;
      for (const seg of [s.ds, s.es, s.ss, s.fs, s.gs]) Object.assign(seg, { selector: 0x2000, base: 0x20000, limit: 0xffff, attributes: 0x93 });
      Object.assign(s.cs, { selector: 0x1000, base: 0x10000, limit: 0xffff, attributes: 0x9b });
      s.exceptionBitmap = 0xffffffff;
    });
  }
}

const ENDS = new Set([ExitReason.HLT, ExitReason.EXCEPTION, ExitReason.TRIPLE_FAULT, ExitReason.INVALID_STATE]);

/** Run both machines with the same budgets until the program ends; compare after every run. */
function runBoth(p: Pair, budget: () => number, maxRuns = 400): ExitReason {
  let reason = ExitReason.BUDGET;
  for (let k = 0; k < maxRuns; k++) {
    const n = budget();
    reason = p.fast.run(n);
    const other = p.slow.run(n);
    expect(p.fast.engine.cpu.lastError).toBe(null);
    expect(reason).toBe(other);
    expect(snapshot(p.fast)).toEqual(snapshot(p.slow));
    expect(p.fast.exits).toEqual(p.slow.exits);
    expect(p.fast.states).toEqual(p.slow.states);
    expect(sameMemory(p.fast, p.slow)).toBe(true);
    if (ENDS.has(reason)) break;
  }
  return reason;
}

function translatedBlocks(m: Machine): number {
  const code = (m.engine as unknown as { blocks: { code: unknown[] } }).blocks.code;
  return code.filter((f) => f !== null).length;
}

// Everything once for the JS tier and once with the wasm tier (blocks of 32-bit code go to wasm).
for (const wasm of [false, true]) describe(wasm ? "block translator, wasm tier" : "block translator", () => {
  const pair = () => makePair(wasm);

  it("inlines the common instruction forms and calls the handlers of the others", () => {
    const m = new Machine(RAM);
    m.flat(0);
    m.code32(`mov eax, [esp + 8]
      add eax, ecx
      lea edx, [eax + ecx*4 + 3]
      push edx
      pop esi
      imul esi, esi, 3
      shl esi, 2
      movzx edi, byte [esp + 1]
      cmp edi, 5
      cpuid
      setz bl
      jz .x
      .x: hlt`);
    // Decoded whole for its translation (the run is one instruction short of it: not run translated);
    // the interpreter alone decodes it only as far as it ran.
    m.engine.translateAfter = 1;
    expect(m.run(12)).toBe(ExitReason.BUDGET);
    const blocks = m.engine.blocks;
    const b = blocks.tag.indexOf(CODE);
    const first = b * 16;
    const inline = Array.from({ length: blocks.count[b] }, (_, k) => hasInlineForm(m.engine.cpu, first + k));
    expect(inline).toEqual([true, true, true, true, true, true, true, true, true, false, true, true, false]);
    const source = blockSource(m.engine.cpu, first, blocks.count[b], true);
    expect(source.match(/\bf\d\(c, \d+\)/g)).toHaveLength(2); // CPUID and HLT
  });

  it("agrees with the interpreter on random programs (budgets end mid-block)", () => {
    const rnd = prng(0x5eed);
    const p = pair();
    const reasons = new Map<ExitReason, number>();
    let translated = 0;
    for (let batch = 0; batch < 6; batch++) {
      const programs = Array.from({ length: 40 }, (_, k) => program(rnd, k));
      const { ram, starts } = image(programs, rnd);
      for (const eip of starts) {
        p.fast.engine.translateAfter = 1 + Math.floor(rnd() * 3);
        // Half of the blocks meet the wasm tier's own threshold first (the others: both at once).
        if (wasm && starts.indexOf(eip) % 2 === 0) [p.fast.engine.wasmAfter, p.fast.engine.translateAfter] = [p.fast.engine.translateAfter, 65535];
        // Blocks with handler calls too, for a third of the programs.
        p.fast.engine.wasmMixed = wasm && starts.indexOf(eip) % 3 === 0;
        start(p, ram, eip, rnd() < 0.2 ? 3 : 0, rnd);
        const big = rnd() < 0.3;
        const reason = runBoth(p, () => (big ? 100_000 : 1 + Math.floor(rnd() * 70)));
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
        translated += translatedBlocks(p.fast);
        if (process.env.TSTAT) console.log(ExitReason[reason], p.fast.engine.retired, translatedBlocks(p.fast), p.fast.regs.qual.address, (p.fast.regs.eip - eip).toString(16), p.fast.regs.qual.linear.toString(16));
      }
    }
    // The programs reach their end, fault or exit in all the ways the comparison is meant to cover.
    expect(reasons.get(ExitReason.HLT) ?? 0).toBeGreaterThan(20);
    expect(reasons.get(ExitReason.EXCEPTION) ?? 0).toBeGreaterThan(20);
    expect(translated).toBeGreaterThan(200);
    if (wasm) expect(p.fast.engine.blocks.stats.wasm).toBeGreaterThan(200);
  });

  it("agrees with the interpreter on random programs in real mode (16-bit code)", () => {
    const rnd = prng(0x1616);
    const p = pair();
    const reasons = new Map<ExitReason, number>();
    for (let batch = 0; batch < 2; batch++) {
      const programs = Array.from({ length: 40 }, (_, k) => program(rnd, k));
      const { ram, starts } = image(programs, rnd, 16);
      for (const ip of starts) {
        p.fast.engine.translateAfter = 1 + Math.floor(rnd() * 3);
        startReal(p, ram, ip, rnd);
        const reason = runBoth(p, () => 1 + Math.floor(rnd() * 70));
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
    }
    expect(reasons.get(ExitReason.HLT) ?? 0).toBeGreaterThan(20);
  });

  it("agrees on random block bytes (fast-check), with every block translated on its first run", () => {
    const p = pair();
    const { ram } = image([], prng(1));
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 0, max: 0xffffffff }), (code, seed) => {
        const rnd = prng(seed);
        // The bytes run as a loop body three times: the loop makes the block hot.
        const loop = [0xb9, 3, 0, 0, 0, ...code, 0x49, 0x0f, 0x85];
        const rel = -(loop.length + 4 - 5);
        const bytes = [...loop, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >> 24) & 0xff, 0xf4];
        ram.set(bytes, CODE);
        p.fast.engine.translateAfter = 1;
        start(p, ram, CODE, seed & 1 ? 3 : 0, rnd);
        runBoth(p, () => 1 + Math.floor(rnd() * 40), 60);
        ram.fill(0, CODE, CODE + bytes.length);
      }),
      { numRuns: 1500, seed: 11 },
    );
  });

  it("evaluates every condition code after every flag-writing form like the interpreter", () => {
    const rnd = prng(4);
    const edges = [0, 1, 2, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
      0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff];
    const value = () => (rnd() < 0.7 ? edges[Math.floor(rnd() * edges.length)] : Math.floor(rnd() * 2 ** 32));
    const regs = [["eax", "ebx"], ["ax", "bx"], ["al", "bl"]];
    const forms = [
      ...ALU.map((op) => (a: string, b: string) => `${op} ${a}, ${b}`),
      (a: string, b: string) => `test ${a}, ${b}`,
      (a: string) => `inc ${a}`,
      (a: string) => `dec ${a}`,
      (a: string) => `neg ${a}`,
    ];
    const sets = [["o", "no", "b", "ae", "z", "nz", "be", "a"], ["s", "ns", "p", "np", "l", "ge", "le", "g"]];
    const cases: string[] = [];
    for (const form of forms) {
      for (const [a, b] of regs) {
        for (let k = 0; k < 24; k++) {
          const x = value();
          const y = k < 6 ? x : k < 9 ? (x + 1) >>> 0 : value();
          const carry = rnd() < 0.5 ? "stc" : "clc";
          for (const set of sets) {
            // JMP ends the previous block: the operation and its SETcc users share one block.
            cases.push(`${carry}\njmp $ + 2\nmov eax, ${x}\nmov ebx, ${y}\n${form(a, b)}`);
            ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"].forEach((r, j) => cases.push(`set${set[j]} ${r}`));
            ["eax", "ebx", "ecx", "edx"].forEach((r, j) => cases.push(`mov [edi + ${j * 4}], ${r}`));
            // CMOVcc from a register, and from memory (the condition then follows a memory access).
            set.forEach((cc, j) => cases.push("mov edx, 0", `mov ecx, ${1 << j}`, `cmov${cc} edx, ${j & 1 ? "[edi]" : "ecx"}`, `mov [edi + ${16 + j * 4}], edx`));
            cases.push("add edi, 48");
          }
        }
      }
    }
    const p = pair();
    const { ram } = image([], rnd);
    ram.set(nasm(`bits 32\norg ${CODE}\nmov esi, 2\ntop:\nmov edi, 0x140000\n${cases.join("\n")}\ndec esi\njnz top\nhlt`), CODE);
    p.fast.engine.translateAfter = 1;
    start(p, ram, CODE, 0, rnd);
    expect(runBoth(p, () => 1_000_000)).toBe(ExitReason.HLT);
    expect(translatedBlocks(p.fast)).toBeGreaterThan(1000);
  });

  if (wasm) it("takes blocks with SETcc and CMOVcc to the wasm tier", () => {
    const m = new Machine(RAM, 0, true);
    m.flat(0);
    m.code32(`cmp eax, ecx
      setz bl
      setb byte [esp + 4]
      cmovl edx, ecx
      cmovnz edx, [esp]
      cmovbe dx, cx
      jmp $`);
    expect(m.run(1)).toBe(ExitReason.BUDGET);
    const blocks = m.engine.blocks;
    const b = blocks.tag.indexOf(CODE);
    expect(blocks.count[b]).toBe(7);
    expect(wasmCanTranslate(m.engine.cpu, b * 16, blocks.count[b], true, false)).toBe(true);
  });

  it("reads the TSC like the interpreter: RDTSC in hot code, with CR4.TSD above CPL 0 and with a TSC past 2^52", () => {
    const rnd = prng(0x75c);
    const p = pair();
    const { ram } = image([], rnd);
    ram.set(nasm(`bits 32\norg ${CODE}
      mov ecx, 300
      top: rdtsc
      mov [ebp], eax
      mov [ebp + 4], edx
      add eax, ebx
      dec ecx
      jnz top
      jmp done
      done: hlt`), CODE);
    for (const [cpl, tsd, tsc] of [[0, false, 0n], [3, false, 2n ** 40n + 12345n], [0, false, 2n ** 60n + 7n], [0, true, 0xfffffff0n], [3, true, 5n]] as const) {
      p.fast.engine.translateAfter = 2;
      start(p, ram, CODE, cpl, rnd);
      for (const m of [p.fast, p.slow]) m.update((s) => {
        s.tsc = tsc;
        if (tsd) s.cr4 |= 4;
      });
      const reason = runBoth(p, () => 1 + Math.floor(rnd() * 70));
      // HLT at CPL 3 raises #GP too, after the loop; RDTSC does at once under CR4.TSD.
      expect(reason).toBe(cpl === 3 ? ExitReason.EXCEPTION : ExitReason.HLT);
      if (cpl === 3 && tsd) expect(p.fast.regs.eip).toBe(CODE + 5);
      else expect(p.fast.engine.retired).toBeGreaterThan(300 * 6);
    }
    if (wasm) {
      // The loop (TOP to JMP; every instruction has a form) ran as a wasm block.
      const blocks = p.fast.engine.blocks;
      expect(blocks.codeIndex?.[blocks.tag.indexOf(CODE + 5)]).toBeGreaterThan(0);
    }
  });

  it("does not follow a block link after CS changes (same EIP, other code)", () => {
    const p = pair();
    const { ram } = image([], prng(5));
    const at = (addr: number, src: string) => ram.set(nasm(`bits 32\norg ${addr}\n${src}`), addr);
    at(CODE, "dec ecx\njz 0x10200\ninc eax\npush 0x10100\nret");
    at(CODE + 0x100, "add ebx, 1\njmp 0x10000");
    at(CODE + 0x1100, "add ebx, 100\njmp 0x10000 - 0x1000");
    // In the second pass CS has base 0x1000: RET to EIP 10100h lands in the other copy.
    at(CODE + 0x200, "test esi, esi\njnz fin\ninc esi\nmov ecx, 50\njmp 0x30:0xf000\nfin: hlt");
    for (const m of [p.fast, p.slow]) {
      m.ram.set(ram);
      m.flat(0);
      m.descriptor(6, 0x1000, 0xfffff, 0x9b);
      m.update((s) => {
        s.ecx = 50;
        s.gdtrLimit = 8 * 8 - 1;
        s.exceptionBitmap = 0xffffffff;
      });
    }
    p.fast.engine.translateAfter = 1;
    expect(runBoth(p, () => 1_000_000)).toBe(ExitReason.HLT);
    expect(p.fast.regs.ebx).toBe(49 + 49 * 100);
  });

  it("keeps the flags a faulting or exiting instruction must show, though a later one overwrites them", () => {
    const p = pair();
    const { ram } = image([], prng(6));
    // Each pass: flags from ADD, an ADD to MMIO, a SHL, a load (the last pass faults on the
    // hole), then SUB overwrites all flags.
    ram.set(nasm(`bits 32
      org ${CODE}
      mov ecx, 40
      mov esi, ${HOLE - 40 * 0x100}
    top:
      add eax, 0x7fffffff
      add dword [${MMIO}], 5    ; exits twice: before and after its own flag update
      shl edx, 1
      mov edi, [esi + 0xfe]
      sub edx, 3
      add esi, 0x100
      dec ecx
      jnz top
      hlt
    `), CODE);
    p.fast.engine.translateAfter = 1;
    start(p, ram, CODE, 0, prng(7));
    expect(runBoth(p, () => 1_000_000)).toBe(ExitReason.EXCEPTION);
    expect(p.fast.regs.qual.linear).toBe(HOLE);
    expect(p.fast.states.length).toBe(80);
  });

  it("sees registers and flags a VMM changes in an MMIO exit in the middle of a block", () => {
    const p = pair();
    const { ram } = image([], prng(8));
    // The MMIO accesses sit between a flag write and the branch that reads it, and between
    // writes of registers the block keeps in locals; the VMM flips ZF and changes EBX and ECX.
    ram.set(nasm(`bits 32
      org ${CODE}
      mov ecx, 30
    top:
      add ebx, 7
      sub edx, edx
      dec dword [${MMIO}]
      jz skip
      add esi, 3
    skip:
      mov eax, [${MMIO} + 4]
      add ebx, eax
      dec ecx
      jnz top
      hlt
    `), CODE);
    for (const m of [p.fast, p.slow]) {
      const exit = m.handler.exit;
      let n = 0;
      m.handler.exit = (reason, st) => {
        const r = exit(reason, st);
        if (reason === ExitReason.MMIO && ++n % 3 !== 0) {
          const s = m.regs;
          s.eflags ^= 0x40;
          s.ebx = (s.ebx + n) >>> 0;
          if (n === 31) s.ecx = 2;
          m.engine.loadState(Mtd.ALL & ~(Mtd.FPU | Mtd.QUAL | Mtd.EIP_LEN), s);
        }
        return r;
      };
    }
    p.fast.engine.translateAfter = 1;
    start(p, ram, CODE, 0, prng(9));
    expect(runBoth(p, () => 1_000_000)).toBe(ExitReason.HLT);
    expect(translatedBlocks(p.fast)).toBeGreaterThan(0);
    expect(p.fast.states.length).toBeGreaterThan(20);
  });

  it("steps one instruction at a time through translated code in an interrupt shadow and with TF", () => {
    const p = pair();
    const { ram } = image([], prng(8));
    ram.set(nasm(`bits 32
      org ${CODE}
      mov ecx, 30
    top:
      cli
      add eax, ecx
      sti
      add ebx, eax
      mov edx, ss
      mov ss, dx
      xor ebx, ecx
      dec ecx
      jnz top
      hlt
    `), CODE);
    p.fast.engine.translateAfter = 1;
    start(p, ram, CODE, 0, prng(9));
    // A few passes to translate the loop's blocks.
    expect(runBoth(p, () => 40, 1)).toBe(ExitReason.BUDGET);
    expect(translatedBlocks(p.fast)).toBeGreaterThan(0);
    for (const m of [p.fast, p.slow]) m.update((s) => void (s.inj.requestWindow = true));
    // Every STI opens the window one instruction later: the run ends there, and asks again.
    for (let k = 0; k < 30; k++) {
      expect(runBoth(p, () => 1_000_000, 1)).toBe(ExitReason.INTR_WINDOW);
      for (const m of [p.fast, p.slow]) m.update((s) => void (s.inj.requestWindow = true));
    }
    // Then single steps (TF, #DB exits) through the same, translated, loop.
    for (const m of [p.fast, p.slow]) m.update((s) => { s.eflags |= 0x100; s.inj.requestWindow = false; });
    for (let k = 0; k < 40; k++) {
      expect(runBoth(p, () => 1_000_000, 1)).toBe(ExitReason.EXCEPTION);
      expect(p.fast.regs.qual.address).toBe(1);
    }
  });

  it("skips forward inside a block on conditional branches, with the retired count of the path taken", () => {
    const p = pair();
    const { ram } = image([], prng(22));
    // One block from top to the HLT: two nested forward branches inside.
    const head = `bits 32\norg ${CODE}\nmov ecx, 300\nxor ebx, ebx\nxor edx, edx\n`;
    ram.set(nasm(`${head}
    top:
      test cl, 1
      jz .even
      add ebx, ecx
      test cl, 2
      jnz .odd2
      add ebx, 7
    .odd2:
      inc edx
    .even:
      sub edx, ebx
      dec ecx
      jnz top
      hlt
    `), CODE);
    for (const budget of [1_000_000, 1, 3, 7, 10, 19]) {
      p.fast.engine.translateAfter = 2;
      start(p, ram, CODE, 0, prng(budget));
      expect(runBoth(p, () => budget, 20000)).toBe(ExitReason.HLT);
      let ebx = 0, edx = 0;
      for (let ecx = 300; ecx > 0; ecx--) {
        if (ecx & 1) {
          ebx = (ebx + ecx) | 0;
          if (!(ecx & 2)) ebx = (ebx + 7) | 0;
          edx = (edx + 1) | 0;
        }
        edx = (edx - ebx) | 0;
      }
      expect(p.fast.regs.ebx).toBe(ebx >>> 0);
      expect(p.fast.regs.edx).toBe(edx >>> 0);
    }
    const blocks = p.fast.engine.blocks;
    const b = blocks.tag.indexOf(CODE + nasm(head).length);
    expect(blocks.count[b]).toBe(11); // the HLT after the JNZ too
    expect(blocks.code[b]).not.toBe(null);
    const source = blockSource(p.fast.engine.cpu, b * 16, blocks.count[b], true);
    expect(source.match(/\bs\d+: \{/g)).toHaveLength(2);
  });

  it("counts every element a REP string instruction in a translated block retires, as the interpreter does", () => {
    // The interpreter retires one instruction per element of a repeated string instruction (so
    // budgets and interrupts fall between elements). Translated code once reset the count to one
    // per instruction after the handler call: the Linux boot ran a different number of
    // instructions with each translation threshold, and its timestamps differed.
    const p = pair();
    const { ram } = image([], prng(23));
    ram.set(nasm(`bits 32\norg ${CODE}
      mov edx, 40
    top:
      lea esi, [ebp + 0x100]
      lea edi, [ebp + 0x300]
      mov ecx, edx
      cld
      rep movsb
      mov ecx, edx
      mov eax, edx
      rep stosd
      lea edi, [ebp + 0x100]
      mov ecx, 64
      xor eax, eax
      repne scasb
      add ebx, ecx
      dec edx
      jnz top
      hlt
    `), CODE);
    // The wasm tier's blocks that call handlers (wasmMixed, off by default) must count them too.
    for (const budget of [1_000_000, 1, 5, 17, 61, 4099]) {
      p.fast.engine.translateAfter = 2;
      p.fast.engine.wasmMixed = wasm;
      start(p, ram, CODE, 0, prng(budget));
      expect(runBoth(p, () => budget, 40000)).toBe(ExitReason.HLT);
      expect(translatedBlocks(p.fast)).toBeGreaterThan(0);
    }
  });

  it("sees self-modifying code in the running block and in later runs of a translated block", () => {
    const p = pair();
    const { ram } = image([], prng(2));
    // The loop body rewrites the immediate of an instruction later in the same block (a new
    // value every 8th iteration, so the block is translated in between), and the opcode byte of
    // an ADD in another block every 8th iteration.
    const code = nasm(`bits 32
      org ${CODE}
      mov ecx, 60
      xor ebx, ebx
      xor edx, edx
    top:
      mov eax, ecx
      shr eax, 3
      mov [patch + 1], al
      patch: mov esi, 0x11
      add ebx, esi
      test ecx, 7
      jnz skip
      xor byte [addop], 0x28   ; add <-> sub
    skip:
      addop: add edx, ecx
      dec ecx
      jnz top
      hlt
    `);
    ram.set(code, CODE);
    for (const budget of [1_000_000, 3, 7, 13]) {
      p.fast.engine.translateAfter = 2;
      start(p, ram, CODE, 0, prng(budget));
      expect(runBoth(p, () => budget, 5000)).toBe(ExitReason.HLT);
      // The interpreter's answer, computed here independently.
      let ebx = 0, edx = 0, sub = false;
      for (let ecx = 60; ecx > 0; ecx--) {
        ebx = (ebx + ((ecx >> 3) & 0xff)) | 0;
        if ((ecx & 7) === 0) sub = !sub;
        edx = sub ? (edx - ecx) | 0 : (edx + ecx) | 0;
      }
      expect(p.fast.regs.ebx).toBe(ebx >>> 0);
      expect(p.fast.regs.edx).toBe(edx >>> 0);
    }
    expect(translatedBlocks(p.fast)).toBeGreaterThan(0);
  });

  it("stops at every budget inside a translated block and at page faults in its middle", () => {
    const p = pair();
    const { ram } = image([], prng(3));
    const code = nasm(`bits 32
      org ${CODE}
      mov ecx, 50
      mov esi, ${DATA}
    top:
      mov eax, [esi]
      add eax, ecx
      mov [esi + 4], eax
      push eax
      pop edx
      shl edx, 3
      imul edx, edx, 7
      add esi, 0x100
      cmp esi, ${HOLE - 8}
      jb ok
      mov eax, [esi + 0x200]    ; page fault in the middle of the block
    ok:
      dec ecx
      jnz top
      hlt
    `);
    ram.set(code, CODE);
    for (let budget = 1; budget <= 24; budget++) {
      p.fast.engine.translateAfter = 1;
      start(p, ram, CODE, 0, prng(budget));
      const reason = runBoth(p, () => budget, 2000);
      expect(reason).toBe(ExitReason.EXCEPTION);
      expect(p.fast.regs.qual.linear).toBe(HOLE + 0x200);
    }
  });
});

describe("a block cache that grows", () => {
  /**
   * BLOCKS blocks (`bswap eax; inc eax; bswap eax; jmp next`, 64 bytes apart; BSWAP's handler
   * reads its decoded slot as it runs) run PASSES times, then HLT: more
   * blocks than a new cache has entries, so blocks push each other out and the cache grows
   * between runs (a translation kept from before would read slots of the old layout).
   */
  const BLOCKS = 6000, PASSES = 3, FIRST = 0x100000, STRIDE = 64;
  function chain(m: Machine): void {
    for (let i = 0; i < BLOCKS; i++) {
      const at = FIRST + i * STRIDE;
      m.write(at, [0x0f, 0xc8, 0x40, 0x0f, 0xc8]); // bswap eax; inc eax; bswap eax
      if (i < BLOCKS - 1) {
        m.write(at + 5, [0xe9]); // jmp rel32
        m.w32(at + 6, STRIDE - 10);
      } else {
        m.write(at + 5, [0x49, 0x0f, 0x85]); // dec ecx; jnz rel32 (to the first block)
        m.w32(at + 8, FIRST - (at + 12));
        m.write(at + 12, [0xf4]); // hlt
      }
    }
    m.flat(0, FIRST);
    m.update((s) => void (s.ecx = PASSES));
  }

  /** Run in slices of 997 instructions (the cache may grow between runs), at most 1,000: how it ended. */
  function runInSlices(m: Machine): ExitReason {
    let reason = ExitReason.BUDGET;
    for (let runs = 0; reason === ExitReason.BUDGET && runs < 1000; runs++) reason = m.run(997);
    return reason;
  }

  it("grows from MIN_BLOCK_BITS while it runs, and the interpreter, translated code and links agree", () => {
    const machines = [new Machine(), new Machine(), new Machine()];
    machines[1].engine.translate = false;
    machines[2].engine.translateAfter = 1; // every block translated and linked before the cache grows under it
    const results = machines.map((m) => {
      m.engine.blocks.growAfter = 1; // this program runs 72,000 instructions, far fewer than a real guest before it grows
      chain(m);
      const bitsAtStart = m.engine.blocks.bits;
      expect(runInSlices(m)).toBe(ExitReason.HLT);
      expect(m.engine.blocks.stats.grown).toBeGreaterThan(0);
      expect(m.engine.blocks.bits).toBeGreaterThan(bitsAtStart);
      const r = m.regs;
      return { eax: r.eax, ecx: r.ecx, eip: r.eip, retired: m.engine.retired };
    });
    const bswap = (x: number) => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
    let eax = 0;
    for (let k = 0; k < BLOCKS * PASSES; k++) eax = bswap((bswap(eax) + 1) >>> 0);
    expect(results[0]).toEqual({ eax, ecx: 0, eip: FIRST + (BLOCKS - 1) * STRIDE + 13, retired: BLOCKS * PASSES * 4 + PASSES + 1 });
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
    expect(machines[2].engine.blocks.stats.translated).toBeGreaterThan(BLOCKS);
  });

  it("stays as it is while the vCPU has run fewer than growAfter instructions per entry, however often blocks collide", () => {
    const m = new Machine();
    chain(m);
    const bitsAtStart = m.engine.blocks.bits;
    expect(runInSlices(m)).toBe(ExitReason.HLT);
    expect(m.engine.blocks.stats.built).toBeGreaterThan(2 * BLOCKS); // blocks pushed each other out
    expect(m.engine.blocks.stats.grown).toBe(0);
    expect(m.engine.blocks.bits).toBe(bitsAtStart);
  });
});

describe("a block cache with two entries per set", () => {
  /**
   * Blocks at `at[0..n)` that share one set of the cache, block i `bswap R; inc R; bswap R; jmp`
   * to the next, R eax, edx, ebx by turns (BSWAP's handler reads its register from its decoded
   * slot as it runs: code run on another block's slots changes another register), the last
   * `dec ecx; jnz` to the first, then HLT.
   */
  function ring(m: Machine, n: number, passes: number): number[] {
    const blocks = m.engine.blocks;
    const at = [0x100000];
    for (let x = at[0] + 0x100; at.length < n; x += 0x10) if (blocks.index(x) === blocks.index(at[0])) at.push(x);
    at.forEach((a, i) => {
      const r = [0, 2, 3][i % 3];
      m.write(a, [0x0f, 0xc8 + r, 0x40 + r, 0x0f, 0xc8 + r]);
      if (i < n - 1) {
        m.write(a + 5, [0xe9]);
        m.w32(a + 6, at[i + 1] - (a + 10));
      } else {
        m.write(a + 5, [0x49, 0x0f, 0x85]);
        m.w32(a + 8, at[0] - (a + 12));
        m.write(a + 12, [0xf4]);
      }
    });
    m.flat(0, at[0]);
    m.update((s) => void (s.ecx = passes));
    return at;
  }

  it("keeps two blocks that share a set: a loop over them decodes each once", () => {
    const m = new Machine();
    m.engine.translate = false;
    ring(m, 2, 500);
    expect(m.run()).toBe(ExitReason.HLT);
    expect(m.regs.ecx).toBe(0);
    // Direct-mapped, they pushed each other out at every pass (1,000 builds).
    expect(m.engine.blocks.stats.built).toBe(2);
  });

  it("runs three blocks of one set the same interpreted and translated (kept translations come back in their own entry)", () => {
    const results = [false, true].map((translate) => {
      const m = new Machine();
      m.engine.translate = translate;
      m.engine.translateAfter = 1;
      ring(m, 3, 200);
      expect(m.run()).toBe(ExitReason.HLT);
      if (translate) expect(m.engine.blocks.stats.reused).toBeGreaterThan(0);
      const r = m.regs;
      return { eax: r.eax, edx: r.edx, ebx: r.ebx, ecx: r.ecx, eip: r.eip, retired: m.engine.retired };
    });
    expect(results[0]).toMatchObject({ eax: 0xc8000000, edx: 0xc8000000, ebx: 0xc8000000, ecx: 0 }); // 200 passes in the top byte
    expect(results[1]).toEqual(results[0]);
  });
});

describe("blocks decoded as far as they run", () => {
  const code = `
      xor eax, eax
      cmp eax, 0
      je .skip
      inc eax
      inc eax
      inc eax
      inc eax
      .skip:
      cmp eax, 1
      jne .out
      inc ebx
      .out:
      hlt`;

  it("ends a block at a conditional branch until the interpreter falls through it", () => {
    const m = new Machine(RAM);
    m.engine.translate = false;
    m.flat(0);
    m.code32(code);
    expect(m.run()).toBe(ExitReason.HLT);
    const blocks = m.engine.blocks;
    const b = blocks.tag.indexOf(CODE);
    // XOR, CMP, JE (taken): the INCs after it were never decoded; past conditional branches at once it was 7.
    expect(blocks.count[b]).toBe(3);
    expect(blocks.open[b]).toBe(1);
    expect(blocks.stats.extended).toBe(0);
  });

  it("goes on decoding where the interpreter fell through, and agrees with translated code", () => {
    const results = [false, true].map((translate) => {
      const m = new Machine(RAM);
      m.engine.translate = translate;
      m.engine.translateAfter = 1;
      m.flat(0);
      m.code32(code.replace("cmp eax, 0", "cmp eax, 1"));
      expect(m.run()).toBe(ExitReason.HLT);
      const blocks = m.engine.blocks;
      const b = blocks.tag.indexOf(CODE);
      if (!translate) expect(blocks.stats.extended).toBeGreaterThan(0);
      // Interpreted: to the JNE (taken); translated: all of it, to the HLT.
      expect(blocks.count[b]).toBe(translate ? 11 : 9);
      return { eax: m.regs.eax, ebx: m.regs.ebx, eip: m.regs.eip, retired: m.engine.retired };
    });
    expect(results[0]).toMatchObject({ eax: 4, ebx: 0 });
    expect(results[1]).toEqual(results[0]);
  });
});
