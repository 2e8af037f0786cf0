// Opening images: probing the format, resolving backing files, detecting backing loops.
import fs from "node:fs";
import path from "node:path";
import { ImageBackingError, asImageError } from "./errors.js";
import { FORMATS, PROBE_ORDER } from "./formats.js";
import { HostFile } from "./host-file.js";
import type { BackingRef, BlockImage, FormatName } from "./image.js";
import { acquireWriteLock, type WriteLock } from "./lock.js";

export interface OpenOptions {
  /** Format to assume; probed from the content when omitted. */
  format?: FormatName;
  /** Open the top image for writing (backing files are always read-only). */
  writable?: boolean;
  /** Most images in a chain, the image itself included (default MAX_CHAIN). */
  maxChain?: number;
}

/** Most images in a backing chain, the top image included; a deeper chain is BACKING_TOO_DEEP. */
export const MAX_CHAIN = 64;

/** Guess the format of an opened file from its first and last bytes. */
export function probeFile(file: HostFile): FormatName {
  const head = new Uint8Array(Math.min(4096, file.size));
  file.readSome(0, head);
  const tail = new Uint8Array(Math.min(512, file.size));
  file.readSome(file.size - tail.length, tail);
  for (const name of PROBE_ORDER) if (FORMATS[name].probe(head, tail)) return name;
  return "raw";
}

/** Probe the format of the file at `filePath`. */
export function probeFormat(filePath: string): FormatName {
  const file = HostFile.open(filePath, false);
  try {
    return probeFile(file);
  } finally {
    file.close();
  }
}

/** Where a backing reference written in `childPath` points (relative names are relative to the child). */
export function resolveBacking(ref: BackingRef, childPath: string): string {
  return path.isAbsolute(ref.file) ? ref.file : path.resolve(path.dirname(childPath), ref.file);
}

/** Open an image and its whole backing chain. Writable opens take the file's write lock. */
export function openImage(filePath: string, options: OpenOptions = {}): BlockImage {
  const maxChain = options.maxChain ?? MAX_CHAIN;
  const lock: WriteLock | null = options.writable ? acquireWriteLock(filePath) : null;
  try {
    const image = openChain(filePath, options.format, options.writable === true, [], maxChain);
    if (!lock) return image;
    const close = image.close.bind(image);
    Object.defineProperty(image, "close", {
      value: () => {
        try {
          close();
        } finally {
          lock.release();
        }
      },
    });
    return image;
  } catch (err) {
    lock?.release();
    throw err;
  }
}

function openChain(filePath: string, format: FormatName | undefined, writable: boolean, seen: string[], maxChain: number): BlockImage {
  let real: string;
  try {
    real = fs.realpathSync(filePath);
  } catch (err) {
    if (seen.length > 0) throw new ImageBackingError("BACKING_NOT_FOUND", `backing file not found`, filePath);
    throw asImageError(err, filePath);
  }
  if (seen.includes(real)) {
    throw new ImageBackingError("BACKING_LOOP", `backing chain loops back to ${real}`, seen[seen.length - 1]);
  }
  if (seen.length >= maxChain) {
    throw new ImageBackingError("BACKING_TOO_DEEP", `backing chain deeper than ${maxChain} images (the limit); image ${maxChain + 1} would be ${filePath}`, seen[0]);
  }
  const file = HostFile.open(filePath, writable);
  try {
    const fmt = format ?? probeFile(file);
    const chain = [...seen, real];
    return FORMATS[fmt].open(file, {
      openBacking: (ref, childPath) => openChain(resolveBacking(ref, childPath), ref.format, false, chain, maxChain),
    });
  } catch (err) {
    file.close();
    throw err;
  }
}
