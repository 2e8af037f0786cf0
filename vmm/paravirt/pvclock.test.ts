// pvclock records: the TSC scale against the guest's own formula, the record layout and version
// protocol, bounds, and the boot epoch of the wall clock.

import { describe, expect, it } from "vitest";
import { FlatGuestRam } from "../devices/virtio/index.js";
import { PVCLOCK_TSC_STABLE_BIT, PvclockScaleError, TIME_INFO, WALL_CLOCK, bootEpoch, scaleDelta, tscScale, writeTimeInfo, writeWallClock } from "./pvclock.js";

describe("tscScale", () => {
  it("converts ticks to ns exactly for integer and power-of-two tick lengths", () => {
    for (const ns of [1, 2, 3, 5, 7, 10, 1000, 0.5, 0.25, 1 / 1024, 65535]) {
      const scale = tscScale(ns);
      expect(scale.mul).toBeGreaterThanOrEqual(2 ** 31);
      expect(scale.mul).toBeLessThan(2 ** 32);
      for (const ticks of [0n, 1n, 4096n, 123_456_789n, 10n ** 12n + 7n]) {
        // Exact where ticks * ns is an integer; the guest's formula truncates like floor.
        const want = BigInt(Math.floor(Number(ticks) * ns));
        if (Number(ticks) * ns < 2 ** 53) expect(scaleDelta(ticks, scale)).toBe(want);
      }
    }
  });

  it("is 1 GHz (mul 2^31, shift 1) for one tick per ns, as Linux's tsc_khz sees it", () => {
    const s = tscScale(1);
    expect(s).toEqual({ mul: 2 ** 31, shift: 1 });
    // pvclock_tsc_khz: (10^6 << 32) / mul, shifted back by tsc_shift.
    const khz = ((10n ** 6n << 32n) / BigInt(s.mul)) >> BigInt(s.shift);
    expect(khz).toBe(1_000_000n);
  });

  it("stays within one part in 2^31 for tick lengths that are not dyadic", () => {
    for (const ns of [1 / 3, 0.1, 2.2, 17.3]) {
      const got = Number(scaleDelta(10n ** 12n, tscScale(ns)));
      expect(Math.abs(got - 1e12 * ns) / (1e12 * ns)).toBeLessThan(2 ** -30);
    }
  });

  it("refuses rates a record cannot hold", () => {
    for (const bad of [0, -1, NaN, Infinity, 2 ** 40, 2 ** -40]) expect(() => tscScale(bad)).toThrow(PvclockScaleError);
  });
});

describe("records in guest memory", () => {
  const ram = () => new FlatGuestRam(new Uint8Array(0x3000));
  const info = { tsc: 0x1_2345_6789n, systemNs: 0x9_8765_4321n, scale: tscScale(1), flags: PVCLOCK_TSC_STABLE_BIT };

  it("writes struct pvclock_vcpu_time_info field by field and leaves the version even", () => {
    const r = ram();
    r.setU32(0x1040, 7); // odd junk before the guest registered it
    expect(writeTimeInfo(r, 0x1040, info)).toBe(true);
    const v = new DataView(r.bytes.buffer, 0x1040, 32);
    const version = v.getUint32(TIME_INFO.VERSION, true);
    expect(version % 2).toBe(0);
    expect(version).toBeGreaterThan(7);
    expect(v.getBigUint64(TIME_INFO.TSC_TIMESTAMP, true)).toBe(info.tsc);
    expect(v.getBigUint64(TIME_INFO.SYSTEM_TIME, true)).toBe(info.systemNs);
    expect(v.getUint32(TIME_INFO.MUL, true)).toBe(2 ** 31);
    expect(v.getInt8(TIME_INFO.SHIFT)).toBe(1);
    expect(v.getUint8(TIME_INFO.FLAGS)).toBe(PVCLOCK_TSC_STABLE_BIT);
    // A second write moves the version on (a reader that raced sees the change).
    writeTimeInfo(r, 0x1040, info);
    expect(v.getUint32(0, true)).toBe(version + 2);
    // Nothing outside the 32 bytes changed.
    expect(r.bytes.subarray(0, 0x1040).every((b) => b === 0)).toBe(true);
    expect(r.bytes.subarray(0x1060).every((b) => b === 0)).toBe(true);
  });

  it("ignores records not wholly inside RAM (no write, no exception)", () => {
    const r = ram();
    for (const gpa of [0x3000 - 8, 0x3000, -4, 2 ** 60, 0.5, NaN]) {
      expect(writeTimeInfo(r, gpa, info)).toBe(false);
      expect(writeTimeInfo(r, 0x3000 - 16, info)).toBe(false);
      expect(writeWallClock(r, gpa, 1, 2)).toBe(false);
    }
    expect(r.bytes.every((b) => b === 0)).toBe(true);
  });

  it("writes the wall clock record", () => {
    const r = ram();
    expect(writeWallClock(r, 0x2000 - WALL_CLOCK.BYTES, 1_700_000_000, 250)).toBe(true);
    const at = 0x2000 - WALL_CLOCK.BYTES;
    expect([r.u32(at + WALL_CLOCK.VERSION) % 2, r.u32(at + WALL_CLOCK.SEC), r.u32(at + WALL_CLOCK.NSEC)]).toEqual([0, 1_700_000_000, 250]);
  });
});

describe("bootEpoch", () => {
  it("is the Unix time when system time was 0, to the ns", () => {
    expect(bootEpoch(1_700_000_000, 0)).toEqual({ sec: 1_700_000_000, nsec: 0 });
    expect(bootEpoch(1_700_000_000, 1_500_000_000)).toEqual({ sec: 1_699_999_998, nsec: 500_000_000 });
    expect(bootEpoch(1_700_000_000, -250)).toEqual({ sec: 1_700_000_000, nsec: 250 });
  });
});
