// A fixed x87 workload for `fpu_mflops`: Horner evaluation of a degree-16 polynomial (the
// exp(x) Taylor series) at many points, as FMUL ST,ST(1) / FADD m64 pairs executed through the
// unit's execute path (decoding by TestHost; the integer core is not involved).

import { runX87, TestHost } from "./test-host.js";
import { X87 } from "./x87.js";

const DEGREE = 16;
const CODE = 0x10000000, DATA = 0x20000000;

/** The code: FLD m64 x; FLD m64 c16; then per coefficient FMUL ST,ST(1); FADD m64 c_k; FSTP; FSTP. */
function horner(): Uint8Array {
  const code: number[] = [0xdd, 0x83, 0, 0, 0, 0, 0xdd, 0x83, 8 * DEGREE + 8, 0, 0, 0];
  for (let k = DEGREE - 1; k >= 0; k--) code.push(0xd8, 0xc9, 0xdc, 0x83, 8 * k + 8, 0, 0, 0);
  code.push(0xdd, 0x9b, 0x00, 0x01, 0, 0, 0xdd, 0xd8); // FSTP m64 [ebx+256]; FSTP ST(0)
  return new Uint8Array(code);
}

/** MFLOPS (one FMUL or FADD = one operation) of the unit over about `seconds` of work. */
export function benchmarkFpu(seconds = 1): number {
  const x = new X87();
  const memory = new Uint8Array(4096);
  const view = new DataView(memory.buffer);
  let factorial = 1;
  for (let k = 0; k <= DEGREE; k++) {
    if (k > 0) factorial *= k;
    view.setFloat64(8 * k + 8, 1 / factorial, true);
  }
  const host = new TestHost(memory, DATA);
  host.regs[3] = DATA;
  const code = horner();
  let ops = 0;
  let check = 0;
  const start = performance.now();
  let elapsed = 0;
  for (let point = 0; elapsed < seconds * 1000; point++) {
    view.setFloat64(0, (point % 64) / 32 - 1, true);
    runX87(x, host, code, CODE);
    check += view.getFloat64(256, true);
    ops += 2 * DEGREE;
    if ((point & 15) === 15) elapsed = performance.now() - start;
  }
  if (!Number.isFinite(check)) throw new Error("fpu benchmark produced a non-finite sum");
  return ops / (elapsed * 1000);
}

if (process.argv[1]?.endsWith("bench.ts")) console.log(`fpu_mflops=${benchmarkFpu().toFixed(2)}`);
