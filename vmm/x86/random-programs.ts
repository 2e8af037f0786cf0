// Random test programs for the x86 core: counted loops around random integer instructions over a
// data area, with page tables that leave a hole (page faults) and an MMIO window, as assembled
// by nasm. The translator and snapshot tests run them.

import { CODE, nasm } from "./testing.js";

export const RAM = 2 << 20;
export const PD = 0x80000, PT0 = 0x81000, PT1 = 0x82000;
export const DATA = 0x100000;
/** A page of the data area that is not present (accesses crossing into it raise #PF). */
export const HOLE = DATA + 0x3000;
/** Linear addresses mapped to guest-physical space without RAM: MMIO exits. */
export const MMIO = 0x300000;
const SLOT = 0x800;

const R32 = ["eax", "ebx", "edx", "esi", "edi"];
const R16 = ["ax", "bx", "dx", "si", "di"];
const R8 = ["al", "bl", "dl", "ah", "bh", "dh"];
export const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
const SHIFTS = ["shl", "shr", "sar", "rol", "ror", "rcl", "rcr", "sal"];
const CC = ["o", "no", "b", "ae", "z", "nz", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

/** One random instruction (or a short fixed group) of the 32-bit test programs. */
export function instruction(rnd: () => number, label: () => string): string {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
  const imm = () => pick([0, 1, 2, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000, 0xffffffff, Math.floor(rnd() * 2 ** 32)]);
  const imm8 = () => pick([0, 1, 3, 7, 8, 15, 16, 31, 32, 33, 0x7f, 0x80, 0xff, Math.floor(rnd() * 256)]);
  const disp = () => pick([0, 4, -4, 0x40, -0x80, 0x7fc, -0x800, Math.floor(rnd() * 0x1000) - 0x800]);
  // Memory operands: based on EBP (the data area, never written by the programs); rarely a
  // page-crossing access into the hole, an MMIO address or a wild pointer.
  let pre = "";
  const mem = () => {
    const r = rnd();
    if (r < 0.006) return `[ebp + ${HOLE - (DATA + 0x800) - 2}]`;
    if (r < 0.016) return `[${MMIO + Math.floor(rnd() * 64)}]`;
    if (r < 0.02) return `[${pick(R32)}]`;
    if (r < 0.7) return `[ebp + ${disp()}]`;
    const index = pick(["esi", "edi", "ebx"]);
    pre += `and ${index}, 0x1fc\n`;
    return `[ebp + ${index}*${pick([1, 2, 4, 8])} + ${disp()}]`;
  };
  const text = form();
  return pre + text;
  function form(): string {
  switch (Math.floor(rnd() * 41)) {
    case 0: case 1: case 2: return `${pick(ALU)} ${pick(R32)}, ${pick(R32)}`;
    case 3: case 4: return `${pick(ALU)} ${pick(R32)}, ${imm()}`;
    case 5: return `${pick(ALU)} ${pick(R32)}, ${rnd() < 0.5 ? "byte" : ""} ${(imm8() << 24) >> 24}`;
    case 6: return `${pick(ALU)} ${pick(R32)}, dword ${mem()}`;
    case 7: return `${pick(ALU)} dword ${mem()}, ${rnd() < 0.5 ? pick(R32) : imm()}`;
    case 8: return `${pick(ALU)} ${pick(R8)}, ${rnd() < 0.5 ? pick(R8) : imm8()}`;
    case 9: return `${pick(ALU)} byte ${mem()}, ${rnd() < 0.5 ? pick(R8) : imm8()}`;
    case 10: return `${pick(ALU)} ${pick(R16)}, ${rnd() < 0.5 ? pick(R16) : imm() & 0xffff}`;
    case 11: return `${pick(ALU)} word ${mem()}, ${rnd() < 0.5 ? pick(R16) : imm() & 0xffff}`;
    case 12: return `${pick(["inc", "dec", "not", "neg"])} ${pick([...R32, ...R16, ...R8])}`;
    case 13: return `${pick(["inc", "dec", "not", "neg"])} ${pick(["byte", "word", "dword"])} ${mem()}`;
    case 14: return `test ${pick(R32)}, ${rnd() < 0.5 ? pick(R32) : imm()}`;
    case 15: return rnd() < 0.5 ? `test ${pick(R8)}, ${imm8()}` : `test dword ${mem()}, ${pick(R32)}`;
    case 16: return `mov ${pick(R32)}, ${rnd() < 0.5 ? pick(R32) : imm()}`;
    case 17: return `mov ${pick(R32)}, dword ${mem()}`;
    case 18: return `mov dword ${mem()}, ${rnd() < 0.5 ? pick(R32) : imm()}`;
    case 19: return rnd() < 0.5 ? `mov ${pick(R8)}, byte ${mem()}` : `mov byte ${mem()}, ${rnd() < 0.5 ? pick(R8) : imm8()}`;
    case 20: return rnd() < 0.5 ? `mov ${pick(R16)}, word ${mem()}` : `mov word ${mem()}, ${pick(R16)}`;
    case 21: return `${pick(["movzx", "movsx"])} ${pick(R32)}, ${rnd() < 0.5 ? pick(R8) : pick(R16)}`;
    case 22: return `${pick(["movzx", "movsx"])} ${pick(R32)}, ${pick(["byte", "word"])} ${mem()}`;
    case 23: return `lea ${pick(R32)}, [${pick(R32)} + ${pick(R32)}*${pick([1, 2, 4, 8])} + ${disp()}]`;
    case 24: return `push ${rnd() < 0.5 ? pick(R32) : imm()}\npop ${pick(R32)}`;
    case 25: return `${pick(SHIFTS)} ${pick([...R32, ...R16, ...R8])}, ${rnd() < 0.3 ? "cl" : rnd() < 0.5 ? "1" : imm8()}`;
    case 26: return `${pick(SHIFTS)} ${pick(["byte", "word", "dword"])} ${mem()}, ${rnd() < 0.5 ? "cl" : imm8() & 31}`;
    case 27: return `imul ${pick(R32)}, ${pick(R32)}${rnd() < 0.5 ? ", " + ((imm() | 0) >> (rnd() < 0.5 ? 24 : 0)) : ""}`;
    case 28: return `imul ${pick(R16)}, ${pick(R16)}, ${(imm8() << 24) >> 24}`;
    case 29: return `imul ${pick(R32)}, dword ${mem()}`;
    case 30: return `set${pick(CC)} ${rnd() < 0.7 ? pick(R8) : "byte " + mem()}`;
    case 31: return `cmov${pick(CC)} ${pick(R32)}, ${rnd() < 0.7 ? pick(R32) : "dword " + mem()}`;
    case 32: {
      const l = label();
      return `j${pick(CC)} ${l}\n${instruction(rnd, label)}\n${l}:`;
    }
    case 33: return pick(["cbw", "cwde", "cwd", "cdq", "cld", "std", "nop", "clc", "stc", "cmc", "lahf", "sahf"]);
    case 34: return `xchg eax, ${pick(R32)}`;
    case 35: return pick(["call sub_add\n", "call sub_flags\n", `mul ${pick(R32)}`, `xchg ${pick(R32)}, ${pick(R32)}`]);
    case 36: return `push word ${pick(R16)}\npop word ${pick(R16)}`;
    case 37: return rnd() < 0.1 ? `div ${pick(R32)}` : `bt ${pick(R32)}, ${imm8() & 31}`;
    case 38: return `${pick(["shld", "shrd"])} ${pick(R32)}, ${pick(R32)}, ${imm8() & 31}`;
    case 39: {
      // A string instruction, repeated or not, over the middle of the data area (either
      // direction stays inside it), rarely running into the hole: each element is one retired
      // instruction, faults and budgets fall between elements.
      const op = pick(["movs", "stos", "lods", "cmps", "scas"]) + pick(["b", "w", "d"]);
      const rep = op.startsWith("cmps") || op.startsWith("scas") ? pick(["repe", "repne", ""]) : pick(["rep", "rep", ""]);
      const into = rnd() < 0.05 ? HOLE - (DATA + 0x800) - 6 : 0x400 + Math.floor(rnd() * 0x40);
      return `push ecx\nmov ecx, ${Math.floor(rnd() * 48)}\nlea esi, [ebp + ${0x400 - Math.floor(rnd() * 0x40)}]\n` +
        `lea edi, [ebp + ${into}]\n${rep} ${op}\npop ecx`;
    }
    default: return `${pick(["adc", "sbb"])} ${pick(R32)}, ${pick(R32)}`;
  }
  }
}

/** A program: a counted loop around a random body, then HLT, and two small subroutines. */
export function program(rnd: () => number, index: number): string {
  let labels = 0;
  const label = () => `.l${index}_${labels++}`;
  const body: string[] = [];
  const n = 1 + Math.floor(rnd() * 24);
  for (let k = 0; k < n; k++) body.push(instruction(rnd, label));
  const loops = 1 + Math.floor(rnd() * 40);
  return `
p${index}:
  mov ecx, ${loops}
.top${index}:
  ${body.join("\n  ")}
  dec ecx
  jnz .top${index}
  hlt
`;
}

const SUBROUTINES = `
sub_add:
  add eax, ebx
  ret
sub_flags:
  push ebx
  setc bl
  rol eax, 3
  pop ebx
  ret
`;

/** Page tables: identity map of the first 4 MiB (user, writable) with a hole; MMIO beyond RAM. */
export function image(programs: string[], rnd: () => number, bits = 32): { ram: Uint8Array; starts: number[] } {
  const m = new Uint8Array(RAM);
  const view = new DataView(m.buffer);
  for (let i = 0; i < 1024; i++) {
    const lin = i << 12;
    view.setUint32(PT0 + i * 4, lin === HOLE ? 0 : (lin | 7) >>> 0, true);
    view.setUint32(PT1 + i * 4, ((0x400000 + lin) | 7) >>> 0, true);
  }
  view.setUint32(PD, PT0 | 7, true);
  view.setUint32(PD + 4, PT0 | 7, true); // 4-8 MiB alias the first 4 MiB: MMIO at 0x300000 is beyond RAM
  for (let k = DATA; k < DATA + 0x8000; k++) m[k] = Math.floor(rnd() * 256);
  const src = [`bits ${bits}`, `org ${bits === 32 ? CODE : 0}`, SUBROUTINES];
  programs.forEach((p, k) => src.push(`times ${SLOT * (k + 1)} - ($ - $$) db 0xcc`, p));
  const code = nasm(src.join("\n"));
  if (CODE + code.length > PD) throw new Error("programs too long");
  m.set(code, CODE);
  return { ram: m, starts: programs.map((_, k) => (bits === 32 ? CODE : 0) + SLOT * (k + 1)) };
}
