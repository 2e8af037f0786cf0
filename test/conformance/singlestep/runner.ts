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
};

/** Whether the instruction carries LOCK where an i686 does not accept it (register or non-lockable destination). */
export function misplacedLock(bytes: Uint8Array): boolean {
  let k = 0;
  let lock = false;
  while (k < bytes.length && PREFIXES.has(bytes[k])) lock ||= bytes[k++] === 0xf0;
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
    for (let p = 0; p < RAM_BYTES / PAGE_SIZE; p++) this.memory.map(p, this.ram, p * PAGE_SIZE, MemRights.RWX);
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
      const fa = t.exception.flagsAddress;
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
    if (t.exception) for (const a of [t.exception.flagsAddress, t.exception.flagsAddress + 1]) this.ram[a] = 0;
    return problems.length ? problems.join(", ") : null;
  }

  runFile(path: string, name: string): FileResult {
    const file = parseMoo(gunzipSync(readFileSync(path)));
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
