// A host file opened for an image: positioned sync reads/writes on an fd, never past what it may touch.
import fs from "node:fs";
import { isZero } from "./bytes.js";
import { ImageAccessError, ImageFormatError, asImageError } from "./errors.js";

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
/** Linux only; 0 elsewhere, and then reads are never direct. */
const O_DIRECT = fs.constants.O_DIRECT ?? 0;

/** Direct reads need offsets and lengths in whole logical blocks; 4 KiB covers every common device. */
const DIRECT_ALIGN = 4096;
/** Reads at least this large are bulk copies, worth a second descriptor. */
const BULK_MIN = 1 << 20;

/** What a file that is not a regular file is, for messages ("a FIFO (named pipe)"). */
export function fileTypeName(st: fs.Stats): string {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isDirectory()) return "a directory";
  if (st.isSocket()) return "a socket";
  return "a special file";
}

/** The refusal for a path that is not a regular file. */
export function notRegularFile(path: string, st: fs.Stats): ImageAccessError {
  return new ImageAccessError("NOT_REGULAR_FILE", `is ${fileTypeName(st)}, not a regular file`, path);
}

/**
 * Does a bulk read look like it came from a hole? One 4 KiB page in every 256 KiB is looked at: the
 * answer only picks how the next read is done, and the caller checks every byte of the data anyway.
 */
function looksLikeHole(data: Uint8Array): boolean {
  for (let at = 0; at < data.length; at += 256 * 1024) {
    if (!isZero(data.subarray(at, at + DIRECT_ALIGN))) return false;
  }
  return true;
}

/** Positioned I/O on one host file. Read-only files are opened with O_RDONLY so they can never be written. */
export class HostFile {
  private fd: number;
  private cachedSize: number;
  /** O_DIRECT descriptor of the same file for readBulk: undefined until needed, -1 when unavailable. */
  private directFd: number | undefined;
  /** Did the last bulk read return only zeros (likely a hole)? Then the next one goes direct. */
  private inZeros = false;

  private constructor(
    readonly path: string,
    fd: number,
    readonly writable: boolean,
    /** Did create() make this file (rather than empty an existing one)? discard() then removes it. */
    private readonly createdHere = false,
  ) {
    this.fd = fd;
    this.cachedSize = fs.fstatSync(fd).size;
  }

  /**
   * Open an existing regular file (symbolic links are followed). The type is checked before the
   * open, because opening is not harmless: a FIFO blocks until a writer comes, a tape rewinds, a
   * watchdog arms. O_NONBLOCK and the fstat after the open cover a path swapped in between.
   */
  static open(path: string, writable: boolean): HostFile {
    let fd: number;
    try {
      const st = fs.statSync(path);
      if (!st.isFile()) throw notRegularFile(path, st);
      fd = fs.openSync(path, (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK);
    } catch (err) {
      throw asImageError(err, path);
    }
    return HostFile.checked(path, fd, writable);
  }

  /**
   * Create a file, or empty an existing regular file in place (its owner and mode stay, as with
   * qemu-img). Symbolic links, FIFOs, devices and directories are refused without being opened.
   */
  static create(path: string): HostFile {
    let fd = -1;
    try {
      fd = fs.openSync(path, O_RDWR | O_CREAT | O_EXCL, 0o666);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw asImageError(err, path);
    }
    if (fd >= 0) return new HostFile(path, fd, true, true);
    try {
      const st = fs.lstatSync(path);
      if (!st.isFile()) throw notRegularFile(path, st);
      fd = fs.openSync(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ELOOP") {
        throw new ImageAccessError("NOT_REGULAR_FILE", "is a symbolic link, not a regular file", path);
      }
      throw asImageError(err, path);
    }
    const file = HostFile.checked(path, fd, true);
    try {
      file.truncate(0);
    } catch (err) {
      file.close();
      throw err;
    }
    return file;
  }

  /** Refuse, before anything is written, a path create() would refuse: one that exists and is not a regular file. */
  static checkCreatable(path: string): void {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw asImageError(err, path);
    }
    if (!st.isFile()) throw notRegularFile(path, st);
  }

  /** Create `path`, let `fill` write it, and close it; when anything fails, a file made here is removed. */
  static createWith(path: string, fill: (file: HostFile) => void): void {
    const file = HostFile.create(path);
    try {
      fill(file);
    } catch (err) {
      file.discard();
      throw err;
    }
    file.close();
  }

  /** Open a character or block device to write an image through it (convert onto a disk, or /dev/null). */
  static openDevice(path: string): HostFile {
    let fd: number;
    try {
      fd = fs.openSync(path, O_WRONLY | O_NOFOLLOW);
    } catch (err) {
      throw asImageError(err, path);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new ImageAccessError("NOT_REGULAR_FILE", `is ${st.isFile() ? "a regular file" : fileTypeName(st)}, not a device`, path);
      return new HostFile(path, fd, true);
    } catch (err) {
      fs.closeSync(fd);
      throw asImageError(err, path);
    }
  }

  /** Wrap `fd` if it is a regular file; close it and refuse otherwise. */
  private static checked(path: string, fd: number, writable: boolean): HostFile {
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw notRegularFile(path, st);
      return new HostFile(path, fd, writable);
    } catch (err) {
      fs.closeSync(fd);
      throw asImageError(err, path);
    }
  }

  /** Current file size in bytes (tracked across our own writes). */
  get size(): number {
    return this.cachedSize;
  }

  /** Bytes the file occupies on the host (sparse files count only allocated blocks). */
  allocatedBytes(): number {
    return fs.fstatSync(this.fd).blocks * 512;
  }

  /** Fill `into` from `offset`; a read past end of file is TRUNCATED. */
  readExact(offset: number, into: Uint8Array, what = "data"): void {
    if (offset + into.length > this.cachedSize) {
      throw new ImageFormatError(
        "TRUNCATED",
        `${what} at ${offset}+${into.length} lies beyond the end of the file (${this.cachedSize} bytes)`,
        this.path,
      );
    }
    this.readSome(offset, into);
  }

  /** Fill `into` from `offset`; bytes past end of file read as zeros. */
  readSome(offset: number, into: Uint8Array): void {
    let done = 0;
    try {
      while (done < into.length) {
        const n = fs.readSync(this.fd, into, done, into.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw asImageError(err, this.path);
    }
    if (done < into.length) into.fill(0, done);
  }

  /**
   * readSome for large sequential reads of disk content (raw images, flat extents), made cheap over
   * holes. Node has no lseek(SEEK_DATA) to skip the holes of a sparse file, and a buffered read of a
   * hole is slow: the kernel fills the page cache with zero pages (2 GiB of ext4 hole: 2-5 s). An
   * O_DIRECT read of a hole only zeroes the caller's buffer (2 GiB: 30-60 ms). But O_DIRECT read of data
   * bypasses the page cache and first writes back dirty pages (1 GiB just written: 1 s instead of
   * 0.15 s), so reads go direct only while the previous bulk read came back all zeros. Any refusal on
   * the direct path (no O_DIRECT in the file system, a buffer not aligned as O_DIRECT wants; use
   * alignedBuffer()) falls back to the buffered read. Read-only files only.
   */
  readBulk(offset: number, into: Uint8Array): void {
    const bulk = !this.writable && into.length >= BULK_MIN;
    if (!bulk || !this.inZeros || offset % DIRECT_ALIGN !== 0 || into.length % DIRECT_ALIGN !== 0 || !this.readDirect(offset, into)) {
      this.readSome(offset, into);
    }
    this.inZeros = bulk && looksLikeHole(into);
  }

  /** Fill `into` through the O_DIRECT descriptor; false (nothing trusted) when the kernel refuses. */
  private readDirect(offset: number, into: Uint8Array): boolean {
    const fd = this.directDescriptor();
    if (fd < 0) return false;
    let done = 0;
    try {
      while (done < into.length) {
        const n = fs.readSync(fd, into, done, into.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EINVAL") return false;
      throw asImageError(err, this.path);
    }
    if (done < into.length) into.fill(0, done);
    return true;
  }

  /** Reopen this very file (not whatever its path names now) with O_DIRECT, through /proc/self/fd. */
  private directDescriptor(): number {
    if (this.directFd !== undefined) return this.directFd;
    this.directFd = -1;
    if (O_DIRECT === 0) return -1;
    try {
      const fd = fs.openSync(`/proc/self/fd/${this.fd}`, O_RDONLY | O_DIRECT | O_NONBLOCK);
      const a = fs.fstatSync(fd);
      const b = fs.fstatSync(this.fd);
      if (a.dev === b.dev && a.ino === b.ino) this.directFd = fd;
      else fs.closeSync(fd);
    } catch {
      // No /proc, or a file system without O_DIRECT (tmpfs before Linux 6.6): buffered reads only.
    }
    return this.directFd;
  }

  /** Allocate a buffer of `length` bytes and read it exactly. */
  readBytes(offset: number, length: number, what?: string): Uint8Array {
    const buf = new Uint8Array(length);
    this.readExact(offset, buf, what);
    return buf;
  }

  write(offset: number, data: Uint8Array): void {
    if (!this.writable) throw new ImageAccessError("READ_ONLY", "image is opened read-only", this.path);
    let done = 0;
    try {
      while (done < data.length) {
        done += fs.writeSync(this.fd, data, done, data.length - done, offset + done);
      }
    } catch (err) {
      throw asImageError(err, this.path);
    }
    if (offset + data.length > this.cachedSize) this.cachedSize = offset + data.length;
  }

  /** Set the file length; growing leaves a hole (sparse). */
  truncate(length: number): void {
    if (!this.writable) throw new ImageAccessError("READ_ONLY", "image is opened read-only", this.path);
    try {
      fs.ftruncateSync(this.fd, length);
    } catch (err) {
      throw asImageError(err, this.path);
    }
    this.cachedSize = length;
  }

  sync(): void {
    if (!this.writable) return;
    try {
      fs.fsyncSync(this.fd);
    } catch (err) {
      throw asImageError(err, this.path);
    }
  }

  /** Close, and remove the file if create() made it: a create that failed leaves nothing behind. */
  discard(): void {
    this.close();
    if (this.createdHere) fs.rmSync(this.path, { force: true });
  }

  close(): void {
    if (this.directFd !== undefined && this.directFd >= 0) fs.closeSync(this.directFd);
    this.directFd = undefined;
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } finally {
      this.fd = -1;
    }
  }
}
