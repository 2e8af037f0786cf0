// Command line of the host tester: argument parsing and a short native-only run.
import { afterEach, describe, expect, it, vi } from "vitest";
import { hostSupport } from "./native.js";
import { UsageError, main, parseArgs } from "./runner.js";

describe("host runner arguments", () => {
  it("parses seed, count, case and flags", () => {
    expect(parseArgs(["--seed", "7", "--count", "20", "--fail-fast", "--ring", "3"])).toMatchObject({ seed: 7, count: 20, failFast: true, ring: 3 });
    expect(parseArgs(["--case", "12"])).toMatchObject({ first: 12, count: 1, verbose: true });
    expect(parseArgs(["--only", "alu,shift"]).only).toEqual(["alu", "shift"]);
  });

  it("rejects bad arguments with a UsageError", () => {
    expect(() => parseArgs(["--count", "-1"])).toThrow(UsageError);
    expect(() => parseArgs(["--seed"])).toThrow(UsageError);
    expect(() => parseArgs(["--ring", "1"])).toThrow(UsageError);
    expect(() => parseArgs(["--bogus"])).toThrow(UsageError);
  });
});

describe.skipIf(!hostSupport().ok)("host runner", () => {
  afterEach(() => vi.restoreAllMocks());

  it("prints the summary line last and exits 0 on a native-only run", async () => {
    const printed: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: string) => void printed.push(line));
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    expect(await main(["--native-only", "--seed", "3", "--count", "40", "--batch", "16"])).toBe(0);
    expect(printed.at(-1)).toBe("host: 40 passed, 0 failed");
  });

  it("exits 2 with a message on a usage error", async () => {
    const errors: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((text: string | Uint8Array) => (errors.push(String(text)), true));
    expect(await main(["--count", "x"])).toBe(2);
    expect(errors.join("")).toContain("--count");
  });
});
