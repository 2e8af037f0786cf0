// Translated blocks as the run loop sees them, and the links between them: a translated block
// returns the next translated block to run when the link of its exit still holds.

import type { Cpu } from "./cpu.js";

/**
 * A translated block: runs the whole block (or leaves it early) on `c`, and again while it
 * branches back to itself and instructions before retired count `end` remain for a whole pass.
 */
export type BlockFn = (c: Cpu, end: number) => BlockFn | null;

/**
 * The links of a translated block: for each of its exits, the translated block the run loop
 * found last at the exit's target, with what that finding depends on. An exit follows its link
 * (returns the next block to the loop's trampoline) only while the target EIP and the code epoch
 * (no code, TLB, page, CS or CPL change since) are the same, the next block is still in its cache entry, nothing needs attention and the budget
 * holds the whole next block: exactly when the run loop would run that block next.
 */
export class BlockLinks {
  readonly fn: (BlockFn | null)[];
  readonly eip: Int32Array;
  readonly block: Int32Array;
  readonly count: Int32Array;
  readonly codeEpoch: Float64Array;

  constructor(exits: number) {
    this.fn = new Array<BlockFn | null>(exits).fill(null);
    this.eip = new Int32Array(exits);
    this.block = new Int32Array(exits);
    this.count = new Int32Array(exits);
    this.codeEpoch = new Float64Array(exits).fill(-1);
  }

  /** Exit `j` leads to translated block `fn` (cache entry b, `count` instructions) at `eip`. */
  set(j: number, fn: BlockFn, b: number, count: number, eip: number, c: Cpu): void {
    this.fn[j] = fn;
    this.block[j] = b;
    this.count[j] = count;
    this.eip[j] = eip;
    this.codeEpoch[j] = c.codeEpoch;
  }
}
