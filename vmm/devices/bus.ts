// The I/O port bus and the MMIO bus: devices register address ranges and answer reads and writes.
//
// Every VM exit for port I/O or MMIO ends in `read(addr, size)` / `write(addr, size, value)` on one
// of these buses. A range says which access sizes its device handles natively; other accesses
// are adapted: a narrower access is served by the aligned native access that contains it (reads
// extract, writes read-modify-write), a wider or straddling access is split into halves.
// Addresses that no device claims read as all-ones and drop writes; they are counted so traces
// can show what a guest probed.

/**
 * VM time one port access takes by default (ns): about a microsecond on a PC, where port I/O is a
 * non-posted cycle on the ISA/LPC bus (Linux's port 0x80 delay relies on it). A guest that polls
 * a port for a while then reads it a realistic number of times, not once per few instructions:
 * Linux's check of the ACPI PM timer against the PIT (30 ms) read port 0x61 1.9 million times
 * with no time charged, 29,000 with this.
 */
export const PORT_ACCESS_NS = 1000;

/** An access size in bytes. */
export type AccessSize = 1 | 2 | 4;

/** Bit set of natively handled access sizes: any OR of 1, 2 and 4. */
export type SizeMask = number;

/** What a device implements for each range it registers. Addresses are absolute (port number or guest-physical). */
export interface BusHandler {
  /** Read `size` bytes at `addr`; the result is the unsigned little-endian value. */
  read(addr: number, size: AccessSize): number;
  /** Write the low `size` bytes of `value` at `addr`. */
  write(addr: number, size: AccessSize, value: number): void;
}

/** Every device model: a name for traces, its state as a plain msgpack-serialisable record, and reset. */
export interface Device {
  readonly name: string;
  /** A plain record (numbers, booleans, strings, arrays, Uint8Array, nested records). */
  saveState(): object;
  /** Restore a record made by saveState(); throws DeviceStateError (and changes nothing) when malformed. */
  loadState(state: unknown): void;
  /** Power-on / hardware reset state. */
  reset(): void;
}

/** A range given to register(). */
export interface BusRange {
  /** Device name for traces and conflict errors. */
  name: string;
  base: number;
  length: number;
  /** Access sizes the handler takes as they come (OR of 1, 2, 4). */
  sizes: SizeMask;
  handler: BusHandler;
  /** VM time (ns) a read of the range takes; default: the bus's (ports PORT_ACCESS_NS, MMIO 0). */
  readNs?: number;
  /** The same for a write (MMIO writes are posted: the CPU does not wait for them). */
  writeNs?: number;
}

/** Registering a range that overlaps one already registered, or outside the bus. */
export class BusConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BusConflictError";
  }
}

/** Called for accesses no device claimed (for tracing). */
export type UnclaimedListener = (addr: number, size: AccessSize, write: boolean, value: number) => void;

const ONES: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

/** Mask `value` to `size` bytes, unsigned. */
export function maskToSize(value: number, size: AccessSize): number {
  return size === 4 ? value >>> 0 : value & ONES[size];
}

abstract class Bus {
  /** Accesses that hit no device (each split part counts once). */
  unclaimedReads = 0;
  unclaimedWrites = 0;
  onUnclaimed: UnclaimedListener | null = null;
  protected ranges: BusRange[] = [];

  constructor(
    readonly limit: number,
    /** VM time (ns) an access takes where its range names none, also where no device answers. */
    private readonly defaultNs: number,
  ) {}

  /** How long an access at `addr` takes, in ns of VM time (the VMM stalls the vCPU that long). */
  accessNs(addr: number, write: boolean): number {
    const r = this.find(addr);
    return (write ? r?.writeNs : r?.readNs) ?? this.defaultNs;
  }

  /** The range that contains `addr`, or undefined. */
  protected abstract find(addr: number): BusRange | undefined;
  protected abstract added(range: BusRange): void;
  protected abstract removed(range: BusRange): void;

  /** Claim [base, base+length) for a device. Throws BusConflictError on overlap. */
  register(range: BusRange): BusRange {
    const { base, length, name, sizes } = range;
    if (!Number.isInteger(base) || !Number.isInteger(length) || length <= 0 || base < 0 || base + length > this.limit) {
      throw new BusConflictError(`${name}: range ${hex(base)}+${hex(length)} outside the bus`);
    }
    if ((sizes & 7) === 0 || (sizes & ~7) !== 0) throw new BusConflictError(`${name}: bad size mask ${sizes}`);
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < base + length) {
        throw new BusConflictError(`${name}: range ${hex(base)}+${hex(length)} overlaps ${r.name} at ${hex(r.base)}+${hex(r.length)}`);
      }
    }
    const entry = { ...range };
    this.ranges.push(entry);
    this.added(entry);
    return entry;
  }

  /** Release a range returned by register(). */
  unregister(range: BusRange): void {
    const i = this.ranges.indexOf(range);
    if (i < 0) return;
    this.ranges.splice(i, 1);
    this.removed(range);
  }

  /** The registered ranges, for diagnostics. */
  list(): readonly BusRange[] {
    return this.ranges;
  }

  read(addr: number, size: AccessSize): number {
    const r = this.find(addr);
    if (r !== undefined && addr + size <= r.base + r.length && (r.sizes & size) !== 0) {
      return maskToSize(r.handler.read(addr, size), size);
    }
    return this.adaptRead(r, addr, size);
  }

  write(addr: number, size: AccessSize, value: number): void {
    const r = this.find(addr);
    if (r !== undefined && addr + size <= r.base + r.length && (r.sizes & size) !== 0) {
      r.handler.write(addr, size, maskToSize(value, size));
      return;
    }
    this.adaptWrite(r, addr, size, maskToSize(value, size));
  }

  private adaptRead(r: BusRange | undefined, addr: number, size: AccessSize): number {
    if (r === undefined) {
      if (size === 1) {
        this.unclaimedReads++;
        this.onUnclaimed?.(addr, 1, false, 0xff);
        return 0xff;
      }
    } else {
      const wide = widerNative(r, addr, size);
      if (wide !== null) {
        const v = maskToSize(r.handler.read(wide.addr, wide.size), wide.size);
        return maskToSize(v >>> ((addr - wide.addr) * 8), size);
      }
      if (size === 1) return 0xff; // cannot happen: a range always has some native size
    }
    const half = (size >> 1) as AccessSize;
    const lo = this.read(addr, half);
    const hi = this.read(addr + half, half);
    return (lo | (hi << (half * 8))) >>> 0;
  }

  private adaptWrite(r: BusRange | undefined, addr: number, size: AccessSize, value: number): void {
    if (r === undefined) {
      if (size === 1) {
        this.unclaimedWrites++;
        this.onUnclaimed?.(addr, 1, true, value);
        return;
      }
    } else {
      const wide = widerNative(r, addr, size);
      if (wide !== null) {
        const shift = (addr - wide.addr) * 8;
        const mask = ONES[size] * 2 ** shift;
        const old = maskToSize(r.handler.read(wide.addr, wide.size), wide.size);
        const merged = (old - (old & mask) + value * 2 ** shift) >>> 0;
        r.handler.write(wide.addr, wide.size, maskToSize(merged, wide.size));
        return;
      }
      if (size === 1) return;
    }
    const half = (size >> 1) as AccessSize;
    this.write(addr, half, value & ONES[half]);
    this.write(addr + half, half, Math.floor(value / 2 ** (half * 8)) & ONES[half]);
  }
}

/** The smallest native access wider than `size`, aligned, containing [addr, addr+size) and inside the range. */
function widerNative(r: BusRange, addr: number, size: AccessSize): { addr: number; size: AccessSize } | null {
  for (const wide of [2, 4] as AccessSize[]) {
    if (wide <= size || (r.sizes & wide) === 0) continue;
    const aligned = addr - (addr % wide);
    if (aligned >= r.base && aligned + wide <= r.base + r.length && addr + size <= aligned + wide) {
      return { addr: aligned, size: wide };
    }
  }
  return null;
}

function hex(n: number): string {
  return "0x" + n.toString(16);
}

/** The 64 KiB I/O port space of one VM. Lookup is a table indexed by port. */
export class IoBus extends Bus {
  /** Index into `slots` + 1 for each port; 0 = unclaimed. */
  private readonly owner = new Uint16Array(0x10000);
  private readonly slots: (BusRange | undefined)[] = [undefined];

  constructor() {
    super(0x10000, PORT_ACCESS_NS);
  }

  protected find(port: number): BusRange | undefined {
    return this.slots[this.owner[port & 0xffff]];
  }

  protected added(range: BusRange): void {
    let slot = this.slots.indexOf(undefined, 1);
    if (slot < 0) slot = this.slots.push(undefined) - 1;
    this.slots[slot] = range;
    this.owner.fill(slot, range.base, range.base + range.length);
  }

  protected removed(range: BusRange): void {
    const slot = this.owner[range.base];
    this.owner.fill(0, range.base, range.base + range.length);
    this.slots[slot] = undefined;
  }
}

/** The 4 GiB guest-physical MMIO space of one VM (addresses not backed by RAM). Few ranges: a sorted list. */
export class MmioBus extends Bus {
  private last: BusRange | undefined;

  constructor() {
    super(2 ** 32, 0);
  }

  protected find(addr: number): BusRange | undefined {
    const l = this.last;
    if (l !== undefined && addr >= l.base && addr < l.base + l.length) return l;
    for (const r of this.ranges) {
      if (addr >= r.base && addr < r.base + r.length) {
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  protected added(): void {
    this.ranges.sort((a, b) => a.base - b.base);
  }

  protected removed(range: BusRange): void {
    if (this.last === range) this.last = undefined;
  }
}
