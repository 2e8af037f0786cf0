// The x87 unit driven directly (TestHost): stack faults, masked and unmasked responses, precision
// and rounding control, FXAM classes, exception delivery (#MF, FERR#/IGNNE#), image layouts.
import { describe, expect, it } from "vitest";
import { loadState, storeEnv, storeState, storeFxsave } from "./images.js";
import { FROZEN, runX87, TestHost } from "./test-host.js";
import { X87 } from "./x87.js";

const CODE = 0x10000000, DATA = 0x20000000;

function setup() {
  const x = new X87();
  const memory = new Uint8Array(4096);
  const host = new TestHost(memory, DATA);
  host.regs[3] = DATA;
  const run = (code: number[]) => runX87(x, host, new Uint8Array(code), CODE);
  const st = (i: number): [number, bigint] => [x.se[x.phys(i)], x.m[x.phys(i)]];
  const view = new DataView(memory.buffer);
  return { x, host, run, st, memory, view };
}

/** [ebx+disp8] memory operand: opcode, reg field, displacement. */
const mem = (op: number, reg: number, disp: number) => [op, 0x43 | (reg << 3), disp];
const FLD1 = [0xd9, 0xe8], FLDZ = [0xd9, 0xee], FLDPI = [0xd9, 0xeb], FWAIT = [0x9b];
const FDIVP = [0xde, 0xf9], FADDP = [0xde, 0xc1], FSQRT = [0xd9, 0xfa], FCHS = [0xd9, 0xe0];
const FLDCW = (disp: number) => mem(0xd9, 5, disp);
const INDEFINITE: [number, bigint] = [0xffff, 0xc000000000000000n];

describe("x87 stack and masked responses", () => {
  it("FNINIT state: control 037F, empty stack", () => {
    const { x, run } = setup();
    expect(run([0xdb, 0xe3]).vector).toBe(-1);
    expect(x.cw).toBe(0x37f);
    expect(x.status).toBe(0);
    expect(x.tagWord).toBe(0xffff);
  });

  it("stack overflow (masked): IE, SF, C1 = 1 and the indefinite is pushed", () => {
    const { x, run, st } = setup();
    run([...Array(8).fill(FLD1).flat()]);
    expect(x.status & 0x7f).toBe(0);
    run(FLDZ);
    expect(x.status & 0x241).toBe(0x241);
    expect(st(0)).toEqual(INDEFINITE);
  });

  it("stack underflow (masked): IE, SF, C1 = 0, the destination gets the indefinite", () => {
    const { x, run, st } = setup();
    run([...FLD1, 0xd8, 0xc1]); // FADD ST, ST(1) with ST(1) empty
    expect(x.status & 0x241).toBe(0x41);
    expect(st(0)).toEqual(INDEFINITE);
  });

  it("invalid operations give the QNaN indefinite; x/0 gives infinity with ZE", () => {
    const { x, run, st } = setup();
    run([...FLDZ, ...FLDZ, ...FDIVP]);
    expect(st(0)).toEqual(INDEFINITE);
    expect(x.sw & 1).toBe(1);
    run([0xdb, 0xe3, ...FLD1, ...FLDZ, ...FDIVP]);
    expect(st(0)).toEqual([0x7fff, 0x8000000000000000n]);
    expect(x.sw & 0x3f).toBe(4);
    run([0xdb, 0xe3, ...FLD1, ...FCHS, ...FSQRT]);
    expect(st(0)).toEqual(INDEFINITE);
  });

  it("NaN propagation: the larger significand wins, a QNaN beats an SNaN, SNaNs are quieted", () => {
    const { x, run, st, memory } = setup();
    const put = (at: number, se: number, m: bigint) => {
      new DataView(memory.buffer).setBigUint64(at, m, true);
      new DataView(memory.buffer).setUint16(at + 8, se, true);
    };
    put(0, 0x7fff, 0xc000000000000001n); // QNaN, small payload
    put(16, 0xffff, 0xc000000000000100n); // QNaN, larger payload
    put(32, 0x7fff, 0x8000000000001000n); // SNaN, largest payload
    run([...mem(0xdb, 5, 0), ...mem(0xdb, 5, 16), ...FADDP]);
    expect(st(0)).toEqual([0xffff, 0xc000000000000100n]);
    expect(x.sw & 1).toBe(0);
    run([0xdb, 0xe3, ...mem(0xdb, 5, 0), ...mem(0xdb, 5, 32), ...FADDP]);
    expect(st(0)).toEqual([0x7fff, 0xc000000000000001n]);
    expect(x.sw & 1).toBe(1);
    run([0xdb, 0xe3, ...FLD1, ...mem(0xdb, 5, 32), ...FADDP]);
    expect(st(0)).toEqual([0x7fff, 0xc000000000001000n]);
  });
});

describe("precision and rounding control", () => {
  const third = (cw: number) => {
    const { run, st, view } = setup();
    view.setUint16(0, cw, true);
    run([...FLDCW(0), ...FLD1, 0xd9, 0xe8, 0xd8, 0xc0, 0xd8, 0xc1, ...FDIVP]); // 1 / 3
    return st(0);
  };
  it("1/3 rounds to 24, 53 or 64 bits as PC says", () => {
    expect(third(0x007f)).toEqual([0x3ffd, 0xaaaaab0000000000n]);
    expect(third(0x027f)).toEqual([0x3ffd, 0xaaaaaaaaaaaaa800n]);
    expect(third(0x037f)).toEqual([0x3ffd, 0xaaaaaaaaaaaaaaabn]);
  });
  it("1/3 under the four rounding modes", () => {
    expect(third(0x037f)[1]).toBe(0xaaaaaaaaaaaaaaabn); // nearest
    expect(third(0x077f)[1]).toBe(0xaaaaaaaaaaaaaaaan); // down
    expect(third(0x0b7f)[1]).toBe(0xaaaaaaaaaaaaaaabn); // up
    expect(third(0x0f7f)[1]).toBe(0xaaaaaaaaaaaaaaaan); // chop
  });
  it("FLDPI follows RC on its 66-bit constant", () => {
    for (const [cw, m] of [[0x037f, 0xc90fdaa22168c235n], [0x0f7f, 0xc90fdaa22168c234n]] as const) {
      const { run, st, view } = setup();
      view.setUint16(0, cw, true);
      run([...FLDCW(0), ...FLDPI]);
      expect(st(0)).toEqual([0x4000, m]);
    }
  });
  it("masked overflow: infinity when rounding to nearest, the largest finite when chopping", () => {
    for (const [cw, want] of [[0x037f, [0x7fff, 0x8000000000000000n]], [0x0f7f, [0x7ffe, 0xffffffffffffffffn]]] as const) {
      const { x, run, st, view } = setup();
      view.setUint16(0, cw, true);
      view.setBigUint64(16, 0xffffffffffffffffn, true);
      view.setUint16(24, 0x7ffe, true);
      run([...FLDCW(0), ...mem(0xdb, 5, 16), 0xd8, 0xc0]); // FADD ST, ST
      expect(st(0)).toEqual(want);
      expect(x.sw & 0x28).toBe(0x28);
    }
  });
  it("unmasked overflow on the stack: the exponent is biased down by 24576 and #MF is pending", () => {
    const { x, run, st, view } = setup();
    view.setUint16(0, 0x0377, true); // OE unmasked
    view.setBigUint64(16, 0x8000000000000000n, true);
    view.setUint16(24, 0x7ffe, true);
    run([...FLDCW(0), ...mem(0xdb, 5, 16), 0xd8, 0xc0]);
    expect(st(0)).toEqual([0x7fff - 24576, 0x8000000000000000n]);
    expect(x.status & 0x8088).toBe(0x8088);
    expect(run(FWAIT).vector).toBe(16);
  });
  it("masked underflow: a denormal with UE and PE only when inexact", () => {
    const { x, run, st, view } = setup();
    view.setBigUint64(16, 0xc000000000000000n, true);
    view.setUint16(24, 0x0001, true); // 1.5 * 2^-16382
    view.setUint32(32, 0x40000000, true); // 2.0f
    run([...mem(0xdb, 5, 16), ...mem(0xd8, 6, 32)]); // / 2: exact denormal
    expect(st(0)).toEqual([0, 0x6000000000000000n]);
    expect(x.sw & 0x30).toBe(0);
    view.setUint32(40, 0x40a00000, true); // 5.0f
    run(mem(0xd8, 6, 40)); // 0.3 * 2^-16382: tiny and inexact
    expect(x.sw & 0x30).toBe(0x30);
    expect(st(0)[0]).toBe(0);
  });
});

describe("FXAM", () => {
  it("reports every class and the sign in C1", () => {
    const { x, run, view } = setup();
    const classes: [number, bigint, number][] = [
      [0x0000, 0n, 0x4000], // +0
      [0x8000, 0x1234n, 0x4600], // -denormal (C1 = sign)
      [0x0000, 0x8000000000000001n, 0x4400], // pseudo-denormal: denormal class
      [0x3fff, 0x8000000000000000n, 0x0400], // normal
      [0x7fff, 0x8000000000000000n, 0x0500], // infinity
      [0x7fff, 0xc000000000000000n, 0x0100], // NaN
      [0x3fff, 0x4000000000000000n, 0x0000], // unnormal: unsupported
      [0x7fff, 0x0000000000000000n, 0x0000], // pseudo-infinity: unsupported
    ];
    for (const [se, m, cc] of classes) {
      view.setBigUint64(16, m, true);
      view.setUint16(24, se, true);
      run([0xdb, 0xe3, ...mem(0xdb, 5, 16), 0xd9, 0xe5]);
      expect((x.status & 0x4700).toString(16)).toBe(cc.toString(16));
    }
    run([0xdb, 0xe3, 0xd9, 0xe5]);
    expect(x.status & 0x4500).toBe(0x4100); // empty
  });
});

describe("exception delivery", () => {
  it("an unmasked exception is pending until the next waiting instruction: #MF with CR0.NE", () => {
    const { x, run, view } = setup();
    view.setUint16(0, 0x037b, true); // ZE unmasked
    expect(run([...FLDCW(0), ...FLD1, ...FLDZ, ...FDIVP]).vector).toBe(-1);
    expect(x.status & 0x80).toBe(0x80);
    expect(run([0xdf, 0xe0]).vector).toBe(-1); // FNSTSW AX does not wait
    expect(run(FLD1)).toEqual({ vector: 16, offset: 0 });
    expect(run([0xdb, 0xe2, ...FLD1]).vector).toBe(-1); // FNCLEX, then fine
  });

  it("without CR0.NE: FERR# follows ES from the flagging instruction on; waiting instructions freeze unless IGNNE#", () => {
    const { x, host, run, view } = setup();
    host.cr0 = 0x11; // PE, ET; NE clear
    view.setUint16(0, 0x037b, true);
    expect(run([...FLDCW(0), ...FLD1, ...FLDZ]).vector).toBe(-1);
    expect(x.ferr).toBe(false);
    expect(run(FDIVP).vector).toBe(-1);
    expect(x.ferr).toBe(true); // asserted at the end of FDIVP (P6), before any waiting instruction
    expect(run([0xdf, 0xe0])).toEqual({ vector: -1, offset: 2 }); // FNSTSW AX: no-wait, runs
    const top = x.top;
    expect(run([...FLD1])).toEqual({ vector: FROZEN, offset: 0 }); // frozen before FLD1
    expect(run(FWAIT)).toEqual({ vector: FROZEN, offset: 0 });
    expect(x.top).toBe(top); // the frozen instruction did nothing
    x.ignne = true; // the guest wrote port F0h: the chipset drives IGNNE#
    expect(run([...FLD1, ...FWAIT]).vector).toBe(-1);
    expect(x.top).toBe((top + 7) & 7);
    expect(x.ferr).toBe(true); // still flagged: IGNNE# only lets instructions go on
    run([0xdb, 0xe2]); // FNCLEX
    expect(x.ferr).toBe(false);
  });

  it("IGNNE# does not matter with CR0.NE: #MF", () => {
    const { x, run, view } = setup();
    view.setUint16(0, 0x037b, true);
    run([...FLDCW(0), ...FLD1, ...FLDZ, ...FDIVP]);
    x.ignne = true;
    expect(run(FLD1)).toEqual({ vector: 16, offset: 0 });
  });

  it("FERR# also follows ES when FLDCW unmasks or masks a flagged exception", () => {
    const { x, run, view } = setup();
    view.setUint16(0, 0x037f, true);
    view.setUint16(2, 0x037b, true);
    run([...FLD1, ...FLDZ, ...FDIVP]); // ZE flagged, masked
    expect(x.ferr).toBe(false);
    run(FLDCW(2));
    expect(x.ferr).toBe(true);
    run([0xd9, 0x6b, 0]); // FLDCW [ebx]: waiting, so with NE it faults first
    expect(x.ferr).toBe(true);
  });

  it("an unmasked invalid operation leaves the destination and the stack alone", () => {
    const { x, run, st, view } = setup();
    view.setUint16(0, 0x037e, true);
    run([...FLDCW(0), ...FLDZ, ...FLDZ, ...FDIVP]);
    expect(x.top).toBe(6);
    expect(st(0)).toEqual([0, 0n]);
  });
});

describe("compares, FCMOV, integers, BCD, FPREM", () => {
  it("FCOMI sets ZF/PF/CF; FCMOVB moves on CF", () => {
    const { host, run, st } = setup();
    run([...FLD1, ...FLDZ, 0xdb, 0xf1]); // ST0 = 0 < ST1 = 1
    expect(host.flags & 0x45).toBe(0x01);
    run([0xda, 0xc1]); // FCMOVB ST, ST(1)
    expect(st(0)).toEqual([0x3fff, 0x8000000000000000n]);
  });

  it("FIST of an out-of-range value stores the integer indefinite with IE", () => {
    const { x, run, view } = setup();
    view.setUint32(16, 0x47800000, true); // 65536.0f
    run([...mem(0xd9, 0, 16), ...mem(0xdf, 2, 32)]);
    expect(view.getUint16(32, true)).toBe(0x8000);
    expect(x.sw & 1).toBe(1);
  });

  it("FBSTP/FBLD round-trip 18 digits", () => {
    const { run, view, st } = setup();
    view.setBigUint64(16, 0x1234567890123456n, true);
    view.setUint16(24, 0x8078, true); // -781234567890123456
    run([...mem(0xdf, 4, 16), ...mem(0xdf, 6, 48), ...mem(0xdf, 4, 48)]);
    expect(view.getBigUint64(48, true)).toBe(0x1234567890123456n);
    expect(view.getUint16(56, true)).toBe(0x8078);
    expect(st(0)[0] & 0x8000).toBe(0x8000);
  });

  it("FPREM reduces in steps (C2 = 1) until complete, then gives the quotient bits", () => {
    const { x, run, view, st } = setup();
    view.setBigUint64(16, 0x8000000000000000n, true);
    view.setUint16(24, 0x3fff + 200, true); // 2^200
    view.setUint32(32, 0x40400000, true); // 3.0f
    run([...mem(0xd9, 0, 32), ...mem(0xdb, 5, 16), 0xd9, 0xf8]);
    expect(x.status & 0x400).toBe(0x400);
    let steps = 1;
    while (x.status & 0x400) {
      run([0xd9, 0xf8]);
      steps++;
    }
    expect(steps).toBeGreaterThan(2);
    expect(st(0)).toEqual([0x3fff, 0x8000000000000000n]); // 2^200 mod 3 = 1
  });
});

describe("state images", () => {
  it("FSAVE (32-bit protected) lays out control, status, tags, pointers and ST(0) first", () => {
    const { x, run, view, memory } = setup();
    run([...FLD1, ...FLDPI, ...mem(0xdd, 6, 0x40)]); // FNSAVE [ebx+40h]
    expect(view.getUint32(0x40, true)).toBe(0xffff037f);
    expect(view.getUint16(0x44, true)).toBe(0x3000); // TOP = 6
    expect(view.getUint16(0x48, true)).toBe(0x0fff); // R6, R7 valid
    expect(view.getUint32(0x4c, true)).toBe(CODE + 2); // FIP: the FLDPI
    expect(view.getUint32(0x50, true)).toBe(0x23 | (0x1eb << 16)); // FCS, FOP
    expect(memory[0x40 + 28 + 9]).toBe(0x40); // ST(0) = pi
    expect(x.tagWord).toBe(0xffff); // FNSAVE reinitializes
  });

  it("FRSTOR of an FSAVE image restores the state; 16-bit and real-mode layouts differ", () => {
    const { x, run } = setup();
    run([...FLD1, ...FLDPI]);
    const image = new Uint8Array(108);
    storeState(x, image, true, false);
    const y = new X87();
    loadState(y, image, true, false);
    expect(y.status).toBe(x.status);
    expect(y.tagWord).toBe(x.tagWord);
    expect(y.m[y.phys(0)]).toBe(0xc90fdaa22168c235n);
    const env16 = new Uint8Array(14), real32 = new Uint8Array(28);
    expect(storeEnv(x, env16, false, false)).toBe(14);
    expect(env16[8] | (env16[9] << 8)).toBe(0x23); // FCS
    x.fipLinear = 0x12345;
    x.fop = 0x1eb;
    storeEnv(x, real32, true, true);
    expect(new DataView(real32.buffer).getUint32(12, true)).toBe(0xffff2345);
    expect(new DataView(real32.buffer).getUint32(16, true)).toBe((0x1 << 12) | 0x1eb);
  });

  it("FXSAVE image: abridged tag byte, registers in 16-byte slots", () => {
    const { x, run } = setup();
    run([...FLD1, ...FLDZ]);
    const b = new Uint8Array(512);
    storeFxsave(x, b);
    expect(b[4]).toBe(0xc0);
    expect(b[32 + 16 + 9]).toBe(0x3f); // ST(1) = 1.0
    const y = new X87();
    y.load(b);
    expect(y.tagWord).toBe(x.tagWord);
  });
});

describe("benchmark workload", () => {
  it("benchmarkFpu evaluates its polynomial and reports a positive rate", async () => {
    const { benchmarkFpu } = await import("./bench.js");
    expect(benchmarkFpu(0.05)).toBeGreaterThan(0);
  });
});

describe("save (the FXSAVE image a vCPU exit carries)", () => {
  it("gives the same image while the state is unchanged, a new one with the new state after a change", () => {
    const { x, run } = setup();
    run([0xdb, 0xe3]); // fninit
    const first = x.save();
    expect(x.save()).toBe(first);
    run([0xd9, 0xe8]); // fld1
    const second = x.save();
    expect(second).not.toBe(first);
    expect(second[4]).toBe(0x80); // the abridged tag: ST0 (physical R7) is in use
    expect(first[4]).toBe(0);
    const fresh = new Uint8Array(512);
    storeFxsave(x, fresh);
    expect(second).toEqual(fresh);
    // Fields written directly are seen once touched.
    x.cw = 0x27f;
    x.touch();
    expect(x.save()[0]).toBe(0x7f);
    expect(x.save()[1]).toBe(0x02);
  });
});
