// Host memory handed out as page frames: the backing object of memory-space capabilities.

import type { CapObject } from "../capabilities/index.js";

export const FRAME_SIZE = 4096;

/** A contiguous block of frames. Frame n is bytes [n*4096, (n+1)*4096) of `bytes`. */
export class FrameStore implements CapObject {
  readonly type = 0;
  readonly bytes: Uint8Array;

  constructor(readonly frames: number) {
    this.bytes = new Uint8Array(frames * FRAME_SIZE);
  }
}
