import { defineConfig } from "tsup";

// The `hv` CLI is bundled so that it starts fast without a TypeScript loader, and so is the block
// driver's worker (`--isolate`), which bin/isolate.ts starts from beside it, and the incoming
// migration's connection worker, which bin/incoming-link.ts starts. Benchmarks and the
// conformance runner are run through tsx (same esbuild transform) and need no bundle.
export default defineConfig({
  entry: { hv: "bin/hv.ts", "block-worker": "drivers/block/worker.ts", "incoming-worker": "bin/incoming-worker.ts" },
  format: ["esm"],
  platform: "node",
  target: "node20",
  outDir: "dist",
  clean: true,
  sourcemap: true,
  banner: { js: "#!/usr/bin/env node" },
});
