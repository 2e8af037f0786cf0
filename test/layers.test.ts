// The layer table of ../shared/DESIGN.md, checked on every import of every source file: lower
// layers never import upper ones, and a layer reaches another's code only through its protocol
// files (protocol.ts, *-protocol.ts), which themselves import nothing but kernel types. Tests,
// protocol files among them, may import anything.

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const LAYERS = ["capabilities", "kernel", "vmm/x86", "vmm", "drivers", "services", "bin", "test"] as const;
type Layer = (typeof LAYERS)[number];

/** What each layer may import besides itself and any protocol file. */
const MAY_IMPORT: Record<Layer, readonly Layer[]> = {
  capabilities: [],
  kernel: ["capabilities"],
  "vmm/x86": ["kernel", "capabilities"],
  vmm: ["kernel", "capabilities", "vmm/x86"],
  drivers: ["kernel", "capabilities"],
  services: ["kernel", "capabilities"],
  bin: ["capabilities", "kernel", "vmm/x86", "vmm", "drivers", "services"],
  test: ["capabilities", "kernel", "vmm/x86", "vmm", "drivers", "services", "bin"],
};

export function layerOf(path: string): Layer | null {
  for (const layer of LAYERS) if (path === layer || path.startsWith(`${layer}/`)) return layer;
  return null;
}

export const isProtocol = (path: string) => /(^|\/)([a-z0-9-]+-)?protocol\.ts$/.test(path);
const isTest = (path: string) => /\.test\.ts$/.test(path);

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

/** The project files `file` imports (relative specifiers, resolved, `.js` read as `.ts`). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const found: string[] = [];
  for (const m of text.matchAll(/(?:import|export)\s[^;]*?from\s+["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g)) {
    const spec = m[1] ?? m[2];
    found.push(relative(ROOT, resolve(ROOT, dirname(file), spec)).replace(/\.js$/, ".ts"));
  }
  return found;
}

/** Every import that breaks the table, as "file imports target (why)". */
export function violations(files: readonly string[], importsFor: (file: string) => string[]): string[] {
  const out: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    if (from === null || isTest(file)) continue;
    for (const target of importsFor(file)) {
      const to = layerOf(target);
      if (isProtocol(file) && from !== "test" && to !== "kernel" && to !== "capabilities" && !isProtocol(target)) out.push(`${file} imports ${target} (a protocol file imports only kernel types)`);
      else if (to === null || to === from || isProtocol(target)) continue;
      else if (!MAY_IMPORT[from].includes(to)) out.push(`${file} imports ${target} (${from} may not import ${to})`);
    }
  }
  return out;
}

describe("layers", () => {
  it("every import of every source file follows the table of DESIGN.md", () => {
    const files = LAYERS.filter((l) => !l.includes("/")).flatMap((l) => sources(l));
    expect(files.length).toBeGreaterThan(200);
    expect(violations(files, importsOf)).toEqual([]);
  });

  it("finds the crossings it is meant to find", () => {
    const graph: Record<string, string[]> = {
      "kernel/a.ts": ["vmm/vmm.ts", "capabilities/mdb.ts"],
      "vmm/x86/cpu.ts": ["vmm/devices/pic.ts", "kernel/vcpu.ts"],
      "vmm/vmm.ts": ["services/memory-protocol.ts", "services/root.ts", "vmm/x86/cpu.ts"],
      "drivers/console/protocol.ts": ["drivers/console/console.ts", "kernel/index.ts"],
      "services/root.ts": ["drivers/block/component.ts", "drivers/block/protocol.ts"],
      "bin/hv.ts": ["test/support/kernel.ts", "vmm/vmm.ts"],
      "vmm/vmm.test.ts": ["bin/compose.ts"],
    };
    expect(violations(Object.keys(graph), (f) => graph[f])).toEqual([
      "kernel/a.ts imports vmm/vmm.ts (kernel may not import vmm)",
      "vmm/x86/cpu.ts imports vmm/devices/pic.ts (vmm/x86 may not import vmm)",
      "vmm/vmm.ts imports services/root.ts (vmm may not import services)",
      "drivers/console/protocol.ts imports drivers/console/console.ts (a protocol file imports only kernel types)",
      "services/root.ts imports drivers/block/component.ts (services may not import drivers)",
      "bin/hv.ts imports test/support/kernel.ts (bin may not import test)",
    ]);
  });
});
