// Typed errors for disk images: every problem with an untrusted image has a class and a code.

/** What was wrong, as a stable machine-readable name. */
export type ImageErrorCode =
  | "BAD_MAGIC"
  | "BAD_HEADER"
  | "TRUNCATED"
  | "BAD_CHECKSUM"
  | "OUT_OF_BOUNDS_TABLE"
  | "OVERLAPPING_TABLES"
  | "BAD_CLUSTER_SIZE"
  | "SIZE_OVERFLOW"
  | "BAD_DESCRIPTOR"
  | "BAD_COMPRESSED_DATA"
  | "CORRUPT_IMAGE"
  | "UNSUPPORTED_FEATURE"
  | "UNKNOWN_FORMAT"
  | "BACKING_LOOP"
  | "BACKING_NOT_FOUND"
  | "BACKING_MISMATCH"
  | "READ_ONLY"
  | "LOCKED"
  | "OUT_OF_RANGE"
  | "BAD_ARGUMENT"
  | "IO_ERROR";

/** Base class: `code` names the problem, `path` the file it was found in (if any). */
export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(path ? `${path}: ${message}` : message);
    this.name = new.target.name;
  }
}

/** The bytes of an image contradict its format (magic, header fields, checksums, truncation). */
export class ImageFormatError extends ImageError {}

/** Metadata tables point outside the file, at each other, or describe impossible sizes. */
export class ImageLayoutError extends ImageError {}

/** A valid image uses a feature this implementation does not handle. */
export class ImageUnsupportedError extends ImageError {}

/** Backing files: missing, looping, or not the parent the image expects. */
export class ImageBackingError extends ImageError {}

/** A request against an opened image is not allowed (read-only, locked, out of range). */
export class ImageAccessError extends ImageError {}

/** A bad argument from the caller (CLI sizes, format names, options). */
export class ImageArgumentError extends ImageError {}

/** The host file system failed (permissions, missing file, disk full). */
export class ImageIoError extends ImageError {}

/** Wrap anything thrown by node:fs into an ImageIoError; ImageErrors pass through. */
export function asImageError(err: unknown, path?: string): ImageError {
  if (err instanceof ImageError) return err;
  const e = err as NodeJS.ErrnoException;
  const detail = e && typeof e === "object" && "code" in e ? `${e.code}: ${e.message}` : String(err);
  return new ImageIoError("IO_ERROR", detail, path);
}
