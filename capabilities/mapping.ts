// The mapping database: every capability in every space is a node in a derivation tree.
// A node's children are the capabilities delegated from it; revoking a node removes its subtree.

import type { Capability } from "./capability.js";
import type { Space } from "./space.js";

export class Mapping {
  parent: Mapping | null = null;
  firstChild: Mapping | null = null;
  prevSibling: Mapping | null = null;
  nextSibling: Mapping | null = null;

  constructor(
    /** The space that holds this capability. */
    readonly space: Space,
    /** Its slot: selector, page number or port number. */
    readonly index: number,
    public cap: Capability,
    /** Position inside the backing object: frame number for memory, port for I/O, 0 for objects. */
    readonly offset: number,
  ) {}

  /** Is `this` an ancestor of `other` in the derivation tree (strictly)? */
  isAncestorOf(other: Mapping): boolean {
    for (let m = other.parent; m; m = m.parent) if (m === this) return true;
    return false;
  }

  get depth(): number {
    let d = 0;
    for (let m = this.parent; m; m = m.parent) d++;
    return d;
  }
}

/** Link `child` as the first child of `parent`. */
export function insertChild(parent: Mapping, child: Mapping): void {
  child.parent = parent;
  child.prevSibling = null;
  child.nextSibling = parent.firstChild;
  if (parent.firstChild) parent.firstChild.prevSibling = child;
  parent.firstChild = child;
}

/** Unlink a node that has no children from its parent and siblings. */
export function unlinkLeaf(node: Mapping): void {
  if (node.prevSibling) node.prevSibling.nextSibling = node.nextSibling;
  else if (node.parent) node.parent.firstChild = node.nextSibling;
  if (node.nextSibling) node.nextSibling.prevSibling = node.prevSibling;
  node.parent = node.prevSibling = node.nextSibling = null;
}

/**
 * The subtree below `root` (without `root`), ordered so that every node comes after all of its
 * descendants: reversed pre-order. Iterative, since derivation chains can be deep. Cost: its size.
 */
export function descendantsLeavesFirst(root: Mapping): Mapping[] {
  const preorder: Mapping[] = [];
  const stack: Mapping[] = [];
  for (let c = root.firstChild; c; c = c.nextSibling) stack.push(c);
  while (stack.length > 0) {
    const m = stack.pop()!;
    preorder.push(m);
    for (let c = m.firstChild; c; c = c.nextSibling) stack.push(c);
  }
  return preorder.reverse();
}
