// Guest RAM as device DMA sees it: guest-physical addresses to byte views of the VMM's frames.
//
// Devices never copy guest memory to look at it: `view` returns a subarray of the RAM the VMM
// mapped (zero copy), and the little-endian field accessors read through one DataView. Every
// access is checked against the RAM size; the caller asks `contains` first, or gets null.

export interface GuestRam {
  /** RAM size in bytes; guest-physical [0, size) is RAM. */
  readonly size: number;
  /** Whether [gpa, gpa + length) lies inside RAM. */
  contains(gpa: number, length: number): boolean;
  /** The bytes of [gpa, gpa + length), aliasing guest RAM; null when any of it is outside, or (paged RAM) it crosses a page. */
  view(gpa: number, length: number): Uint8Array | null;
  /** The bytes of [gpa, gpa + length) as views in address order (one per page where RAM is paged); null when any of it is outside. */
  segments(gpa: number, length: number): Uint8Array[] | null;
  /**
   * Guest page `page` (4 KiB from `page * 4096`) as 1024 little-endian 32-bit words, aliasing
   * guest RAM, to read and write (a hypercall's argument array); null when it is not RAM. Ask
   * again for each use: the same array comes back while the page keeps its frame (no allocation).
   */
  pageWords(page: number): Int32Array | null;
  /** Little-endian fields; the range must be inside RAM (check with `contains`). */
  u16(gpa: number): number;
  u32(gpa: number): number;
  setU16(gpa: number, value: number): void;
  setU32(gpa: number, value: number): void;
}

/** Guest RAM that is one flat byte array from guest-physical 0 (how the VMM maps it). */
export class FlatGuestRam implements GuestRam {
  private readonly data: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get size(): number {
    return this.bytes.length;
  }

  contains(gpa: number, length: number): boolean {
    return Number.isSafeInteger(gpa) && Number.isSafeInteger(length) && gpa >= 0 && length >= 0 && gpa + length <= this.bytes.length;
  }

  view(gpa: number, length: number): Uint8Array | null {
    if (!this.contains(gpa, length)) return null;
    return this.bytes.subarray(gpa, gpa + length);
  }

  segments(gpa: number, length: number): Uint8Array[] | null {
    const view = this.view(gpa, length);
    return view && [view];
  }

  private words: Int32Array | null = null;

  pageWords(page: number): Int32Array | null {
    if (!Number.isSafeInteger(page) || page < 0 || (page + 1) * 4096 > this.bytes.length) return null;
    this.words ??= new Int32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >> 2);
    return this.words.subarray(page * 1024, page * 1024 + 1024);
  }

  u16(gpa: number): number {
    return this.data.getUint16(gpa, true);
  }

  u32(gpa: number): number {
    return this.data.getUint32(gpa, true);
  }

  setU16(gpa: number, value: number): void {
    this.data.setUint16(gpa, value, true);
  }

  setU32(gpa: number, value: number): void {
    this.data.setUint32(gpa, value >>> 0, true);
  }
}
