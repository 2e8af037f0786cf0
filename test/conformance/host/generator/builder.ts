// Builds one random instruction sequence as nasm source, tracking what makes it well defined.
//
// Undefined flags. The SDM leaves some flags undefined after some instructions (MUL: SF ZF AF
// PF; DIV: all six; shifts by more than 1: OF; ...), and the host CPU (AMD or Intel) need not
// agree with the core there. The builder keeps `undef`, the set of arithmetic flags that are
// undefined at the current point, as the union over every path that reaches it:
//  - every instruction declares the flags it reads, writes with a defined value, and leaves
//    undefined (`FlagEffect`); after it, undef = (undef & ~(writes | undefined)) | undefined;
//  - before an instruction that reads a flag in `undef` (Jcc, SETcc, CMOVcc, ADC/SBB, RCL/RCR,
//    LAHF, PUSHF, INTO, CMC, DAA/DAS, AAA/AAS, SALC, LOOPE/LOOPNE) the builder first emits an
//    instruction that defines it (CMP/ADD/SUB/SAHF), so an undefined flag is never consumed and
//    can never reach a register or memory;
//  - a forward branch joins two paths: undef at the label is the union of both; a loop body
//    starts from "all arithmetic flags undefined" since it may run after itself;
//  - each instruction line records `undefBefore`. The final EFLAGS compare masks `undef` at the
//    end; when a case stops on an exception, it masks `undefBefore` of the instruction at the
//    faulting EIP (a fault leaves EFLAGS as before that instruction; a trap is reported at the
//    next instruction, whose `undefBefore` is the state after the trapping one).
// Undefined results are avoided instead of masked: BSF/BSR are followed by CMOVZ of another
// register into the destination, SHLD/SHRD never get a count above the operand size.
//
// Memory. Memory operands point into the data area: the address registers are loaded right
// before the instruction (base, index, scale, displacement picked so the access lands where
// wanted). Random writes stay out of the stack region; the stack depth is tracked statically so
// that ESP never leaves it and POP/POPA/POPF only pop what was pushed.
import { AF, ARITH, CF, DATA_BASE, DATA_SIZE, OF, PF, SF, STACK_HIGH, STACK_LOW, STACK_MAX_DEPTH, STACK_TOP, ZF } from "../layout.js";
import type { Prng } from "./prng.js";
import { imm, value } from "./values.js";

export interface FlagEffect {
  /** Flags the instruction reads. */
  reads?: number;
  /** Flags it sets to a defined value. */
  writes?: number;
  /** Flags it leaves undefined. */
  undefined?: number;
}

export interface SourceLine {
  /** nasm source text (without the line's label). */
  text: string;
  /** Instruction class for statistics ("adc", "shift", ...); "" for labels. */
  cls: string;
  /** Arithmetic flags undefined before this line. */
  undefBefore: number;
  /** A jump target label rather than an instruction. */
  isLabel: boolean;
}

export type Size = 8 | 16 | 32;

export const REGS: Record<Size, readonly string[]> = {
  8: ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"],
  16: ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"],
  32: ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"],
};
export const PTR: Record<Size | 64, string> = { 8: "byte", 16: "word", 32: "dword", 64: "qword" };
export const ESP = 4;
export const EBP = 5;
export const ECX = 1;

/** Options of a memory operand. */
export interface MemoryOptions {
  /** The instruction writes the operand: keep it out of the stack region. */
  write?: boolean;
  /** Bytes touched starting at the address (default: the operand size). */
  span?: number;
  /** Extra bytes on both sides that may also be touched (BT with a register offset). */
  margin?: number;
  /** May add a segment override (default true). */
  override?: boolean;
  /** GPR numbers the address must not use (they are loaded after the operand is built). */
  avoid?: readonly number[];
}

/** A pushed stack slot: POPF may only pop a slot that holds a safe EFLAGS image. */
interface StackSlot {
  bytes: number;
  /** DF of a pushed EFLAGS image that POPF may load back (null: not such an image). */
  flagsDf: number | null;
}

export class SequenceBuilder {
  readonly lines: SourceLine[] = [];
  /** Line counts after each top-level item (prefixes of the case end there). */
  readonly itemEnds: number[] = [];
  undef = 0;
  /** Current DF (the builder always knows it). */
  df: number;
  /** GPR numbers that must not be written here (ECX in a LOOP body, EBP inside ENTER..LEAVE). */
  readonly reserved = new Set<number>();
  /** Nesting of branch/loop/call bodies (0 = top level). */
  nesting = 0;
  /** Inside a LOOP or JECXZ body: rel8 reach limits the body to a few simple instructions. */
  shortBody = false;
  private readonly stack: StackSlot[] = [];
  /** Slots below this index belong to an enclosing body and may not be popped here. */
  private floor = 0;
  private labels = 0;

  constructor(readonly rng: Prng, readonly prefix: string, df: number) {
    this.df = df;
  }

  // ---- emission ----------------------------------------------------------------------------

  insn(text: string, cls: string, effect: FlagEffect = {}): void {
    const reads = (effect.reads ?? 0) & this.undef;
    if (reads) this.defineFlags(reads);
    this.lines.push({ text, cls, undefBefore: this.undef, isLabel: false });
    const writes = effect.writes ?? 0;
    const undefined = effect.undefined ?? 0;
    this.undef = (this.undef & ~(writes | undefined)) | undefined;
  }

  newLabel(): string {
    return `${this.prefix}L${this.labels++}`;
  }

  placeLabel(name: string): void {
    this.lines.push({ text: `${name}:`, cls: "", undefBefore: this.undef, isLabel: true });
  }

  /**
   * Emits an instruction that gives the flags in `need` a defined value. It writes no register:
   * it may sit between an address setup and the instruction that uses the address.
   */
  defineFlags(need: number): void {
    const r = this.rng;
    if (!(need & OF) && r.chance(0.25)) {
      this.insn("sahf", "sahf", { writes: SF | ZF | AF | PF | CF });
      return;
    }
    const size = r.pick([8, 16, 32] as const);
    this.insn(`cmp ${this.anyReg(size)}, ${imm(r, size)}`, "cmp", { writes: ARITH });
  }

  // ---- registers -----------------------------------------------------------------------------

  /** A register of `size` that may be written (never ESP, never a reserved one). */
  writableReg(size: Size): string {
    return REGS[size][this.writableIndex(size)];
  }

  writableIndex(size: Size, avoid: readonly number[] = []): number {
    const choices: number[] = [];
    for (let i = 0; i < 8; i++) if (this.mayWrite(size, i) && !avoid.includes(size === 8 ? i & 3 : i)) choices.push(i);
    return this.rng.pick(choices);
  }

  /** Whether register `index` of `size` may be written. */
  mayWrite(size: Size, index: number): boolean {
    const full = size === 8 ? index & 3 : index;
    if (size !== 8 && index === ESP) return false;
    return !this.reserved.has(full);
  }

  /** Any register of `size` as a source operand (ESP included). */
  anyReg(size: Size): string {
    return this.rng.pick(REGS[size]);
  }

  /** Loads a 32-bit register with a known value (a setup move, not under test). */
  setReg(index: number, val: number): void {
    this.insn(`mov ${REGS[32][index]}, ${hex(val)}`, "setup");
  }

  // ---- memory --------------------------------------------------------------------------------

  /** Picks a data-area offset where `span` bytes (plus margins) may be accessed. */
  dataOffset(span: number, write: boolean, margin = 0): number {
    const r = this.rng;
    const low = 0x40 + margin;
    const high = DATA_SIZE - 0x40 - margin - span;
    for (;;) {
      let off = r.chance(0.3) ? r.range(low, low + 0x200) & ~r.pick([0, 1, 3]) : r.range(low, high);
      // an access that straddles a 4 KiB page boundary (the core's TLB fast paths)
      if (r.chance(0.1)) off = Math.min(high, Math.max(low, (r.range(1, DATA_SIZE / 0x1000 - 1) << 12) - r.range(0, span)));
      if (!write) return off;
      if (off + span + margin <= STACK_LOW || off - margin >= STACK_HIGH) return off;
    }
  }

  /**
   * A memory operand of `size` into the data area, e.g. "dword [es:ebx+ecx*4+0x10]". Emits the
   * moves that load its address registers first.
   */
  mem(size: Size | 64 | 0, options: MemoryOptions = {}): string {
    const span = options.span ?? Math.max(size / 8, 1);
    const target = DATA_BASE + this.dataOffset(span, options.write ?? false, options.margin ?? 0);
    const address = this.addressExpression(target, options.avoid ?? []);
    const override = (options.override ?? true) && this.rng.chance(0.15) ? this.segmentOverride(options.write ?? false) : "";
    const ptr = size === 0 ? "" : `${PTR[size]} `;
    return `${ptr}[${override}${address}]`;
  }

  /** A readable stack-relative operand ([esp+d] inside the pushed area), or null when empty. */
  stackMem(size: Size): string | null {
    const bytes = size / 8;
    const room = this.depth + (STACK_HIGH - STACK_TOP) - bytes;
    if (room < 0) return null;
    const d = this.rng.range(0, Math.min(room, 0x7f));
    return `${PTR[size]} [esp+${d}]`;
  }

  /**
   * A writable stack-relative operand below ESP ([esp-d]): nothing live is stored there. POP
   * into it is the interesting case: the address is computed with the incremented ESP.
   */
  stackBelow(size: Size): string {
    const d = this.rng.range(size / 8, 0x40);
    return `${PTR[size]} [esp-${d}]`;
  }

  private segmentOverride(write: boolean): string {
    return this.rng.pick(write ? ["ds:", "es:", "ss:"] : ["ds:", "es:", "ss:", "cs:"]);
  }

  /** Address expression for `target`, loading base/index registers as needed. */
  private addressExpression(target: number, avoid: readonly number[]): string {
    const r = this.rng;
    const form = r.below(6);
    const disp = r.pick([0, 0, r.range(-128, 127), r.range(-0x800, 0x800)]);
    if (form === 0) return hex(target);
    const base = this.writableIndex(32, avoid);
    if (form <= 2) {
      this.setReg(base, target - disp);
      const force = disp !== 0 && r.chance(0.2) ? "dword " : "";
      return `${force}${REGS[32][base]}${signed(disp)}`;
    }
    const index = this.writableIndex(32, [...avoid, base]);
    const scale = r.pick([1, 2, 4, 8]);
    const k = r.range(-16, 16);
    if (form === 5) {
      // index*scale + disp32, no base register
      this.setReg(index, k);
      return `nosplit ${REGS[32][index]}*${scale}+${hex(target - k * scale)}`;
    }
    this.setReg(index, k);
    this.setReg(base, target - disp - k * scale);
    return `${REGS[32][base]}+${REGS[32][index]}*${scale}${signed(disp)}`;
  }

  // ---- stack ---------------------------------------------------------------------------------

  /** Bytes pushed below the initial ESP. */
  get depth(): number {
    let total = 0;
    for (const slot of this.stack) total += slot.bytes;
    return total;
  }

  canPush(bytes: number): boolean {
    return this.depth + bytes <= STACK_MAX_DEPTH;
  }

  /** Records a push; `flagsDf` marks a safe EFLAGS image (from PUSHF or a chosen immediate). */
  pushed(bytes: number, flagsDf: number | null = null): void {
    this.stack.push({ bytes, flagsDf });
  }

  /** Whether `bytes` can be popped; `flags` additionally wants a safe EFLAGS image on top. */
  canPop(bytes: number, flags = false): boolean {
    let above = 0;
    for (let i = this.floor; i < this.stack.length; i++) above += this.stack[i].bytes;
    if (above < bytes) return false;
    if (!flags) return true;
    const top = this.stack[this.stack.length - 1];
    return top.bytes === bytes && top.flagsDf !== null;
  }

  /** DF of the EFLAGS image on top of the stack (call only after canPop(bytes, true)). */
  topFlagsDf(): number {
    return this.stack[this.stack.length - 1].flagsDf ?? 0;
  }

  popped(bytes: number): void {
    let left = bytes;
    while (left > 0) {
      const top = this.stack.pop();
      if (!top) throw new Error("stack underflow in the generator");
      if (top.bytes > left) {
        this.stack.push({ bytes: top.bytes - left, flagsDf: null });
        return;
      }
      left -= top.bytes;
    }
  }

  /** Starts a body that must come back to the current depth; returns what endBody needs. */
  beginBody(): { mark: number; floor: number } {
    const saved = { mark: this.stack.length, floor: this.floor };
    this.floor = this.stack.length;
    return saved;
  }

  /**
   * Ends a body: pops what it left pushed with LEA ESP (no flags touched), or only forgets it
   * when the code itself resets ESP (LEAVE).
   */
  endBody(saved: { mark: number; floor: number }, emitLea = true): void {
    let bytes = 0;
    while (this.stack.length > saved.mark) bytes += this.stack.pop()!.bytes;
    if (bytes && emitLea) this.insn(`lea esp, [esp+${bytes}]`, "lea");
    this.floor = saved.floor;
  }

  /** Emits `count` random items into a body (set by the generator: the op tables live there). */
  emitItems: (count: number) => void = () => undefined;
}

export function hex(v: number): string {
  return "0x" + (v >>> 0).toString(16);
}

export function signed(d: number): string {
  if (d === 0) return "";
  return d < 0 ? `-${hex(-d)}` : `+${hex(d)}`;
}

export { imm, value };
export const INITIAL_ESP = DATA_BASE + STACK_TOP;
