// The structural msgpack check: accepts what our encoder makes of plain data, refuses what would
// cost the decoder memory or stack before it noticed a problem.
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SnapshotError } from "./errors.js";
import { MAX_DEPTH, checkMsgpack, decodeMsgpack } from "./msgpack-check.js";

/** Plain values as snapshot records hold them (maps with string keys, no ext types). */
const plain = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.maxSafeInteger(),
    fc.string(),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie("value"), { maxLength: 20 }),
    fc.dictionary(fc.string().filter((k) => k !== "__proto__"), tie("value"), { maxKeys: 20 }),
  ),
})).value;

const refusal = (bytes: Uint8Array): SnapshotError => {
  try {
    decodeMsgpack(bytes, "devices");
  } catch (err) {
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).section).toBe("devices");
    return err as SnapshotError;
  }
  throw new Error("not refused");
};

describe("msgpack check", () => {
  it("accepts the encoding of any plain value and decodes it as the library does", () => {
    fc.assert(
      fc.property(plain, (value) => {
        const bytes = encode(value);
        expect(decodeMsgpack(bytes, "devices")).toEqual(decode(bytes));
      }),
      { numRuns: 500 },
    );
  });

  it("refuses every strict prefix and every extension of a valid encoding", () => {
    fc.assert(
      fc.property(plain, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 }), (value, cut, extra) => {
        const bytes = encode(value);
        refusal(bytes.subarray(0, cut % bytes.length));
        refusal(new Uint8Array([...bytes, ...extra]));
      }),
      { numRuns: 500 },
    );
  });

  it("refuses huge counts, deep nesting, ext types, non-string keys, 0xc1", () => {
    expect(refusal(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])).detail).toContain("4294967295 entries");
    expect(refusal(new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0])).detail).toContain("map of 4294967295");
    expect(refusal(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x41])).detail).toContain("str of 4294967295 bytes");
    expect(refusal(new Uint8Array([0xc6, 0x7f, 0xff, 0xff, 0xff])).detail).toContain("bin of 2147483647 bytes");
    const deep = new Uint8Array(1_000_000).fill(0x91);
    deep[deep.length - 1] = 0xc0;
    expect(refusal(deep).detail).toContain(`deeper than ${MAX_DEPTH}`);
    const ok = new Uint8Array(MAX_DEPTH + 1).fill(0x91);
    ok[MAX_DEPTH] = 0xc0;
    checkMsgpack(ok.subarray(1), "devices"); // MAX_DEPTH arrays deep, holding nil
    expect(refusal(encode(new Date(0))).detail).toContain("extension type");
    expect(refusal(new Uint8Array([0xd4, 0x01, 0x00])).detail).toContain("extension type 0xd4");
    expect(refusal(new Uint8Array([0x81, 0x01, 0x02])).detail).toContain("map key is not a string");
    expect(refusal(new Uint8Array([0xc1])).detail).toContain("0xc1");
    expect(refusal(new Uint8Array([0xcb, 0, 0])).detail).toContain("ends inside a number");
    expect(refusal(new Uint8Array([])).detail).toContain("ends inside a value");
    // the decoder's own refusals are wrapped too
    expect(refusal(new Uint8Array([0x81, 0xa9, ...Buffer.from("__proto__"), 0x01])).field).toBe("msgpack");
  });
});
