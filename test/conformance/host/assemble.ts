// Assembles a batch of generated cases with nasm in one run and splits the binary per case.
//
// The source has the code of every case in `.text`, one label per instruction line, and a
// `.meta` section after it with the offsets of those labels; the last dword of the binary is
// the offset of `.meta`. nasm is an independent encoder: the core's decoder never sees bytes
// that our own tables produced.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GeneratedCase, caseSource } from "./generator/generate.js";

export interface AssembledCase {
  source: GeneratedCase;
  code: Uint8Array;
  /** Offset of each instruction line (labels excluded) from the start of the code. */
  offsets: number[];
}

export class AssembleError extends Error {
  override readonly name = "AssembleError";
}

export function batchSource(cases: readonly GeneratedCase[]): string {
  const text = ["bits 32", "section .text"];
  const meta = ["section .meta align=4 follows=.text", "hv_meta:"];
  for (const c of cases) {
    text.push(caseSource(c));
    const labels = [`${c.prefix}start`];
    const count = c.lines.filter((line) => !line.isLabel).length;
    for (let i = 0; i < count; i++) labels.push(`${c.prefix}${i}`);
    labels.push(`${c.prefix}end`);
    for (let i = 0; i < labels.length; i += 16) meta.push(`dd ${labels.slice(i, i + 16).join(", ")}`);
  }
  meta.push("dd hv_meta");
  return [...text, ...meta, ""].join("\n");
}

/** Assembles `cases`; large batches are split over two nasm processes running side by side. */
export async function assembleBatch(cases: readonly GeneratedCase[]): Promise<AssembledCase[]> {
  if (cases.length < 400) return assembleOne(cases);
  const half = cases.length >> 1;
  const parts = await Promise.all([assembleOne(cases.slice(0, half)), assembleOne(cases.slice(half))]);
  return parts.flat();
}

async function assembleOne(cases: readonly GeneratedCase[]): Promise<AssembledCase[]> {
  const dir = mkdtempSync(join(tmpdir(), "hv-host-"));
  try {
    const source = batchSource(cases);
    writeFileSync(join(dir, "batch.asm"), source);
    await new Promise<void>((resolve, reject) => {
      execFile("nasm", ["-f", "bin", "-w-all", "-o", join(dir, "batch.bin"), join(dir, "batch.asm")], { maxBuffer: 1 << 24 }, (error, _stdout, stderr) => {
        if (!error) return resolve();
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return reject(new AssembleError("nasm is not installed"));
        reject(new AssembleError(explain(stderr, source)));
      });
    });
    return split(cases, new Uint8Array(readFileSync(join(dir, "batch.bin"))));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function split(cases: readonly GeneratedCase[], binary: Uint8Array): AssembledCase[] {
  const view = new DataView(binary.buffer, binary.byteOffset, binary.byteLength);
  let at = view.getUint32(binary.length - 4, true);
  const out: AssembledCase[] = [];
  for (const c of cases) {
    const count = c.lines.filter((line) => !line.isLabel).length;
    const start = view.getUint32(at, true);
    const offsets: number[] = [];
    for (let i = 0; i < count; i++) offsets.push(view.getUint32(at + 4 * (i + 1), true) - start);
    const end = view.getUint32(at + 4 * (count + 1), true);
    at += 4 * (count + 2);
    out.push({ source: c, code: binary.slice(start, end), offsets });
  }
  return out;
}

/** The first nasm errors with the source lines they point at. */
function explain(stderr: string, source: string): string {
  const lines = source.split("\n");
  const messages = stderr.split("\n").filter((l) => l.includes("error")).slice(0, 5);
  return messages
    .map((message) => {
      const m = /:(\d+): /.exec(message);
      return m ? `${message}\n    > ${lines[Number(m[1]) - 1]}` : message;
    })
    .join("\n") || "nasm failed";
}
