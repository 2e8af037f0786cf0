// Argument records of hypercalls and waits, copied out of the caller's hands. Whatever a component
// passes may be a Proxy or have getters that answer differently on each read, or throw: each field
// is read exactly once, into a plain record of primitives, and the kernel checks and uses only the
// copy. A value that cannot be read, or has the wrong type, makes the whole record undefined.

import type { Crd } from "../capabilities/index.js";

type Kind = "number" | "string" | "boolean" | "function" | "crd" | "opaque";
/** A field: its kind, optional with a trailing "?" (undefined allowed), or a nested record (absent reads as {}). */
export type Field = Kind | `${Kind}?` | Shape;
export interface Shape {
  readonly [name: string]: Field;
}

type KindType<K> = K extends "number"
  ? number
  : K extends "string"
    ? string
    : K extends "boolean"
      ? boolean
      : K extends "function"
        ? (...args: never[]) => unknown
        : K extends "crd"
          ? Crd
          : unknown;
type FieldType<F> = F extends `${infer K}?` ? KindType<K> | undefined : F extends Shape ? Args<F> : KindType<F>;
/** The plain record a shape describes. */
export type Args<S extends Shape> = { readonly [N in keyof S]: FieldType<S[N]> };

/**
 * The copier of a shape, made once where the shape is defined: it returns the copy, or undefined
 * when `raw` is not an object, a read throws, or a field has the wrong type. It never throws.
 */
export function copier<S extends Shape>(shape: S): (raw: unknown) => Args<S> | undefined {
  const copy = recordCopier(shape);
  return (raw) => {
    try {
      const c = copy(raw);
      return c === INVALID ? undefined : (c as Args<S>);
    } catch {
      return undefined;
    }
  };
}

const INVALID = Symbol("invalid");
type Copier = (v: unknown) => unknown;
const CRD = { kind: "number", base: "number", order: "number", rights: "number" } as const;

/** A capability range descriptor as four numbers (ranges unchecked: see isValidCrd); undefined if it is not one. */
export const copyCrd = copier(CRD);

/**
 * The copier of a record, generated from its shape: each field read by name at a site of its own
 * and the copy made as one literal. A loop over the names read and wrote by computed keys, at
 * sites every shape of every hypercall shared: megamorphic, 190 ns a copy against 65 ns (eight
 * shapes in turn, the record made each time included).
 */
function recordCopier(shape: Shape): Copier {
  const names = Object.keys(shape);
  const fields = names.map((n) => fieldCopier(shape[n]));
  // A literal's "__proto__" would set the prototype, not copy a field (no shape has one).
  if (names.includes("__proto__")) throw new TypeError("a hypercall shape may not name __proto__");
  const key = (n: string) => JSON.stringify(n);
  const reads = names.map((n, i) => `const v${i} = f[${i}](raw[${key(n)}]); if (v${i} === INVALID) return INVALID;`);
  const copy = names.map((n, i) => `${key(n)}: v${i}`).join(", ");
  const source = `"use strict"; return (raw) => { if (raw === null || typeof raw !== "object") return INVALID; ${reads.join(" ")} return { ${copy} }; };`;
  return new Function("f", "INVALID", source)(fields, INVALID) as Copier;
}

function fieldCopier(field: Field): Copier {
  if (typeof field !== "string") {
    const record = recordCopier(field);
    return (v) => record(v === undefined ? {} : v);
  }
  const optional = field.endsWith("?");
  const kind = (optional ? field.slice(0, -1) : field) as Kind;
  const present: Copier = kind === "crd" ? recordCopier(CRD) : kind === "opaque" ? (v) => v : (v) => (typeof v === kind ? v : INVALID);
  return (v) => (v === undefined ? (optional ? undefined : INVALID) : present(v));
}
