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
  | "BACKING_TOO_DEEP"
  | "BACKING_NOT_FOUND"
  | "BACKING_MISMATCH"
  | "READ_ONLY"
  | "LOCKED"
  | "OUT_OF_RANGE"
  | "NOT_REGULAR_FILE"
  | "BAD_ARGUMENT"
  | "INTERRUPTED"
  | "IO_ERROR";

/**
 * `text` with control characters (C0, DEL, C1, bidirectional overrides) written as \xNN or \uNNNN
 * escapes, so that bytes taken from an image (descriptor lines, backing names) cannot drive the
 * terminal the text is printed on.
 */
export function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}

/** Base class: `code` names the problem, `path` the file it was found in (if any). The message is printable. */
export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(printable(path ? `${path}: ${message}` : message));
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

/** A request against an opened image is not allowed (read-only, locked, out of range), or a path is not a regular file. */
export class ImageAccessError extends ImageError {}

/** A bad argument from the caller (CLI sizes, format names, options). */
export class ImageArgumentError extends ImageError {}

/** The host file system failed (permissions, missing file, disk full), or the operation was interrupted. */
export class ImageIoError extends ImageError {}

/** Wrap anything thrown by node:fs into an ImageIoError; ImageErrors pass through. */
export function asImageError(err: unknown, path?: string): ImageError {
  if (err instanceof ImageError) return err;
  const e = err as NodeJS.ErrnoException;
  // Node's messages usually start with the code already ("EFBIG: file too large, ftruncate").
  const detail = e && typeof e === "object" && "code" in e && !String(e.message).startsWith(`${e.code}:`) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(err);
  return new ImageIoError("IO_ERROR", detail, path);
}
