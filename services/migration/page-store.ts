// Guest RAM pages as an incoming migration receives them: the last bytes that came for each page,
// and which pages came. A page is copied into a chunk of CHUNK_PAGES pages, allocated when the
// first page of that chunk comes. A copy per page (a Map of 4 KiB buffers) allocated as much again
// as the frames that brought the pages, and left tens of thousands of buffers to the garbage
// collector: with it the bench's destination spent 160 ms in major collections, one of 85 ms in the
// downtime (with the chunks: 72 to 134 ms, none over 47 ms, in four runs).

const PAGE = 4096;
/** Pages per chunk: 1 MiB, so that a 128 MiB guest is at most 128 allocations. */
const CHUNK_PAGES = 256;

/** Pages by number, as a Map<number, Uint8Array> has them (the parts of it that a migration uses). */
export interface PageMap {
  has(page: number): boolean;
  /** The page's bytes (a view: valid until the page is set again or the map cleared), or undefined. */
  get(page: number): Uint8Array | undefined;
  /** Keep a copy of `bytes` (a view a caller may reuse) as page `page`'s. */
  set(page: number, bytes: Uint8Array): unknown;
  /** The page is zero again. */
  delete(page: number): unknown;
  clear(): void;
}

export class PageStore implements PageMap {
  private chunks: Array<Uint8Array | undefined>;
  /** One bit per page: the page came (and was not zeroed since). */
  private present: Uint8Array;
  /**
   * The pages held, in the order they came, while no page was zeroed (else null): at a migration's
   * stop the destination's RAM takes the list as it is, where stored() would walk the bitmap and
   * build it then, in the downtime.
   */
  private arrival: number[] | null = [];
  /**
   * The pages that came (or came again after they were zeroed) since takeFresh() last ran: the
   * destination's RAM takes them while the stream goes on, and at the stop only the last ones.
   */
  private fresh: number[] = [];

  /** For RAM of `pages` pages; pages outside it are RangeErrors. */
  constructor(readonly pages: number) {
    this.chunks = new Array<Uint8Array | undefined>(Math.ceil(pages / CHUNK_PAGES));
    this.present = new Uint8Array(Math.ceil(pages / 8));
  }

  has(page: number): boolean {
    return page >= 0 && page < this.pages && ((this.present[page >> 3] >> (page & 7)) & 1) === 1;
  }

  get(page: number): Uint8Array | undefined {
    if (!this.has(page)) return undefined;
    const at = (page % CHUNK_PAGES) * PAGE;
    return this.chunks[Math.floor(page / CHUNK_PAGES)]!.subarray(at, at + PAGE);
  }

  set(page: number, bytes: Uint8Array): this {
    this.check(page);
    if (bytes.length !== PAGE) throw new RangeError(`page ${page}: ${bytes.length} bytes, not ${PAGE}`);
    const c = Math.floor(page / CHUNK_PAGES);
    const chunk = (this.chunks[c] ??= new Uint8Array(CHUNK_PAGES * PAGE));
    chunk.set(bytes, (page % CHUNK_PAGES) * PAGE);
    if (!((this.present[page >> 3] >> (page & 7)) & 1)) {
      this.arrival?.push(page);
      this.fresh.push(page);
    }
    this.present[page >> 3] |= 1 << (page & 7);
    return this;
  }

  delete(page: number): boolean {
    const had = this.has(page);
    if (had) {
      this.present[page >> 3] &= ~(1 << (page & 7));
      this.arrival = null;
    }
    return had;
  }

  /** The pages held, in order. */
  stored(): number[] {
    const pages: number[] = [];
    for (let i = 0; i < this.present.length; i++) {
      const bits = this.present[i];
      if (bits === 0) continue;
      for (let b = 0; b < 8; b++) if ((bits >> b) & 1) pages.push(i * 8 + b);
    }
    return pages;
  }

  /** The pages held (those of stored()), in any order. */
  held(): ArrayLike<number> {
    return this.arrival ?? this.stored();
  }

  /** The pages that came since the last call (the first call: all held), in the order they came; each at most once per call. */
  takeFresh(): number[] {
    const pages = this.fresh;
    this.fresh = [];
    return pages;
  }

  /** Drop every page (and the memory they took). */
  clear(): void {
    this.chunks = new Array<Uint8Array | undefined>(this.chunks.length);
    this.present.fill(0);
    this.arrival = [];
    this.fresh = [];
  }

  private check(page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.pages) throw new RangeError(`page ${page} is outside the ${this.pages} pages of RAM`);
  }
}
