// REP MOVS and STOS copy and fill whole page runs at once, and REPNE SCASB searches them: checked
// against a model that moves one element at a time (bytes, ESI/EDI/ECX, the flags a search leaves,
// the retired count, and where a page fault stops it), over random sizes, directions, counts,
// overlaps and page crossings.
import { describe, expect, it } from "vitest";
import { ExitReason } from "../../kernel/vcpu.js";
import { prng } from "../../test/support/prng.js";
import { Machine } from "./testing.js";

const RAM = 2 << 20, PD = 0x1f0000, PT = 0x1f1000;
/** Guest-physical (= linear) region the strings live in: 64 pages. */
const LOW = 0x100000, HIGH = 0x140000;

interface Case {
  op: "movs" | "stos" | "scas";
  size: 1 | 2 | 4;
  back: boolean;
  count: number;
  esi: number;
  edi: number;
  eax: number;
  /** A page of the region that is not present, or -1. */
  hole: number;
}

function pick(rnd: () => number): Case {
  const op = (["movs", "stos", "scas"] as const)[Math.floor(rnd() * 3)];
  // REPNE SCAS of bytes is the one with a bulk path (strlen, memchr).
  const size = op === "scas" ? 1 : ([1, 2, 4] as const)[Math.floor(rnd() * 3)];
  const count = rnd() < 0.1 ? Math.floor(rnd() * 3) : Math.floor(rnd() * 12000);
  const back = rnd() < 0.4;
  const span = count * size;
  const at = () => LOW + Math.floor(rnd() * (HIGH - LOW));
  // Keep the run inside the region: going down it ends below its start.
  const place = (x: number) => (back ? Math.max(x, LOW + span) : Math.min(x, HIGH - span - size));
  const esi = place(at());
  // Near the source often, so that runs overlap in both directions.
  const edi = place(rnd() < 0.4 ? esi + Math.floor((rnd() - 0.5) * 64) : at());
  const uniform = rnd() < 0.3;
  const byte = Math.floor(rnd() * 256);
  const eax = uniform ? Math.imul(byte, 0x01010101) : Math.floor(rnd() * 2 ** 32) | 0;
  const hole = rnd() < 0.2 ? Math.floor(rnd() * ((HIGH - LOW) >>> 12)) : -1;
  return { op, size, back, count, esi, edi, eax, hole };
}

/** One element at a time, as the manual says; a page fault leaves the registers at that element. */
function model(c: Case, ram: Uint8Array): { esi: number; edi: number; ecx: number; faulted: boolean; zf?: boolean; cf?: boolean } {
  let { esi, edi } = c;
  let n = c.count;
  const step = c.back ? -c.size : c.size;
  const hole = c.hole < 0 ? -1 : (LOW >>> 12) + c.hole;
  const touches = (a: number) => hole >= 0 && (a >>> 12 === hole || (a + c.size - 1) >>> 12 === hole);
  let flags: { zf?: boolean; cf?: boolean } = {};
  while (n > 0) {
    if ((c.op === "movs" && touches(esi)) || touches(edi)) return { esi, edi, ecx: n, faulted: true };
    if (c.op === "scas") {
      const al = c.eax & 0xff, b = ram[edi];
      flags = { zf: al === b, cf: al < b };
      edi += step;
      n--;
      if (al === b) break;
      continue;
    }
    // The whole element is read before it is written (overlapping runs depend on it).
    const element = c.op === "movs" ? ram.slice(esi, esi + c.size) : Uint8Array.from({ length: c.size }, (_, b) => (c.eax >>> (8 * b)) & 0xff);
    ram.set(element, edi);
    if (c.op === "movs") esi += step;
    edi += step;
    n--;
  }
  return { esi, edi, ecx: n, faulted: false, ...flags };
}

function run(c: Case, fill: () => number): { m: Machine; expected: ReturnType<typeof model>; want: Uint8Array } {
  const m = new Machine(RAM);
  m.flat(0);
  for (let p = 0; p < RAM >>> 12; p++) m.w32(PT + p * 4, (p << 12) | 3);
  if (c.hole >= 0) m.w32(PT + ((LOW >>> 12) + c.hole) * 4, 0);
  m.w32(PD, PT | 3);
  for (let a = LOW; a < HIGH; a++) m.ram[a] = fill();
  const op = `${c.op === "scas" ? "repne" : "rep"} ${c.op}${c.size === 1 ? "b" : c.size === 2 ? "w" : "d"}`;
  m.code32(`${c.back ? "std" : "cld"}\n${op}\nhlt`);
  const want = m.ram.slice();
  const expected = model(c, want);
  m.update((s) => {
    s.cr3 = PD;
    s.cr0 = (s.cr0 | 0x80000000) >>> 0;
    s.exceptionBitmap = 1 << 14;
    s.esi = c.esi;
    s.edi = c.edi;
    s.ecx = c.count;
    s.eax = c.eax;
  });
  return { m, expected, want };
}

describe("REP MOVS/STOS and REPNE SCASB in bulk", () => {
  it("moves the same bytes and leaves the same registers and count as one element at a time", () => {
    const rnd = prng(20261207);
    for (let t = 0; t < 200; t++) {
      const c = pick(rnd);
      const { m, expected, want } = run(c, () => Math.floor(rnd() * 256));
      let reason: ExitReason;
      do reason = m.run(1_000_000);
      while (reason === ExitReason.BUDGET);
      const where = `case ${t}: ${JSON.stringify(c)}`;
      expect(reason, where).toBe(expected.faulted ? ExitReason.EXCEPTION : ExitReason.HLT);
      const r = m.regs;
      expect([r.esi >>> 0, r.edi >>> 0, r.ecx >>> 0], where).toEqual([expected.esi >>> 0, expected.edi >>> 0, expected.ecx]);
      // std/cld, the elements done (at least the REP instruction once), and HLT.
      const done = c.count - expected.ecx;
      if (!expected.faulted) expect(m.engine.retired, where).toBe(1 + Math.max(done, 1) + 1);
      if (expected.zf !== undefined) expect([(r.eflags & 0x40) !== 0, (r.eflags & 1) !== 0], `${where}: ZF, CF`).toEqual([expected.zf, expected.cf]);
      // Everything below the page tables (whose accessed and dirty bits the CPU sets).
      const same = Buffer.from(m.ram.buffer, m.ram.byteOffset, PD).equals(Buffer.from(want.buffer, want.byteOffset, PD));
      if (!same) expect(m.ram.subarray(0, PD).findIndex((b, a) => b !== want[a]), `${where}: first differing byte`).toBe(-1);
    }
  });
});
