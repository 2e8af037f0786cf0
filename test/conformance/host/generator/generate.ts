// The random sequence generator: one case from (seed, index), as nasm source lines.
//
// Covered: every ring-3 integer opcode family of the i686 whose result depends only on the
// registers, EFLAGS and the data area - ALU ops in all encodings (incl. the 82 and F6/F7 /1
// aliases, reg,r/m direction, redundant prefixes), INC/DEC/NEG/NOT, shifts and rotates by 1,
// imm8 and CL with edge counts (incl. SAL /6), MUL/IMUL (1-3 operands), DIV/IDIV (guarded, and
// unguarded to raise #DE), BT/BTS/BTR/BTC with register/immediate offsets on registers and
// memory, BSF/BSR, SHLD/SHRD, CMOVcc, SETcc, CMPXCHG, CMPXCHG8B, XADD (with LOCK), BSWAP,
// MOVZX/MOVSX, LEA (32- and 16-bit addressing), XCHG, MOV (incl. moffs and alternate
// encodings), XLAT, ARPL, NOPs (incl. 0F 1F and PAUSE), string ops with REP/REPE/REPNE and
// segment overrides, DAA/DAS/AAA/AAS/AAM/AAD (incl. other bases), CBW/CWDE/CWD/CDQ,
// PUSH/POP (reg, mem, imm, ESP), PUSHA/POPA, PUSHF/POPF, ENTER (levels 0-3, 31)/LEAVE, LAHF/SAHF,
// CLC/STC/CMC/CLD/STD, SALC, forward Jcc (short/near) and JMP over dead bytes, LOOP/LOOPE/LOOPNE
// (also on CX), JECXZ/JCXZ, CALL (direct, register, memory)/RET [imm16], operand-size 66,
// CS/DS/ES/SS overrides, ModRM/SIB forms with base, index, scale, disp8 and disp32. A few
// cases end with an exception: UD2/UD0/LOCK misuse/reserved opcode (#UD), INT3 (#BP), INTO
// (#OF), BOUND (#BR), a write through CS (#GP), DIV by 0, IDIV overflow and AAM 0 (#DE).
//
// Excluded, and why:
// - IN/OUT/INS/OUTS, CLI/STI, HLT, LGDT/LIDT/LTR/LLDT, MOV CRn/DRn, INVD/WBINVD/INVLPG, RDMSR/
//   WRMSR, CLTS, LMSW: privileged in ring 3 (the native side runs in ring 3, we in ring 0).
// - INT n (INT 0x80 is a Linux system call), IRET, SYSENTER/SYSEXIT, far CALL/JMP/RET, MOV/POP
//   to segment registers, LDS/LES/LFS/LGS/LSS, PUSH sreg, MOV r/m, sreg, LAR/LSL/VERR/VERW,
//   SGDT/SIDT/SLDT/STR/SMSW (UMIP): depend on Linux's descriptors and selectors.
// - FS/GS overrides: their bases are Linux's TLS.
// - CPUID, RDTSC, RDPMC: the answers differ by design.
// - POPF of TF, AC, NT, ID, IF or IOPL bits: trap, alignment checks, ring-dependent behaviour.
// - x87/MMX/SSE and WAIT: the FPU mode (issue 5) will add x87 sequences.
// - BSWAP r16, SHLD/SHRD counts above the operand size: undefined results.
// - C4/C5/62 with a register ModRM (VEX/EVEX on the host), F2/F3 before 0F opcodes (POPCNT,
//   TZCNT, LZCNT on the host): they decode differently on the host than on a P6.
// - Memory operands with 16-bit addressing (67): a 16-bit address is below 64 KiB, which Linux
//   does not map; LEA, JCXZ and LOOP on CX still use the 67 prefix.
// - Backward jumps other than LOOP, self-modifying code, writes into the live stack region:
//   they would make the sequence's length or safety depend on values the generator cannot know.
import { ARITH, DATA_BASE, DF, STACK_TOP } from "../layout.js";
import { SequenceBuilder, type SourceLine } from "./builder.js";
import { ARITH_OPS } from "./ops-arith.js";
import { BIT_OPS } from "./ops-bits.js";
import { DATA_OPS } from "./ops-data.js";
import { FAULT_OPS } from "./ops-fault.js";
import { FLOW_OPS } from "./ops-flow.js";
import { STACK_OPS } from "./ops-stack.js";
import type { Op } from "./operands.js";
import { Prng } from "./prng.js";
import { value } from "./values.js";

/** Every op family that may appear anywhere in a sequence. */
export const OPS: readonly Op[] = [...ARITH_OPS, ...BIT_OPS, ...DATA_OPS, ...STACK_OPS, ...FLOW_OPS];
const SIMPLE_OPS = OPS.filter((op) => !op.flow);
const MAX_NESTING = 2;

export interface GeneratorOptions {
  /** Top-level items per case (default 6-24). */
  minItems?: number;
  maxItems?: number;
  /** Probability that a case ends with an exception-raising item (default 0.08). */
  faultChance?: number;
  /** Restrict the op families (by `Op.name`); all when absent. */
  only?: readonly string[];
  /** Op families (by `Op.name`) never to emit, e.g. ones known broken in the core. */
  skip?: readonly string[];
}

/** A generated integer case before assembly. */
export interface GeneratedCase {
  index: number;
  /** Label prefix of this case in the batch source ("c12_"). */
  prefix: string;
  regs: number[];
  eflags: number;
  fillSeed: number;
  lines: SourceLine[];
  /** Line counts after each top-level item. */
  itemEnds: number[];
  /** Arithmetic flags undefined at the end of the sequence. */
  finalUndef: number;
}

export function generateCase(seed: number, index: number, options: GeneratorOptions = {}): GeneratedCase {
  const r = new Prng(seed, index);
  const regs = Array.from({ length: 8 }, () => value(r, 32));
  regs[4] = DATA_BASE + STACK_TOP;
  const eflags = r.u32() & (ARITH | DF);
  const fillSeed = r.u32();
  const prefix = `c${index}_`;
  const b = new SequenceBuilder(r, prefix, eflags & DF ? 1 : 0);
  const only = options.only ? new Set(options.only) : null;
  const skip = new Set(options.skip ?? []);
  const pool = (ops: readonly Op[]): readonly Op[] => ops.filter((op) => (!only || only.has(op.name)) && !skip.has(op.name));
  const all = pool(OPS);
  const simple = pool(SIMPLE_OPS);
  b.emitItems = (count: number): void => {
    for (let i = 0; i < count; i++) emitOne(b, b.shortBody || b.nesting >= MAX_NESTING ? simple : all);
  };
  const items = r.range(options.minItems ?? 6, options.maxItems ?? 24);
  for (let i = 0; i < items; i++) {
    emitOne(b, all);
    b.itemEnds.push(b.lines.length);
  }
  const faults = pool(FAULT_OPS);
  if (faults.length && r.chance(options.faultChance ?? 0.08)) {
    r.weighted(faults).emit(b);
    b.itemEnds.push(b.lines.length);
  }
  return { index, prefix, regs, eflags, fillSeed, lines: b.lines, itemEnds: b.itemEnds, finalUndef: b.undef };
}

function emitOne(b: SequenceBuilder, ops: readonly Op[]): void {
  if (ops.length === 0) return;
  b.rng.weighted(ops).emit(b);
}

/** nasm source of one case: a start label, one label per instruction line, an end label. */
export function caseSource(c: GeneratedCase): string {
  const out = [`${c.prefix}start:`];
  let n = 0;
  for (const line of c.lines) out.push(line.isLabel ? line.text : `${c.prefix}${n++}: ${line.text}`);
  out.push(`${c.prefix}end:`);
  return out.join("\n");
}

