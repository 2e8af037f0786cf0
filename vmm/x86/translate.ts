// Block translator: compiles a hot decoded block (blocks.ts) into one JS function from generated
// source, with the operand decoding resolved at translation time (registers, immediates,
// displacements and effective-address forms become constants) and the common instructions
// inlined (inline-forms.ts); any other instruction calls its slot's handler.
//
// The function has the run loop's semantics (engine.ts): entered with c.eip at the block's first
// instruction, nothing needing attention and at least the whole block of budget left, it leaves
// c.eip, c.nextEip and c.retired as the interpreter would: after a taken branch, after an
// instruction that set c.attention, or at the block end. Everything that can fault or exit (a
// handler call, a memory access missing the inline TLB fast path, a branch beyond the CS limit)
// is preceded by a "sync" storing the instruction's EIP, next EIP and retired count, so faults,
// MMIO exits and code-page writes see exactly the interpreter's state. On top of that:
// - the general registers the block uses live in JS locals (eax..edi): loaded at entry, the
//   written ones stored back into c.r before that sync, a handler call or an exit, and loaded
//   again after a handler call or slow path (either may change them);
// - a branch back to the block's own start loops inside the function while nothing changed;
// - a conditional branch forward to a later instruction of the same block skips to it inside the
//   function (out of a labelled block), with the retired count adjusted;
// - all exits share one exit path at the end of the function, which may return the next
//   translated block through the exit's link (block-links.ts);
// - conditions right after an inline flag-writing instruction read its lazy record directly;
// - flag updates nobody can observe before the next full flag write are dropped.

import { mulFlags, shift } from "./alu.js";
import { type BlockFn, BlockLinks } from "./block-links.js";
import { slotHandler } from "./decoder.js";
import type { Cpu, Handler } from "./cpu.js";
import { Emitter, RELOAD, SPILL } from "./emitter.js";
import { condition, getCF, PARITY } from "./flags.js";
import { GENERATORS } from "./inline-forms.js";

export { type BlockFn, BlockLinks } from "./block-links.js";

/**
 * The slow paths of the inline memory accesses, out of line (smaller functions to compile):
 * sync (EIP, next EIP and retired count of the instruction), then access through the Cpu.
 */
const SLOW = {
  rd8(c: Cpu, seg: number, o: number, eip: number, next: number, retired: number): number {
    c.eip = eip; c.nextEip = next; c.retired = retired;
    return c.rd8(seg, o);
  },
  rd16(c: Cpu, seg: number, o: number, eip: number, next: number, retired: number): number {
    c.eip = eip; c.nextEip = next; c.retired = retired;
    return c.rd16(seg, o);
  },
  rd32(c: Cpu, seg: number, o: number, eip: number, next: number, retired: number): number {
    c.eip = eip; c.nextEip = next; c.retired = retired;
    return c.rd32(seg, o);
  },
  wr8(c: Cpu, seg: number, o: number, v: number, eip: number, next: number, retired: number): void {
    c.eip = eip; c.nextEip = next; c.retired = retired;
    c.wr8(seg, o, v);
  },
  wr16(c: Cpu, seg: number, o: number, v: number, eip: number, next: number, retired: number): void {
    c.eip = eip; c.nextEip = next; c.retired = retired;
    c.wr16(seg, o, v);
  },
  wr32(c: Cpu, seg: number, o: number, v: number, eip: number, next: number, retired: number): void {
    c.eip = eip; c.nextEip = next; c.retired = retired;
    c.wr32(seg, o, v);
  },
};

/** Helpers the generated code calls (bound to locals of the factory). */
const RUNTIME = { getCF, condition, shift, mulFlags, PARITY, ...SLOW };

interface FlagUse {
  read: boolean;
  write: boolean;
  /** May fault or leave the block: the flags are observable there. */
  observe: boolean;
}

/**
 * Drop the flag updates (marked by Emitter.elidable) of instructions whose flags nobody can see:
 * a later instruction of the block writes all six arithmetic flags before any instruction reads
 * them, faults, exits or leaves the block. Only instructions that cannot fault themselves
 * qualify (at a fault, the flags must be the interpreter's).
 */
function elideDeadFlags(source: string, uses: readonly FlagUse[]): string {
  const dead = new Set<number>();
  let live = true;
  for (let k = uses.length - 1; k >= 0; k--) {
    const u = uses[k];
    if (!live && !u.observe) dead.add(k);
    live = u.read || u.observe || (live && !u.write);
  }
  return source.replace(/\/\*F(\d+)<\*\/(.*?)\/\*>\*\//g, (_m, k: string, code: string) => (dead.has(Number(k)) ? "" : code));
}

/** Whether slot's handler has an inline form (for statistics and tests). */
export function hasInlineForm(c: Cpu, slot: number): boolean {
  return GENERATORS.has(slotHandler(c.dec, slot));
}

/**
 * Translate the `count` decoded instructions at slots first.. (a block in code mode `wide`)
 * into a function. The block's slots must stay as they are while the function is in use.
 */
export function translateBlock(
  c: Cpu, first: number, count: number, wide: boolean, code: readonly (BlockFn | null)[],
): BlockFn {
  const g = new Emitter(c, wide);
  g.count = count;
  const uses: FlagUse[] = [];
  const d = c.dec;
  for (let k = 0, o = 0; k < count; o += d.len[first + k], k++) g.offsets.push(o);
  let off = 0;
  let ended = false;
  for (let k = 0; k < count; k++) {
    const slot = first + k;
    // Forward branches inside the block land here: what is known of the flags differs by path.
    while (g.skips.length > 0 && g.skips[g.skips.length - 1] === k) {
      g.emit("}");
      g.skips.pop();
      g.known = null;
    }
    g.k = k;
    g.slot = slot;
    g.off = off;
    g.len = d.len[slot];
    g.touched = false;
    g.pending = null;
    g.flagRead = g.flagWrite = g.observe = false;
    const last = k === count - 1;
    const fn = slotHandler(d, slot);
    const gen = GENERATORS.get(fn);
    const mark = g.out.length;
    g.emit(`// ${k}: slot ${slot}`);
    if (gen !== undefined && gen.gen(g, slot)) {
      // A slow memory path may exit to the VMM, and a VMM that changes EFLAGS (loadState) sets
      // c.attention: the block leaves right after the instruction. Past that check the lazy
      // record is still the one known here (materializing it for the VMM keeps its operands).
      if (g.pending !== null) g.known = g.pending;
      else if (!gen.keepsFlags) g.known = null;
      uses.push({ read: g.flagRead, write: g.flagWrite, observe: g.observe || g.touched });
      if (gen.ends) {
        ended = true;
        break;
      }
      if (g.touched && !last) {
        g.emit(`if (at) { t = ${g.fall};`);
        g.link(k + 1);
        g.emit("}");
      }
    } else {
      g.out.length = mark;
      g.known = null;
      uses.push({ read: true, write: false, observe: true });
      let f = g.fns.indexOf(fn);
      if (f < 0) f = g.fns.push(fn) - 1;
      g.emit(`${SPILL} ${g.sync}`);
      g.emit(`f${f}(c, ${slot}); ${RELOAD}`);
      // A repeated string instruction retires one instruction per element (string.ts): its
      // handler adds the rest to c.retired, which moves this pass's base count along.
      g.emit(`c.eip = t = c.nextEip; r0 = c.retired - ${k}; c.retired = r0 + ${k + 1};`);
      if (last) {
        g.link(k + 1);
        ended = true;
        break;
      }
      g.emit(`if (t !== ${g.fall} || c.attention) {`);
      g.link(k + 1);
      g.emit("}");
    }
    off += d.len[slot];
  }
  if (!ended) {
    g.k = count - 1;
    g.leave(g.eipAt(off));
  }
  const regs = Emitter.registerCode(g.used, g.written);
  const body = elideDeadFlags(g.out.join("\n"), uses).replaceAll(SPILL, regs.spill).replaceAll(RELOAD, regs.reload);
  const fnDecls = g.fns.map((_, k) => `const f${k} = F[${k}];`).join("\n");
  const source = `"use strict";
const { getCF, condition, shift, mulFlags, PARITY, rd8, rd16, rd32, wr8, wr16, wr32 } = H;
const lf = LK.fn, lt = LK.eip, lb = LK.block, ln = LK.count, le = LK.codeEpoch;
${fnDecls}
const r = C.r, sb = C.base, sf = C.segFast, tf = C.tlbFlags, ts = C.tlbStore, to = C.tlbOff;
return function block(c, end) {
const vw = c.views, by = c.bytes;
const e0 = c.eip, ep = c.codeEpoch;
let r0 = c.retired;
${regs.entry}
let a = 0, b = 0, v = 0, w = 0, f = 0, o = 0, l = 0, p = 0, t = 0, sp = 0, x = null, n = 0, j = 0, at = false;
out: {
${g.loops ? "for (;;) {" : ""}
${body}
${g.loops ? "}" : ""}
}
c.eip = c.nextEip = t; c.retired = r0 + n;
${regs.spill}
if (le[j] === c.codeEpoch && lt[j] === t && !c.attention && r0 + n + ln[j] <= end) { x = lf[j]; if (code[lb[j]] === x) return x; }
c.linkFrom = LK; c.linkExit = j; return null;
};`;
  const links = new BlockLinks(g.exits);
  // The CPU's register, segment and TLB arrays (never replaced) are constants of the function's
  // closure: no property loads at entry. A translation belongs to its Cpu. The store lists stay
  // loads: as closure constants too, the boot's peak RSS grew by 10 MiB for no time gained.
  const factory = new Function("H", "F", "LK", "code", "ls", "C", source) as (
    h: typeof RUNTIME, f: Handler[], links: BlockLinks, code: readonly (BlockFn | null)[], ls: Int32Array, cpu: Cpu,
  ) => BlockFn;
  // The segment limits as int32: a limit of 0xffffffff read from the Uint32Array would be a heap
  // number in unoptimized code.
  const limits = new Int32Array(c.limit.buffer, c.limit.byteOffset, c.limit.length);
  return factory(RUNTIME, g.fns, links, code, limits, c);
}

/** The generated source of a block (for tests and debugging). */
export function blockSource(c: Cpu, first: number, count: number, wide: boolean): string {
  return translateBlock(c, first, count, wide, []).toString();
}
