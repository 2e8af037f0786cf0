// The source emitter of the block translator: per-instruction state (position, sync, what is
// known of the flags), operand and memory access code with the inline TLB fast path, exits.

import type { Cpu, Handler } from "./cpu.js";
import { NO_REG } from "./decoder.js";

/** The JS locals that hold EAX..EDI inside a translated block. */
export const REG_NAMES = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"] as const;
/** Placeholders, replaced once the whole block is known (the sets of used and written registers). */
export const SPILL = "/*spill*/", RELOAD = "/*reload*/";

export const ARITH = 0x8d5;
/** -2^31: `(x ^ MIN) < (y ^ MIN)` compares x and y as unsigned 32-bit integers. */
export const MIN = -2147483648;
export const LZ_ADD = 1, LZ_SUB = 2, LZ_LOGIC = 3;

/** What the translator knows of the lazy flag record (c.lzOp and c.lzBit, fixed at translation). */
export interface KnownFlags {
  op: number;
  bit: number;
  /** The result is exactly a + b (ADD) or a - b (SUB): no carry in. */
  exact: boolean;
  /** CF is in c.flags (INC, DEC). */
  keepCF: boolean;
}

/** Emits the source of one block. */
export class Emitter {
  readonly out: string[] = [];
  /** Handler functions referenced by the source: f0, f1, ... */
  readonly fns: Handler[] = [];
  /** Current instruction: index in the block, slot, byte offset and length. */
  k = 0;
  slot = 0;
  off = 0;
  len = 0;
  /**
   * The current instruction touched memory. Only a slow path can set c.attention there: it copies
   * it to the local `at`, which the block checks after the instruction (no load of c.attention
   * after every fast access).
   */
  touched = false;
  /** Next EIP a sync stores instead of the fall-through (after CALL has set it). */
  nextOverride: string | null = null;
  /**
   * The lazy flag record as the last flag-writing instruction of this block left it, while it
   * is certain that nothing else changed it since (no handler call; a VMM that changed EFLAGS in
   * a slow memory path's exit has set c.attention, and the block left); conditions then read
   * c.lz* directly.
   */
  known: KnownFlags | null = null;
  /** Lazy record written by the current instruction. */
  pending: KnownFlags | null = null;
  /**
   * Flag use of the current instruction, for dead flag elimination: reads the arithmetic flags,
   * writes all six (before it could fault), or may fault or leave the block (flags observable).
   */
  flagRead = false;
  flagWrite = false;
  observe = false;
  /** Instructions in the block; whether a branch back to its start loops inside the function. */
  count = 0;
  loops = false;

  /**
   * Registers the block reads or writes (bit n: register n), kept in JS locals: loaded at entry,
   * stored back (the written ones) before anything that can see c.r (a handler call, a slow path,
   * a fault, an exit) and loaded again after a handler call or slow path (which may change them).
   */
  used = 0;
  written = 0;

  constructor(
    readonly c: Cpu,
    readonly wide: boolean,
  ) {}

  /** EIP of byte offset `o` of the block as an expression. */
  eipAt(o: number): string {
    if (o === 0) return "e0";
    return this.wide ? `((e0 + ${o}) | 0)` : `((e0 + ${o}) & 65535)`;
  }

  get fall(): string {
    return this.eipAt(this.off + this.len);
  }

  /** Statements making the state what the interpreter has while the current instruction runs. */
  get sync(): string {
    return `c.eip = ${this.eipAt(this.off)}; c.nextEip = ${this.nextOverride ?? this.fall}; c.retired = r0 + ${this.k};`;
  }

  /** The sync's values as arguments of the out-of-line slow paths (translate.ts SLOW). */
  get syncArgs(): string {
    return `${this.eipAt(this.off)}, ${this.nextOverride ?? this.fall}, r0 + ${this.k}`;
  }

  emit(s: string): void {
    this.out.push(s);
  }

  // ---- operands ----

  /** Effective address (offset) of the slot's memory operand. */
  ea(): string {
    const d = this.c.dec, i = this.slot;
    const base = d.base[i], index = d.index[i], scale = d.scale[i], disp = d.disp[i];
    const a32 = d.amask[i] === -1;
    const parts: string[] = [];
    if (base !== NO_REG) parts.push(this.get(2, base));
    if (index !== NO_REG) parts.push(scale ? `(${this.get(2, index)} << ${scale})` : this.get(2, index));
    if (parts.length === 0) return String(a32 ? disp | 0 : disp & 0xffff);
    if (disp !== 0) parts.push(String(disp));
    return a32 ? `((${parts.join(" + ")}) | 0)` : `((${parts.join(" + ")}) & 65535)`;
  }

  /** Register n of size index s (0: 8, 1: 16, 2: 32 bits) as an expression. */
  get(s: number, n: number): string {
    const q = s === 0 ? n & 3 : n;
    this.used |= 1 << q;
    const x = REG_NAMES[q];
    return s === 2 ? x : s === 1 ? `(${x} & 65535)` : n < 4 ? `(${x} & 255)` : `((${x} >> 8) & 255)`;
  }

  /** The statement setting register n of size index s to `val` (the other bits stay). */
  set(s: number, n: number, val: string): string {
    const q = s === 0 ? n & 3 : n;
    this.used |= 1 << q;
    this.written |= 1 << q;
    const x = REG_NAMES[q];
    if (s === 2) return `${x} = (${val}) | 0;`;
    if (s === 1) return `${x} = (${x} & -65536) | ((${val}) & 65535);`;
    return n < 4 ? `${x} = (${x} & -256) | ((${val}) & 255);` : `${x} = (${x} & -65281) | (((${val}) & 255) << 8);`;
  }

  /**
   * Statements storing the written registers into c.r (SPILL) and loading them back (RELOAD),
   * with the TLB access masks of the CPL (locals rm, wm; a handler may change the CPL).
   */
  static registerCode(used: number, written: number): { entry: string; spill: string; reload: string } {
    const list = (mask: number, f: (n: number) => string) => REG_NAMES.map((_, n) => n).filter((n) => mask & (1 << n)).map(f);
    const entry = [...list(used, (n) => `${REG_NAMES[n]} = r[${n}]`), "rm = c.rdMask", "wm = c.wrMask"];
    return {
      entry: `let ${entry.join(", ")};`,
      spill: list(written, (n) => `r[${n}] = ${REG_NAMES[n]};`).join(" "),
      reload: [...list(used, (n) => `${REG_NAMES[n]} = r[${n}];`), "rm = c.rdMask; wm = c.wrMask;"].join(" "),
    };
  }

  /**
   * `dst = [seg:off]` of size index s through the TLB fast path; `off` is assigned to `o` first
   * and `l`, `p` keep the linear address and page for a following `writeBack`. `dst` is a
   * temporary (the slow path reloads the register locals after it).
   */
  read(s: number, seg: number, off: string, dst: string): void {
    this.touched = true;
    const bits = 8 << s;
    const edge = s === 2 ? " && (l & 4095) <= 4092" : s === 1 ? " && (l & 4095) !== 4095" : "";
    const fast =
      s === 2 ? "vw[ts[p]].getInt32(to[p] + (l & 4095), true)"
      : s === 1 ? "vw[ts[p]].getUint16(to[p] + (l & 4095), true)"
      : "by[ts[p]][to[p] + (l & 4095)]";
    this.emit(`o = ${off}; l = (sb[${seg}] + o) | 0; p = l >>> 12;`);
    this.emit(`if (sf[${seg}] & 1 && tf[p] & rm${edge}) ${dst} = ${fast};`);
    this.emit(`else { ${SPILL} ${dst} = rd${bits}(c, ${seg}, o, ${this.syncArgs}); ${RELOAD} at = c.attention; }`);
  }

  /** `[seg:off] = val` of size index s. */
  write(s: number, seg: number, off: string, val: string): void {
    this.emit(`o = ${off}; l = (sb[${seg}] + o) | 0; p = l >>> 12;`);
    this.writeBack(s, seg, val);
  }

  /** Write `val` to the location of the preceding `read` (same seg, o, l, p). */
  writeBack(s: number, seg: number, val: string): void {
    this.touched = true;
    const bits = 8 << s;
    const edge = s === 2 ? " && (l & 4095) <= 4092" : s === 1 ? " && (l & 4095) !== 4095" : "";
    const fast =
      s === 2 ? `vw[ts[p]].setInt32(to[p] + (l & 4095), ${val}, true)`
      : s === 1 ? `vw[ts[p]].setUint16(to[p] + (l & 4095), ${val}, true)`
      : `by[ts[p]][to[p] + (l & 4095)] = ${val}`;
    this.emit(`if (sf[${seg}] & 2 && tf[p] & wm${edge}) ${fast};`);
    this.emit(`else { ${SPILL} wr${bits}(c, ${seg}, o, ${val}, ${this.syncArgs}); ${RELOAD} at = c.attention; }`);
  }

  /** `dst = E` (the r/m operand) of size index s; dst is a temporary. */
  readE(s: number, dst: string): void {
    const d = this.c.dec, i = this.slot;
    if (d.mod3[i]) this.emit(`${dst} = ${this.get(s, d.rm[i])};`);
    else this.read(s, d.seg[i], this.ea(), dst);
  }

  /** E = val. */
  writeE(s: number, val: string): void {
    const d = this.c.dec, i = this.slot;
    if (d.mod3[i]) this.emit(this.set(s, d.rm[i], val));
    else this.write(s, d.seg[i], this.ea(), val);
  }

  /** Read-modify-write of E: `a = E; <body computing v>; E = v` (no write when !store). */
  modifyE(s: number, body: string, store: boolean): void {
    const d = this.c.dec, i = this.slot;
    if (d.mod3[i]) {
      this.emit(`a = ${this.get(s, d.rm[i])}; ${body}`);
      if (store) this.emit(this.set(s, d.rm[i], "v"));
    } else {
      this.read(s, d.seg[i], this.ea(), "a");
      this.emit(body);
      if (store) this.writeBack(s, d.seg[i], "v");
    }
  }

  // ---- flags ----

  /** A flag update of the current instruction, removable when no one can see its result. */
  private elidable(code: string): string {
    return `/*F${this.k}<*/${code}/*>*/`;
  }

  lazy(op: number, a: string, b: string, r: string, bit: number, exact = false): string {
    this.pending = { op, bit, exact, keepCF: false };
    this.flagWrite = true;
    return this.elidable(`c.lzOp = ${op}; c.lzA = ${a}; c.lzB = ${b}; c.lzR = ${r}; c.lzBit = ${bit}; c.lzMask = ${ARITH};`);
  }

  lazyKeepCF(op: number, a: string, b: string, r: string, bit: number): string {
    this.pending = { op, bit, exact: true, keepCF: true };
    this.flagRead = true;
    return this.elidable(`c.flags = (c.flags & -2) | getCF(c); c.lzOp = ${op}; c.lzA = ${a}; c.lzB = ${b}; c.lzR = ${r}; ` +
      `c.lzBit = ${bit}; c.lzMask = ${ARITH & ~1};`);
  }

  /** Eager arithmetic flags from the expression `bits`. */
  setArith(bits: string): string {
    this.flagWrite = true;
    return this.elidable(`c.flags = (c.flags & ${~ARITH}) | ((${bits}) & ${ARITH}); c.lzMask = 0;`);
  }

  // ---- control transfer ----

  /** Leave the block continuing at `t` (already a local); checks the CS limit like jumpTo. */
  jump(target: string, o32: boolean): void {
    this.observe = true;
    this.emit(`t = ${o32 ? `(${target}) | 0` : `(${target}) & 65535`};`);
    // Unsigned comparison through the sign flip: int32 operands all the way (no heap numbers
    // before the function is optimized); ls is c.limit viewed as an Int32Array.
    this.emit(`if ((t ^ ${MIN}) > (ls[1] ^ ${MIN})) { ${SPILL} ${this.sync} c.fault(13, 0); }`);
  }

  /** Byte offsets of the block's instructions in the block. */
  readonly offsets: number[] = [];
  /**
   * Open labelled blocks of forward branches inside the block, innermost last: the index of the
   * instruction each one ends before (the branch target).
   */
  readonly skips: number[] = [];

  /**
   * The index of the instruction a relative branch with displacement `imm` of the current
   * instruction lands on when that is a later instruction of this block that a labelled block
   * can reach (nested in the open ones), or -1. The target then lies within the block, hence
   * within the CS limit the run loop checked for the whole block.
   */
  forwardTarget(imm: number, o32: boolean): number {
    if (imm < 0 || o32 !== this.wide) return -1;
    const k = this.offsets.indexOf(this.off + this.len + imm);
    if (k <= this.k) return -1;
    const inner = this.skips.length > 0 ? this.skips[this.skips.length - 1] : Infinity;
    return k <= inner ? k : -1;
  }

  /**
   * A conditional branch to instruction k of the block (forwardTarget): taken, it breaks out of
   * a labelled block that ends before k, with r0 moved so that r0 + k is the retired count there.
   * The branch reads the flags, so dead flag elimination (translate.ts), which sees the block as
   * a straight line, drops no flag update before it for a write that the skip jumps over.
   */
  skipTo(k: number, condition: string): void {
    const label = `s${this.k}`;
    this.emit(`${label}: {`);
    this.emit(`if (${condition}) { r0 += ${this.k + 1 - k}; break ${label}; }`);
    this.skips.push(k);
  }

  /** Exits emitted so far (each has a link). */
  exits = 0;

  /** Leave the block continuing at `next` after the current instruction. */
  leave(next: string): void {
    if (next !== "t") this.emit(`t = ${next};`);
    this.link(this.k + 1);
  }

  /**
   * Leave for target t (a local) with `retired` instructions of this pass retired, through the
   * function's one exit path (translate.ts), which follows exit j's link when it holds.
   * One shared exit keeps the functions small (less for V8 to compile) and gives its code type
   * feedback from every exit (no deoptimization when a rare exit is first taken).
   */
  link(retired: number): void {
    this.observe = true;
    const j = this.exits++;
    this.emit(`{ n = ${retired}; j = ${j}; break out; }`);
  }

  /**
   * Leave by a relative branch with displacement `imm`. A branch back to the block's first
   * instruction runs the block again at once when the run loop would find this same block:
   * nothing needs attention, no code may have changed (same code epoch, hence the same fetch
   * page and block) and the budget holds the whole block.
   */
  branch(imm: number, o32: boolean): void {
    this.jump(`${this.fall} + ${imm}`, o32);
    const to = this.off + this.len + imm;
    const self = this.wide ? o32 && (to | 0) === 0 : !o32 && (to & 0xffff) === 0;
    if (self) {
      const k1 = this.k + 1;
      this.emit(`if (!c.attention && c.codeEpoch === ep && r0 + ${k1 + this.count} <= end) { r0 += ${k1}; continue; }`);
      this.loops = true;
    }
    this.leave("t");
  }
}
