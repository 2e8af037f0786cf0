// Property test: random instruction streams in real and protected mode never throw a host
// exception, never hang (the budget ends every run) and never write outside guest memory.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GuestMemory, MemRights, PAGE_SIZE } from "../../kernel/guest-memory.js";
import { ExitReason, Mtd, VcpuState } from "../../kernel/vcpu.js";
import { X86Engine } from "./engine.js";
import { CODE, Machine, SEL_CODE0 } from "./testing.js";
import { scaled } from "../../test/support/scale.js";

const RAM = 2 << 20;
const GUARD = 0x10000;
const CASES = scaled(5000);

/** A machine whose store has a guard area after the mapped RAM (never mapped, must stay intact). */
class FuzzMachine {
  readonly memory = new GuestMemory();
  readonly store = new Uint8Array(RAM + GUARD);
  readonly engine: X86Engine;
  readonly state = new VcpuState();
  readonly handler = {
    exit: (_reason: ExitReason, st: VcpuState): boolean => {
      if (!st.qual.write) st.qual.data = 0x5a5a5a5a;
      return true;
    },
  };

  constructor() {
    for (let p = 0; p < RAM / PAGE_SIZE; p++) this.memory.map(p, this.store, p * PAGE_SIZE, MemRights.ALL);
    this.store.fill(0xa5, RAM);
    this.engine = new X86Engine(this.memory);
  }

  guardIntact(): boolean {
    return guardIntact(this.store);
  }
}

/** The guard area after RAM still holds its fill pattern. */
function guardIntact(store: Uint8Array): boolean {
  for (let k = RAM; k < RAM + GUARD; k++) if (store[k] !== 0xa5) return false;
  return true;
}

const VALID = new Set([ExitReason.HLT, ExitReason.BUDGET, ExitReason.EXCEPTION, ExitReason.TRIPLE_FAULT, ExitReason.INVALID_STATE]);

describe("random instruction streams", () => {
  it(`real mode: ${CASES} cases`, () => {
    const m = new FuzzMachine();
    const st = m.state;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 48 }), fc.integer({ min: 0, max: 0xffffffff }), (code, seed) => {
        m.store.fill(0, 0, RAM);
        m.store.set(code, 0x10000);
        st.eax = seed; st.ebx = seed >>> 3; st.ecx = seed & 0xff; st.edx = 0x3f8;
        st.esi = seed >>> 16; st.edi = seed & 0xffff; st.ebp = 0; st.esp = 0xfffe;
        for (const s of [st.ds, st.es, st.ss, st.fs, st.gs]) Object.assign(s, { selector: 0x2000, base: 0x20000, limit: 0xffff, attributes: 0x93 });
        Object.assign(st.cs, { selector: 0x1000, base: 0x10000, limit: 0xffff, attributes: 0x9b });
        st.eip = 0; st.eflags = 2 | (seed & 0x8d5); st.cr0 = 0x60000010; st.cr4 = 0;
        st.idtrBase = 0; st.idtrLimit = 0x3ff; st.gdtrBase = 0; st.gdtrLimit = 0xffff;
        st.activity = 0; st.inj.valid = false; st.exceptionBitmap = 0;
        m.engine.loadState(Mtd.ALL & ~Mtd.FPU, st);
        const reason = m.engine.run(400, m.handler);
        expect(m.engine.cpu.lastError).toBe(null);
        expect(VALID.has(reason)).toBe(true);
        expect(m.guardIntact()).toBe(true);
      }),
      { numRuns: CASES, seed: 42 },
    );
  });

  it(`protected mode (ring 0/3, paging on and off): ${CASES} cases`, () => {
    const m = new Machine(RAM, GUARD);
    m.ram.fill(0xa5, RAM);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 48 }),
        fc.constantFrom(0 as const, 3 as const),
        fc.boolean(),
        fc.integer({ min: 0, max: 0xffffffff }),
        (code, cpl, paging, seed) => {
          m.ram.fill(0, 0, RAM);
          m.flat(cpl);
          for (let v = 0; v < 32; v++) m.gate(v, SEL_CODE0, 0x20000, 0xe, 0);
          m.write(0x20000, [0xf4]);
          if (paging) {
            for (let i = 0; i < 512; i++) m.w32(0x101000 + i * 4, i === 0x30 ? 0 : (i << 12) | (i === 0x31 ? 5 : 7));
            m.w32(0x100000, 0x101007);
          }
          m.write(CODE, code);
          m.update((s) => {
            s.eax = seed; s.ebx = 0x11000; s.ecx = seed & 0xfff; s.edx = seed >>> 20; s.esi = 0x30000; s.edi = 0x31000;
            if (paging) {
              s.cr3 = 0x100000;
              s.cr0 = (s.cr0 | 0x80010000) >>> 0;
            }
          });
          const reason = m.run(400);
          expect(m.engine.cpu.lastError).toBe(null);
          expect(VALID.has(reason)).toBe(true);
          // One expect per case: vitest's expect costs microseconds, a plain scan nanoseconds.
          expect(guardIntact(m.ram)).toBe(true);
        },
      ),
      { numRuns: CASES, seed: 7 },
    );
  });
});
