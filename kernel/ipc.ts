// IPC message transfer: untyped words are copied, typed items delegate or translate capabilities.
//
// Both UTCBs belong to components. The typed items (the sender's) and the windows (the receiver's)
// may be anything, so each is copied once into plain numbers before it is checked, and only the
// copy is used; what cannot be read is dropped, a mistake of its owner only.

import { type Crd, SpaceKind, performDelegate, planDelegate, isValidCrd } from "../capabilities/index.js";
import { type Args, copier, copyCrd } from "./args.js";
import { KernelMemoryCost } from "./object.js";
import type { Pd } from "./pd.js";
import { NO_ITEMS, UTCB_WORDS, type ReceivedItem, type Utcb } from "./utcb.js";

/**
 * Copy the message of `from` (sent by `sender`) into `to` (received by `receiver`). Typed items
 * that cannot be honoured (malformed, no window, misfit, occupied slots, receiver out of quota)
 * are dropped; the receiver sees in `to.received` what did arrive.
 */
export function transferMessage(from: Utcb, sender: Pd, to: Utcb, receiver: Pd): void {
  const n = untypedOf(from);
  const src = from.words;
  const dst = to.words;
  if (n <= 8) for (let i = 0; i < n; i++) dst[i] = src[i];
  else dst.set(src.subarray(0, n));
  to.untyped = n;
  to.received = from.items.length === 0 ? NO_ITEMS : transferItems(takeItems(from), sender, to, receiver);
}

/** The sender's count of untyped words, as a word count the UTCB has (a bad count sends none). */
function untypedOf(from: Utcb): number {
  const n: unknown = from.untyped;
  return typeof n === "number" && Number.isInteger(n) && n >= 0 ? Math.min(n, UTCB_WORDS) : 0;
}

/** The fields a typed item may have; which it needs depends on `kind` (see TypedItem). */
const ITEM = { kind: "string", crd: "crd?", offset: "number?", selector: "number?" } as const;
const copyItem = copier(ITEM);
type ItemCopy = Args<typeof ITEM>;

/** Copy the sender's typed items (each read once; malformed ones dropped) and clear its list. */
function takeItems(from: Utcb): ItemCopy[] {
  const out: ItemCopy[] = [];
  try {
    const items = from.items;
    for (let i = 0; i < Math.min(items.length, UTCB_WORDS); i++) {
      const item = copyItem(items[i]);
      if (item) out.push(item);
    }
    items.length = 0;
  } catch {
    // A list the sender made unreadable or unclearable: what was copied so far goes.
  }
  return out;
}

function transferItems(items: readonly ItemCopy[], sender: Pd, to: Utcb, receiver: Pd): readonly ReceivedItem[] {
  const received: ReceivedItem[] = [];
  for (const item of items) {
    if (item.kind === "translate" && item.selector !== undefined) {
      received.push({ kind: "translated", selector: translate(sender, item.selector, receiver, windowOf(to, -1)) });
      continue;
    }
    const c = item.crd;
    if (item.kind !== "delegate" || c === undefined || item.offset === undefined || !isValidCrd(c)) continue;
    const window = windowOf(to, c.kind);
    if (!window) continue;
    const size = 2 ** c.order;
    if (c.order > window.order || !Number.isInteger(item.offset) || item.offset % size !== 0 || item.offset < 0 || item.offset + size > 2 ** window.order)
      continue;
    const dstBase = window.base + item.offset;
    const plan = planDelegate(sender.space(c.kind), c, receiver.space(c.kind), dstBase);
    if (typeof plan === "string" || plan.from.length === 0) continue;
    if (!receiver.charge(plan.from.length * KernelMemoryCost.MAPPING)) continue;
    performDelegate(plan);
    received.push({ kind: "delegated", crd: { kind: c.kind, base: dstBase, order: c.order, rights: c.rights } });
  }
  return Object.freeze(received);
}

/** The receiver's window for `kind` (-1: the translate window), copied; null when it has none or it is malformed. */
function windowOf(to: Utcb, kind: SpaceKind | -1): Crd | null {
  let raw: unknown;
  try {
    raw = kind === -1 ? to.translateWindow : to.receiveWindow[kind];
  } catch {
    return null;
  }
  const w = copyCrd(raw);
  return w && isValidCrd(w) && w.kind === (kind === -1 ? SpaceKind.OBJECT : kind) ? w : null;
}

/** The selector in `window` of `receiver` that names the same object as `selector` of `sender`; -1 if none. */
function translate(sender: Pd, selector: number, receiver: Pd, window: Crd | null): number {
  const m = Number.isInteger(selector) && selector >= 0 ? sender.objects.get(selector) : undefined;
  if (!m || !window) return -1;
  for (const r of receiver.objects.mappingsIn(window.base, 2 ** window.order)) {
    if (r.cap.object === m.cap.object) return r.index;
  }
  return -1;
}
