// Boot benchmark runner for the peer: boots the job's kernel + initrd on v86 (npm `v86`, wasm JIT,
// SeaBIOS from Debian) headless in this process and reports when `BOOT-OK` reaches its COM1.
// Usage: node --import tsx test/bench/boot/v86-runner.ts '<BootJob JSON>'
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { V86 } from "v86";
import { cpuSeconds, emitReport, parseBootJob, peakRssMiB, SerialWatcher, type BootReport } from "./protocol.js";
import { findSeabios } from "./seabios.js";

type Outcome = Pick<BootReport, "booted" | "bootSeconds" | "guestUptime" | "end" | "detail" | "lastLines">;

function arrayBuffer(path: string): ArrayBuffer {
  const b = readFileSync(path);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function main(): void {
  const job = parseBootJob(process.argv[2]);
  let start = performance.now();
  let firstOutputSeconds: number | null = null;
  let linuxOutputSeconds: number | null = null;
  let linuxOutputCpuSeconds: number | null = null;
  const finish = (outcome: Outcome): never => {
    emitReport({ runner: "v86", firstOutputSeconds, linuxOutputSeconds, linuxOutputCpuSeconds, cpuSeconds: cpuSeconds(), setupSeconds: start / 1000, peakRssMiB: peakRssMiB(), ...outcome });
    // v86 keeps timers alive; the report went out synchronously (pipe), so end here.
    process.exit(outcome.booted ? 0 : 1);
  };
  const seabios = findSeabios();
  if ("missing" in seabios) return finish({ booted: false, bootSeconds: null, guestUptime: null, end: "no-bios", detail: seabios.missing, lastLines: [] });
  const wasmPath = createRequire(import.meta.url).resolve("v86/build/v86.wasm");
  const images = {
    bios: { buffer: arrayBuffer(seabios.bios) },
    vga_bios: { buffer: arrayBuffer(seabios.vgaBios) },
    bzimage: { buffer: arrayBuffer(job.kernel) },
    initrd: { buffer: arrayBuffer(job.initrd) },
  };
  const watcher = new SerialWatcher((uptime) => {
    const bootSeconds = (performance.now() - start) / 1000;
    finish({ booted: true, bootSeconds, guestUptime: uptime, end: "boot-ok", detail: "", lastLines: watcher.lastLines() });
  }, undefined, () => {
    linuxOutputSeconds = (performance.now() - start) / 1000;
    linuxOutputCpuSeconds = cpuSeconds();
  });
  // performance.now() counts from process start; the clock starts when the emulator is created
  // (wasm compilation, SeaBIOS and v86's bzImage loader are part of v86's boot).
  start = performance.now();
  const emulator = new V86({
    wasm_path: wasmPath,
    memory_size: job.memoryBytes,
    ...images,
    cmdline: job.append,
    autostart: true,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
  });
  emulator.add_listener("serial0-output-byte", (byte: number) => {
    firstOutputSeconds ??= (performance.now() - start) / 1000;
    if (job.echoSerial) process.stderr.write(String.fromCharCode(byte));
    watcher.byte(byte);
  });
  emulator.add_listener("emulator-stopped", () => {
    finish({ booted: false, bootSeconds: null, guestUptime: null, end: "stopped", detail: "the emulator stopped before BOOT-OK", lastLines: watcher.lastLines() });
  });
  setTimeout(() => {
    finish({ booted: false, bootSeconds: null, guestUptime: null, end: "timeout", detail: `no BOOT-OK within ${job.timeoutSeconds} s (wall)`, lastLines: watcher.lastLines() });
  }, job.timeoutSeconds * 1000);
}

try {
  main();
} catch (error) {
  emitReport({
    runner: "v86", booted: false, bootSeconds: null, firstOutputSeconds: null, linuxOutputSeconds: null, linuxOutputCpuSeconds: null, cpuSeconds: cpuSeconds(), guestUptime: null,
    setupSeconds: 0, peakRssMiB: peakRssMiB(), end: "error", detail: error instanceof Error ? error.message : String(error), lastLines: [],
  });
  process.exit(1);
}
