// Batch and result encodings between TypeScript and the native harness.
import { describe, expect, it } from "vitest";
import { BatchFormatError, CaseKind, RESULT_MAGIC, Status, applyRuns, decodeResults, encodeBatch } from "./case-format.js";
import { CODE_BASE, DATA_BASE, DATA_SIZE } from "./layout.js";

const base = { kind: CaseKind.INTEGER, fillSeed: 7, regs: [1, 2, 3, 4, 5, 6, 7, 8], eflags: 0x41, ext: new Uint8Array(0) };

describe("case format", () => {
  it("encodes a header and 4-aligned cases", () => {
    const bytes = encodeBatch(CaseKind.INTEGER, [{ ...base, id: 3, code: new Uint8Array([0x90, 0x90, 0x90]) }]);
    const view = new DataView(bytes.buffer);
    expect(bytes.length).toBe(36 + 48 + 4);
    expect([1, 2, 3, 5].map((i) => view.getUint32(i * 4, true))).toEqual([CaseKind.INTEGER, 1, CODE_BASE, DATA_BASE]);
    expect(view.getUint32(36 + 4, true)).toBe(3); // code length
    expect(view.getUint32(36 + 44, true)).toBe(0x41); // eflags
    expect(Array.from(bytes.subarray(84, 88))).toEqual([0x90, 0x90, 0x90, 0]);
  });

  it("refuses cases that do not fit the batch kind", () => {
    expect(() => encodeBatch(CaseKind.FPU, [{ ...base, id: 0, code: new Uint8Array(1) }])).toThrow(BatchFormatError);
    expect(() => encodeBatch(CaseKind.INTEGER, [{ ...base, id: 0, regs: [1], code: new Uint8Array(1) }])).toThrow(BatchFormatError);
  });

  it("decodes results with data runs and rejects truncated or foreign streams", () => {
    const words = [RESULT_MAGIC, 1, 9, Status.EXCEPTION, 13, 0, CODE_BASE + 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x202, 1, 0x10, 3];
    const bytes = new Uint8Array(words.length * 4 + 4);
    const view = new DataView(bytes.buffer);
    words.forEach((w, i) => view.setUint32(i * 4, w >>> 0, true));
    bytes.set([0xaa, 0xbb, 0xcc], words.length * 4);
    const [r] = decodeResults(CaseKind.INTEGER, bytes);
    expect(r).toMatchObject({ id: 9, status: Status.EXCEPTION, vector: 13, eip: CODE_BASE + 2, regs: [1, 2, 3, 4, 5, 6, 7, 8], eflags: 0x202 });
    const image = applyRuns(new Uint8Array(DATA_SIZE), r.runs);
    expect(Array.from(image.subarray(0x10, 0x14))).toEqual([0xaa, 0xbb, 0xcc, 0]);
    expect(() => decodeResults(CaseKind.INTEGER, bytes.subarray(0, 40))).toThrow(BatchFormatError);
    expect(() => decodeResults(CaseKind.INTEGER, new Uint8Array(8))).toThrow(BatchFormatError);
  });
});
