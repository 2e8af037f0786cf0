// The x87 unit inside the core: #NM from CR0.EM/TS/MP, #MF with CR0.NE, FERR# and the freeze without it.
import { describe, expect, it } from "vitest";
import { CASE_DATA_SIZE, type FpuCase, IMAGE_SIZE } from "./case.js";
import { EngineSide } from "./engine-side.js";

function program(code: number[]): FpuCase {
  const image = new Uint8Array(IMAGE_SIZE);
  const v = new DataView(image.buffer);
  v.setUint32(0, 0xffff037f, true);
  v.setUint32(4, 0xffff0000, true);
  v.setUint32(8, 0xffffffff, true); // all empty
  const data = new Uint8Array(CASE_DATA_SIZE);
  data[0] = 0x7b; // control word 037B: ZE unmasked
  data[1] = 0x03;
  return { code: new Uint8Array(code), image, data, eflags: 0, text: "", approximate: false };
}

const FLD1 = [0xd9, 0xe8], FLDZ = [0xd9, 0xee], FDIVP = [0xde, 0xf9], FWAIT = [0x9b];
const FLDCW = [0xd9, 0x2b]; // fldcw [ebx]

describe("x87 in the core", () => {
  const side = new EngineSide();
  const PE_ET_NE = 0x31;

  it("runs x87 code in protected mode", () => {
    const r = side.run(program([...FLD1, ...FLD1, 0xde, 0xc1]));
    expect(r.status).toBe(0);
    expect(r.image[28 + 9]).toBe(0x40); // 2.0
  });

  it("CR0.TS: ESC raises #NM; WAIT raises #NM only with MP", () => {
    side.run(program(FLD1), PE_ET_NE | 8);
    expect(side.lastVector).toBe(7);
    expect(side.run(program(FWAIT), PE_ET_NE | 8).status).toBe(0);
    side.run(program(FWAIT), PE_ET_NE | 8 | 2);
    expect(side.lastVector).toBe(7);
  });

  it("CR0.EM: ESC raises #NM, WAIT does not", () => {
    side.run(program(FLD1), PE_ET_NE | 4);
    expect(side.lastVector).toBe(7);
    expect(side.run(program(FWAIT), PE_ET_NE | 4).status).toBe(0);
  });

  it("an unmasked exception: #MF at the next waiting instruction with CR0.NE", () => {
    const r = side.run(program([...FLDCW, ...FLD1, ...FLDZ, ...FDIVP, ...FWAIT]));
    expect(r.status).toBe(1);
    expect(r.offset).toBe(8);
  });

  it("without CR0.NE FERR# is asserted and the waiting instruction freezes the CPU (a HLT exit)", () => {
    expect(() => side.run(program([...FLDCW, ...FLD1, ...FLDZ, ...FDIVP, ...FWAIT, ...FLD1]), 0x11)).toThrow("engine stopped with HLT");
    expect(side.x87.ferr).toBe(true);
  });
});
