// Tests of the firmware ROM loader.
import { describe, expect, it } from "vitest";
import { FOUR_GIB, loadBios } from "./bios.js";
import { BootImageError, MIB } from "./plan.js";

const MEM = 16 * MIB;

/** Byte-equal (fast for large arrays, unlike toEqual). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

function rom(size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 0xff);
}

describe("loadBios", () => {
  it("maps a 256 KiB ROM at the top of 4 GiB and its last 128 KiB below 1 MiB", () => {
    const image = rom(256 * 1024);
    const plan = loadBios(image, { memSize: MEM });
    expect(plan.writes).toEqual([]);
    const [high, low] = plan.roms;
    expect(high!.gpa).toBe(FOUR_GIB - 256 * 1024);
    expect(same(high!.bytes, image)).toBe(true);
    expect(low!.gpa).toBe(0xe0000);
    expect(same(low!.bytes, image.subarray(128 * 1024))).toBe(true);
    // The reset vector (linear 0xFFFFFFF0) and its real-mode alias (0xFFFF0) hold the same bytes.
    expect(high!.bytes[0xfffffff0 - high!.gpa]).toBe(low!.bytes[0xffff0 - low!.gpa]);
  });

  it("maps a small ROM whole in both places", () => {
    const image = rom(64 * 1024);
    const plan = loadBios(image, { memSize: MEM });
    expect(plan.roms.map((r) => [r.gpa, r.bytes.length])).toEqual([
      [FOUR_GIB - 65536, 65536],
      [0xf0000, 65536],
    ]);
  });

  it("pads an odd-sized ROM at the front so it still ends at 4 GiB", () => {
    const image = rom(1000);
    const plan = loadBios(image, { memSize: MEM });
    const high = plan.roms[0]!;
    expect(high.bytes.length).toBe(4096);
    expect(high.gpa + high.bytes.length).toBe(FOUR_GIB);
    expect(same(high.bytes.subarray(4096 - 1000), image)).toBe(true);
    expect(high.bytes[0]).toBe(0xff);
  });

  it("starts the CPU at the reset vector in real mode", () => {
    const s = loadBios(rom(65536), { memSize: MEM }).state;
    expect(s.cs).toMatchObject({ selector: 0xf000, base: 0xffff0000, limit: 0xffff });
    expect(s.eip).toBe(0xfff0);
    expect(s.cs.base + s.eip).toBe(0xfffffff0);
    expect(s.cr0 & 1).toBe(0);
    expect(s.eflags).toBe(2);
    expect(s.ds).toMatchObject({ selector: 0, base: 0, limit: 0xffff });
    expect(s.idtrLimit).toBe(0xffff);
  });

  it("refuses empty, oversized and memory-clashing ROMs", () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return (err as BootImageError).code;
      }
      return "none";
    };
    expect(code(() => loadBios(new Uint8Array(8), { memSize: MEM }))).toBe("TRUNCATED");
    expect(code(() => loadBios(new Uint8Array(17 * MIB), { memSize: MEM }))).toBe("TOO_LARGE");
    expect(code(() => loadBios(rom(4096), { memSize: 1000 }))).toBe("BAD_OPTION");
  });
});
