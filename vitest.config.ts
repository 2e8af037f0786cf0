import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{kernel,capabilities,services,drivers,vmm,test,bin}/**/*.test.ts"],
    // Tests size their work, not their wall time: a limit here only catches a hang. A busy 2-core
    // machine ran the suite at 2.5 times its quiet time, so these are far above any test's work.
    testTimeout: 900_000,
    hookTimeout: 1_800_000,
    pool: "forks",
  },
});
