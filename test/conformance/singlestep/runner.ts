// SingleStepTests 80286 (real mode) runner: loads each test's initial state into the x86 core,
// runs to the HLT after the instruction, compares registers, flags (undefined bits masked) and RAM.
// Usage: `npm run conformance -- singlestep <dir> [--verbose] [--only XX]`.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { gunzipSync } from "node:zlib";
import { GuestMemory, MemRights, PAGE_SIZE } from "../../../kernel/guest-memory.js";
import { ExitReason, Mtd, VcpuState } from "../../../kernel/vcpu.js";
import { createX86Engine } from "../../../vmm/x86/index.js";
import { OPCODES, PREFIXES } from "../../../vmm/x86/opcodes.js";
import { Decoded, decodeInto, Pfx, SEG_SS } from "../../../vmm/x86/decoder.js";
import type { VcpuEngine, VcpuExitHandler } from "../../../kernel/vcpu.js";
import { type MooFile, type MooReg, type MooTest, parseMoo } from "./moo.js";

/** Files (opcode, or opcode.reg) left out, and why. */
export const EXCLUDED_FILES: ReadonlyArray<{ file: string; reason: string }> = [
  { file: "D8", reason: "x87 escape: the FPU is a separate issue (the 286 test data has no coprocessor)" },
];

/** Classes of individual tests left out, and why. */
export const EXCLUDED_TESTS: ReadonlyArray<{ name: string; reason: string; applies: (file: MooFile, t: MooTest) => boolean }> = [
  {
    name: "LOCK on a non-lockable instruction",
    reason: "the 80286 ignores a misplaced LOCK prefix; an i686 raises #UD",
    applies: (_f, t) => misplacedLock(t.bytes),
  },
  {
    name: "segment overrun through SS",
    reason: "at offset 0xFFFF the 80286 raises #GP (13) for every segment; an i686 raises #SS (12) for SS",
    applies: (_f, t) => t.exception?.vector === 13 && usesStackSegment(t.bytes),
  },
  {
    name: "word string access at offset 0xFFFF",
    reason: "the 80286 wraps a word string access at 0xFFFF; an i686 raises #GP",
    applies: (_f, t) => stringWordWrap(t),
  },
  {
    name: "MOV to/from FS/GS (8C/8E reg 4, 5)",
    reason: "the 80286 has no FS/GS (#UD); an i686 executes them",
    applies: (f, t) => (f.opcode === 0x8c || f.opcode === 0x8e) && [4, 5].includes(decodeBytes(t.bytes).reg),
  },
  {
    name: "instruction longer than 10 bytes",
    reason: "the 80286 raises #UD beyond 10 bytes (prefix runs); an i686 allows 15 bytes",
    applies: (_f, t) => t.bytes.length > 10,
  },
];

/**
 * Flags the Intel manual leaves undefined on an i686 where the 80286 data defines them (the
 * suite's metadata masks only what the 286 leaves undefined). Key: file name.
 */
export const I686_UNDEFINED_FLAGS: Readonly<Record<string, number>> = {
  "27": 0x800, // DAA: OF
  "2F": 0x800, // DAS: OF
  "37": 0x8c4, // AAA: OF SF ZF PF
  "3F": 0x8c4, // AAS: OF SF ZF PF
  D4: 0x811, // AAM: OF AF CF
  D5: 0x811, // AAD: OF AF CF
  ...Object.fromEntries(
    ["C0", "C1", "D2", "D3"].flatMap((op) => [0, 1, 2, 3, 4, 5, 6, 7].map((r) => [`${op}.${r}`, r >= 4 ? 0x810 : 0x800])),
  ), // shifts/rotates by a count other than 1: OF; shifts: AF
  "F6.6": 0x8d5, // DIV: all arithmetic flags
  "F6.7": 0x8d5, // IDIV
  "F7.6": 0x8d5,
  "F7.7": 0x8d5,
};

const NONE = () => {};

/** Decode test bytes with the core's decoder (segment, reg field, opcode, prefixes). */
function decodeBytes(bytes: Uint8Array): { seg: number; reg: number; opcode: number; mem: boolean; pfx: number } {
  const resolver = { table: [NONE], resolve: () => 0, invalid: 0, tooLong: 0 } as const;
  const d = new Decoded<null>(1, resolver);
  decodeInto(d, 0, { byteAt: (k) => bytes[k] ?? 0 }, false, resolver);
  return { seg: d.seg[0], reg: d.reg[0], opcode: d.opc[0], mem: d.mod3[0] === 0, pfx: d.pfx[0] };
}

/** Instructions whose memory access goes through SS: BP-based/SS-override operands and stack operations. */
function usesStackSegment(bytes: Uint8Array): boolean {
  const x = decodeBytes(bytes);
  const entry = OPCODES[x.opcode];
  const modrm = entry?.modrm === true && x.mem;
  const stackOps = new Set([0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
    0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x68, 0x6a, 0x8f, 0x9a, 0x9c, 0x9d, 0xc2, 0xc3, 0xc8,
    0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xe8, 0xff]);
  return (modrm && x.seg === SEG_SS) || stackOps.has(x.opcode);
}

/** A word string instruction whose SI or DI reaches 0xFFFF during its (repeated) execution. */
function stringWordWrap(t: MooTest): boolean {
  const x = decodeBytes(t.bytes);
  if (![0xa5, 0xa7, 0xab, 0xad, 0xaf, 0x6d, 0x6f].includes(x.opcode)) return false;
  const r = t.init.regs;
  const rep = (x.pfx & (Pfx.REP | Pfx.REPNE)) !== 0;
  const n = rep ? Math.min(r.cx ?? 0, 0x10000) : 1;
  const step = (r.flags ?? 0) & 0x400 ? -2 : 2;
  for (const start of [r.si ?? 0, r.di ?? 0]) {
    for (let k = 0; k < n; k++) if (((start + k * step) & 0xffff) === 0xffff) return true;
  }
  return false;
}

/** Whether the instruction carries LOCK where an i686 does not accept it (register or non-lockable destination). */
export function misplacedLock(bytes: Uint8Array): boolean {
  let k = 0;
  let lock = false;
  while (k < bytes.length && PREFIXES.has(bytes[k])) {
    if (bytes[k] === 0xf0) lock = true;
    k++;
  }
  if (!lock || k >= bytes.length) return false;
  let op = bytes[k++];
  if (op === 0x0f) op = 0x100 | bytes[k++];
  let e = OPCODES[op];
  if (!e) return true;
  const modrm = bytes[k] ?? 0;
  if (e.group) e = e.group[(modrm >> 3) & 7];
  return !e || !e.lockable || !e.modrm || modrm >> 6 === 3;
}

/** Flag bits compared: 286 real mode keeps bits 12-15 clear, an i686 can set IOPL/NT (see README). */
const FLAGS_COMPARED = 0x0fff;
const RAM_BYTES = 0x1000000 + 0x10000;

interface Metadata {
  opcodes: Record<string, { status?: string; "flags-mask"?: number; reg?: Record<string, { status?: string; "flags-mask"?: number }> }>;
}

export interface FileResult {
  file: string;
  passed: number;
  failed: number;
  excluded: number;
  failures: string[];
}

/** One runner instance: guest RAM and an engine reused across tests. */
export class SingleStepRunner {
  readonly memory = new GuestMemory();
  readonly ram = new Uint8Array(RAM_BYTES);
  readonly engine: VcpuEngine;
  private readonly state = new VcpuState();
  private readonly exits: VcpuExitHandler = {
    exit: (reason: ExitReason, st: VcpuState): boolean => {
      if (reason === ExitReason.PIO && !st.qual.write) st.qual.data = st.qual.size === 1 ? 0xff : 0xffff;
      return true;
    },
  };

  constructor(private readonly metadata: Metadata | null) {
    for (let p = 0; p < RAM_BYTES / PAGE_SIZE; p++) this.memory.map(p, this.ram, p * PAGE_SIZE, MemRights.ALL);
    this.engine = createX86Engine(this.memory);
  }

  flagsMask(file: MooFile): number {
    const key = file.opcode.toString(16).toUpperCase().padStart(2, "0");
    const m = this.metadata?.opcodes[key];
    const entry = file.group >= 0 ? m?.reg?.[String(file.group)] : m;
    const name = key + (file.group >= 0 ? "." + file.group : "");
    return (entry?.["flags-mask"] ?? 0xffff) & FLAGS_COMPARED & ~(I686_UNDEFINED_FLAGS[name] ?? 0);
  }

  /** Run one test; returns null on success or a description of the first differences. */
  runTest(file: MooFile, t: MooTest): string | null {
    const st = this.state;
    const r = t.init.regs;
    const g = (k: MooReg) => r[k] ?? 0;
    st.eax = g("ax"); st.ebx = g("bx"); st.ecx = g("cx"); st.edx = g("dx");
    st.esp = g("sp"); st.ebp = g("bp"); st.esi = g("si"); st.edi = g("di");
    st.eip = g("ip");
    st.eflags = (g("flags") & 0x0fff) | 2;
    const seg = (s: { selector: number; base: number; limit: number; attributes: number }, v: number, code: boolean) => {
      s.selector = v; s.base = v << 4; s.limit = 0xffff; s.attributes = code ? 0x9b : 0x93;
    };
    seg(st.cs, g("cs"), true); seg(st.ss, g("ss"), false); seg(st.ds, g("ds"), false); seg(st.es, g("es"), false);
    seg(st.fs, 0, false); seg(st.gs, 0, false);
    st.cr0 = 0x60000010; st.cr2 = 0; st.cr3 = 0; st.cr4 = 0;
    st.idtrBase = 0; st.idtrLimit = 0x3ff; st.gdtrBase = 0; st.gdtrLimit = 0xffff;
    st.inj.valid = false; st.inj.requestWindow = false;
    st.activity = 0; st.interruptibility = 0; st.exceptionBitmap = 0; st.cpuidExits = false;
    this.engine.loadState(Mtd.ALL & ~Mtd.FPU, st);
    for (const [a, v] of t.init.ram) this.ram[a] = v;
    const reason = this.engine.run(300_000, this.exits);
    const out = new VcpuState();
    this.engine.saveState(Mtd.ALL & ~Mtd.FPU, out);
    const problems: string[] = [];
    if (reason !== ExitReason.HLT) problems.push(`exit ${ExitReason[reason]}`);
    const want = (k: MooReg) => t.final.regs[k] ?? t.init.regs[k] ?? 0;
    const got: Record<MooReg, number> = {
      ax: out.eax & 0xffff, bx: out.ebx & 0xffff, cx: out.ecx & 0xffff, dx: out.edx & 0xffff,
      cs: out.cs.selector, ss: out.ss.selector, ds: out.ds.selector, es: out.es.selector,
      sp: out.esp & 0xffff, bp: out.ebp & 0xffff, si: out.esi & 0xffff, di: out.edi & 0xffff,
      ip: out.eip & 0xffff, flags: out.eflags & 0xffff,
    };
    const fmask = this.flagsMask(file);
    for (const k of Object.keys(got) as MooReg[]) {
      let a = got[k], b = want(k);
      const m = (t.final.masks[k] ?? 0xffff) & (k === "flags" ? fmask : 0xffff);
      a &= m;
      b &= m;
      if (a !== b) problems.push(`${k}=${hex(a)} want ${hex(b)}`);
    }
    const finalRam = new Map(t.final.ram);
    if (t.exception) {
      // The pushed FLAGS word has undefined bits too.
      // The flags word sits at SS:SP+4 after the push (the EXCP address is even-aligned in the data).
      const fa = ((want("ss") << 4) + ((want("sp") + 4) & 0xffff)) >>> 0;
      for (const a of [fa, fa + 1]) {
        const m = a === fa ? fmask & 0xff : (fmask >> 8) & 0xff;
        const w = finalRam.get(a);
        if (w !== undefined) {
          if ((this.ram[a] & m) !== (w & m)) problems.push(`[${hex(a)}]=${hex(this.ram[a])} want ${hex(w)} (flags)`);
          finalRam.delete(a);
        }
      }
    }
    for (const [a, v] of finalRam) {
      if (this.ram[a] !== v) problems.push(`[${hex(a)}]=${hex(this.ram[a])} want ${hex(v)}`);
    }
    for (const [a] of t.init.ram) this.ram[a] = 0;
    for (const [a] of t.final.ram) this.ram[a] = 0;

    return problems.length ? problems.join(", ") : null;
  }

  runFile(path: string, name: string): FileResult {
    const file = parseMoo(gunzipSync(readFileSync(path)));
    // The META group byte is not filled in these files; the file name (XX.r) carries the reg field.
    const dot = name.indexOf(".");
    file.group = dot >= 0 ? Number(name.slice(dot + 1)) : -1;
    const res: FileResult = { file: name, passed: 0, failed: 0, excluded: 0, failures: [] };
    for (const t of file.tests) {
      if (EXCLUDED_TESTS.some((x) => x.applies(file, t))) {
        res.excluded++;
        continue;
      }
      const problem = this.runTest(file, t);
      if (problem === null) res.passed++;
      else {
        res.failed++;
        res.failures.push(`${name} #${t.index} ${t.name} [${Array.from(t.bytes, (b) => b.toString(16).padStart(2, "0")).join(" ")}]: ${problem}`);
      }
    }
    return res;
  }
}

const hex = (v: number) => "0x" + v.toString(16);

/** The MOO files of a folder that are not excluded, sorted. */
export function listFiles(dir: string): { included: string[]; excluded: string[] } {
  const all = readdirSync(dir).filter((f) => f.endsWith(".MOO.gz")).sort();
  const excluded = all.filter((f) => EXCLUDED_FILES.some((x) => f.replace(".MOO.gz", "") === x.file));
  return { included: all.filter((f) => !excluded.includes(f)), excluded };
}

export function loadMetadata(dir: string): Metadata | null {
  const p = join(dir, "metadata.json");
  return existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as Metadata) : null;
}

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes("--verbose");
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : undefined;
  const dir = argv.find((a, k) => !a.startsWith("--") && argv[k - 1] !== "--only");
  if (!dir) {
    console.error("usage: singlestep <dir> [--verbose] [--only XX]");
    return 2;
  }
  if (!existsSync(dir)) {
    console.log(`singlestep: skipped (no test folder at ${dir})`);
    return 0;
  }
  const runner = new SingleStepRunner(loadMetadata(dir));
  const { included, excluded } = listFiles(dir);
  let passed = 0, failed = 0, skipped = 0;
  for (const f of included) {
    const name = f.replace(".MOO.gz", "");
    if (only && !name.startsWith(only)) continue;
    const r = runner.runFile(join(dir, f), name);
    passed += r.passed;
    failed += r.failed;
    skipped += r.excluded;
    if (r.failed || verbose) console.log(`${name}: ${r.passed} passed, ${r.failed} failed, ${r.excluded} excluded`);
    for (const line of r.failures.slice(0, verbose ? 20 : 3)) console.log("  " + line);
  }
  if (excluded.length) console.log(`excluded files: ${excluded.join(" ")} (see EXCLUDED_FILES)`);
  if (skipped) console.log(`excluded tests: ${skipped} (see EXCLUDED_TESTS)`);
  console.log(`singlestep: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
