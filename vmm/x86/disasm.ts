// Disassembler (Intel syntax) for traces and error messages; decodes with the CPU's decoder and
// opcode table, so what it prints is what the core executes.

import { Decoded, decodeInto, type HandlerResolver, NO_REG, Pfx, slotEntry } from "./decoder.js";
import type { OpcodeEntry } from "./opcodes.js";

const R8 = ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"];
const R16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
const R32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
const SREG = ["es", "cs", "ss", "ds", "fs", "gs", "?", "?"];
const SIZED_STRING = new Set(["movs", "cmps", "stos", "lods", "scas", "ins", "outs"]);
const D_SUFFIX = new Set(["pusha", "popa", "pushf", "popf", "iret"]);

const NONE = () => {};
const RESOLVER: HandlerResolver<null> = { table: [NONE], resolve: () => 0, invalid: 0, tooLong: 0 };

const hex = (v: number) => "0x" + (v >>> 0).toString(16);

/**
 * Disassemble the instruction at `bytes[offset]` in 16- or 32-bit mode. Branch targets are
 * computed as if the instruction were at address `offset`.
 */
export function disassemble(bytes: Uint8Array, offset: number, mode: 16 | 32): { text: string; length: number } {
  const d = new Decoded<null>(1, RESOLVER);
  let truncated = false;
  const src = {
    byteAt(k: number): number {
      const p = offset + k;
      if (p >= bytes.length) {
        truncated = true;
        return 0;
      }
      return bytes[p];
    },
  };
  decodeInto(d, 0, src, mode === 32, RESOLVER);
  const length = d.len[0];
  const e = slotEntry(d, 0);
  if (truncated) return { text: "(truncated)", length: Math.max(0, bytes.length - offset) };
  if (e === null || length > 15) return { text: "(bad)", length: Math.max(1, Math.min(length, 15)) };
  // 0F 01 C1 shares its record with SGDT (reg field 0); register forms of it are the VMX group.
  if (d.opc[0] === 0x101 && d.mod3[0] && d.reg[0] === 0 && d.rm[0] === 1) return { text: "vmcall", length };
  const pfx = d.pfx[0];
  const o32 = (pfx & Pfx.O32) !== 0;
  let m = e.mnemonic;
  if (SIZED_STRING.has(m)) m += o32 ? "d" : "w";
  else if (m === "cbw" && o32) m = "cwde";
  else if (m === "cwd" && o32) m = "cdq";
  else if (D_SUFFIX.has(m) && o32) m += "d";
  let head = "";
  if (pfx & Pfx.LOCK) head += "lock ";
  if (pfx & Pfx.REP) head += m.startsWith("cmps") || m.startsWith("scas") ? "repe " : "rep ";
  if (pfx & Pfx.REPNE) head += "repne ";
  const ops = e.operands.map((o) => operand(d, e, o, o32, offset + length)).filter((s) => s !== "");
  return { text: head + m + (ops.length ? " " + ops.join(", ") : ""), length };
}

function operand(d: Decoded<null>, e: OpcodeEntry, o: string, o32: boolean, next: number): string {
  const regs = o32 ? R32 : R16;
  const imm = d.imm[0];
  switch (o) {
    case "Eb": return rm(d, R8, "byte");
    case "Ew": return rm(d, R16, "word");
    case "Ev": return rm(d, regs, o32 ? "dword" : "word");
    case "M": case "Ma": case "Mp": case "Mq": return rm(d, regs, "");
    case "Gb": return R8[d.reg[0]];
    case "Gw": return R16[d.reg[0]];
    case "Gv": return regs[d.reg[0]];
    case "Sw": return SREG[d.reg[0]];
    case "Cd": return "cr" + d.reg[0];
    case "Dd": return "dr" + d.reg[0];
    case "Rd": return R32[d.rm[0]];
    case "Ib": return e.operands.includes("Iw") ? hex(imm & 0xff) : hex(imm & (e.operands[0] === "Ev" ? (o32 ? -1 : 0xffff) : 0xff));
    case "Iw": return hex((e.operands.includes("Ib") ? d.imm2[0] : imm) & 0xffff);
    case "Iz": case "Iv": return hex(o32 ? imm : imm & 0xffff);
    case "Jb": case "Jz": return hex(o32 ? (next + imm) | 0 : (next + imm) & 0xffff);
    case "Ap": return `${hex(d.imm2[0] & 0xffff)}:${hex(o32 ? imm : imm & 0xffff)}`;
    case "Ob": case "Ov": return `${segPrefix(d)}[${hex(d.disp[0] & d.amask[0])}]`;
    case "eAX": return o32 ? "eax" : "ax";
    default:
      if (/^e[A-Z]{2}$/.test(o)) return (o32 ? "e" : "") + o.slice(1).toLowerCase();
      return o.toLowerCase();
  }
}

function segPrefix(d: Decoded<null>): string {
  return d.pfx[0] & Pfx.SEG ? SREG[d.seg[0]] + ":" : "";
}

function rm(d: Decoded<null>, regs: string[], size: string): string {
  if (d.mod3[0]) return regs[d.rm[0]];
  const names = d.amask[0] === -1 ? R32 : R16;
  const parts: string[] = [];
  if (d.base[0] !== NO_REG) parts.push(names[d.base[0]]);
  if (d.index[0] !== NO_REG) parts.push(names[d.index[0]] + (d.scale[0] ? "*" + (1 << d.scale[0]) : ""));
  const disp = d.disp[0];
  let text = parts.join("+");
  if (disp !== 0 || parts.length === 0) {
    const v = d.amask[0] === -1 ? disp : (disp << 16) >> 16;
    if (parts.length === 0) text = hex(d.amask[0] === -1 ? disp : disp & 0xffff);
    else text += v < 0 ? "-" + hex(-v) : "+" + hex(v);
  }
  return `${size ? size + " " : ""}${segPrefix(d)}[${text}]`;
}
