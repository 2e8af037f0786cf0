// `npm run conformance -- <suite> [options]`: the x86 core's conformance runners. Without a
// suite, or with `<suite> --help`, it prints what each suite takes.
import { existsSync } from "node:fs";

const suites: Record<string, { module: string; help: string }> = {
  singlestep: {
    module: "./singlestep/runner.js",
    help: "singlestep <dir> [--only PREFIX] [--verbose]\n    SingleStepTests 80286 real-mode files (MOO format) in <dir>; --only: the files whose name starts with PREFIX (an opcode, e.g. 0F or D1)",
  },
  host: {
    module: "./host/runner.js",
    help:
      "host [--seed S] [--count N] [--case I] [--batch B] [--ring 0|3] [--only a,b] [--skip a,b] [--verbose]\n" +
      "     [--fail-fast] [--native-only] [--reports K]\n" +
      "    random instruction sequences on the host CPU and on our core, compared",
  },
  "host-fpu": {
    module: "./host-fpu/runner.js",
    help:
      "host-fpu [--seed S] [--count N] [--focus prem] [--engine] [--verbose]\n" +
      "    random x87 sequences on the host CPU and on our x87 (--engine: also through the whole core);\n" +
      "    --focus prem: FPREM/FPREM1/FSCALE/FXTRACT on denormal and tiny operands",
  },
};

async function main(argv: string[]): Promise<number> {
  const [suite, ...rest] = argv;
  const entry = suite ? suites[suite] : undefined;
  if (!entry) {
    process.stderr.write(`usage: npm run conformance -- <suite> [options]\nsuites:\n${Object.values(suites).map((s) => `  ${s.help}`).join("\n")}\n`);
    return suite === "--help" || suite === "-h" ? 0 : 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`usage: npm run conformance -- ${entry.help}\n`);
    return 0;
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
