// A host file opened for an image: positioned sync reads/writes on an fd, never past what it may touch.
import fs from "node:fs";
import { ImageAccessError, ImageFormatError, asImageError } from "./errors.js";

/** Positioned I/O on one host file. Read-only files are opened with "r" so they can never be written. */
export class HostFile {
  private fd: number;
  private cachedSize: number;

  private constructor(
    readonly path: string,
    fd: number,
    readonly writable: boolean,
  ) {
    this.fd = fd;
    this.cachedSize = fs.fstatSync(fd).size;
  }

  static open(path: string, writable: boolean): HostFile {
    let fd: number;
    try {
      fd = fs.openSync(path, writable ? "r+" : "r");
    } catch (err) {
      throw asImageError(err, path);
    }
    try {
      if (!fs.fstatSync(fd).isFile()) throw new ImageFormatError("BAD_HEADER", "not a regular file", path);
      return new HostFile(path, fd, writable);
    } catch (err) {
      fs.closeSync(fd);
      throw asImageError(err, path);
    }
  }

  /** Create (or truncate) a file for writing. `exclusive` refuses an existing file. */
  static create(path: string, exclusive = false): HostFile {
    let fd: number;
    try {
      fd = fs.openSync(path, exclusive ? "wx+" : "w+");
    } catch (err) {
      throw asImageError(err, path);
    }
    return new HostFile(path, fd, true);
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

  close(): void {
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } finally {
      this.fd = -1;
    }
  }
}
