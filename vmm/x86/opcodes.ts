// The i686 integer opcode table as data: one record per opcode (and per group reg field).
//
// The decoder, the disassembler and the tests all read this table. Operand forms follow the
// Intel manual's notation: E (ModRM r/m), G (ModRM reg), M (memory-only r/m), R (register-only
// r/m), S (segment register in reg), C/D (control/debug register in reg), I (immediate),
// J (relative branch), O (moffs), A (far pointer); sizes b (byte), w (word), d (dword),
// v (16/32 by operand size), z (16/32 immediate), p (far pointer), q (qword). Fixed registers are
// written as themselves (AL, eAX, DX, CL, 1, ES...). `handler` names a function of the handler
// registry; operand-size dependent records get the suffix 16 or 32 appended by the decoder.

export interface OpcodeEntry {
  /** 0x000-0x0FF one-byte opcodes, 0x100-0x1FF the 0F xx opcodes. */
  readonly opcode: number;
  readonly mnemonic: string;
  readonly operands: readonly string[];
  /** A ModRM byte follows the opcode. */
  readonly modrm: boolean;
  /** Handler (and mnemonic/immediate) depend on the operand size: handler16/handler32. */
  readonly sized: boolean;
  readonly handler: string;
  /** May change EIP other than by falling through (ends a basic block). */
  readonly endsBlock: boolean;
  /** LOCK prefix is allowed (with a memory destination). */
  readonly lockable: boolean;
  /** Group opcodes: the record for each ModRM reg value (null: #UD). */
  readonly group?: readonly (OpcodeEntry | null)[];
  /**
   * The operands that are bytes after ModRM/SIB/displacement, in order, as Imm codes: the decoder
   * reads them from this list, not by comparing operand strings (a third of its time).
   */
  readonly immediates: readonly Imm[];
  /** The record's place among all records (0 to RECORD_COUNT - 1): per-record tables index by it. */
  readonly index: number;
}

/** Kinds of immediate operand: what the decoder reads for each. */
export enum Imm {
  /** Ib, Jb: a byte, sign-extended (a second one moves the first to imm2). */
  BYTE = 1,
  /** Iw: a word. */
  WORD,
  /** Iz, Iv: a word or a dword by operand size. */
  SIZED,
  /** Jz: a relative word (sign-extended) or dword by operand size. */
  RELATIVE,
  /** Ap: a far pointer, offset then selector. */
  FAR,
  /** Ob, Ov: a memory offset, a word or a dword by address size. */
  OFFSET,
}

const IMM_OF: Readonly<Record<string, Imm>> = { Ib: Imm.BYTE, Jb: Imm.BYTE, Iw: Imm.WORD, Iz: Imm.SIZED, Iv: Imm.SIZED, Jz: Imm.RELATIVE, Ap: Imm.FAR, Ob: Imm.OFFSET, Ov: Imm.OFFSET };
const immediatesOf = (operands: readonly string[]): Imm[] => operands.flatMap((o) => (IMM_OF[o] !== undefined ? [IMM_OF[o]] : []));
let records = 0;

/** Compact source: "mnemonic operands" and flag letters (l lockable, j ends block, s sized, m ModRM). */
type Src = [string, string, string?];

function entry(opcode: number, src: Src): OpcodeEntry {
  const [text, handler, flags = ""] = src;
  const space = text.indexOf(" ");
  const mnemonic = space < 0 ? text : text.slice(0, space);
  const operands = space < 0 ? [] : text.slice(space + 1).split(",");
  const modrm = flags.includes("m") || operands.some((o) => /^[EGMSCDR][a-z]/.test(o));
  const sized =
    flags.includes("s") || operands.some((o) => /^[EGIJMORA][vzpa]$|^e[A-Z][A-Z]$|^r[A-Z][A-Z]$/.test(o));
  return {
    opcode,
    mnemonic,
    operands,
    modrm,
    sized,
    handler,
    endsBlock: flags.includes("j"),
    lockable: flags.includes("l"),
    immediates: immediatesOf(operands),
    index: records++,
  };
}

function group(opcode: number, operandsHint: string, members: (Src | null)[]): OpcodeEntry {
  const subs = members.map((m) => (m ? entry(opcode, m) : null));
  const first = subs.find((s) => s !== null)!;
  const operands = operandsHint ? operandsHint.split(",") : [];
  return {
    opcode,
    mnemonic: "group",
    operands,
    immediates: immediatesOf(operands),
    index: records++,
    modrm: true,
    sized: subs.some((s) => s?.sized),
    handler: "",
    endsBlock: subs.some((s) => s?.endsBlock),
    lockable: first.lockable,
    group: subs,
  };
}

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
const CC = ["o", "no", "b", "nb", "z", "nz", "be", "nbe", "s", "ns", "p", "np", "l", "nl", "le", "nle"];
const SREG = ["ES", "CS", "SS", "DS", "FS", "GS"];
const R32 = ["eAX", "eCX", "eDX", "eBX", "eSP", "eBP", "eSI", "eDI"];
const R8 = ["AL", "CL", "DL", "BL", "AH", "CH", "DH", "BH"];
const SHIFT = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];

function build(): (OpcodeEntry | null)[] {
  const t: (OpcodeEntry | null)[] = new Array(512).fill(null);
  const set = (op: number, src: Src) => (t[op] = entry(op, src));

  for (let a = 0; a < 8; a++) {
    const m = ALU[a];
    const l = m === "cmp" ? "" : "l";
    set(a * 8 + 0, [`${m} Eb,Gb`, `${m}_EbGb`, l]);
    set(a * 8 + 1, [`${m} Ev,Gv`, `${m}_EvGv`, l]);
    set(a * 8 + 2, [`${m} Gb,Eb`, `${m}_GbEb`]);
    set(a * 8 + 3, [`${m} Gv,Ev`, `${m}_GvEv`]);
    set(a * 8 + 4, [`${m} AL,Ib`, `${m}_ALIb`]);
    set(a * 8 + 5, [`${m} eAX,Iz`, `${m}_eAXIz`]);
  }
  for (const [op, s] of [[0x06, 0], [0x0e, 1], [0x16, 2], [0x1e, 3]] as const) {
    set(op, [`push ${SREG[s]}`, `push_${SREG[s]}`, "s"]);
  }
  for (const [op, s] of [[0x07, 0], [0x17, 2], [0x1f, 3]] as const) {
    set(op, [`pop ${SREG[s]}`, `pop_${SREG[s]}`, "s"]);
  }
  set(0x27, ["daa", "daa"]);
  set(0x2f, ["das", "das"]);
  set(0x37, ["aaa", "aaa"]);
  set(0x3f, ["aas", "aas"]);
  for (let r = 0; r < 8; r++) {
    set(0x40 + r, [`inc ${R32[r]}`, "inc_r"]);
    set(0x48 + r, [`dec ${R32[r]}`, "dec_r"]);
    set(0x50 + r, [`push ${R32[r]}`, "push_r"]);
    set(0x58 + r, [`pop ${R32[r]}`, "pop_r"]);
    set(0x90 + r, r === 0 ? ["nop", "nop"] : [`xchg ${R32[r]},eAX`, "xchg_rAX"]);
    set(0xb0 + r, [`mov ${R8[r]},Ib`, "mov_r8Ib"]);
    set(0xb8 + r, [`mov ${R32[r]},Iv`, "mov_rIv"]);
    set(0x1c8 + r, [`bswap ${R32[r]}`, "bswap"]);
  }
  set(0x60, ["pusha", "pusha", "s"]);
  set(0x61, ["popa", "popa", "s"]);
  set(0x62, ["bound Gv,Ma", "bound"]);
  set(0x63, ["arpl Ew,Gw", "arpl"]);
  set(0x68, ["push Iz", "push_Iz"]);
  set(0x69, ["imul Gv,Ev,Iz", "imul_GvEvIz"]);
  set(0x6a, ["push Ib", "push_Ib", "s"]);
  set(0x6b, ["imul Gv,Ev,Ib", "imul_GvEvIb", "s"]);
  set(0x6c, ["insb", "insb"]);
  set(0x6d, ["ins", "ins", "s"]);
  set(0x6e, ["outsb", "outsb"]);
  set(0x6f, ["outs", "outs", "s"]);
  for (let c = 0; c < 16; c++) {
    set(0x70 + c, [`j${CC[c]} Jb`, `jcc_Jb`, "j"]);
    set(0x180 + c, [`j${CC[c]} Jz`, `jcc_Jz`, "j"]);
    set(0x190 + c, [`set${CC[c]} Eb`, "setcc"]);
    set(0x140 + c, [`cmov${CC[c]} Gv,Ev`, "cmovcc"]);
  }
  const grp1 = (imm: string, sz: string) =>
    ALU.map((m): Src => [`${m} E${sz},${imm}`, `${m}_E${sz}I`, m === "cmp" ? "" : "l"]);
  t[0x80] = group(0x80, "Eb,Ib", grp1("Ib", "b"));
  t[0x81] = group(0x81, "Ev,Iz", grp1("Iz", "v"));
  t[0x82] = group(0x82, "Eb,Ib", grp1("Ib", "b"));
  t[0x83] = group(0x83, "Ev,Ib", grp1("Ib", "v"));
  set(0x84, ["test Eb,Gb", "test_EbGb"]);
  set(0x85, ["test Ev,Gv", "test_EvGv"]);
  set(0x86, ["xchg Eb,Gb", "xchg_EbGb", "l"]);
  set(0x87, ["xchg Ev,Gv", "xchg_EvGv", "l"]);
  set(0x88, ["mov Eb,Gb", "mov_EbGb"]);
  set(0x89, ["mov Ev,Gv", "mov_EvGv"]);
  set(0x8a, ["mov Gb,Eb", "mov_GbEb"]);
  set(0x8b, ["mov Gv,Ev", "mov_GvEv"]);
  set(0x8c, ["mov Ev,Sw", "mov_EvSw"]);
  set(0x8d, ["lea Gv,M", "lea"]);
  set(0x8e, ["mov Sw,Ew", "mov_SwEw"]);
  t[0x8f] = group(0x8f, "Ev", [["pop Ev", "pop_Ev"], null, null, null, null, null, null, null]);
  set(0x98, ["cbw", "cbw", "s"]);
  set(0x99, ["cwd", "cwd", "s"]);
  set(0x9a, ["callf Ap", "callf_Ap", "j"]);
  set(0x9b, ["wait", "fwait"]);
  set(0x9c, ["pushf", "pushf", "s"]);
  set(0x9d, ["popf", "popf", "sj"]);
  set(0x9e, ["sahf", "sahf"]);
  set(0x9f, ["lahf", "lahf"]);
  set(0xa0, ["mov AL,Ob", "mov_ALOb"]);
  set(0xa1, ["mov eAX,Ov", "mov_eAXOv"]);
  set(0xa2, ["mov Ob,AL", "mov_ObAL"]);
  set(0xa3, ["mov Ov,eAX", "mov_OveAX"]);
  set(0xa4, ["movsb", "movsb"]);
  set(0xa5, ["movs", "movs", "s"]);
  set(0xa6, ["cmpsb", "cmpsb"]);
  set(0xa7, ["cmps", "cmps", "s"]);
  set(0xa8, ["test AL,Ib", "test_ALIb"]);
  set(0xa9, ["test eAX,Iz", "test_eAXIz"]);
  set(0xaa, ["stosb", "stosb"]);
  set(0xab, ["stos", "stos", "s"]);
  set(0xac, ["lodsb", "lodsb"]);
  set(0xad, ["lods", "lods", "s"]);
  set(0xae, ["scasb", "scasb"]);
  set(0xaf, ["scas", "scas", "s"]);
  const grp2 = (count: string, sz: string) =>
    SHIFT.map((m): Src => [`${m} E${sz},${count}`, `${m}_E${sz}`]);
  t[0xc0] = group(0xc0, "Eb,Ib", grp2("Ib", "b"));
  t[0xc1] = group(0xc1, "Ev,Ib", grp2("Ib", "v"));
  t[0xd0] = group(0xd0, "Eb,1", grp2("1", "b"));
  t[0xd1] = group(0xd1, "Ev,1", grp2("1", "v"));
  t[0xd2] = group(0xd2, "Eb,CL", grp2("CL", "b"));
  t[0xd3] = group(0xd3, "Ev,CL", grp2("CL", "v"));
  set(0xc2, ["ret Iw", "ret_Iw", "sj"]);
  set(0xc3, ["ret", "ret", "sj"]);
  set(0xc4, ["les Gv,Mp", "les"]);
  set(0xc5, ["lds Gv,Mp", "lds"]);
  t[0xc6] = group(0xc6, "Eb,Ib", [["mov Eb,Ib", "mov_EbIb"], null, null, null, null, null, null, null]);
  t[0xc7] = group(0xc7, "Ev,Iz", [["mov Ev,Iz", "mov_EvIz"], null, null, null, null, null, null, null]);
  set(0xc8, ["enter Iw,Ib", "enter", "s"]);
  set(0xc9, ["leave", "leave", "s"]);
  set(0xca, ["retf Iw", "retf_Iw", "sj"]);
  set(0xcb, ["retf", "retf", "sj"]);
  set(0xcc, ["int3", "int3", "j"]);
  set(0xcd, ["int Ib", "int_Ib", "j"]);
  set(0xce, ["into", "into", "j"]);
  set(0xcf, ["iret", "iret", "sj"]);
  set(0xd4, ["aam Ib", "aam"]);
  set(0xd5, ["aad Ib", "aad"]);
  set(0xd6, ["salc", "salc"]);
  set(0xd7, ["xlat", "xlat"]);
  for (let e = 0; e < 8; e++) set(0xd8 + e, [`esc${e} M`, "esc", "m"]);
  set(0xe0, ["loopnz Jb", "loopnz", "j"]);
  set(0xe1, ["loopz Jb", "loopz", "j"]);
  set(0xe2, ["loop Jb", "loop", "j"]);
  set(0xe3, ["jcxz Jb", "jcxz", "j"]);
  set(0xe4, ["in AL,Ib", "in_ALIb"]);
  set(0xe5, ["in eAX,Ib", "in_eAXIb"]);
  set(0xe6, ["out Ib,AL", "out_IbAL"]);
  set(0xe7, ["out Ib,eAX", "out_IbeAX"]);
  set(0xe8, ["call Jz", "call_Jz", "j"]);
  set(0xe9, ["jmp Jz", "jmp_Jz", "j"]);
  set(0xea, ["jmpf Ap", "jmpf_Ap", "j"]);
  set(0xeb, ["jmp Jb", "jmp_Jb", "sj"]);
  set(0xec, ["in AL,DX", "in_ALDX"]);
  set(0xed, ["in eAX,DX", "in_eAXDX"]);
  set(0xee, ["out DX,AL", "out_DXAL"]);
  set(0xef, ["out DX,eAX", "out_DXeAX"]);
  set(0xf1, ["int1", "int1", "j"]);
  set(0xf4, ["hlt", "hlt", "j"]);
  set(0xf5, ["cmc", "cmc"]);
  t[0xf6] = group(0xf6, "Eb", [
    ["test Eb,Ib", "test_EbI"], ["test Eb,Ib", "test_EbI"], ["not Eb", "not_Eb", "l"], ["neg Eb", "neg_Eb", "l"],
    ["mul Eb", "mul_Eb"], ["imul Eb", "imul_Eb"], ["div Eb", "div_Eb"], ["idiv Eb", "idiv_Eb"],
  ]);
  t[0xf7] = group(0xf7, "Ev", [
    ["test Ev,Iz", "test_EvI"], ["test Ev,Iz", "test_EvI"], ["not Ev", "not_Ev", "l"], ["neg Ev", "neg_Ev", "l"],
    ["mul Ev", "mul_Ev"], ["imul Ev", "imul_Ev"], ["div Ev", "div_Ev"], ["idiv Ev", "idiv_Ev"],
  ]);
  set(0xf8, ["clc", "clc"]);
  set(0xf9, ["stc", "stc"]);
  set(0xfa, ["cli", "cli"]);
  set(0xfb, ["sti", "sti", "j"]);
  set(0xfc, ["cld", "cld"]);
  set(0xfd, ["std", "std"]);
  t[0xfe] = group(0xfe, "Eb", [["inc Eb", "inc_Eb", "l"], ["dec Eb", "dec_Eb", "l"], null, null, null, null, null, null]);
  t[0xff] = group(0xff, "Ev", [
    ["inc Ev", "inc_Ev", "l"], ["dec Ev", "dec_Ev", "l"], ["call Ev", "call_Ev", "j"], ["callf Mp", "callf_Mp", "j"],
    ["jmp Ev", "jmp_Ev", "j"], ["jmpf Mp", "jmpf_Mp", "j"], ["push Ev", "push_Ev"], null,
  ]);

  // Two-byte opcodes (0F xx) at 0x100 + xx.
  t[0x100] = group(0x100, "Ew", [
    ["sldt Ew", "sldt", "m"], ["str Ew", "str", "m"], ["lldt Ew", "lldt", "m"], ["ltr Ew", "ltr", "m"],
    ["verr Ew", "verr", "m"], ["verw Ew", "verw", "m"], null, null,
  ]);
  t[0x101] = group(0x101, "M", [
    ["sgdt M", "sgdt", "m"], ["sidt M", "sidt", "m"], ["lgdt M", "lgdt", "mj"], ["lidt M", "lidt", "m"],
    ["smsw Ew", "smsw", "ms"], null, ["lmsw Ew", "lmsw", "mj"], ["invlpg M", "invlpg", "mj"],
  ]);
  set(0x102, ["lar Gv,Ew", "lar", "s"]);
  set(0x103, ["lsl Gv,Ew", "lsl", "s"]);
  set(0x106, ["clts", "clts", "j"]);
  set(0x108, ["invd", "invd"]);
  set(0x109, ["wbinvd", "wbinvd"]);
  set(0x10b, ["ud2", "ud2", "j"]);
  for (let h = 0x18; h <= 0x1f; h++) set(0x100 + h, ["nop Ev", "nop_Ev"]);
  set(0x120, ["mov Rd,Cd", "mov_RdCd", "m"]);
  set(0x121, ["mov Rd,Dd", "mov_RdDd", "m"]);
  set(0x122, ["mov Cd,Rd", "mov_CdRd", "mj"]);
  set(0x123, ["mov Dd,Rd", "mov_DdRd", "mj"]);
  set(0x130, ["wrmsr", "wrmsr", "j"]);
  set(0x131, ["rdtsc", "rdtsc"]);
  set(0x132, ["rdmsr", "rdmsr"]);
  set(0x133, ["rdpmc", "rdpmc"]);
  set(0x134, ["sysenter", "sysenter", "j"]);
  set(0x135, ["sysexit", "sysexit", "j"]);
  set(0x1a0, ["push FS", "push_FS", "s"]);
  set(0x1a1, ["pop FS", "pop_FS", "s"]);
  set(0x1a2, ["cpuid", "cpuid"]);
  set(0x1a3, ["bt Ev,Gv", "bt_EvGv"]);
  set(0x1a4, ["shld Ev,Gv,Ib", "shld_Ib"]);
  set(0x1a5, ["shld Ev,Gv,CL", "shld_CL"]);
  set(0x1a8, ["push GS", "push_GS", "s"]);
  set(0x1a9, ["pop GS", "pop_GS", "s"]);
  set(0x1ab, ["bts Ev,Gv", "bts_EvGv", "l"]);
  set(0x1ac, ["shrd Ev,Gv,Ib", "shrd_Ib"]);
  set(0x1ad, ["shrd Ev,Gv,CL", "shrd_CL"]);
  set(0x1af, ["imul Gv,Ev", "imul_GvEv"]);
  set(0x1b0, ["cmpxchg Eb,Gb", "cmpxchg_EbGb", "l"]);
  set(0x1b1, ["cmpxchg Ev,Gv", "cmpxchg_EvGv", "l"]);
  set(0x1b2, ["lss Gv,Mp", "lss"]);
  set(0x1b3, ["btr Ev,Gv", "btr_EvGv", "l"]);
  set(0x1b4, ["lfs Gv,Mp", "lfs"]);
  set(0x1b5, ["lgs Gv,Mp", "lgs"]);
  set(0x1b6, ["movzx Gv,Eb", "movzx_GvEb"]);
  set(0x1b7, ["movzx Gv,Ew", "movzx_GvEw"]);
  t[0x1ba] = group(0x1ba, "Ev,Ib", [
    null, null, null, null,
    ["bt Ev,Ib", "bt_EvIb"], ["bts Ev,Ib", "bts_EvIb", "l"], ["btr Ev,Ib", "btr_EvIb", "l"], ["btc Ev,Ib", "btc_EvIb", "l"],
  ]);
  set(0x1bb, ["btc Ev,Gv", "btc_EvGv", "l"]);
  set(0x1bc, ["bsf Gv,Ev", "bsf"]);
  set(0x1bd, ["bsr Gv,Ev", "bsr"]);
  set(0x1be, ["movsx Gv,Eb", "movsx_GvEb"]);
  set(0x1bf, ["movsx Gv,Ew", "movsx_GvEw"]);
  set(0x1c0, ["xadd Eb,Gb", "xadd_EbGb", "l"]);
  set(0x1c1, ["xadd Ev,Gv", "xadd_EvGv", "l"]);
  t[0x1ae] = group(0x1ae, "M", [["fxsave M", "fxsave", "m"], ["fxrstor M", "fxrstor", "m"], null, null, null, null, null, null]);
  t[0x1c7] = group(0x1c7, "Mq", [null, ["cmpxchg8b Mq", "cmpxchg8b", "ml"], null, null, null, null, null, null]);
  return t;
}

/** The table: index = opcode (0x000-0x1FF); null = undefined opcode (#UD). */
export const OPCODES: readonly (OpcodeEntry | null)[] = build();
/** Records in the table (groups and their members each count). */
export const RECORD_COUNT = records;

/** Prefix bytes and what they mean. */
export const PREFIXES: ReadonlyMap<number, string> = new Map([
  [0x26, "es"], [0x2e, "cs"], [0x36, "ss"], [0x3e, "ds"], [0x64, "fs"], [0x65, "gs"],
  [0x66, "o16/32"], [0x67, "a16/32"], [0xf0, "lock"], [0xf2, "repne"], [0xf3, "rep"],
]);

/** Condition code names in encoding order (Jcc, SETcc, CMOVcc low nibble). */
export const CONDITION_NAMES: readonly string[] = CC;
