// Failure reports of the host tester: the case's code, initial state and the differences.
import type { AssembledCase } from "./assemble.js";
import type { Difference } from "./compare.js";
import type { CoreModule } from "./emulator.js";
import { CODE_BASE, GPR_NAMES, flagNames, hex32 } from "./layout.js";

/** Formats one failing case for a human; `core.disassemble` adds the core's view when present. */
export function formatFailure(
  seed: number,
  c: AssembledCase,
  diffs: readonly Difference[],
  core: CoreModule | null,
  firstBadItem?: { from: number; to: number },
): string {
  const s = c.source;
  const out: string[] = [];
  out.push(`case ${s.index} (replay: --seed ${seed} --case ${s.index}), fill seed ${hex32(s.fillSeed)}`);
  out.push(`  initial: ${GPR_NAMES.map((name, i) => `${name}=${hex32(s.regs[i])}`).join(" ")} eflags=${hex32(s.eflags)} (${flagNames(s.eflags)})`);
  out.push("  code:");
  const lines = s.lines;
  let k = 0;
  for (let lineNo = 0; lineNo < lines.length; lineNo++) {
    const line = lines[lineNo];
    if (line.isLabel) {
      out.push(`  ${line.text}`);
      continue;
    }
    const start = c.offsets[k];
    const end = k + 1 < c.offsets.length ? c.offsets[k + 1] : c.code.length;
    const bytes = Array.from(c.code.subarray(start, end), (x) => x.toString(16).padStart(2, "0")).join(" ");
    const mark = firstBadItem && lineNo >= firstBadItem.from && lineNo < firstBadItem.to ? ">" : " ";
    const view = line.text.startsWith("db ") && line.cls === "dead" ? "" : coreDisassembly(core, c.code.subarray(start, end));
    const undef = line.undefBefore ? `  [undefined before: ${flagNames(line.undefBefore)}]` : "";
    out.push(`   ${mark}${start.toString(16).padStart(4, "0")}  ${bytes.padEnd(30)} ${line.text}${view ? `  {core: ${view}}` : ""}${undef}`);
    k++;
  }
  out.push(`  end at ${hex32(CODE_BASE + c.code.length)}; undefined at the end: ${flagNames(s.finalUndef)}`);
  if (firstBadItem) out.push("  '>' marks the first item whose prefix of the case already fails");
  out.push("  differences (native vs emulator):");
  for (const d of diffs) out.push(`    ${d.what.padEnd(14)} native ${d.native.padEnd(12)} emulator ${d.emulator}${d.note ? `  (${d.note})` : ""}`);
  return out.join("\n");
}

/** The core's disassembly of one instruction (empty when the core has none or it throws). */
function coreDisassembly(core: CoreModule | null, bytes: Uint8Array): string {
  if (!core?.disassemble) return "";
  try {
    const { text, length } = core.disassemble(bytes, 0, 32);
    return length === bytes.length ? text : `${text} (core decodes ${length} bytes)`;
  } catch (error) {
    return `disassembler threw: ${(error as Error).message}`;
  }
}
