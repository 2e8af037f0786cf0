// bench:cpu's peer: runs the benchmark kernel (kernel.ts) on v86 (npm `v86`, its wasm JIT) in
// this process and prints, as its last stdout line, `RESULT <json>`: the CPU time at each mark
// and the result lines. Usage: node --import tsx test/bench/cpu/v86-runner.ts KERNEL.bin [TIMEOUT_S]
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { V86 } from "v86";
import { cpuSeconds } from "../boot/protocol.js";
import { findSeabios } from "../boot/seabios.js";
import { KernelOutput, RAM_BYTES, RESULT_PREFIX, type PeerReport } from "./kernel.js";

function report(r: PeerReport): never {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(r)}\n`);
  // v86 keeps timers alive; the report went out synchronously (pipe), so end here.
  process.exit(r.ok ? 0 : 1);
}

function arrayBuffer(path: string): ArrayBuffer {
  const b = readFileSync(path);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function main(): void {
  const [kernelPath, timeout = "600"] = process.argv.slice(2);
  const output = new KernelOutput();
  const seabios = findSeabios();
  if ("missing" in seabios) report({ ok: false, detail: seabios.missing, marks: output.marks, results: [] });
  const emulator = new V86({
    wasm_path: createRequire(import.meta.url).resolve("v86/build/v86.wasm"),
    memory_size: RAM_BYTES,
    bios: { buffer: arrayBuffer(seabios.bios) },
    vga_bios: { buffer: arrayBuffer(seabios.vgaBios) },
    multiboot: { buffer: arrayBuffer(kernelPath) },
    autostart: true,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
  });
  emulator.add_listener("serial0-output-byte", (byte: number) => {
    output.byte(byte, cpuSeconds());
    if (output.ended) report({ ok: true, detail: "", marks: output.marks, results: output.results });
  });
  setTimeout(() => report({ ok: false, detail: `the kernel did not end within ${timeout} s (wall)`, marks: output.marks, results: output.results }), Number(timeout) * 1000);
}

main();
