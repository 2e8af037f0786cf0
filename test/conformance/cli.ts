// `npm run conformance -- <suite> [options]`: the x86 core's conformance runners.
//   singlestep <dir>              SingleStepTests 80286 real-mode files (MOO format)
//   host --seed S --count N       random sequences on the host CPU and on our core, compared
//   host-fpu --seed S --count N   the same for x87 sequences
import { existsSync } from "node:fs";

const suites: Record<string, { module: string; help: string }> = {
  singlestep: { module: "./singlestep/runner.js", help: "singlestep <dir>" },
  host: { module: "./host/runner.js", help: "host --seed S --count N" },
  "host-fpu": { module: "./host-fpu/runner.js", help: "host-fpu --seed S --count N" },
};

async function main(argv: string[]): Promise<number> {
  const [suite, ...rest] = argv;
  const entry = suite ? suites[suite] : undefined;
  if (!entry) {
    process.stderr.write(`usage: npm run conformance -- <suite> [options]\nsuites:\n${Object.values(suites).map((s) => `  ${s.help}`).join("\n")}\n`);
    return suite === "--help" || suite === "-h" ? 0 : 2;
  }
  const path = new URL(entry.module.replace(/\.js$/, ".ts"), import.meta.url);
  if (!existsSync(path)) {
    process.stderr.write(`conformance: the ${suite} suite is not built yet\n`);
    return 2;
  }
  const mod = (await import(entry.module)) as { main(argv: string[]): Promise<number> };
  return mod.main(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`conformance: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
