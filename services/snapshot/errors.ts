// Snapshot file errors: every refusal names the section and the field that was wrong.

/**
 * A snapshot file (or a request to write one) that cannot be used. `section` is a section of the
 * file ("header", "vcpus", "devices", "memoryMap", "drives", "ramIndex", "ram") or a part of the
 * container ("file" for the preamble and the host file, "table" for the section table); `field`
 * names the field within it ("memoryBytes", "roms[2].gpa", "page 1234", "crc32"...).
 */
export class SnapshotError extends Error {
  constructor(
    readonly section: string,
    readonly field: string,
    readonly detail: string,
    readonly path?: string,
  ) {
    super(`${path ? `snapshot ${path}: ` : ""}${section} section, ${field}: ${detail}`);
    this.name = "SnapshotError";
  }

  /** The same error, told which file it came from. */
  inFile(path: string): SnapshotError {
    return this.path === undefined ? new SnapshotError(this.section, this.field, this.detail, path) : this;
  }
}

/** Throws a SnapshotError; a statement-shaped helper for checks. */
export function refuse(section: string, field: string, detail: string): never {
  throw new SnapshotError(section, field, detail);
}

/** The message of anything thrown (host errors, zlib, msgpack), for wrapping into a SnapshotError. */
export function describeThrown(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** An untrusted string made safe for a message: quoted, escaped, at most 40 characters shown. */
export function quote(text: string): string {
  const shown = text.length > 40 ? `${text.slice(0, 40)}...` : text;
  return JSON.stringify(shown);
}
