// Tests of the runner bundler: a bundled file runs on bare node and maps back to its source.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { bundleLocator, bundleRunner } from "./bundle.js";
import { REPO_ROOT } from "./child.js";

describe("bundleRunner", () => {
  it("bundles a module of this folder into plain JS with a source map back to it", async () => {
    const b = await bundleRunner("seabios.ts", REPO_ROOT);
    if ("unavailable" in b) throw new Error(b.unavailable);
    // Plain node can load it (no tsx) and it works.
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", `import { findSeabios } from ${JSON.stringify(pathToFileURL(b.file).href)}; console.log(JSON.stringify(findSeabios("/nonexistent")))`], { encoding: "utf8" });
    expect(JSON.parse(out)).toEqual({ missing: expect.stringContaining("/nonexistent/bios.bin not found") });
    // The line that declares findSeabios in the bundle maps back to seabios.ts.
    const lines = readFileSync(b.file, "utf8").split("\n");
    const at = lines.findIndex((l) => l.includes("function findSeabios("));
    expect(at).toBeGreaterThan(0);
    const locate = bundleLocator(b);
    const pos = locate(pathToFileURL(b.file).href, at, lines[at].indexOf("function"));
    const sourceLines = readFileSync(new URL("./seabios.ts", import.meta.url), "utf8").split("\n");
    expect(pos?.file).toBe(new URL("./seabios.ts", import.meta.url).pathname);
    expect(sourceLines[pos!.line]).toContain("function findSeabios(");
    expect(locate("file:///elsewhere.js", at, 0)).toBeNull();
  });
});
