import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{kernel,capabilities,services,drivers,vmm,test,bin}/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
