// Outcome comparison, flag masks, and the emulator plumbing against a stub engine.
import { describe, expect, it } from "vitest";
import { ExitReason, Mtd, type VcpuEngine, VcpuState } from "../../../kernel/vcpu.js";
import type { GuestMemory } from "../../../kernel/guest-memory.js";
import type { AssembledCase } from "./assemble.js";
import { CaseKind, type CaseOutcome, type HostCase, Status } from "./case-format.js";
import { comparedFlags, compareOutcomes } from "./compare.js";
import { EmulatorSide } from "./emulator.js";
import { fillDataArea } from "./fill.js";
import { AF, CF, CODE_BASE, COMPARED_FLAGS, DATA_BASE, DATA_SIZE, OF, PF, SF, ZF } from "./layout.js";
import { hostSupport, runNative } from "./native.js";

function outcome(over: Partial<CaseOutcome> = {}): CaseOutcome {
  return { status: Status.DONE, vector: 0, errorCode: 0, eip: CODE_BASE + 4, faultAddress: 0, regs: [1, 2, 3, 4, 5, 6, 7, 8], eflags: 0x202 | CF, ext: new Uint8Array(0), ...over };
}

const data = new Uint8Array(DATA_SIZE);

describe("compareOutcomes", () => {
  it("finds nothing when both sides agree", () => {
    expect(compareOutcomes(outcome(), data, { ...outcome(), data: data.slice() }, data, COMPARED_FLAGS)).toEqual([]);
  });

  it("ignores masked flags and reports the others by name", () => {
    const emulator = { ...outcome({ eflags: 0x202 | ZF | OF }), data };
    const diffs = compareOutcomes(outcome(), data, emulator, data, COMPARED_FLAGS & ~(ZF | CF));
    expect(diffs.map((d) => d.what)).toEqual(["eflags"]);
    expect(diffs[0].note).toContain("OF");
    expect(compareOutcomes(outcome(), data, emulator, data, COMPARED_FLAGS & ~(ZF | CF | OF))).toEqual([]);
  });

  it("reports registers, vectors and memory bytes", () => {
    const native = outcome({ status: Status.EXCEPTION, vector: 0, eip: CODE_BASE + 2 });
    const changed = data.slice();
    changed[0x10] = 0x5a;
    const emulator = { ...outcome({ status: Status.EXCEPTION, vector: 6, eip: CODE_BASE + 2, regs: [1, 2, 3, 4, 5, 6, 7, 9] }), data: changed };
    const diffs = compareOutcomes(native, data, emulator, data, COMPARED_FLAGS);
    expect(diffs.map((d) => d.what)).toEqual(["vector", "edi", `[0x${(DATA_BASE + 0x10).toString(16)}]`]);
  });

  it("accepts a trap reported at the trapping instruction with its length", () => {
    const native = outcome({ status: Status.EXCEPTION, vector: 4, eip: CODE_BASE + 5 });
    const emulator = { ...outcome({ status: Status.EXCEPTION, vector: 4, eip: CODE_BASE + 4 }), instructionLength: 1, data };
    expect(compareOutcomes(native, data, emulator, data, COMPARED_FLAGS)).toEqual([]);
    const fault = { ...native, vector: 0 };
    expect(compareOutcomes(fault, data, { ...emulator, vector: 0 }, data, COMPARED_FLAGS).map((d) => d.what)).toEqual(["eip"]);
  });
});

describe("comparedFlags", () => {
  const line = (text: string, undefBefore: number) => ({ text, cls: text, undefBefore, isLabel: false });
  const c = {
    source: { index: 0, prefix: "c0_", regs: [], eflags: 0, fillSeed: 0, itemEnds: [2], finalUndef: SF | ZF | AF | PF, lines: [line("mul ebx", 0), line("div ecx", SF | ZF | AF | PF)] },
    code: new Uint8Array(4),
    offsets: [0, 2],
  } as AssembledCase;

  it("masks the flags undefined at the point where the case ended", () => {
    expect(comparedFlags(c, CODE_BASE + 4)).toBe(COMPARED_FLAGS & ~(SF | ZF | AF | PF));
    expect(comparedFlags(c, CODE_BASE + 0)).toBe(COMPARED_FLAGS);
    expect(comparedFlags(c, CODE_BASE + 2)).toBe(COMPARED_FLAGS & ~(SF | ZF | AF | PF));
    expect(comparedFlags(c, CODE_BASE + 1) & (CF | OF)).toBe(0); // not an instruction start
  });
});

/** A stub engine that knows NOP, INC EAX, UD2 and HLT: enough to check the plumbing. */
function stubEngine(memory: GuestMemory): VcpuEngine {
  const s = new VcpuState();
  const byte = (linear: number): number => memory.page(linear >>> 12)![linear & 0xfff];
  return {
    retired: 0,
    stall() {},
    loadState(mtd, from) {
      expect(from.cr0 & 1).toBe(1);
      expect(from.cs.limit >>> 0).toBe(0xffffffff);
      Object.assign(s, { ...from, mtd });
    },
    saveState(mtd, to) {
      Object.assign(to, { ...s, mtd });
    },
    run() {
      for (;;) {
        const op = byte(s.eip);
        if (op === 0x90) s.eip++;
        else if (op === 0x40) (s.eax = (s.eax + 1) >>> 0), s.eip++;
        else if (op === 0xf4) return (s.eip++, ExitReason.HLT);
        else {
          s.qual.address = 6;
          return ExitReason.EXCEPTION;
        }
      }
    },
  };
}

describe.skipIf(!hostSupport().ok)("emulator side against the native harness", () => {
  it("agrees with the host on NOP, INC EAX and UD2 through a stub engine", async () => {
    const support = hostSupport();
    if (!support.ok) return;
    const regs = [0xffffffff, 2, 3, 4, DATA_BASE + 0x8000, 6, 7, 8];
    const cases: HostCase[] = [[0x90, 0x40], [0x40, 0x0f, 0x0b], []].map((code, id) => ({
      id, kind: CaseKind.INTEGER, code: new Uint8Array(code), fillSeed: id, regs, eflags: CF | OF, ext: new Uint8Array(0),
    }));
    const native = await runNative(support.harness, CaseKind.INTEGER, cases);
    const side = new EmulatorSide({ createX86Engine: stubEngine });
    const fill = new Uint8Array(DATA_SIZE);
    const mask = COMPARED_FLAGS & ~(CF | OF | SF | ZF | AF | PF); // the stub computes no flags
    for (const [i, c] of cases.entries()) {
      fillDataArea(c.fillSeed, fill);
      const emulated = side.run(c, fill);
      expect(compareOutcomes(native[i], fill, emulated, fill, mask), `case ${i}`).toEqual([]);
    }
    expect(native.map((r) => r.status)).toEqual([Status.DONE, Status.EXCEPTION, Status.DONE]);
    expect(Mtd.ALL).toBeGreaterThan(0);
  });
});
