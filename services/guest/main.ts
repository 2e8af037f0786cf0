// Command-line entry for the default guest: `tsx services/guest/main.ts [--refresh] [--boot-ok]`
// fetches/builds it and prints the kernel, initrd and command line (one per line).
import { ensureDefaultGuest } from "./index.js";

const args = new Set(process.argv.slice(2));
const started = performance.now();
ensureDefaultGuest({ refresh: args.has("--refresh"), bootOk: args.has("--boot-ok") }).then(
  (guest) => {
    process.stdout.write(`${guest.kernel}\n${guest.initrd}\n${guest.append}\n`);
    process.stderr.write(`hv guest: ready in ${((performance.now() - started) / 1000).toFixed(2)} s\n`);
  },
  (err: unknown) => {
    process.stderr.write(`hv guest: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
