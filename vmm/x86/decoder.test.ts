// The decoder's derived tables: each record's immediates (read from a list, not by operand
// strings) and its index (the handler resolver's table), against encodings whose fields are known.

import { describe, expect, it } from "vitest";
import { Decoded, decodeInto, type ByteSource } from "./decoder.js";
import { CPU_HANDLERS } from "./handlers/index.js";
import { OPCODES, RECORD_COUNT, type OpcodeEntry } from "./opcodes.js";

class Bytes implements ByteSource {
  constructor(private readonly bytes: number[]) {}
  byteAt(k: number): number {
    return this.bytes[k] ?? 0x90;
  }
}

/** Decode `bytes` (32-bit code unless told otherwise): length and the fields immediates fill. */
function decode(bytes: number[], default32 = true): { len: number; imm: number; imm2: number; disp: number; handler: number } {
  const d = new Decoded(2, CPU_HANDLERS);
  decodeInto(d, 0, new Bytes(bytes), default32, CPU_HANDLERS);
  return { len: d.len[0], imm: d.imm[0], imm2: d.imm2[0], disp: d.disp[0], handler: d.handler[0] };
}

function records(): OpcodeEntry[] {
  const out: OpcodeEntry[] = [];
  for (const e of OPCODES) {
    if (e === null) continue;
    out.push(e);
    for (const g of e.group ?? []) if (g !== null) out.push(g);
  }
  return out;
}

describe("decoder", () => {
  it("numbers every record once, below RECORD_COUNT", () => {
    const indexes = records().map((e) => e.index);
    expect(new Set(indexes).size).toBe(indexes.length);
    expect(Math.max(...indexes)).toBeLessThan(RECORD_COUNT);
  });

  it("lists each record's immediate operands in order", () => {
    const immediate = /^(I[bwzv]|J[bz]|Ap|O[bv])$/;
    for (const e of records()) expect(e.immediates.length, `${e.mnemonic} ${e.operands.join(",")}`).toBe(e.operands.filter((o) => immediate.test(o)).length);
  });

  it("reads every kind of immediate, by operand and address size", () => {
    expect(decode([0x6a, 0xfe])).toMatchObject({ len: 2, imm: -2 }); // push Ib
    expect(decode([0xeb, 0x80])).toMatchObject({ len: 2, imm: -128 }); // jmp Jb
    expect(decode([0xc8, 0x34, 0x12, 0x05])).toMatchObject({ len: 4, imm: 5, imm2: 0x1234 }); // enter Iw,Ib
    expect(decode([0xc2, 0x08, 0x00])).toMatchObject({ len: 3, imm: 8 }); // ret Iw
    expect(decode([0xb8, 0x78, 0x56, 0x34, 0x12])).toMatchObject({ len: 5, imm: 0x12345678 }); // mov eAX,Iv
    expect(decode([0x66, 0xb8, 0x34, 0x12])).toMatchObject({ len: 4, imm: 0x1234 }); // o16 mov AX,Iv
    expect(decode([0x81, 0xc0, 1, 0, 0, 0])).toMatchObject({ len: 6, imm: 1 }); // add Ev,Iz (a group member)
    expect(decode([0x6b, 0xc0, 0x03])).toMatchObject({ len: 3, imm: 3 }); // imul Gv,Ev,Ib
    expect(decode([0xe8, 0xfb, 0xff, 0xff, 0xff])).toMatchObject({ len: 5, imm: -5 }); // call Jz
    expect(decode([0xe8, 0xfd, 0xff], false)).toMatchObject({ len: 3, imm: -3 }); // call Jz, 16-bit
    expect(decode([0xea, 0x78, 0x56, 0x34, 0x12, 0x08, 0x00])).toMatchObject({ len: 7, imm: 0x12345678, imm2: 8 }); // jmp Ap
    expect(decode([0xa1, 0x00, 0x10, 0x00, 0x00])).toMatchObject({ len: 5, disp: 0x1000 }); // mov eAX,Ov
    expect(decode([0x67, 0xa0, 0x00, 0x10])).toMatchObject({ len: 4, disp: 0x1000 }); // a16 mov AL,Ob
    expect(decode([0x0f, 0x85, 0x10, 0, 0, 0])).toMatchObject({ len: 6, imm: 0x10 }); // jnz Jz
  });

  it("resolves handlers by record index, for both operand sizes", () => {
    const add32 = decode([0x01, 0xc0]).handler, add16 = decode([0x66, 0x01, 0xc0]).handler;
    expect(add32).not.toBe(add16);
    for (const h of [add32, add16, decode([0x81, 0xc0, 1, 0, 0, 0]).handler, decode([0x0f, 0xc8]).handler]) expect(h).toBeGreaterThan(CPU_HANDLERS.tooLong);
    expect(decode([0x81, 0xc0, 1, 0, 0, 0]).handler).not.toBe(decode([0x81, 0xe8, 1, 0, 0, 0]).handler); // add, sub: members of one group
    expect(decode([0xf0, 0x01, 0xc0]).handler).toBe(CPU_HANDLERS.invalid); // LOCK on a register destination
  });
});
