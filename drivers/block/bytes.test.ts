// Byte helpers: sizes with suffixes, zero detection, checked 64-bit reads.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatSize, isZero, parseSize, u64 } from "./bytes.js";
import { ImageError } from "./errors.js";

describe("parseSize", () => {
  it.each([
    ["512", 512], ["64K", 65536], ["64k", 65536], ["10M", 10 * 2 ** 20], ["2G", 2 * 2 ** 30], ["1T", 2 ** 40],
    ["1.5G", 1.5 * 2 ** 30], ["4MiB", 4 * 2 ** 20], ["7b", 7],
  ])("%s = %i", (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(["", "G", "12Q", "-1", "1e3", "1 2", "99999999E"])("refuses %j", (text) => expect(parseSize(text)).toBeUndefined());
});

describe("isZero", () => {
  it("finds a single non-zero byte anywhere, also across the 64 KiB steps", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200_000 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (len, pos, value) => {
        const buf = new Uint8Array(len);
        expect(isZero(buf)).toBe(true);
        buf[pos % len] = value;
        expect(isZero(buf)).toBe(false);
        expect(isZero(buf.subarray(0, pos % len))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("u64 and formatSize", () => {
  it("refuses values beyond 2^53 with SIZE_OVERFLOW", () => {
    const v = new DataView(new ArrayBuffer(8));
    v.setBigUint64(0, 2n ** 53n);
    try {
      u64(v, 0, false, "x");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ImageError);
      expect((err as ImageError).code).toBe("SIZE_OVERFLOW");
    }
    v.setBigUint64(0, 2n ** 53n - 1n, true);
    expect(u64(v, 0, true, "x")).toBe(2 ** 53 - 1);
  });

  it("prints binary units like qemu-img", () => {
    expect(formatSize(512)).toBe("512 B");
    expect(formatSize(64 * 2 ** 20)).toBe("64 MiB");
    expect(formatSize(1.5 * 2 ** 30)).toBe("1.5 GiB");
  });
});
