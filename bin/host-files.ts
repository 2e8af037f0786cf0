// Host files named on `hv run`'s command line. Inputs (kernel, initrd, ROM) are read whole, but only
// regular files and only up to what the VM can hold: a FIFO would block the read until a writer
// comes, a device like /dev/zero never ends. Outputs (trace, debug console) are opened before the
// VM starts, so a path that cannot be written is an error then, not silence later. Drives are
// compared by identity (device and inode), so one file cannot be attached twice under two names.
import fs from "node:fs";
import { fileTypeName } from "../drivers/block/host-file.js";

const { O_RDONLY, O_WRONLY, O_CREAT, O_APPEND, O_TRUNC, O_NONBLOCK } = fs.constants;

/** A host file named on the command line is unusable; the message names the option and the file. */
export class HostFileError extends Error {
  override name = "HostFileError";
}

/** Why a system call on a path failed, in words ("no such file", "permission denied"). */
function why(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    case "ENOTDIR":
      return "a part of the path is not a directory";
    case "ENXIO":
      return "no process reads it (a FIFO or socket with no reader)";
    case "EROFS":
      return "the file system is read-only";
    case "ELOOP":
      return "too many symbolic links";
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/** stat(2) of `path`; a failure is refused as "`label`: why". */
function statOf(path: string, label: string): fs.Stats {
  try {
    return fs.statSync(path);
  } catch (err) {
    throw new HostFileError(`${label}: ${why(err)}`);
  }
}

/**
 * Read the regular file `path` whole; `limit` bytes at most (`limitWhat` says where the limit comes
 * from). The type and size are checked before the file is opened, and again on the open descriptor
 * (a path swapped meanwhile is refused); a file that grows while it is read is refused too.
 */
export function readInputFile(path: string, option: string, limit: number, limitWhat: string): Uint8Array {
  const st = statOf(path, `${option} '${path}'`);
  if (!st.isFile()) throw new HostFileError(`${option} '${path}': is ${fileTypeName(st)}, not a regular file`);
  const tooLarge = (size: number) => new HostFileError(`${option} '${path}': ${size} bytes, more than the ${limit} ${limitWhat}`);
  if (st.size > limit) throw tooLarge(st.size);
  let fd: number;
  try {
    fd = fs.openSync(path, O_RDONLY | O_NONBLOCK);
  } catch (err) {
    throw new HostFileError(`${option} '${path}': cannot be opened (${why(err)})`);
  }
  try {
    const now = fs.fstatSync(fd);
    if (!now.isFile() || now.dev !== st.dev || now.ino !== st.ino) throw new HostFileError(`${option} '${path}': changed while it was opened`);
    if (now.size > limit) throw tooLarge(now.size);
    // One byte more than the size: reading it shows a file that grew meanwhile.
    const buffer = new Uint8Array(now.size + 1);
    let done = 0;
    for (;;) {
      const n = fs.readSync(fd, buffer, done, buffer.length - done, done);
      if (n === 0) break;
      done += n;
      if (done === buffer.length) throw new HostFileError(`${option} '${path}': grew while it was read`);
    }
    return buffer.slice(0, done);
  } catch (err) {
    if (err instanceof HostFileError) throw err;
    throw new HostFileError(`${option} '${path}': cannot be read (${why(err)})`);
  } finally {
    fs.closeSync(fd);
  }
}

/** An output file opened at start. Writes that fail are reported once (`onError`) and the rest is dropped. */
export class OutputFile {
  private failed = false;

  private constructor(
    readonly path: string,
    private readonly option: string,
    private fd: number,
    private readonly onError: (message: string) => void,
  ) {}

  /**
   * Open `path` for writing: created if missing, appended to or emptied. Only regular files and
   * character devices (a terminal): a FIFO or socket could block the VM, a directory is no file.
   * `avoid` are files that must not be written (the inputs of the run, by identity).
   */
  static open(path: string, option: string, how: "append" | "truncate", avoid: readonly FileIdentity[], onError: (message: string) => void): OutputFile {
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new HostFileError(`${option} '${path}': ${why(err)}`);
    }
    if (st) {
      if (!st.isFile() && !st.isCharacterDevice()) throw new HostFileError(`${option} '${path}': is ${fileTypeName(st)}; hv writes only to regular files and terminals`);
      const same = avoid.find((a) => a.dev === st.dev && a.ino === st.ino);
      if (same && st.isFile()) throw new HostFileError(`${option} '${path}': is the same file as ${same.what}; it would be overwritten`);
    }
    let fd: number;
    try {
      // O_NONBLOCK: a FIFO put in the path's place meanwhile fails the open instead of blocking it.
      fd = fs.openSync(path, O_WRONLY | O_CREAT | O_NONBLOCK | (how === "append" ? O_APPEND : O_TRUNC), 0o666);
    } catch (err) {
      throw new HostFileError(`${option} '${path}': cannot be opened for writing (${why(err)})`);
    }
    const now = fs.fstatSync(fd);
    if (!now.isFile() && !now.isCharacterDevice()) {
      fs.closeSync(fd);
      throw new HostFileError(`${option} '${path}': is ${fileTypeName(now)}; hv writes only to regular files and terminals`);
    }
    return new OutputFile(path, option, fd, onError);
  }

  /** Write all of `bytes`; false (and one report) when the file cannot take them. */
  write(bytes: Uint8Array | string): boolean {
    if (this.failed || this.fd < 0) return false;
    const data = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
    let done = 0;
    let waits = 0;
    try {
      while (done < data.length) {
        try {
          done += fs.writeSync(this.fd, data, done, data.length - done);
        } catch (err) {
          // A terminal opened non-blocking may be full for a moment: wait a little, not forever.
          if ((err as NodeJS.ErrnoException).code !== "EAGAIN" || ++waits > 1000) throw err;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        }
      }
      return true;
    } catch (err) {
      this.failed = true;
      this.onError(`${this.option} '${this.path}': writing failed (${(err as NodeJS.ErrnoException).code ?? why(err)}); the rest is not written`);
      return false;
    }
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // Closing reports a write error a file system kept back (NFS): the data was reported lost, or not.
    } finally {
      this.fd = -1;
    }
  }
}

/** A file by identity (device and inode), and what the run uses it as. */
export interface FileIdentity {
  dev: number;
  ino: number;
  what: string;
}

/** The identity of an input the run reads (refused as an output), or null when it cannot be looked at. */
export function identityOf(path: string | null | undefined, what: string): FileIdentity | null {
  if (!path) return null;
  try {
    const st = fs.statSync(path);
    return { dev: st.dev, ino: st.ino, what };
  } catch {
    return null;
  }
}

/**
 * Check the drives before anything starts: each must be a regular file, and one file may be
 * attached more than once only when no attachment writes it (QEMU's rule: a writer excludes any
 * other user). Files are compared by device and inode, so a symbolic or hard link is the same file.
 * Returns their identities.
 */
export function checkDrives(drives: ReadonlyArray<{ path: string; readOnly?: boolean }>): FileIdentity[] {
  const seen: Array<FileIdentity & { readOnly: boolean; path: string; index: number }> = [];
  drives.forEach((d, index) => {
    const option = `--drive file=${d.path}`;
    const st = statOf(d.path, option);
    if (!st.isFile()) throw new HostFileError(`${option}: is ${fileTypeName(st)}, not a regular file`);
    const readOnly = d.readOnly === true;
    const other = seen.find((s) => s.dev === st.dev && s.ino === st.ino);
    if (other && !(readOnly && other.readOnly)) {
      const name = other.path === d.path ? "" : ` (as '${other.path}')`;
      throw new HostFileError(
        `${option}: drive ${index} is the same file as drive ${other.index}${name}, and ${readOnly ? `drive ${other.index}` : `drive ${index}`} writes it; a file can be attached twice only read-only (readonly=on)`,
      );
    }
    seen.push({ dev: st.dev, ino: st.ino, what: `drive ${index}`, readOnly, path: d.path, index });
  });
  return seen.map(({ dev, ino, what }) => ({ dev, ino, what }));
}
