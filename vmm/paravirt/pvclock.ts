// pvclock records (the ABI KVM and Xen share): the per-vCPU time record and the wall clock record
// in guest memory, and the multiplier/shift that turn TSC ticks into nanoseconds.
//
// A guest reads its time as system_time + scale(tsc - tsc_timestamp), where scale shifts the
// delta left by tsc_shift (right when negative) and multiplies it by tsc_to_system_mul / 2^32.
// Writers make `version` odd before changing a record and even after, so a reader that saw the
// same even version before and after read a consistent record.

import type { GuestRam } from "../devices/virtio/index.js";
import { guestBytes } from "./guest-bytes.js";

/** struct pvclock_vcpu_time_info: 32 bytes, little-endian. */
export const TIME_INFO = { VERSION: 0, TSC_TIMESTAMP: 8, SYSTEM_TIME: 16, MUL: 24, SHIFT: 28, FLAGS: 29, BYTES: 32 } as const;
/** struct pvclock_wall_clock: 12 bytes. */
export const WALL_CLOCK = { VERSION: 0, SEC: 4, NSEC: 8, BYTES: 12 } as const;
/** flags: the TSC is the same on every vCPU and never goes back (the guest may skip its own guard). */
export const PVCLOCK_TSC_STABLE_BIT = 1 << 0;

/** Thrown for a TSC rate the record cannot express (not finite, not positive, out of range). */
export class PvclockScaleError extends Error {
  constructor(readonly nsPerTick: number) {
    super(`no pvclock scale for ${nsPerTick} ns per TSC tick`);
    this.name = "PvclockScaleError";
  }
}

/** The TSC-to-ns conversion of a record: ns = ((delta << shift) * mul) >> 32 (shift < 0: delta >> -shift). */
export interface TscScale {
  /** tsc_to_system_mul, in [2^31, 2^32). */
  mul: number;
  /** tsc_shift, a signed byte. */
  shift: number;
}

/**
 * The scale for a TSC that ticks every `nsPerTick` ns: the shift puts nsPerTick / 2^shift in
 * [0.5, 1), so mul keeps 32 significant bits. Exact (no rounding) when nsPerTick has at most 32
 * significant bits, which every integer below 2^32 and every power of two has.
 */
export function tscScale(nsPerTick: number): TscScale {
  if (!Number.isFinite(nsPerTick) || nsPerTick <= 0) throw new PvclockScaleError(nsPerTick);
  const shift = Math.floor(Math.log2(nsPerTick)) + 1;
  let mul = Math.round(nsPerTick * 2 ** (32 - shift));
  // log2 may be off by one ulp at powers of two: bring mul back into [2^31, 2^32).
  let s = shift;
  if (mul >= 2 ** 32) {
    s++;
    mul = Math.round(nsPerTick * 2 ** (32 - s));
  } else if (mul < 2 ** 31) {
    s--;
    mul = Math.round(nsPerTick * 2 ** (32 - s));
  }
  if (s < -31 || s > 31 || mul < 2 ** 31 || mul >= 2 ** 32) throw new PvclockScaleError(nsPerTick);
  return { mul, shift: s };
}

/** The guest's side of the formula (what Linux's pvclock_scale_delta computes), for tests and checks. */
export function scaleDelta(delta: bigint, scale: TscScale): bigint {
  const shifted = scale.shift < 0 ? delta >> BigInt(-scale.shift) : delta << BigInt(scale.shift);
  return (shifted * BigInt(scale.mul)) >> 32n;
}

/** What a time record says: at TSC `tsc`, the vCPU's system time was `systemNs`. */
export interface TimeInfo {
  tsc: bigint;
  systemNs: bigint;
  scale: TscScale;
  flags: number;
}

/**
 * Write the record at guest-physical `gpa`, by the version protocol. False (and nothing written)
 * when the record is not wholly inside guest RAM: the guest gave a bad address, which it alone pays for.
 */
export function writeTimeInfo(ram: GuestRam, gpa: number, info: TimeInfo): boolean {
  const bytes = guestBytes(ram, gpa, TIME_INFO.BYTES);
  if (bytes === null) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = beginUpdate(view);
  view.setBigUint64(TIME_INFO.TSC_TIMESTAMP, BigInt.asUintN(64, info.tsc), true);
  view.setBigUint64(TIME_INFO.SYSTEM_TIME, BigInt.asUintN(64, info.systemNs), true);
  view.setUint32(TIME_INFO.MUL, info.scale.mul, true);
  view.setInt8(TIME_INFO.SHIFT, info.scale.shift);
  view.setUint8(TIME_INFO.FLAGS, info.flags);
  view.setUint32(TIME_INFO.VERSION, version + 1, true);
  return true;
}

/** Write the wall clock record (Unix time when system time was 0) at `gpa`; false when outside RAM. */
export function writeWallClock(ram: GuestRam, gpa: number, sec: number, nsec: number): boolean {
  const bytes = guestBytes(ram, gpa, WALL_CLOCK.BYTES);
  if (bytes === null) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = beginUpdate(view);
  view.setUint32(WALL_CLOCK.SEC, sec >>> 0, true);
  view.setUint32(WALL_CLOCK.NSEC, nsec >>> 0, true);
  view.setUint32(WALL_CLOCK.VERSION, version + 1, true);
  return true;
}

/**
 * Unix time (whole seconds and ns) at system time 0, from a clock that read `seconds` at system
 * time `atNs`: the boot time a wall clock record holds. Exact in integers (a Unix time in ns is
 * beyond 2^53).
 */
export function bootEpoch(seconds: number, atNs: number): { sec: number; nsec: number } {
  const total = BigInt(Math.floor(seconds)) * 1_000_000_000n - BigInt(Math.round(atNs));
  const sec = total >= 0n ? total / 1_000_000_000n : 0n;
  return { sec: Number(sec), nsec: total >= 0n ? Number(total % 1_000_000_000n) : 0 };
}

/** Make the version odd (an update is in progress) and return it; the caller ends with version + 1. */
function beginUpdate(view: DataView): number {
  let version = view.getUint32(0, true);
  if (version & 1) version++; // junk from before the guest registered the record
  version = (version + 1) >>> 0;
  view.setUint32(0, version, true);
  return version;
}
