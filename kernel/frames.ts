// Host memory handed out as page frames: the backing object of memory-space capabilities.

import type { CapObject } from "../capabilities/index.js";

export const FRAME_SIZE = 4096;
/**
 * Most frames a kernel can have (2 GiB): a VM's page table keeps byte offsets into the frame store
 * as 32-bit signed integers (GuestMemory.offsetOf).
 */
export const MAX_FRAMES = 2 ** 19;

/** A contiguous block of frames. Frame n is bytes [n*4096, (n+1)*4096) of `bytes`. */
export class FrameStore implements CapObject {
  readonly type = 0;
  readonly bytes: Uint8Array;

  constructor(readonly frames: number) {
    if (frames > MAX_FRAMES) throw new RangeError(`${frames} frames: a kernel has at most ${MAX_FRAMES} (2 GiB)`);
    this.bytes = new Uint8Array(frames * FRAME_SIZE);
  }
}
