// Cache of decoded basic blocks, keyed by the physical address of their first instruction (2-way
// set-associative: a block lives in either entry of the pair its address hashes to).
//
// A block is up to MAX_INSTRUCTIONS decoded instructions that end at a block-ending instruction
// (an unconditional control transfer or a mode change), at MAX_BYTES, or before the last 16 bytes
// of a page; a taken conditional branch leaves the block early. It is decoded only as far as it
// ran: it ends at its first conditional branch, open, and goes on where the interpreter falls
// through (extend), or whole when it is translated.
// A block keeps a copy of its bytes. It is compared with memory when it is entered for the first
// time in a code epoch (`Cpu.codeEpoch`); the epoch advances whenever code may have changed
// behind the CPU's back or under it: at the start of every run and after every synchronous exit
// (device models write guest RAM only then, e.g. DMA), on page faults, and on guest writes into
// a page with cached code (which also end the running block: self-modifying code). TLB flushes
// and INVLPG advance it too (links between blocks assume the linear map), but a block is not
// compared again when only flushes happened since its last comparison (mmu.ts bytesChangedAfter).
// A block that ran often enough gets a translation (translate.ts); it is dropped with the block
// and kept by address, so a block decoded again from the same bytes gets it back at once.

import { type Cpu, FAULT, TLB_WS, TLB_WU } from "./cpu.js";
import { type ByteSource, Decoded, decodeInto, slotEntry } from "./decoder.js";
import { CPU_HANDLERS } from "./handlers/index.js";
import type { BlockFn } from "./block-links.js";

/**
 * At most 2^14 cache entries (and 16 decoded slots each, about 9 MiB): the default guest's boot to
 * BOOT-OK decoded 726,000 blocks with 2^13 entries, 359,000 with 2^14, 212,000 with 2^15 (no faster).
 */
export const BLOCK_BITS = 14;
/**
 * A cache starts with 2^11 entries and doubles (up to 2^14) whenever blocks pushed out others as
 * many times as it has entries and the vCPU ran GROW_AFTER instructions per entry since the cache
 * last grew: a VM that idles, or one of many clones, keeps a cache the size of what it runs. Its
 * entries are spread by a hash, so a VM that touched a few thousand blocks has every page of a
 * large cache resident (a restored idle guest: 9 MiB of host memory at 2^14).
 */
export const MIN_BLOCK_BITS = 11;
/**
 * Instructions per entry a vCPU runs before its cache may grow. Growing drops every block, so it
 * pays only for a vCPU that goes on running: a restored idle guest pushes blocks out as often as
 * a booting one, per instruction (its timer ticks run cold code), but runs 2-5 M instructions a
 * second of VM time, and grew to 2^14 in 2 s (8 idle clones: 237 MiB RSS; kept at 2^11: 151-159
 * MiB, the same CPU). 2^12 per entry: 8 M instructions before the first growth, 56 M before the
 * last, a few percent of a boot.
 */
export const GROW_AFTER = 1 << 12;
export const MAX_INSTRUCTIONS = 16;
export const MAX_BYTES = 64;
/** Decoded slots of a cache of 2^bits entries: MAX_INSTRUCTIONS per block, plus the scratch slot (the last) for uncached instructions. */
export const slotsFor = (bits: number): number => (MAX_INSTRUCTIONS << bits) + 1;
/** Instructions starting this close to a page end are decoded every time (they may cross it). */
export const PAGE_TAIL = 0xff0;

/** Translations kept by address at most (the map is dropped when it is full). */
const KEPT_MAX = 1 << 16;
const PAST_HITS = 1 << 16;
const pastIndex = (phys: number): number => (phys ^ (phys >>> 16)) & (PAST_HITS - 1);
/** Runs that make the next run translate at any threshold (the engine's translateAfter is at most 65535). */
const TRANSLATE_AGAIN = 0xfffe;

interface KeptTranslation {
  readonly fn: BlockFn;
  readonly mode: number;
  readonly count: number;
  readonly bytes: number;
  readonly words: Int32Array;
  /** The cache entry it was made in (its code names that entry's slots). */
  readonly entry: number;
}

export class BlockCache {
  /** log2 of the entries; the arrays below have 2^bits entries (words MAX_BYTES/4 per entry). */
  bits = 0;
  private mask = 0;
  tag!: Int32Array;
  mode!: Uint8Array;
  count!: Uint8Array;
  bytes!: Uint8Array;
  words!: Int32Array;
  /** Code epoch in which the block was last compared with memory. */
  epoch!: Float64Array;
  /** Runs of the block since it was decoded (counts up to the translation threshold). */
  hits!: Uint16Array;
  /**
   * 1 for a block that ends after a conditional branch with room for more (slots, bytes, page): it
   * goes on at the branch's fall-through, decoded when execution first gets there (extend).
   */
  open!: Uint8Array;
  /** Per set (entry pair): which of its two entries ran last (0 or 1), so a build replaces the other. */
  recent!: Uint8Array;
  /** The block translated into a function (translate.ts), or null; dropped when the block is rebuilt. */
  code!: (BlockFn | null)[];
  /**
   * With the wasm tier: the table index of each entry's wasm translation (0: none, or a JS one),
   * where wasm code checks its links (the arena copy of `code`), and the index of a translation.
   */
  codeIndex: Int32Array | null = null;
  indexOf: (fn: BlockFn) => number = () => 0;
  /** Blocks built over another block (a different address) since the cache last grew. */
  private evictions = 0;
  /** The vCPU's instruction count when the cache last grew (or began). */
  private grownAt = 0;
  /** Instructions per entry before the cache may grow (GROW_AFTER; tests make it small). */
  growAfter = GROW_AFTER;
  /**
   * Translations by physical address, kept when their block leaves the cache (collisions are
   * frequent): a block decoded again from the same bytes in the same mode gets its translation
   * back at once (its decoded slots are the same: same address, same cache entry).
   */
  private readonly kept = new Map<number, KeptTranslation>();
  /**
   * Runs of untranslated blocks that left the cache, in a table hashed by physical address
   * (colliding blocks share a count: it only decides when to translate).
   */
  private readonly pastHits = new Uint16Array(PAST_HITS);
  /**
   * Statistics: blocks decoded, compared with memory on entry in a new code epoch, translated,
   * translations reused; instructions retired in translated code; times the cache grew; blocks
   * translated to wasm (of `translated`).
   */
  readonly stats = { built: 0, extended: 0, compared: 0, translated: 0, reused: 0, translatedRetired: 0, grown: 0, wasm: 0 };

  /** A cache of 2^MIN_BLOCK_BITS entries; `c.dec` must have slotsFor(MIN_BLOCK_BITS) slots. */
  constructor() {
    this.allocate(MIN_BLOCK_BITS);
  }

  private allocate(bits: number): void {
    const n = 1 << bits;
    this.bits = bits;
    this.mask = n - 1;
    this.tag = new Int32Array(n).fill(-1);
    this.mode = new Uint8Array(n);
    this.count = new Uint8Array(n);
    this.bytes = new Uint8Array(n);
    this.words = new Int32Array(n * (MAX_BYTES / 4));
    this.epoch = new Float64Array(n).fill(-1);
    this.hits = new Uint16Array(n);
    this.recent = new Uint8Array(n >> 1);
    this.open = new Uint8Array(n);
    this.code = new Array<BlockFn | null>(n).fill(null);
    this.codeIndex?.fill(0);
    this.evictions = 0;
  }

  /**
   * Between runs (no block of this cache running), with the vCPU's instruction count `retired`:
   * double the cache if blocks pushed out others as many times as it has entries, and the vCPU ran
   * `growAfter` instructions per entry since it last grew. Every block and translation goes (they
   * name slots and entries of the old size); counts toward translation stay (pastHits, by
   * address), and a block that had a translation gets one again at its next run.
   */
  growIfFull(c: Cpu, retired: number): void {
    if (this.evictions <= this.mask || this.bits >= BLOCK_BITS || retired - this.grownAt < this.growAfter * (this.mask + 1)) return;
    this.grownAt = retired;
    for (let b = 0; b <= this.mask; b++) if (this.code[b] !== null) this.pastHits[pastIndex(this.tag[b])] = TRANSLATE_AGAIN;
    for (const phys of this.kept.keys()) this.pastHits[pastIndex(phys)] = TRANSLATE_AGAIN;
    this.code.fill(null); // links of old translations check their target's entry here: none holds now
    this.codeIndex?.fill(0);
    this.kept.clear();
    this.allocate(this.bits + 1);
    c.dec = new Decoded<Cpu>(slotsFor(this.bits), CPU_HANDLERS);
    c.linkFrom = null;
    c.codeEpoch++;
    this.stats.grown++;
  }

  /**
   * The first entry of phys's set: the cache is 2-way set-associative, a block lives in entry
   * index(phys) or index(phys) + 1. Direct-mapped, two hot blocks sharing an entry pushed each
   * other out at every pass: an idle restored guest rebuilt 53,578 blocks in 2 s of VM time for
   * 2,665 distinct ones at 2^11 entries (12,010 at 2^13), an `echo` after a restore 16,651 for 6,012.
   */
  index(phys: number): number {
    return ((phys ^ (phys >>> (this.bits - 1))) << 1) & this.mask;
  }

  /**
   * The entry of set `set` (an index()) to build phys's block in: the one whose translation phys had
   * (a kept translation names the slots of its entry), else one without a translation when the
   * other has one, else the one used less recently.
   */
  victim(set: number, phys: number): number {
    const kept = this.kept.get(phys);
    if (kept !== undefined && kept.entry >> 1 === set >> 1) return kept.entry;
    const a = this.code[set] !== null, b = this.code[set + 1] !== null;
    if (a !== b) return a ? set + 1 : set;
    return set + (this.recent[set >> 1] ^ 1);
  }

  /** Whether block b still matches the bytes at store offset `o` of the fetch page's store. */
  same(c: Cpu, b: number, o: number): boolean {
    this.stats.compared++;
    const v = c.views[c.fetchStore];
    const n = this.bytes[b];
    const w = b * (MAX_BYTES / 4);
    const words = this.words;
    let k = 0;
    for (; k + 4 <= n; k += 4) if (v.getInt32(o + k, true) !== words[w + (k >> 2)]) return false;
    return k === n || tail(c.bytes[c.fetchStore], o + k, n - k) === words[w + (k >> 2)];
  }

  /**
   * Decode a block at linear `lin` (= CS base + eip, physical `phys`, page offset `po`) into
   * block b. Faults of the first instruction propagate; later ones end the block before them.
   * It ends after its first conditional branch, open (extend), unless a translation kept for it
   * is there to take back: then it is decoded as far as that translation's block was. Cold code
   * is decoded only as far as it runs: an `echo` after a restore of the default guest decoded
   * 12,196 blocks, 8.8 instructions each, when blocks went past conditional branches at once.
   */
  build(c: Cpu, b: number, src: CodeSource, lin: number, eip: number, phys: number, po: number): void {
    this.stats.built++;
    // Runs toward translation survive the block leaving the cache (two hot blocks sharing an
    // entry would otherwise never get there).
    const old = this.tag[b];
    if (old >= 0 && this.code[b] === null && this.hits[b] > 0) {
      this.pastHits[pastIndex(old)] = this.hits[b];
    }
    if (old >= 0 && old !== phys) this.evictions++;
    this.tag[b] = -1;
    this.hits[b] = this.pastHits[pastIndex(phys)];
    this.code[b] = null;
    if (this.codeIndex !== null) this.codeIndex[b] = 0;
    const kept = this.kept.get(phys);
    const reuse = kept !== undefined && kept.entry === b && kept.mode === c.codeMode ? kept : undefined;
    this.count[b] = 0;
    this.bytes[b] = 0;
    this.decodeMore(c, b, src, lin, eip, po, reuse === undefined ? 0 : reuse.count);
    this.mode[b] = c.codeMode;
    this.tag[b] = phys;
    this.epoch[b] = c.codeEpoch;
    markCodePage(c, phys >>> 12);
    if (reuse !== undefined && reuse.count === this.count[b] && reuse.bytes === this.bytes[b] && this.sameWords(b, reuse.words)) {
      this.code[b] = reuse.fn;
      if (this.codeIndex !== null) this.codeIndex[b] = this.indexOf(reuse.fn);
      this.stats.reused++;
    }
  }

  /**
   * Open block b (at linear `lin`, `eip`, page offset `po`), checked in the current code epoch and
   * untranslated: decode its next instructions, to the next conditional branch (the interpreter
   * fell through its last one) or, with `all`, as far as the block goes (it is about to be
   * translated: a translation covers paths not run yet too).
   */
  extend(c: Cpu, b: number, src: CodeSource, lin: number, eip: number, po: number, all: boolean): void {
    this.stats.extended++;
    this.decodeMore(c, b, src, lin, eip, po, all ? MAX_INSTRUCTIONS : 0);
  }

  /**
   * Decode instructions into block b after its count[b] (bytes[b]) until a block end, or after
   * `atLeast` instructions at the first conditional branch; its copy of the bytes follows.
   */
  private decodeMore(c: Cpu, b: number, src: CodeSource, lin: number, eip: number, po: number, atLeast: number): void {
    const d = c.dec;
    const base = b * MAX_INSTRUCTIONS;
    const default32 = c.codeMode === 1;
    let n = this.count[b];
    let bytes = this.bytes[b];
    let open = 0;
    while (n < MAX_INSTRUCTIONS) {
      const slot = base + n;
      src.lin = (lin + bytes) | 0;
      src.eip = (eip + bytes) | 0;
      if (n > 0) {
        try {
          decodeInto(d, slot, src, default32, CPU_HANDLERS);
        } catch (e) {
          if (e !== FAULT) throw e;
          c.faultTrap = false;
          break;
        }
      } else {
        decodeInto(d, slot, src, default32, CPU_HANDLERS);
      }
      const len = d.len[slot];
      if (n > 0 && (bytes + len > MAX_BYTES || po + bytes + len > PAGE_TAIL)) break;
      n++;
      bytes += len;
      const e = slotEntry(d, slot);
      if (e === null || (e.endsBlock && !isConditionalBranch(e.opcode)) || po + bytes > PAGE_TAIL) break;
      if (e.endsBlock && n >= atLeast) {
        open = n < MAX_INSTRUCTIONS ? 1 : 0;
        break;
      }
    }
    const from = this.bytes[b] & ~3;
    this.count[b] = n;
    this.bytes[b] = bytes;
    this.open[b] = open;
    const v = c.views[c.fetchStore];
    const o = c.fetchOff + po;
    const w = b * (MAX_BYTES / 4);
    for (let k = from; k < bytes; k += 4) {
      const rest = bytes - k;
      this.words[w + (k >> 2)] = rest >= 4 ? v.getInt32(o + k, true) : tail(c.bytes[c.fetchStore], o + k, rest);
    }
  }

  /** Install translation `fn` of block b (and keep it for the block's bytes). */
  setCode(b: number, fn: BlockFn): void {
    this.code[b] = fn;
    if (this.codeIndex !== null) this.codeIndex[b] = this.indexOf(fn);
    this.stats.translated++;
    if (this.kept.size >= KEPT_MAX) this.kept.clear();
    const w = b * (MAX_BYTES / 4);
    const words = this.words.slice(w, w + ((this.bytes[b] + 3) >> 2));
    this.kept.set(this.tag[b], { fn, mode: this.mode[b], count: this.count[b], bytes: this.bytes[b], words, entry: b });
  }

  private sameWords(b: number, words: Int32Array): boolean {
    const w = b * (MAX_BYTES / 4);
    for (let k = 0; k < words.length; k++) if (this.words[w + k] !== words[k]) return false;
    return true;
  }
}

/** The last 1-3 bytes of a block as a little-endian number (never reads past them: a page may end the store). */
function tail(bytes: Uint8Array, at: number, n: number): number {
  let v = 0;
  for (let k = 0; k < n; k++) v |= bytes[at + k] << (8 * k);
  return v;
}

/**
 * Conditional branches do not end a block: execution leaves the block when one is taken (the
 * run loop sees EIP differ from the fall-through), so a block is a fall-through trace.
 */
function isConditionalBranch(opcode: number): boolean {
  return (opcode >= 0x70 && opcode <= 0x7f) || (opcode >= 0x180 && opcode <= 0x18f) || (opcode >= 0xe0 && opcode <= 0xe3);
}

/** Reads instruction bytes at CS:EIP+k for the decoder, with the CS limit check. */
export class CodeSource implements ByteSource {
  lin = 0;
  eip = 0;
  constructor(private readonly c: Cpu) {}
  byteAt(k: number): number {
    const c = this.c;
    if (((this.eip + k) >>> 0) > c.limit[1]) c.fault(13, 0);
    const l = (this.lin + k) | 0;
    if (l >>> 12 === c.fetchPage) return c.bytes[c.fetchStore][c.fetchOff + (l & 0xfff)];
    return c.linRd8(l, c.cpl === 3);
  }
}

/** Route guest writes to physical page `gpn` through the slow path, which advances the code epoch. */
export function markCodePage(c: Cpu, gpn: number): void {
  if (c.codePage[gpn]) return;
  c.codePage[gpn] = 1;
  for (const [list, count] of [[c.tlbList, c.tlbCount], [c.tlbGlobalList, c.tlbGlobalCount]] as const) {
    for (let k = 0; k < count; k++) {
      const p = list[k];
      if (c.tlbPhys[p] === gpn) c.tlbFlags[p] &= ~(TLB_WS | TLB_WU);
    }
  }
}
