// On-demand long run of the kernel-vs-model property check: `npm run fuzz:kernel -- [--sequences N] [--seed S]`.
import { Command } from "commander";
import { Checker, OP_RANDOM_WORDS, opFrom, prng } from "../kernel-model/model.js";

const program = new Command()
  .name("fuzz:kernel")
  .description("Run random create/delegate/revoke/call sequences on the kernel and the reference model, comparing after every step")
  .option("--sequences <n>", "number of sequences", "1000000")
  .option("--length <n>", "operations per sequence", "40")
  .option("--seed <n>", "PRNG seed", "1")
  .parse();

const opts = program.opts<{ sequences: string; length: string; seed: string }>();
const sequences = parsePositive(opts.sequences, "--sequences");
const length = parsePositive(opts.length, "--length");
const seed = parsePositive(opts.seed, "--seed");
const rnd = prng(seed);
const started = performance.now();
let last = started;
let failed = 0;
let ran = 0;
for (let i = 0; i < sequences; i++) {
  const ops = Array.from({ length }, () => opFrom(Array.from({ length: OP_RANDOM_WORDS }, () => Math.floor(rnd() * 2 ** 31))));
  ran++;
  try {
    const c = new Checker();
    for (const op of ops) c.step(op);
  } catch (error) {
    failed++;
    process.stderr.write(`sequence ${i} failed: ${error instanceof Error ? error.message : String(error)}\n`);
    if (failed >= 10) break;
  }
  const now = performance.now();
  if (now - last > 2000) {
    last = now;
    process.stderr.write(`${i + 1}/${sequences} sequences, ${Math.round(((i + 1) * 1000) / (now - started))}/s\n`);
  }
}
console.log(`kernel-model: ${ran - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

function parsePositive(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`fuzz:kernel: ${name} must be a positive integer, got '${v}'\n`);
    process.exit(2);
  }
  return n;
}
