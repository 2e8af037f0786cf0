// Device state records: the typed error for bad snapshots and a checked reader for loadState().
//
// Snapshots and migration streams are untrusted. A device's loadState() first reads the whole
// record through a StateReader (which throws DeviceStateError naming the bad field), and only
// then changes the device, so a malformed record leaves the device as it was.

/** A device state record was malformed: `path` names the field, e.g. "pit.channels[1].mode". */
export class DeviceStateError extends Error {
  constructor(readonly path: string, readonly problem: string) {
    super(`bad device state at ${path}: ${problem}`);
    this.name = "DeviceStateError";
  }
}

/** Reads fields of one plain record, checking type and range. */
export class StateReader {
  private readonly fields: Record<string, unknown>;

  constructor(raw: unknown, readonly path: string) {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) {
      throw new DeviceStateError(path, "not a record");
    }
    this.fields = raw as Record<string, unknown>;
  }

  private field(key: string): unknown {
    if (!Object.hasOwn(this.fields, key)) throw new DeviceStateError(`${this.path}.${key}`, "missing");
    return this.fields[key];
  }

  /** An integer in [min, max]. */
  int(key: string, min: number, max: number): number {
    const v = this.field(key);
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      throw new DeviceStateError(`${this.path}.${key}`, `not an integer in [${min}, ${max}]`);
    }
    return v;
  }

  /** A finite number (e.g. a time in ns), optionally at least `min`. */
  num(key: string, min = -Infinity): number {
    const v = this.field(key);
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      throw new DeviceStateError(`${this.path}.${key}`, "not a finite number");
    }
    return v;
  }

  /** A finite number or null (an unset deadline). */
  numOrNull(key: string): number | null {
    const v = this.field(key);
    if (v === null) return null;
    return this.num(key);
  }

  /** The field is present (for fields newer records have and older ones lack). */
  has(key: string): boolean {
    return Object.hasOwn(this.fields, key);
  }

  /** The field is present and null. */
  isNull(key: string): boolean {
    return this.field(key) === null;
  }

  /** A string of at most `maxLength` characters. */
  str(key: string, maxLength = 256): string {
    const v = this.field(key);
    if (typeof v !== "string" || v.length > maxLength) throw new DeviceStateError(`${this.path}.${key}`, `not a string of at most ${maxLength} characters`);
    return v;
  }

  bool(key: string): boolean {
    const v = this.field(key);
    if (typeof v !== "boolean") throw new DeviceStateError(`${this.path}.${key}`, "not a boolean");
    return v;
  }

  /** Bytes (Uint8Array or an array of byte values) of exactly `length` bytes, or any length up to `maxLength` when `length` is -1. */
  bytes(key: string, length: number, maxLength = 1 << 20): Uint8Array {
    const v = this.field(key);
    const where = `${this.path}.${key}`;
    let out: Uint8Array;
    if (v instanceof Uint8Array) out = new Uint8Array(v);
    else if (Array.isArray(v) && v.every((b) => typeof b === "number" && Number.isInteger(b) && b >= 0 && b <= 255)) {
      out = Uint8Array.from(v as number[]);
    } else throw new DeviceStateError(where, "not a byte array");
    if (length >= 0 ? out.length !== length : out.length > maxLength) {
      throw new DeviceStateError(where, length >= 0 ? `length is not ${length}` : `longer than ${maxLength}`);
    }
    return out;
  }

  /** An array of integers in [min, max] of exactly `length` elements. */
  ints(key: string, length: number, min: number, max: number): number[] {
    const v = this.field(key);
    const where = `${this.path}.${key}`;
    if (!Array.isArray(v) || v.length !== length) throw new DeviceStateError(where, `not an array of ${length}`);
    for (const x of v) {
      if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > max) {
        throw new DeviceStateError(where, `element not an integer in [${min}, ${max}]`);
      }
    }
    return v.slice() as number[];
  }

  /** An array of at most `maxLength` integers in [min, max]. */
  intList(key: string, maxLength: number, min: number, max: number): number[] {
    const v = this.field(key);
    const where = `${this.path}.${key}`;
    if (!Array.isArray(v) || v.length > maxLength) throw new DeviceStateError(where, `not an array of at most ${maxLength}`);
    for (const x of v) {
      if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > max) {
        throw new DeviceStateError(where, `element not an integer in [${min}, ${max}]`);
      }
    }
    return v.slice() as number[];
  }

  /** A nested record. */
  record(key: string): StateReader {
    return new StateReader(this.field(key), `${this.path}.${key}`);
  }

  /** An array of exactly `length` nested records. */
  records(key: string, length: number): StateReader[] {
    const v = this.field(key);
    if (!Array.isArray(v) || v.length !== length) {
      throw new DeviceStateError(`${this.path}.${key}`, `not an array of ${length} records`);
    }
    return v.map((x, i) => new StateReader(x, `${this.path}.${key}[${i}]`));
  }
}
