// Native harness: known sequences with results worked out by hand from the SDM.
import { describe, expect, it } from "vitest";
import { CaseKind, type HostCase, type NativeResult, Status } from "./case-format.js";
import { fillDataArea } from "./fill.js";
import { AF, CF, CODE_BASE, CODE_SIZE, DATA_BASE, DF, IF, OF, PF, STACK_TOP, TF, ZF } from "./layout.js";
import { hostSupport, runNative } from "./native.js";

const support = hostSupport();
const REGS = [0x11111111, 0x22222222, 0x33333333, 0x44444444, DATA_BASE + STACK_TOP, 0x66666666, 0x77777777, 0x88888888];

function hostCase(id: number, code: number[], eflags = 0, regs = REGS): HostCase {
  return { id, kind: CaseKind.INTEGER, code: new Uint8Array(code), fillSeed: 1000 + id, regs, eflags, ext: new Uint8Array(0) };
}

async function run(...cases: HostCase[]): Promise<NativeResult[]> {
  if (!support.ok) throw new Error(support.reason);
  return runNative(support.harness, CaseKind.INTEGER, cases);
}

describe.skipIf(!support.ok)("native harness", () => {
  if (!support.ok) console.warn(`host harness tests skipped: ${support.reason}`);

  it("runs arithmetic and returns registers and flags", async () => {
    // mov eax, 1; add eax, -1 (83 /0 ib): 0 with carry out of bit 31 and bit 3
    const [r] = await run(hostCase(0, [0xb8, 1, 0, 0, 0, 0x83, 0xc0, 0xff]));
    expect(r.status).toBe(Status.DONE);
    expect(r.eip).toBe(CODE_BASE + 8);
    expect(r.regs).toEqual([0, ...REGS.slice(1)]);
    expect(r.eflags & 0xfff).toBe(CF | PF | AF | ZF | IF | 2);
    expect(r.runs).toEqual([]);
  });

  it("loads the arithmetic flags and DF but never TF", async () => {
    const [r] = await run(hostCase(1, [], CF | OF | DF | TF));
    expect(r.status).toBe(Status.DONE);
    expect(r.eflags & (CF | OF | DF | TF)).toBe(CF | OF | DF);
  });

  it("reports stack writes as data-area runs", async () => {
    // push 0x12345678; pop cx (o16): esp ends 2 below the start
    const [r] = await run(hostCase(2, [0x68, 0x78, 0x56, 0x34, 0x12, 0x66, 0x59]));
    expect(r.regs[4]).toBe(DATA_BASE + STACK_TOP - 2);
    expect(r.regs[1]).toBe(0x22225678);
    const image = fillDataArea(1002);
    image.set([0x78, 0x56, 0x34, 0x12], STACK_TOP - 4);
    const changed = r.runs.flatMap((run) => Array.from(run.bytes, (byte, i) => [run.offset + i, byte]));
    for (const [offset, byte] of changed) expect(image[offset]).toBe(byte);
  });

  it("fills the data area like fill.ts", async () => {
    // mov eax, [DATA_BASE + 0x1234]
    const address = DATA_BASE + 0x1234;
    const [r] = await run(hostCase(3, [0xa1, address & 0xff, (address >> 8) & 0xff, (address >> 16) & 0xff, address >>> 24]));
    const fill = fillDataArea(1003);
    expect(r.regs[0]).toBe(new DataView(fill.buffer).getUint32(0x1234, true));
  });

  it("reports faults as vectors with the state at the fault", async () => {
    const results = await run(
      hostCase(4, [0x31, 0xd2, 0xf7, 0xf2]), // xor edx, edx; div edx -> #DE at the div
      hostCase(5, [0x90, 0x0f, 0x0b]), // nop; ud2 -> #UD at the ud2
      hostCase(6, [0xce], OF), // into with OF=1 -> #OF, a trap: EIP after it
      hostCase(7, [0xcc]), // int3 -> #BP, a trap
      hostCase(8, [0x2e, 0x89, 0x05, ...le32(DATA_BASE)]), // mov [cs:DATA_BASE], eax -> #GP(0)
      hostCase(9, [0xa1, ...le32(DATA_BASE - 0x1000)]), // read of the guard page -> #PF
    );
    const summary = results.map((r) => [r.status, r.vector, r.eip - CODE_BASE]);
    expect(summary).toEqual([
      [Status.EXCEPTION, 0, 2],
      [Status.EXCEPTION, 6, 1],
      [Status.EXCEPTION, 4, 1],
      [Status.EXCEPTION, 3, 1],
      [Status.EXCEPTION, 13, 0],
      [Status.EXCEPTION, 14, 0],
    ]);
    expect(results[0].regs[2]).toBe(0); // EDX was cleared before the fault
    expect(results[0].regs[4]).toBe(DATA_BASE + STACK_TOP);
    expect(results[4].errorCode).toBe(0);
    expect(results[5].errorCode & 0x7).toBe(0x4); // user-mode read of a not-present page
    expect(results[5].faultAddress).toBe(DATA_BASE - 0x1000);
  });

  it("carries an FSAVE image in and out for FPU cases (the x87 extension point)", async () => {
    if (!support.ok) return;
    const image = new Uint8Array(108);
    const view = new DataView(image.buffer);
    view.setUint16(0, 0x037f, true); // FNINIT control word
    view.setUint16(8, 0xffff, true); // all registers empty
    const c = { ...hostCase(20, [0xd9, 0xe8]), kind: CaseKind.FPU, ext: image }; // fld1
    const [r] = await runNative(support.harness, CaseKind.FPU, [c]);
    expect(r.status).toBe(Status.DONE);
    const out = new DataView(r.ext.buffer, r.ext.byteOffset, 108);
    expect(out.getUint16(0, true)).toBe(0x037f);
    expect((out.getUint16(4, true) >> 11) & 7).toBe(7); // TOP decremented to 7
    expect(out.getUint16(8, true)).toBe(0x3fff); // physical register 7 valid
    expect(Array.from(r.ext.subarray(28, 38))).toEqual([0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]); // ST0 = 1.0
  });

  it("refuses code that does not fit and goes on with the batch", async () => {
    const results = await run(hostCase(10, new Array(CODE_SIZE).fill(0x90)), hostCase(11, [0x40]));
    expect(results[0].status).toBe(Status.BAD_CASE);
    expect(results[1].status).toBe(Status.DONE);
    expect(results[1].regs[0]).toBe(REGS[0] + 1);
  });
});

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}
