// IPC message transfer: untyped words are copied, typed items delegate or translate capabilities.

import {
  type Crd,
  SpaceKind,
  performDelegate,
  planDelegate,
  isValidCrd,
} from "../capabilities/index.js";
import { KernelMemoryCost } from "./object.js";
import type { Pd } from "./pd.js";
import type { Utcb } from "./utcb.js";

/**
 * Copy the message of `from` (sent by `sender`) into `to` (received by `receiver`). Typed items
 * that cannot be honoured (no window, misfit, occupied slots, receiver out of quota) are dropped;
 * the receiver sees in `to.received` what did arrive.
 */
export function transferMessage(from: Utcb, sender: Pd, to: Utcb, receiver: Pd): void {
  const n = from.untyped;
  const src = from.words;
  const dst = to.words;
  if (n <= 8) for (let i = 0; i < n; i++) dst[i] = src[i];
  else dst.set(src.subarray(0, n));
  to.untyped = n;
  if (to.received.length !== 0) to.received.length = 0;
  if (from.items.length !== 0) transferItems(from, sender, to, receiver);
}

function transferItems(from: Utcb, sender: Pd, to: Utcb, receiver: Pd): void {
  for (const item of from.items) {
    if (item.kind === "translate") {
      to.received.push({ kind: "translated", selector: translate(sender, item.selector, receiver, to.translateWindow) });
      continue;
    }
    const c = item.crd;
    if (!isValidCrd(c)) continue;
    const window = to.receiveWindow[c.kind];
    if (!window) continue;
    const size = 2 ** c.order;
    if (c.order > window.order || item.offset % size !== 0 || item.offset < 0 || item.offset + size > 2 ** window.order)
      continue;
    const dstBase = window.base + item.offset;
    const plan = planDelegate(sender.space(c.kind), c, receiver.space(c.kind), dstBase);
    if (typeof plan === "string" || plan.from.length === 0) continue;
    if (!receiver.charge(plan.from.length * KernelMemoryCost.MAPPING)) continue;
    performDelegate(plan);
    to.received.push({ kind: "delegated", crd: { kind: c.kind, base: dstBase, order: c.order, rights: c.rights } });
  }
  from.items.length = 0;
}

/** The selector in `window` of `receiver` that names the same object as `selector` of `sender`; -1 if none. */
function translate(sender: Pd, selector: number, receiver: Pd, window: Crd | null): number {
  const m = sender.objects.get(selector);
  if (!m || !window || window.kind !== SpaceKind.OBJECT || !isValidCrd(window)) return -1;
  for (const r of receiver.objects.mappingsIn(window.base, 2 ** window.order)) {
    if (r.cap.object === m.cap.object) return r.index;
  }
  return -1;
}
