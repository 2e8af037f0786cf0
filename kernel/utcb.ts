// User thread control block: the message buffer of an EC. Untyped words travel as they are;
// typed items ask the kernel to delegate capabilities or to translate a selector.

import type { Crd } from "../capabilities/index.js";
import type { VcpuState } from "./vcpu.js";

/** Untyped words a UTCB holds (a 4 KiB page of 32-bit words, less a header). */
export const UTCB_WORDS = 1008;

/** Delegate the range `crd` of the sender's space (rights ANDed by `crd.rights`) to the receiver's window at `offset`. */
export interface DelegateItem {
  readonly kind: "delegate";
  readonly crd: Crd;
  /** Slot offset inside the receiver's window of the same space kind; aligned to the range size. */
  readonly offset: number;
}

/** Tell the receiver under which selector of its own translate window it holds the object of `selector`. */
export interface TranslateItem {
  readonly kind: "translate";
  readonly selector: number;
}

export type TypedItem = DelegateItem | TranslateItem;

/** What arrived through typed items: each delegated range, or the translated selector (-1 if none). */
export type ReceivedItem =
  | { readonly kind: "delegated"; readonly crd: Crd }
  | { readonly kind: "translated"; readonly selector: number };

/** The `received` list of a message without typed items. */
export const NO_ITEMS: readonly ReceivedItem[] = Object.freeze([]);

/**
 * A UTCB belongs to its EC's component, which may put anything into it. It is sealed (no getter
 * can be put on it) and `words` and `items` cannot be replaced; what the kernel reads from the
 * rest (the count, items, windows, vCPU state) it copies or checks under a guard (ipc.ts, vm-exit.ts).
 */
export class Utcb {
  readonly words = new Uint32Array(UTCB_WORDS);
  /** Number of valid untyped words of the message in `words`. */
  untyped = 0;
  /** Typed items to send with the next call or reply. Cleared by the kernel once sent. */
  readonly items: TypedItem[] = [];
  /** Typed items that arrived with the last message. */
  received: readonly ReceivedItem[] = NO_ITEMS;
  /** Where delegations may land, per space kind (object, memory, I/O); null refuses them. */
  receiveWindow: [Crd | null, Crd | null, Crd | null] = [null, null, null];
  /** Object-space range searched by translate items. */
  translateWindow: Crd | null = null;
  /** vCPU state of a VM-exit message (exit handlers only); the MTD says which parts are valid. */
  vcpu: VcpuState | null = null;
  /** Scalar results of hypercalls that return one (sc_ctrl: consumed ns; lookup: see `lookupResult`). */
  result = 0;
  lookupResult: { crd: Crd; type: number } | null = null;

  constructor() {
    Object.preventExtensions(this.words);
    Object.defineProperty(this, "words", { writable: false });
    Object.defineProperty(this, "items", { writable: false });
    Object.seal(this);
  }

  /** Convenience: set the message to these untyped words. */
  set(...values: number[]): this {
    for (let i = 0; i < values.length; i++) this.words[i] = values[i];
    this.untyped = values.length;
    return this;
  }
}

/** Pack bytes into UTCB words, 4 per word, little-endian, starting at `at`. Returns words used. */
export function packBytes(bytes: ArrayLike<number>, words: Uint32Array, at: number): number {
  const n = Math.ceil(bytes.length / 4);
  for (let w = 0; w < n; w++) {
    let v = 0;
    for (let b = 0; b < 4; b++) {
      const i = 4 * w + b;
      if (i < bytes.length) v |= (bytes[i] & 0xff) << (8 * b);
    }
    words[at + w] = v >>> 0;
  }
  return n;
}

/** The `count` bytes packed by `packBytes` from word `at` on. */
export function unpackBytes(words: Uint32Array, at: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (words[at + (i >> 2)] >>> (8 * (i & 3))) & 0xff;
  return out;
}
