// Bundles a boot benchmark runner into one plain .mjs (esbuild, with a source map) so the child
// runs on bare `node`: the tsx loader would add its own thread and some 35 MiB to the runner's
// peak RSS. The bundle goes to node_modules/.cache/hv-bench-boot/, where packages (v86) resolve.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, realpathSync } from "node:fs";
import { SourceMap, type SourceMapPayload } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const BUNDLE_DIR_PARTS = ["node_modules", ".cache", "hv-bench-boot"] as const;

export interface Bundle {
  /** The .mjs to run. */
  file: string;
  /** Its source map (for mapping CPU profile positions back to our .ts files). */
  map: string;
}

/** Bundles `script` (a file in this folder), or says why it could not (then the caller falls back to tsx). */
export async function bundleRunner(script: string, repoRoot: string): Promise<Bundle | { unavailable: string }> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch (error) {
    return { unavailable: `esbuild cannot be loaded (${error instanceof Error ? error.message : String(error)})` };
  }
  const dir = join(repoRoot, ...BUNDLE_DIR_PARTS);
  mkdirSync(dir, { recursive: true });
  // Worktrees of one repository may share node_modules: each bundles to a file of its own.
  const tree = createHash("sha256").update(resolve(repoRoot)).digest("hex").slice(0, 8);
  const file = join(dir, script.replace(/\.ts$/, `-${tree}.mjs`));
  try {
    await esbuild.build({
      entryPoints: [fileURLToPath(new URL(script, import.meta.url))],
      outfile: file,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      sourcemap: "external",
      sourcesContent: false,
      logLevel: "silent",
    });
  } catch (error) {
    return { unavailable: `esbuild could not bundle ${script} (${error instanceof Error ? error.message.split("\n")[0] : String(error)})` };
  }
  return { file, map: `${file}.map` };
}

/** Where a position of generated code came from (0-based line). */
export interface SourcePosition {
  file: string;
  line: number;
}

/** A function that maps positions in `bundle` (profile call frames: url, 0-based line and column) to our sources. */
export function bundleLocator(bundle: Bundle): (url: string, line: number, column: number) => SourcePosition | null {
  const map = new SourceMap(JSON.parse(readFileSync(bundle.map, "utf8")) as SourceMapPayload);
  // A profile names the file by its real path (node_modules may be a symbolic link).
  const bundleUrls = new Set([pathToFileURL(bundle.file).href, pathToFileURL(realpathSync(bundle.file)).href]);
  const mapDir = dirname(bundle.map);
  return (url, line, column) => {
    if (!bundleUrls.has(url)) return null;
    const entry = map.findEntry(line, column);
    if (!("originalSource" in entry)) return null;
    return { file: resolve(mapDir, entry.originalSource), line: entry.originalLine };
  };
}
