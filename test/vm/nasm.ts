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
