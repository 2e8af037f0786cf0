// The vCPU state as a value: a random program runs N instructions, its state is saved as a record,
// encoded with msgpack and loaded into a fresh engine over a copy of RAM, which runs M more. It
// must end exactly where an uninterrupted run of N + M ends: registers, every state group, x87,
// guest memory and the exits seen on the way.

import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExitReason, Mtd } from "../../kernel/vcpu.js";
import { RECORD_MTD, vcpuFromRecord, vcpuRecord } from "../vcpu-record.js";
import { VcpuState } from "../../kernel/vcpu.js";
import { CODE, Machine } from "./testing.js";
import { DATA, PD, RAM, image, program } from "./random-programs.js";
import { prng } from "../../test/support/prng.js";
import { X87 } from "./fpu/x87.js";
import { scaled } from "../../test/support/scale.js";

/** A machine with the x87 plugged in, as createX86Engine builds them. */
function withFpu(m: Machine): Machine {
  m.engine.cpu.fpu = new X87();
  return m;
}

const ENDS = new Set([ExitReason.HLT, ExitReason.EXCEPTION, ExitReason.TRIPLE_FAULT, ExitReason.INVALID_STATE]);

/** Run up to `n` instructions (across budget ends), or until the program ends. */
function runFor(m: Machine, n: number): ExitReason {
  let reason = ExitReason.BUDGET;
  while (n > 0) {
    const before = m.engine.retired;
    reason = m.run(n);
    n -= Math.max(1, m.engine.retired - before);
    if (ENDS.has(reason)) break;
  }
  return reason;
}

function record(m: Machine): unknown {
  const st = new VcpuState();
  m.engine.saveState(RECORD_MTD, st);
  return vcpuRecord(st);
}

/** A machine at the start of a random program: paging on, x87 initialised with values on its stack. */
function machine(ram: Uint8Array, eip: number, seed: number): Machine {
  const m = withFpu(new Machine(RAM));
  m.ram.set(ram);
  m.flat(0, eip, 0x8000);
  m.update((s) => {
    s.eax = seed; s.ebx = seed ^ 0x5a5a5a5a; s.edx = seed >>> 7; s.esi = seed * 3; s.edi = ~seed;
    s.ebp = DATA + 0x800;
    s.eflags = 0x202 | (seed & 0x8d5);
    s.cr3 = PD;
    s.cr0 = (s.cr0 | 0x80010000) >>> 0;
    s.exceptionBitmap = 0xffffffff;
    s.tsc = BigInt(seed) * 1000n;
    s.apicBase = 0xfee00800;
    s.sysenterEip = seed;
  });
  return m;
}

describe("vCPU state as a value", () => {
  it("round-trips every group through a record and msgpack, and refuses malformed records by field", () => {
    const m = machine(new Uint8Array(RAM), CODE, 7);
    const st = new VcpuState();
    m.engine.saveState(RECORD_MTD, st);
    const back = vcpuFromRecord(decode(encode(vcpuRecord(st))), "vcpus[0]");
    expect(vcpuRecord(back)).toEqual(vcpuRecord(st));
    const bad = (change: (r: Record<string, unknown>) => void) => {
      const r = structuredClone(vcpuRecord(st)) as Record<string, unknown>;
      change(r);
      return () => vcpuFromRecord(r, "vcpus[0]");
    };
    expect(bad((r) => (r.eip = -1))).toThrow(/vcpus\[0\]\.eip/);
    expect(bad((r) => (r.cs = { ...(r.cs as object), selector: "x" }))).toThrow(/vcpus\[0\]\.cs\.selector/);
    expect(bad((r) => delete r.fpu)).toThrow(/vcpus\[0\]\.fpu: missing/);
    expect(bad((r) => (r.fpu = new Uint8Array(3)))).toThrow(/vcpus\[0\]\.fpu/);
    expect(bad((r) => (r.activity = 9))).toThrow(/activity/);
    expect(bad((r) => (r.tscHi = 2 ** 40))).toThrow(/tscHi/);
    expect(() => vcpuFromRecord([1, 2], "vcpus[1]")).toThrow(/vcpus\[1\]: not a record/);
  });

  it("keeps the paravirtual exit controls, and reads records from before them as without", () => {
    const m = machine(new Uint8Array(RAM), CODE, 7);
    m.update((s) => Object.assign(s, { hypervisorLeaves: true, msrExits: true, vmcallExits: true }));
    const st = new VcpuState();
    m.engine.saveState(RECORD_MTD, st);
    const record = vcpuRecord(st);
    const back = vcpuFromRecord(decode(encode(record)), "vcpus[0]");
    expect([back.hypervisorLeaves, back.msrExits, back.vmcallExits]).toEqual([true, true, true]);
    const old = structuredClone(record) as Record<string, unknown>;
    for (const k of ["hypervisorLeaves", "msrExits", "vmcallExits"]) delete old[k];
    const fromOld = vcpuFromRecord(old, "vcpus[0]");
    expect([fromOld.hypervisorLeaves, fromOld.msrExits, fromOld.vmcallExits]).toEqual([false, false, false]);
    expect(() => vcpuFromRecord({ ...record, msrExits: 1 }, "vcpus[0]")).toThrow(/vcpus\[0\]\.msrExits/);
  });

  it("save after N instructions, load into a fresh engine, run M: the same as N + M in one go", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 1200 }), fc.integer({ min: 1, max: 3000 }), (seed, n, m) => {
        const rnd = prng(seed);
        const { ram, starts } = image([program(rnd, 0)], rnd);
        const whole = machine(ram, starts[0], seed);
        const first = machine(ram, starts[0], seed);
        const reasonWhole = runFor(whole, n + m);

        const reasonFirst = runFor(first, n);
        const st = new VcpuState();
        first.engine.saveState(RECORD_MTD, st);
        const bytes = encode({ vcpu: vcpuRecord(st), ram: first.ram.slice(0, RAM) });
        const saved = decode(bytes) as { vcpu: unknown; ram: Uint8Array };
        const resumed = withFpu(new Machine(RAM));
        resumed.ram.set(saved.ram);
        resumed.engine.loadState(RECORD_MTD, vcpuFromRecord(saved.vcpu, "vcpu"));
        const reasonResumed = ENDS.has(reasonFirst) ? reasonFirst : runFor(resumed, m);

        expect(first.engine.cpu.lastError).toBe(null);
        expect(reasonResumed).toBe(reasonWhole);
        expect(record(resumed)).toEqual(record(ENDS.has(reasonFirst) ? first : whole));
        expect(Buffer.compare(resumed.ram.subarray(0, RAM), (ENDS.has(reasonFirst) ? first : whole).ram.subarray(0, RAM))).toBe(0);
        if (!ENDS.has(reasonFirst)) expect(resumed.exits).toEqual(whole.exits.slice(first.exits.length));
      }),
      { numRuns: scaled(100), seed: 1207 },
    );
  });

  it("keeps x87 state, the interrupt shadow and a pending injection across the save", () => {
    const m = withFpu(new Machine(RAM));
    m.flat(0);
    m.code32("fldpi\nfld1\nfaddp\nfldln2\nsti\nnop\nhlt");
    m.update((s) => (s.eflags = 2)); // IF clear, so that STI opens a shadow
    runFor(m, 5); // through STI: the next instruction is in its shadow
    const st = new VcpuState();
    m.engine.saveState(RECORD_MTD, st);
    expect(st.interruptibility & 1).toBe(1);
    st.inj = { valid: true, vector: 0x30, type: 0, errorCode: -1, requestWindow: false };
    expect(st.fpu).not.toBeNull();
    const fresh = withFpu(new Machine(RAM));
    fresh.ram.set(m.ram);
    m.engine.loadState(Mtd.INJ, st);
    fresh.engine.loadState(RECORD_MTD, vcpuFromRecord(decode(encode(vcpuRecord(st))), "vcpu"));
    expect(record(fresh)).toEqual(record(m));
    const a = runFor(m, 10);
    const b = runFor(fresh, 10);
    expect(b).toBe(a);
    expect(record(fresh)).toEqual(record(m));
  });
});
