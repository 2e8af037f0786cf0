// Sequence generator: determinism, undefined-flag bookkeeping, and that sequences stay safe.
import { describe, expect, it } from "vitest";
import { assembleBatch } from "../assemble.js";
import { CaseKind, Status } from "../case-format.js";
import { AF, ARITH, CF, DATA_BASE, OF, PF, SF, ZF } from "../layout.js";
import { hostSupport, runNative } from "../native.js";
import { toHostCase } from "../pipeline.js";
import { SequenceBuilder } from "./builder.js";
import { generateCase } from "./generate.js";
import { shiftEffect } from "./ops-bits.js";
import { CONDITIONS } from "./operands.js";
import { Prng } from "./prng.js";

describe("generator", () => {
  it("is deterministic per (seed, index) and varies across indices", () => {
    expect(generateCase(5, 17)).toEqual(generateCase(5, 17));
    expect(generateCase(5, 17).lines).not.toEqual(generateCase(5, 18).lines);
    expect(generateCase(6, 17).lines).not.toEqual(generateCase(5, 17).lines);
  });

  it("starts ESP in the stack region and loads only arithmetic flags and DF", () => {
    for (let i = 0; i < 50; i++) {
      const c = generateCase(1, i);
      expect(c.regs[4]).toBe(DATA_BASE + 0x8000);
      expect(c.eflags & ~(ARITH | 0x400)).toBe(0);
    }
  });

  it("defines a flag before an instruction reads it", () => {
    const b = new SequenceBuilder(new Prng(1), "t_", 0);
    b.insn("mul ebx", "mul", { writes: CF | OF, undefined: SF | ZF | AF | PF });
    expect(b.undef).toBe(SF | ZF | AF | PF);
    b.insn("jz t_L0", "jcc", { reads: ZF });
    expect(b.lines).toHaveLength(3); // mul, a flag-defining instruction, jz
    expect(b.lines[1].text).toMatch(/^(cmp|sahf)/);
    expect(b.lines[2].undefBefore & ZF).toBe(0);
    b.insn("jo t_L0", "jcc", { reads: OF });
    expect(b.lines).toHaveLength(4); // OF was defined by MUL: nothing inserted
  });

  it("never lets a line read a flag that is undefined before it", () => {
    const cc = new Map([...CONDITIONS.map((c) => [c.cc, c.reads] as const), ["z", ZF], ["nz", ZF]]);
    const fixed: Record<string, number> = {
      adc: CF, sbb: CF, rcl: CF, rcr: CF, cmc: CF, salc: CF, lahf: SF | ZF | AF | PF | CF, into: OF,
      daa: AF | CF, das: AF | CF, aaa: AF, aas: AF, loope: ZF, loopne: ZF,
    };
    const readsOf = (text: string): number => {
      const words = text.replace(/^(lock|a16|rep\w*) /, "").split(/[ ,]/);
      const m = /^(?:j|set|cmov)(\w+)$/.exec(words[0]);
      if (m && words[0] !== "jmp" && words[0] !== "jecxz" && words[0] !== "jcxz") return cc.get(m[1]) ?? -1;
      if (words[0].startsWith("pushf")) return ARITH;
      return fixed[words[0]] ?? 0;
    };
    let checked = 0;
    for (let i = 0; i < 400; i++) {
      for (const line of generateCase(2, i).lines) {
        if (line.isLabel) continue;
        const reads = readsOf(line.text);
        expect(reads, line.text).not.toBe(-1);
        if (reads) checked++;
        expect(line.undefBefore & reads, `${line.text} reads undefined flags`).toBe(0);
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  it("knows which flags shifts leave undefined (SDM)", () => {
    expect(shiftEffect("shl", 32, 0)).toEqual({ reads: 0 });
    expect(shiftEffect("shl", 32, 32)).toEqual({ reads: 0 }); // masked to 0
    expect(shiftEffect("shl", 32, 1)).toEqual({ writes: SF | ZF | PF | CF | OF, undefined: AF });
    expect(shiftEffect("shr", 32, 3)).toEqual({ writes: SF | ZF | PF | CF, undefined: AF | OF });
    expect(shiftEffect("shl", 8, 9)).toEqual({ writes: SF | ZF | PF, undefined: AF | OF | CF });
    expect(shiftEffect("sar", 8, 9)).toEqual({ writes: SF | ZF | PF | CF, undefined: AF | OF });
    expect(shiftEffect("rcl", 8, 9)).toEqual({ reads: CF, writes: CF, undefined: OF });
    expect(shiftEffect("rol", 16, 1)).toEqual({ reads: 0, writes: CF | OF, undefined: 0 });
  });

  it("masks MUL's undefined flags at the end of a MUL-only sequence", () => {
    const c = generateCase(3, 0, { only: ["mul"], minItems: 3, maxItems: 3, faultChance: 0 });
    expect(c.lines.at(-1)?.text).toMatch(/^i?mul/);
    expect(c.finalUndef).toBe(SF | ZF | AF | PF);
  });
});

describe("assembled sequences", () => {
  it("assemble with nasm into instruction offsets inside the code", async () => {
    const cases = Array.from({ length: 300 }, (_, i) => generateCase(4, i));
    const assembled = await assembleBatch(cases);
    expect(assembled).toHaveLength(300);
    for (const a of assembled) {
      expect(a.offsets.length).toBe(a.source.lines.filter((l) => !l.isLabel).length);
      for (let k = 1; k < a.offsets.length; k++) expect(a.offsets[k]).toBeGreaterThanOrEqual(a.offsets[k - 1]);
      expect(a.offsets.at(-1)! < a.code.length).toBe(true);
    }
  });

  const support = hostSupport();
  it.skipIf(!support.ok)("run natively without touching memory outside the data area", async () => {
    if (!support.ok) return;
    const assembled = await assembleBatch(Array.from({ length: 3000 }, (_, i) => generateCase(9, i)));
    const first = await runNative(support.harness, CaseKind.INTEGER, assembled.map(toHostCase));
    const expected = new Set([0, 3, 4, 5, 6, 13]); // #DE #BP #OF #BR #UD #GP(cs write): all deliberate
    let done = 0;
    for (const r of first) {
      if (r.status === Status.DONE) done++;
      else {
        expect(r.status).toBe(Status.EXCEPTION);
        expect(expected.has(r.vector), `case ${r.id}: vector ${r.vector}`).toBe(true);
      }
    }
    expect(done).toBeGreaterThan(2400);
    // string ops under branches, loops and DF changes: DF must stay known on every path
    const strings = await assembleBatch(Array.from({ length: 1500 }, (_, i) =>
      generateCase(10, i, { only: ["jcc", "loop", "jecxz", "string", "flags", "pushf", "call"], faultChance: 0 })));
    const stringResults = await runNative(support.harness, CaseKind.INTEGER, strings.map(toHostCase));
    expect(stringResults.filter((r) => r.status !== Status.DONE).map((r) => [r.id, r.vector])).toEqual([]);
    // the native side is deterministic: a second run gives the same results
    const second = await runNative(support.harness, CaseKind.INTEGER, assembled.map(toHostCase));
    expect(second).toEqual(first);
  });
});
