// `hv demo`: a few components talking through the kernel, until a guest can boot.
import { type Command, InvalidArgumentError } from "commander";
import { ChromeTrace } from "../services/chrome-trace.js";
import { runDemo } from "../services/demo.js";

export function positiveInt(max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`expected an integer from 1 to ${max}, got '${value}'`);
    return n;
  };
}

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("run a clock server and client components, each in its own PD, talking through portals on the kernel")
    .option("--clients <n>", "client components (1-64)", positiveInt(64), 3)
    .option("--calls <n>", "calls per client (1-100000)", positiveInt(100_000), 5)
    .option("--trace <file>", "write a Chrome trace (JSON) of the run, for Perfetto or chrome://tracing")
    .action((opts: { clients: number; calls: number; trace?: string }) => {
      const trace = opts.trace ? new ChromeTrace() : null;
      const result = runDemo({ clients: opts.clients, calls: opts.calls, trace, log: (line) => console.log(line) });
      if (trace && opts.trace) {
        trace.write(opts.trace);
        console.log(`trace written to ${opts.trace}`);
      }
      if (result.faults > 0) process.exitCode = 1;
    });
}
