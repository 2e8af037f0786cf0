// The x87 floating-point unit of a P6: register stack, control/status/tag words, last
// instruction and operand pointers, and exception delivery (#MF, or FERR# and the freeze).

import type { Fpu } from "./hook.js";
import { type F80, newF80, setIndefinite } from "./arith.js";
import { Cls, IE, INDEFINITE_M, newRoundContext, type RoundContext, SF } from "./float80.js";
import { CR0_NE, SEG_CS, VECTOR_MF, type X87Host } from "./host.js";
import { loadFxsave, storeFxsave } from "./images.js";
import { classifyParts, newParts, type Parts } from "./limbs.js";
import { type InstructionForm, MEMORY_FORMS, REGISTER_FORMS } from "./table.js";

import { SW_B, SW_C1, SW_CC, SW_ES, SW_TOP_MASK } from "./status.js";

export * from "./status.js";

/** Host byte order decides where the halves of a 64-bit significand sit in its 32-bit view. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Index offsets of the high and low half of register r's significand in `X87.sig32` (2r + HI). */
export const SIG_HI = LITTLE_ENDIAN ? 1 : 0, SIG_LO = 1 - SIG_HI;

export class X87 implements Fpu {
  /** Physical registers R0-R7: sign and exponent, significand. */
  readonly se = new Uint16Array(8);
  readonly m = new BigUint64Array(8);
  /** The same significands as int32 halves (see SIG_HI/SIG_LO): the fast paths use these. */
  readonly sig32 = new Int32Array(this.m.buffer);
  /** Bit r set: physical register r is empty. */
  empty = 0xff;
  cw = 0x37f;
  /** Status word without TOP (bits 13:11 are kept in `top`); B mirrors ES. */
  sw = 0;
  top = 0;
  /** Last non-control instruction: offset, CS selector, linear address; opcode (11 bits). */
  fip = 0;
  fcs = 0;
  fipLinear = 0;
  fop = 0;
  /** Last memory operand: offset, selector, linear address. */
  fdp = 0;
  fds = 0;
  fdpLinear = 0;
  /** The IGNNE# input (see Fpu.ignne); the core's VcpuState carries it. */
  ignne = false;

  /** Rounding context of the instruction being executed. */
  readonly ctx: RoundContext = newRoundContext();
  readonly t0: F80 = newF80();
  readonly t1: F80 = newF80();
  readonly rem = { q: 0, partial: false };
  /** Scratch of the number fast paths: a result and a memory operand. */
  readonly p0: Parts = newParts();
  readonly p1: Parts = newParts();
  /** Raw words of an arithmetic memory operand. */
  readonly raw = new Int32Array(2);
  /** Scratch for memory images (FSAVE is the largest: 108 bytes). */
  readonly image = new Uint8Array(512);
  /** Where save() builds the image, and the image it returned last. */
  private readonly saveScratch = new Uint8Array(512);
  private readonly saveWords = new Int32Array(this.saveScratch.buffer);
  private lastSaved: Uint8Array | null = null;
  private lastWords: Int32Array | null = null;
  /** Whether the state may differ from lastSaved's. */
  private changed = true;

  // ---- the Fpu interface ----

  execute(c: X87Host, i: number): void {
    this.changed = true;
    const d = c.dec;
    const op = d.opc[i] & 7;
    const modrm = d.modrm[i];
    const form: InstructionForm = d.mod3[i]
      ? REGISTER_FORMS[(op << 6) | (modrm & 0x3f)]
      : MEMORY_FORMS[(op << 3) | ((modrm >> 3) & 7)];
    if (form.waiting && this.sw & SW_ES) this.deliverPending(c);
    const ctx = this.ctx;
    ctx.cw = this.cw;
    ctx.exc = 0;
    ctx.up = 0;
    form.run(this, c, i);
    this.commitFlags();
    if (!form.control) {
      this.fop = ((op << 8) | modrm) & 0x7ff;
      this.fcs = c.sel[SEG_CS];
      this.fip = c.eip;
      this.fipLinear = (c.base[SEG_CS] + c.eip) | 0;
      if (!d.mod3[i]) {
        const seg = d.seg[i];
        const off = c.ea(i);
        this.fds = c.sel[seg];
        this.fdp = off;
        this.fdpLinear = (c.base[seg] + off) | 0;
      }
    }
  }

  wait(c: X87Host): void {
    if (this.sw & SW_ES) this.deliverPending(c);
  }

  /**
   * The state as an FXSAVE image. Unchanged state gives the image of the last call again (callers
   * never write to it): a vCPU that halts exits with all its state each time, and building a fresh
   * 512-byte image per HLT was a tenth of an event-channel round trip. The state changes only in
   * execute() and load() (code that writes the fields directly calls touch()).
   */
  save(): Uint8Array {
    if (!this.changed && this.lastSaved !== null) return this.lastSaved;
    this.changed = false;
    storeFxsave(this, this.saveScratch);
    const words = this.saveWords, last = this.lastWords;
    if (last !== null && sameWords(words, last)) return this.lastSaved!;
    this.lastWords = words.slice();
    return (this.lastSaved = new Uint8Array(this.lastWords.buffer));
  }

  load(image: Uint8Array): void {
    this.changed = true;
    loadFxsave(this, image);
  }

  /** The fields were written directly: the next save() builds its image anew. */
  touch(): void {
    this.changed = true;
  }

  /** FERR#: on the P6 it follows ES, asserted at the end of the instruction that flagged the exception. */
  get ferr(): boolean {
    return (this.sw & SW_ES) !== 0;
  }

  /** A waiting instruction with ES set: #MF; under CR0.NE = 0 a freeze, unless IGNNE# is asserted. */
  private deliverPending(c: X87Host): void {
    if (c.cr0 & CR0_NE) c.fault(VECTOR_MF);
    if (!this.ignne) c.freeze();
  }

  // ---- status ----

  /** The architectural status word (TOP and B included). */
  get status(): number {
    const sw = (this.sw & ~(SW_TOP_MASK | SW_B)) | (this.top << 11);
    return sw & SW_ES ? sw | SW_B : sw;
  }

  set status(v: number) {
    this.top = (v >> 11) & 7;
    this.sw = v & ~(SW_TOP_MASK | SW_B);
  }

  /** Recompute ES (and B) from the flags and masks (FLDCW, FLDENV, FRSTOR). */
  updateSummary(): void {
    if (this.sw & ~this.cw & 0x3f) this.sw |= SW_ES;
    else this.clearSummary();
  }

  /** Clear ES (and so FERR#). */
  clearSummary(): void {
    this.sw &= ~SW_ES;
  }

  /** Merge the exceptions of the instruction (ctx.exc) into the status word. */
  commitFlags(): void {
    const exc = this.ctx.exc;
    if (exc === 0) return;
    this.sw |= exc;
    if (exc & ~this.cw & 0x3f) this.sw |= SW_ES;
  }

  setC1(v: number): void {
    this.sw = v ? this.sw | SW_C1 : this.sw & ~SW_C1;
  }

  /** Set C3 C2 C1 C0 from `bits` (positions of the status word). */
  setCC(bits: number): void {
    this.sw = (this.sw & ~SW_CC) | (bits & SW_CC);
  }

  finit(): void {
    this.cw = 0x37f;
    this.sw = 0;
    this.top = 0;
    this.empty = 0xff;
    this.fip = this.fcs = this.fipLinear = this.fop = 0;
    this.fdp = this.fds = this.fdpLinear = 0;
    this.clearSummary();
  }

  // ---- the register stack ----

  phys(i: number): number {
    return (this.top + i) & 7;
  }

  isEmpty(i: number): boolean {
    return ((this.empty >> ((this.top + i) & 7)) & 1) !== 0;
  }

  /** Tag of a physical register as FSTENV reports it: 0 valid, 1 zero, 2 special, 3 empty. */
  tagOf(r: number): number {
    if ((this.empty >> r) & 1) return 3;
    const k = classifyParts(this.se[r], this.sig32[2 * r + SIG_HI], this.sig32[2 * r + SIG_LO]);
    return k === Cls.ZERO ? 1 : k === Cls.NORMAL ? 0 : 2;
  }

  get tagWord(): number {
    let t = 0;
    for (let r = 0; r < 8; r++) t |= this.tagOf(r) << (2 * r);
    return t;
  }

  /** Load a tag word: only empty / not empty is kept (the others are derived from contents). */
  set tagWord(t: number) {
    let e = 0;
    for (let r = 0; r < 8; r++) if (((t >> (2 * r)) & 3) === 3) e |= 1 << r;
    this.empty = e;
  }

  write(i: number, se: number, m: bigint): void {
    const r = (this.top + i) & 7;
    this.se[r] = se;
    this.m[r] = m;
    this.empty &= ~(1 << r);
  }

  /** High and low half of the significand of physical register r. */
  sigHi(r: number): number {
    return this.sig32[2 * r + SIG_HI];
  }

  sigLo(r: number): number {
    return this.sig32[2 * r + SIG_LO];
  }

  /** Write ST(i) from numbers. */
  writeParts(i: number, se: number, hi: number, lo: number): void {
    const r = (this.top + i) & 7;
    this.se[r] = se;
    this.sig32[2 * r + SIG_HI] = hi;
    this.sig32[2 * r + SIG_LO] = lo;
    this.empty &= ~(1 << r);
  }

  /** Copy physical register `from` into ST(i) (no BigInt on the way). */
  copyTo(i: number, from: number): void {
    this.writeParts(i, this.se[from], this.sig32[2 * from + SIG_HI], this.sig32[2 * from + SIG_LO]);
  }

  writeF(i: number, v: F80): void {
    this.write(i, v.se, v.m);
  }

  free(i: number): void {
    this.empty |= 1 << ((this.top + i) & 7);
  }

  pop(): void {
    this.empty |= 1 << this.top;
    this.top = (this.top + 1) & 7;
  }

  /** Make room for a push; false (after the stack-overflow response) when ST(7) is in use. */
  pushCheck(): boolean {
    if (this.isEmpty(7)) return true;
    this.stackOverflow();
    return false;
  }

  push(se: number, m: bigint): void {
    this.top = (this.top - 1) & 7;
    this.write(0, se, m);
  }

  pushParts(se: number, hi: number, lo: number): void {
    this.top = (this.top - 1) & 7;
    this.writeParts(0, se, hi, lo);
  }

  /** Push a copy of physical register `from`. */
  pushCopy(from: number): void {
    this.top = (this.top - 1) & 7;
    this.copyTo(0, from);
  }

  /** Stack overflow: IE|SF, C1 = 1; masked: push the indefinite. */
  stackOverflow(): void {
    this.ctx.exc |= IE | SF;
    this.setC1(1);
    if (this.cw & IE) this.push(0xffff, INDEFINITE_M);
  }

  /**
   * Stack underflow: IE|SF, C1 = 0. Masked: ST(dest) gets the indefinite (dest < 0: no register
   * destination). Returns true when masked (the instruction continues with its masked response).
   */
  stackUnderflow(dest: number): boolean {
    this.ctx.exc |= IE | SF;
    this.setC1(0);
    if (!(this.cw & IE)) return false;
    if (dest >= 0) {
      setIndefinite(this.t0);
      this.writeF(dest, this.t0);
    }
    return true;
  }

}

function sameWords(a: Int32Array, b: Int32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
