import { describe, expect, it } from "vitest";
import { copier } from "./args.js";

const copy = copier({ sel: "number", op: "number?", range: "crd", inner: { on: "boolean" } });
const crd = { kind: 0, base: 16, order: 2, rights: 1 };

describe("argument copier", () => {
  it("copies the fields of its shape into a plain record, nothing else", () => {
    const raw = { sel: 7, range: crd, inner: { on: true }, extra: "x" };
    const c = copy(raw)!;
    expect(c).toEqual({ sel: 7, op: undefined, range: crd, inner: { on: true } });
    expect(Object.getPrototypeOf(c)).toBe(Object.prototype);
    expect(c.range).not.toBe(crd);
  });

  it("reads each field once, in the shape's order, even through getters that change", () => {
    const reads: string[] = [];
    let n = 0;
    const raw = {
      get sel() {
        reads.push("sel");
        return ++n;
      },
      get op() {
        reads.push("op");
        return ++n;
      },
      range: crd,
      inner: {},
    };
    const c = copier({ sel: "number", op: "number", range: "crd" })(raw)!;
    expect(reads).toEqual(["sel", "op"]);
    expect([c.sel, c.op]).toEqual([1, 2]);
  });

  it("refuses a wrong type, a missing field, a throwing getter or a non-object, without throwing", () => {
    expect(copy({ sel: "7", range: crd })).toBeUndefined();
    expect(copy({ range: crd })).toBeUndefined();
    expect(copy({ sel: 1, range: { ...crd, order: "2" } })).toBeUndefined();
    expect(copy({ sel: 1, range: crd, inner: { on: 1 } })).toBeUndefined();
    const hostile = new Proxy({}, { get: () => { throw new Error("no"); } });
    expect(copy(hostile)).toBeUndefined();
    expect(copy(null)).toBeUndefined();
    expect(copy(5)).toBeUndefined();
  });

  it("takes no shape that names __proto__ (a literal would set the prototype)", () => {
    expect(() => copier(JSON.parse('{"__proto__": "number"}'))).toThrow(TypeError);
  });
});
