// Assemble small test guests with nasm (installed by .ci/run); tests skip when it is missing.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function hasNasm(): boolean {
  try {
    execFileSync("nasm", ["-v"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Assemble `source` as a flat binary. */
export function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "hv-nasm-"));
  try {
    writeFileSync(join(dir, "a.asm"), source);
    execFileSync("nasm", ["-f", "bin", "-o", join(dir, "a.bin"), join(dir, "a.asm")], { stdio: ["ignore", "ignore", "pipe"] });
    return new Uint8Array(readFileSync(join(dir, "a.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Real-mode code that initialises the master 8259 (ICW1-ICW4, vectors 8-15) and sets its mask. */
export function masterPic(mask: number): string {
  return ["mov al, 0x11", "out 0x20, al", "mov al, 8", "out 0x21, al", "mov al, 4", "out 0x21, al", "mov al, 1", "out 0x21, al",
    `mov al, 0x${mask.toString(16)}`, "out 0x21, al"].map((line) => `  ${line}`).join("\n").trimStart();
}
