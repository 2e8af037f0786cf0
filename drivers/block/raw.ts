// Raw images: the virtual disk byte for byte; created sparse with ftruncate.
import { HostFile } from "./host-file.js";
import { alignUp } from "./bytes.js";
import { ImageUnsupportedError } from "./errors.js";
import { checkRange, checkWritable, type BackingRef, type BlockImage, type CheckReport, type Extent } from "./image.js";

export class RawImage implements BlockImage {
  readonly format = "raw" as const;
  readonly clusterSize = 512;
  readonly backingRef = null;
  readonly backing = null;

  constructor(
    private readonly file: HostFile,
    /** Byte offset of the disk inside the file (non-zero for flat VMDK extents). */
    private readonly base = 0,
    /** A file whose length is not a multiple of 512 reads as if padded with zeros, as in qemu. */
    readonly virtualSize = alignUp(file.size - base, 512),
  ) {}

  get path(): string {
    return this.file.path;
  }
  get writable(): boolean {
    return this.file.writable;
  }

  static create(path: string, size: number): void {
    HostFile.createWith(path, (file) => file.truncate(size));
  }

  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    this.file.readBulk(this.base + offset, into);
  }

  write(offset: number, data: Uint8Array): void {
    checkWritable(this);
    checkRange(this, offset, data.length);
    this.file.write(this.base + offset, data);
  }

  writeZeroes(offset: number, length: number): void {
    checkWritable(this);
    checkRange(this, offset, length);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += chunk.length) {
      this.file.write(this.base + offset + done, chunk.subarray(0, Math.min(chunk.length, length - done)));
    }
  }

  /** Raw files have no map (Node has no SEEK_DATA); bytes past the end of the file are zeros. */
  status(offset: number, length: number): Extent {
    const fileEnd = this.file.size - this.base;
    if (offset >= fileEnd) return { kind: "zero", length };
    return { kind: "data", length: Math.min(length, fileEnd - offset) };
  }

  setBackingRef(ref: BackingRef | null): void {
    if (ref) throw new ImageUnsupportedError("UNSUPPORTED_FEATURE", "raw images cannot have a backing file", this.path);
  }

  allocatedBytes(): number {
    return this.file.allocatedBytes();
  }

  details(): Record<string, string | number | boolean> {
    return {};
  }

  check(): CheckReport {
    return { corruptions: 0, leaks: 0, messages: [] };
  }

  flush(): void {
    this.file.sync();
  }

  persist(): void {
    // No metadata: data is written through at once.
  }

  close(): void {
    this.file.close();
  }
}
