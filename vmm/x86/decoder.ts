// Instruction decoder: reads prefixes, opcode, ModRM/SIB, displacement and immediates as the
// opcode table (opcodes.ts) describes them, into one slot of a `Decoded` structure of arrays.

import { Imm, OPCODES, type OpcodeEntry } from "./opcodes.js";

/** Byte k (0 = first prefix) of the instruction being decoded; may throw a guest fault. */
export interface ByteSource {
  byteAt(k: number): number;
}

/** A handler executes the decoded instruction in slot `i` on a CPU of type `C`. */
export type SlotHandler<C> = (c: C, i: number) => void;

/** Prefix bits of `Decoded.pfx`. */
export const Pfx = { O32: 1, A32: 2, REP: 4, REPNE: 8, LOCK: 16, SEG: 32 } as const;

/** Register number meaning "none" in base/index; the CPU keeps a register 8 that is always zero. */
export const NO_REG = 8;

export const SEG_ES = 0, SEG_CS = 1, SEG_SS = 2, SEG_DS = 3, SEG_FS = 4, SEG_GS = 5;

/** Decoded instructions, structure of arrays; slot = index. */
export class Decoded<C> {
  readonly len: Uint8Array;
  readonly opc: Uint16Array;
  readonly pfx: Uint8Array;
  /** Segment of the memory operand (or string source), after overrides. */
  readonly seg: Uint8Array;
  readonly modrm: Uint8Array;
  /** 1 when the r/m operand is a register (`rm`). */
  readonly mod3: Uint8Array;
  readonly reg: Uint8Array;
  readonly rm: Uint8Array;
  readonly base: Uint8Array;
  readonly index: Uint8Array;
  readonly scale: Uint8Array;
  /** 0xFFFF for 16-bit addressing, -1 (all ones) for 32-bit. */
  readonly amask: Int32Array;
  readonly disp: Int32Array;
  readonly imm: Int32Array;
  readonly imm2: Int32Array;
  /**
   * The handler of each slot, as its id in `table` (id 0, #UD, in a slot never decoded). Ids, not
   * functions: 2 bytes a slot instead of a pointer the garbage collector walks (2 MiB a vCPU for
   * 262,145 slots, filled at every vCPU's start), against a table all vCPUs share.
   */
  readonly handler: Uint16Array;
  /** The resolver's handlers by id, shared by every `Decoded` it decodes into. */
  readonly table: readonly SlotHandler<C>[];

  constructor(readonly size: number, handlers: HandlerResolver<C>) {
    this.len = new Uint8Array(size);
    this.opc = new Uint16Array(size);
    this.pfx = new Uint8Array(size);
    this.seg = new Uint8Array(size);
    this.modrm = new Uint8Array(size);
    this.mod3 = new Uint8Array(size);
    this.reg = new Uint8Array(size);
    this.rm = new Uint8Array(size);
    this.base = new Uint8Array(size);
    this.index = new Uint8Array(size);
    this.scale = new Uint8Array(size);
    this.amask = new Int32Array(size);
    this.disp = new Int32Array(size);
    this.imm = new Int32Array(size);
    this.imm2 = new Int32Array(size);
    this.handler = new Uint16Array(size);
    this.table = handlers.table;
  }
}

/** The handler of the instruction decoded into `slot`. */
export function slotHandler<C>(d: Decoded<C>, slot: number): SlotHandler<C> {
  return d.table[d.handler[slot]];
}

/**
 * The opcode record of the instruction in `slot` (null: none, #UD), found again from its opcode
 * and ModRM reg field as the decoder found it: kept per slot, it would be one more array of a
 * VM's 131,073 slots to allocate, for a lookup that happens once per decoded instruction.
 */
export function slotEntry<C>(d: Decoded<C>, slot: number): OpcodeEntry | null {
  const e = OPCODES[d.opc[slot]];
  return e !== null && e.group ? e.group[d.reg[slot]] : e;
}

/**
 * How the decoder picks handlers: by record and operand size, as ids in `table` (a table that
 * never changes); `invalid` (id 0) raises #UD, `tooLong` #GP(0).
 */
export interface HandlerResolver<C> {
  readonly table: readonly SlotHandler<C>[];
  resolve(entry: OpcodeEntry, o32: boolean): number;
  readonly invalid: 0;
  readonly tooLong: number;
}

const MAX_LENGTH = 15;
const BASE16 = [3, 3, 5, 5, 6, 7, 5, 3]; // bx bx bp bp si di bp bx
const INDEX16 = [6, 7, 6, 7, NO_REG, NO_REG, NO_REG, NO_REG]; // si di si di

/** Decode the instruction that `src` yields into `slot`. */
export function decodeInto<C>(
  d: Decoded<C>,
  slot: number,
  src: ByteSource,
  default32: boolean,
  handlers: HandlerResolver<C>,
): void {
  let k = 0;
  let o32 = default32;
  let a32 = default32;
  let seg = -1;
  let pfx = 0;
  let b = 0;
  for (;;) {
    b = src.byteAt(k++);
    if (k >= MAX_LENGTH) break;
    if (b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e) seg = (b >> 3) & 3;
    else if (b === 0x64 || b === 0x65) seg = b - 0x60;
    else if (b === 0x66) o32 = !default32;
    else if (b === 0x67) a32 = !default32;
    else if (b === 0xf0) pfx |= Pfx.LOCK;
    else if (b === 0xf2) pfx = (pfx & ~Pfx.REP) | Pfx.REPNE;
    else if (b === 0xf3) pfx = (pfx & ~Pfx.REPNE) | Pfx.REP;
    else break;
  }
  let opc = b;
  if (b === 0x0f) opc = 0x100 | src.byteAt(k++);
  let e = OPCODES[opc];
  let modrm = 0, mod3 = 0, reg = 0, rm = 0, base = NO_REG, index = NO_REG, scale = 0, disp = 0;
  let ssDefault = false;
  if (e !== null && e.modrm) {
    modrm = src.byteAt(k++);
    const mod = modrm >> 6;
    reg = (modrm >> 3) & 7;
    rm = modrm & 7;
    if (e.group) e = e.group[reg];
    if (mod === 3 || (opc >= 0x120 && opc <= 0x123)) {
      mod3 = 1;
    } else if (a32) {
      if (rm === 4) {
        const sib = src.byteAt(k++);
        scale = sib >> 6;
        index = (sib >> 3) & 7;
        if (index === 4) index = NO_REG;
        base = sib & 7;
        if (base === 5 && mod === 0) {
          base = NO_REG;
          disp = read(src, k, 4);
          k += 4;
        }
      } else if (rm === 5 && mod === 0) {
        disp = read(src, k, 4);
        k += 4;
      } else {
        base = rm;
      }
      if (mod === 1) {
        disp = (read(src, k, 1) << 24) >> 24;
        k += 1;
      } else if (mod === 2) {
        disp = read(src, k, 4);
        k += 4;
      }
      ssDefault = base === 4 || base === 5;
    } else {
      if (rm === 6 && mod === 0) {
        disp = read(src, k, 2);
        k += 2;
      } else {
        base = BASE16[rm];
        index = INDEX16[rm];
        ssDefault = base === 5;
      }
      if (mod === 1) {
        disp = (read(src, k, 1) << 24) >> 24;
        k += 1;
      } else if (mod === 2) {
        disp = read(src, k, 2);
        k += 2;
      }
    }
  }
  let imm = 0, imm2 = 0;
  if (e !== null) {
    const immediates = e.immediates;
    for (let j = 0; j < immediates.length; j++) {
      switch (immediates[j]) {
        case Imm.BYTE:
          imm2 = imm;
          imm = (read(src, k, 1) << 24) >> 24;
          k += 1;
          break;
        case Imm.WORD:
          imm = read(src, k, 2);
          k += 2;
          break;
        case Imm.SIZED:
          imm = read(src, k, o32 ? 4 : 2);
          k += o32 ? 4 : 2;
          break;
        case Imm.RELATIVE:
          imm = o32 ? read(src, k, 4) : (read(src, k, 2) << 16) >> 16;
          k += o32 ? 4 : 2;
          break;
        case Imm.FAR:
          imm = read(src, k, o32 ? 4 : 2);
          k += o32 ? 4 : 2;
          imm2 = read(src, k, 2);
          k += 2;
          break;
        case Imm.OFFSET:
          disp = read(src, k, a32 ? 4 : 2);
          k += a32 ? 4 : 2;
          break;
      }
    }
  }
  d.len[slot] = k;
  d.opc[slot] = opc;
  d.pfx[slot] = pfx | (o32 ? Pfx.O32 : 0) | (a32 ? Pfx.A32 : 0) | (seg >= 0 ? Pfx.SEG : 0);
  d.seg[slot] = seg >= 0 ? seg : ssDefault ? SEG_SS : SEG_DS;
  d.modrm[slot] = modrm;
  d.mod3[slot] = mod3;
  d.reg[slot] = reg;
  d.rm[slot] = rm;
  d.base[slot] = base;
  d.index[slot] = index;
  d.scale[slot] = scale;
  d.amask[slot] = a32 ? -1 : 0xffff;
  d.disp[slot] = disp;
  d.imm[slot] = imm;
  d.imm2[slot] = imm2;
  if (k > MAX_LENGTH || (k === MAX_LENGTH && e === null)) d.handler[slot] = handlers.tooLong;
  else if (e === null || ((pfx & Pfx.LOCK) !== 0 && (!e.lockable || mod3 === 1))) d.handler[slot] = handlers.invalid;
  else d.handler[slot] = handlers.resolve(e, o32);
}

function read(src: ByteSource, k: number, n: number): number {
  let v = 0;
  for (let j = 0; j < n; j++) v |= src.byteAt(k + j) << (8 * j);
  return n === 4 ? v | 0 : v;
}
