// `img convert`: copy the visible content of an image chain into a new image, skipping zeros.
import fs from "node:fs";
import path from "node:path";
import { alignUp, alignedBuffer, isZero } from "../bytes.js";
import { ImageArgumentError, ImageIoError, asImageError } from "../errors.js";
import { FORMATS, type CreateOptions } from "../formats.js";
import { HostFile, notRegularFile } from "../host-file.js";
import { chainStatus, type BlockImage, type FormatName } from "../image.js";
import { openImage } from "../open.js";
import { RawImage } from "../raw.js";

export interface ConvertOptions {
  sourceFormat?: FormatName;
  targetFormat: FormatName;
  create?: CreateOptions;
  /** Called with bytes done and total as the copy advances. */
  progress?: (done: number, total: number) => void;
  /** Aborting stops the copy at the next chunk; the convert then fails with INTERRUPTED. */
  signal?: AbortSignal;
}

const CHUNK = 8 * 1024 * 1024;

/** Smallest run of zeros worth leaving unwritten in a fresh image of this format. */
function zeroGranule(image: BlockImage): number {
  if (image.format === "raw") return 4096;
  if (image.format === "vpc") return 65536;
  return Math.min(Math.max(image.clusterSize, 4096), 2 * 1024 * 1024);
}

/** What a convert may write to: a path that does not exist yet, a regular file, or a device. */
type Destination =
  | { kind: "new" }
  | { kind: "file"; stat: fs.Stats }
  | { kind: "device"; stat: fs.Stats };

/**
 * Where `target` stands, without opening it. Symbolic links, FIFOs, sockets and directories are
 * refused: none of them may be replaced, and writing through a link is how a planted link makes
 * root overwrite a file it never named. A regular file must be one we could write in place, and
 * whose owner the converted image can keep.
 */
function inspectDestination(target: string): Destination {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "new" };
    throw asImageError(err, target);
  }
  if (st.isCharacterDevice() || st.isBlockDevice()) return { kind: "device", stat: st };
  if (!st.isFile()) throw notRegularFile(target, st);
  try {
    fs.accessSync(target, fs.constants.W_OK);
  } catch (err) {
    throw asImageError(err, target);
  }
  const euid = process.geteuid?.() ?? 0;
  if (euid !== 0 && st.uid !== euid) {
    throw new ImageIoError("IO_ERROR", `EPERM: owned by user ${st.uid}; the converted image could not keep that owner`, target);
  }
  return { kind: "file", stat: st };
}

/**
 * Convert `source` into `target`. A new path or an existing regular file gets an image built in a
 * private folder beside it and renamed into place at the end (an existing file keeps its owner and
 * mode), so a failed or interrupted convert leaves no partial target. A character or block device
 * is written through, as qemu-img does (raw only). Everything else is refused before any file is
 * opened.
 */
export async function convertImage(source: string, target: string, options: ConvertOptions): Promise<void> {
  const destination = inspectDestination(target);
  if (destination.kind === "device" && options.targetFormat !== "raw") {
    throw new ImageArgumentError("BAD_ARGUMENT", `only raw can be written onto a device, not ${options.targetFormat}`);
  }
  const src = openImage(source, { format: options.sourceFormat });
  try {
    if (destination.kind === "device") await convertOntoDevice(src, target, destination.stat.isBlockDevice(), options);
    else await convertIntoFile(src, target, options);
  } finally {
    src.close();
  }
}

/** Write `src` through the device `target`: every byte, zeros included (a disk does not start out zero). */
async function convertOntoDevice(src: BlockImage, target: string, block: boolean, options: ConvertOptions): Promise<void> {
  const dst = new RawImage(HostFile.openDevice(target), 0, alignUp(src.virtualSize, 512));
  try {
    await copyContent(src, dst, { fresh: false, progress: options.progress, signal: options.signal });
    if (block) dst.flush();
  } finally {
    dst.close();
  }
}

async function convertIntoFile(src: BlockImage, target: string, options: ConvertOptions): Promise<void> {
  const dir = path.dirname(path.resolve(target));
  const name = path.basename(target);
  let tmpDir: string | null = null;
  try {
    tmpDir = fs.mkdtempSync(path.join(dir, ".hv-convert-"));
    const staged = path.join(tmpDir, name);
    FORMATS[options.targetFormat].create(staged, alignUp(src.virtualSize, 512), { ...options.create, backing: null });
    // Extents first, the image that names them last.
    const files = fs.readdirSync(tmpDir).sort((a, b) => (a === name ? 1 : b === name ? -1 : 0));
    // A format may add files (a flat VMDK's extent): their destinations are checked before the copy too.
    for (const f of files) if (f !== name) checkFileDestination(path.join(dir, f));
    const dst = openImage(staged, { format: options.targetFormat, writable: true });
    try {
      await copyContent(src, dst, { fresh: true, progress: options.progress, signal: options.signal });
    } finally {
      dst.close();
    }
    for (const f of files) moveIntoPlace(path.join(tmpDir, f), path.join(dir, f));
  } finally {
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/** A destination a file will be renamed onto: new, or a regular file (a device cannot take a renamed file). */
function checkFileDestination(destination: string): Exclude<Destination, { kind: "device" }> {
  const d = inspectDestination(destination);
  if (d.kind === "device") throw notRegularFile(destination, d.stat);
  return d;
}

/** Rename `staged` onto `destination`, checked again now; a regular file there passes on its owner and mode. */
function moveIntoPlace(staged: string, destination: string): void {
  const now = checkFileDestination(destination);
  try {
    if (now.kind === "file") {
      // Owner first: chown clears the set-user-ID and set-group-ID bits that chmod then restores.
      fs.chownSync(staged, now.stat.uid, now.stat.gid);
      fs.chmodSync(staged, now.stat.mode & 0o7777);
    }
    fs.renameSync(staged, destination);
  } catch (err) {
    throw asImageError(err, destination);
  }
}

export interface CopyOptions {
  /** Does `dst` read as zeros everywhere (a new image)? Then zeros are left unwritten. */
  fresh: boolean;
  progress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** Let signal handlers run (one event loop turn), then stop if the copy was aborted. */
async function checkpoint(signal: AbortSignal | undefined): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (signal?.aborted) throw new ImageIoError("INTERRUPTED", `interrupted${typeof signal.reason === "string" ? ` by ${signal.reason}` : ""}`);
}

/** Copy the visible content of `src` (whole chain) into `dst`, chunk by chunk. */
export async function copyContent(src: BlockImage, dst: BlockImage, options: CopyOptions): Promise<void> {
  const size = Math.min(src.virtualSize, dst.virtualSize);
  const granule = zeroGranule(dst);
  const buf = alignedBuffer(CHUNK);
  let offset = 0;
  while (offset < size) {
    // Ask for the whole rest: holes of any size are skipped in one step, data is copied in chunks.
    const ext = chainStatus(src, offset, size - offset);
    const end = offset + ext.length;
    if (ext.kind !== "data" && options.fresh) {
      offset = end;
      options.progress?.(offset, size);
      continue;
    }
    while (offset < end) {
      const n = Math.min(CHUNK, end - offset);
      if (ext.kind === "data") {
        const part = buf.subarray(0, n);
        src.read(offset, part);
        if (options.fresh) writeNonZero(dst, offset, part, granule);
        else dst.write(offset, part);
      } else {
        dst.writeZeroes(offset, n);
      }
      offset += n;
      options.progress?.(offset, size);
      await checkpoint(options.signal);
    }
  }
}

/** Write `data` at `offset`, leaving out granule-aligned runs of zeros. */
function writeNonZero(dst: BlockImage, offset: number, data: Uint8Array, granule: number): void {
  let runStart = -1;
  let at = 0;
  while (at < data.length) {
    const next = Math.min(data.length, (Math.floor((offset + at) / granule) + 1) * granule - offset);
    const zero = isZero(data.subarray(at, next));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      dst.write(offset + runStart, data.subarray(runStart, at));
      runStart = -1;
    }
    at = next;
  }
  if (runStart >= 0) dst.write(offset + runStart, data.subarray(runStart));
}
