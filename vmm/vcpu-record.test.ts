import { describe, expect, it } from "vitest";
import { VcpuState } from "../kernel/index.js";
import { copyVcpuState } from "./vcpu-record.js";

/** A state whose every field differs from a fresh one's (numbers +1..., flags flipped, records fresh). */
function distinct(): VcpuState {
  const s = new VcpuState() as unknown as Record<string, unknown>;
  let n = 1;
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === "number") s[k] = v + n++;
    else if (typeof v === "boolean") s[k] = !v;
    else if (typeof v === "bigint") s[k] = v + 7n;
    else if (v === null) s[k] = new Uint8Array(512).fill(n++);
    else if (typeof v === "object") s[k] = Object.fromEntries(Object.entries(v as object).map(([f, x]) => [f, typeof x === "boolean" ? !x : (x as number) + n++]));
  }
  return s as unknown as VcpuState;
}

describe("copyVcpuState", () => {
  it("copies every field of VcpuState but the qualification (a field added later fails here until it is copied)", () => {
    const from = distinct();
    const to = new VcpuState();
    const qual = to.qual;
    copyVcpuState(from, to);
    expect(to.qual).toBe(qual);
    for (const k of Object.keys(from) as (keyof VcpuState)[]) {
      if (k === "qual") continue;
      expect(to[k], k).toEqual(from[k]);
    }
  });

  it("gives the copy records of its own (changing the source later does not reach it), the FPU image shared", () => {
    const from = distinct();
    const to = new VcpuState();
    copyVcpuState(from, to);
    from.cs.selector = 0x1234;
    from.inj.vector = 99;
    expect(to.cs.selector).not.toBe(0x1234);
    expect(to.inj.vector).not.toBe(99);
    expect(to.fpu).toBe(from.fpu);
  });
});
