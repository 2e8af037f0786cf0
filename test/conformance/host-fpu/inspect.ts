// Prints one differential case in full (initial state, code, both results):
// `tsx inspect.ts SEED INDEX [PREFIX] [--focus NAME]` (PREFIX: run only the first PREFIX code bytes).
import type { FpuCase, FpuResult } from "./case.js";
import { emulate } from "./emulate.js";
import { hostSupport, runNative } from "./native.js";
import { GENERATORS } from "./runner.js";

function hex(b: Uint8Array, from: number, to: number): string {
  return Array.from(b.subarray(from, to), (v) => v.toString(16).padStart(2, "0")).join(" ");
}

function regs(image: Uint8Array): string {
  const out: string[] = [];
  for (let st = 0; st < 8; st++) {
    let v = "";
    for (let k = 9; k >= 0; k--) v += image[28 + 10 * st + k].toString(16).padStart(2, "0");
    out.push(`  st(${st}) ${v.slice(0, 4)} ${v.slice(4)}`);
  }
  return out.join("\n");
}

function word(b: Uint8Array, at: number): string {
  return (b[at] | (b[at + 1] << 8)).toString(16).padStart(4, "0");
}

export function describeCase(c: FpuCase): string {
  return [
    `code: ${hex(c.code, 0, c.code.length)}  (${c.text})`,
    `cw ${word(c.image, 0)} sw ${word(c.image, 4)} tw ${word(c.image, 8)} eflags ${c.eflags.toString(16)}`,
    regs(c.image),
    `data:\n${[0, 16, 32, 48, 64, 80, 96, 112].map((k) => `  +${k}: ${hex(c.data, k, k + 16)}`).join("\n")}`,
  ].join("\n");
}

export function describeResult(name: string, r: FpuResult): string {
  return [
    `${name}: status ${r.status}@${r.offset} cw ${word(r.image, 0)} sw ${word(r.image, 4)} tw ${word(r.image, 8)} ` +
      `eflags ${(r.eflags & 0x8d5).toString(16)} ax ${(r.eax & 0xffff).toString(16)}`,
    `  ptrs ${hex(r.image, 12, 28)}`,
    regs(r.image),
  ].join("\n");
}

async function inspect(seed: number, index: number, prefix: number, focus: string): Promise<void> {
  const generate = GENERATORS[focus];
  if (generate === undefined) throw new TypeError(`no generator "${focus}"`);
  let c = generate(seed, index);
  if (prefix > 0) c = { ...c, code: c.code.subarray(0, prefix) };
  console.log(describeCase(c));
  const support = hostSupport();
  if (support.ok) console.log(describeResult("host", (await runNative(support.harness, [c]))[0]));
  console.log(describeResult("emu ", emulate(c)));
}

if (process.argv[1]?.endsWith("inspect.ts")) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--focus");
  const focus = at < 0 ? "" : args.splice(at, 2)[1] ?? "";
  void inspect(Number(args[0]), Number(args[1]), Number(args[2] ?? 0), focus);
}
