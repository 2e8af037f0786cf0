// A minimal stand-in for the integer core to drive the x87 unit alone (unit tests, the host
// differential tester): flat memory at a base address, a decoder for x87 instructions with
// 32-bit addressing, general registers, EFLAGS and CR0.

import type { X87Decoded, X87Host } from "./host.js";
import type { X87 } from "./x87.js";

/** Thrown by `fault`; the vector is in `TestHost.faultVector`. */
export const TEST_FAULT: { readonly testFault: true } = Object.freeze({ testFault: true });
/** `RunOutcome.vector` of a run that ended in the FERR# freeze. */
export const FROZEN = -2;

export class TestHost implements X87Host {
  /** EFLAGS, kept whole (no lazy flags here). */
  flags = 2;
  /** PE, ET, NE (protected mode, #MF delivery). */
  cr0 = 0x31;
  eip = 0;
  readonly regs = new Int32Array(8);
  readonly r16 = new Uint16Array(this.regs.buffer);
  readonly sel = new Uint16Array(8);
  readonly base = new Int32Array(8);
  readonly dec: X87Decoded = {
    opc: new Uint16Array(1),
    modrm: new Uint8Array(1),
    mod3: new Uint8Array(1),
    reg: new Uint8Array(1),
    rm: new Uint8Array(1),
    seg: new Uint8Array(1),
    pfx: new Uint8Array(1),
  };
  faultVector = -1;

  /** Jcc condition `cc` on the whole EFLAGS word (the core evaluates its lazy flags instead). */
  condition(cc: number): boolean {
    const f = this.flags;
    const of = (f >> 11) & 1, cf = f & 1, zf = (f >> 6) & 1, sf = (f >> 7) & 1, pf = (f >> 2) & 1;
    const v = [of, cf, zf, cf | zf, sf, pf, sf ^ of, zf | (sf ^ of)][cc >> 1] === 1;
    return (cc & 1) !== 0 ? !v : v;
  }

  setArithFlags(bits: number): void {
    const ARITH = 0x8d5; // OF SF ZF AF PF CF
    this.flags = (this.flags & ~ARITH) | (bits & ARITH);
  }
  /** Address register of the decoded memory operand (-1: none) and displacement. */
  private eaBase = -1;
  private eaIndex = -1;
  private eaScale = 0;
  private eaDisp = 0;

  constructor(readonly memory: Uint8Array, readonly memoryBase: number) {
    this.sel[1] = 0x23;
    for (const s of [0, 2, 3, 4, 5]) this.sel[s] = 0x2b;
  }

  ea(_i: number): number {
    let a = this.eaDisp;
    if (this.eaBase >= 0) a += this.regs[this.eaBase];
    if (this.eaIndex >= 0) a += this.regs[this.eaIndex] << this.eaScale;
    return a | 0;
  }

  private at(seg: number, off: number, size: number): number {
    const a = ((this.base[seg] + off) >>> 0) - this.memoryBase;
    if (a < 0 || a + size > this.memory.length) this.fault(14, 0);
    return a;
  }

  rd8(seg: number, off: number): number {
    return this.memory[this.at(seg, off, 1)];
  }
  rd16(seg: number, off: number): number {
    const a = this.at(seg, off, 2);
    return this.memory[a] | (this.memory[a + 1] << 8);
  }
  rd32(seg: number, off: number): number {
    const a = this.at(seg, off, 4);
    const m = this.memory;
    return m[a] | (m[a + 1] << 8) | (m[a + 2] << 16) | (m[a + 3] << 24);
  }
  wr8(seg: number, off: number, v: number): void {
    this.memory[this.at(seg, off, 1)] = v;
  }
  wr16(seg: number, off: number, v: number): void {
    const a = this.at(seg, off, 2);
    this.memory[a] = v;
    this.memory[a + 1] = v >>> 8;
  }
  wr32(seg: number, off: number, v: number): void {
    const a = this.at(seg, off, 4);
    const m = this.memory;
    m[a] = v;
    m[a + 1] = v >>> 8;
    m[a + 2] = v >>> 16;
    m[a + 3] = v >>> 24;
  }
  probeWrite(seg: number, off: number, size: number): void {
    this.at(seg, off, size);
  }
  fault(vector: number, _code?: number): never {
    this.faultVector = vector;
    throw TEST_FAULT;
  }
  /** The FERR# freeze ends a test run like a fault, with vector FROZEN. */
  freeze(): never {
    this.faultVector = FROZEN;
    throw TEST_FAULT;
  }

  /**
   * Decode the x87 instruction at code[at] into slot 0 (prefixes 66/segment overrides, D8-DF,
   * ModRM with 32-bit addressing). Returns its length, or 0 when it is not an x87 instruction.
   */
  decode(code: Uint8Array, at: number): number {
    const d = this.dec;
    let k = at;
    let pfx = 1;
    let seg = -1;
    for (;;) {
      const b = code[k];
      if (b === 0x66) pfx = 0;
      else if (b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e) seg = (b >> 3) & 3;
      else if (b === 0x64 || b === 0x65) seg = b - 0x60;
      else break;
      k++;
    }
    const op = code[k++];
    if (op < 0xd8 || op > 0xdf) return 0;
    const modrm = code[k++];
    const mod = modrm >> 6, rm = modrm & 7;
    d.opc[0] = op;
    d.modrm[0] = modrm;
    d.mod3[0] = mod === 3 ? 1 : 0;
    d.reg[0] = (modrm >> 3) & 7;
    d.rm[0] = rm;
    d.pfx[0] = pfx;
    this.eaBase = this.eaIndex = -1;
    this.eaScale = 0;
    this.eaDisp = 0;
    let ssDefault = false;
    if (mod !== 3) {
      if (rm === 4) {
        const sib = code[k++];
        const index = (sib >> 3) & 7, base = sib & 7;
        if (index !== 4) {
          this.eaIndex = index;
          this.eaScale = sib >> 6;
        }
        if (base === 5 && mod === 0) {
          this.eaDisp = readInt32(code, k);
          k += 4;
        } else this.eaBase = base;
      } else if (rm === 5 && mod === 0) {
        this.eaDisp = readInt32(code, k);
        k += 4;
      } else this.eaBase = rm;
      if (mod === 1) this.eaDisp = (code[k++] << 24) >> 24;
      else if (mod === 2) {
        this.eaDisp = readInt32(code, k);
        k += 4;
      }
      ssDefault = this.eaBase === 4 || this.eaBase === 5;
    }
    d.seg[0] = seg >= 0 ? seg : ssDefault ? 2 : 3;
    return k - at;
  }
}

function readInt32(b: Uint8Array, k: number): number {
  return b[k] | (b[k + 1] << 8) | (b[k + 2] << 16) | (b[k + 3] << 24);
}

/** Outcome of running a code sequence: completed, or stopped by a fault at `offset`. */
export interface RunOutcome {
  vector: number;
  offset: number;
}

/**
 * Run x87 code (D8-DF instructions and 9B WAIT) located at guest address `codeBase`. Stops at
 * the first fault. Other bytes raise #UD.
 */
export function runX87(x: X87, host: TestHost, code: Uint8Array, codeBase: number): RunOutcome {
  let k = 0;
  while (k < code.length) {
    host.eip = (codeBase + k) | 0;
    try {
      if (code[k] === 0x9b) {
        x.wait(host);
        k += 1;
        continue;
      }
      const len = host.decode(code, k);
      if (len === 0) host.fault(6);
      x.execute(host, 0);
      k += len;
    } catch (e) {
      if (e !== TEST_FAULT) throw e;
      return { vector: host.faultVector, offset: k };
    }
  }
  return { vector: -1, offset: k };
}
