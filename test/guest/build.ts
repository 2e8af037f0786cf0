// Build freestanding C test kernels for the hv PV ABI at test time: gcc -m32 into a static ELF
// with a Multiboot header first (the Multiboot loader takes ELF32), cached by a hash of the
// sources and the defines. The runtime (hv_rt.h) gives _start, port 0xE9 output, isa-debug-exit
// and the upcall interrupt stub.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const CACHE = join(HERE, "..", "..", "node_modules", ".cache", "hv-pv-guests");

export function hasGcc32(): boolean {
  const r = spawnSync("gcc", ["-m32", "-print-libgcc-file-name"], { encoding: "utf8" });
  return r.status === 0;
}

/** The kernel image of test/guest/`name`.c with `defines` (NAME=value). */
export function buildGuest(name: string, defines: Record<string, number> = {}): Uint8Array {
  const source = join(HERE, `${name}.c`);
  const flags = [
    "-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-no-pie", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
    "-O2", "-nostdlib", "-static", "-Wall", "-Werror", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments", `-Wl,-T,${join(HERE, "guest.ld")}`,
    ...Object.entries(defines).map(([k, v]) => `-D${k}=${v}`),
  ];
  const hash = createHash("sha256");
  for (const f of [source, join(HERE, "hv_pv.h"), join(HERE, "hv_rt.h"), join(HERE, "guest.ld")]) hash.update(readFileSync(f));
  const file = join(CACHE, `${name}-${hash.update(flags.join(" ")).digest("hex").slice(0, 16)}.elf`);
  if (!existsSync(file)) {
    mkdirSync(CACHE, { recursive: true });
    const temporary = `${file}.${process.pid}.tmp`;
    const gcc = spawnSync("gcc", [...flags, "-o", temporary, source], { encoding: "utf8" });
    if (gcc.status !== 0) throw new Error(`gcc -m32 failed on ${name}.c: ${gcc.error?.message ?? gcc.stderr}`);
    renameSync(temporary, file);
  }
  return new Uint8Array(readFileSync(file));
}
