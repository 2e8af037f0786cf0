// Boot benchmark runner for our stack: boots the job's kernel + initrd with runVm (kernel,
// components, our x86 core) in this process, unpaced, and reports when `BOOT-OK` reaches COM1.
// Usage: node --import tsx test/bench/boot/ours-runner.ts '<BootJob JSON>'
import { readFileSync } from "node:fs";
import { MemoryConsole } from "../../../drivers/console/host.js";
import { runVm } from "../../../bin/vm-runner.js";
import { createX86Engine } from "../../../vmm/x86/index.js";
import { cpuSeconds, emitReport, endName, monotonicMicros, parseBootJob, peakRssMiB, SerialWatcher } from "./protocol.js";

async function main(): Promise<void> {
  const job = parseBootJob(process.argv[2]);
  const kernelImage = new Uint8Array(readFileSync(job.kernel));
  const initrd = new Uint8Array(readFileSync(job.initrd));
  const console = new MemoryConsole();
  let bootSeconds: number | null = null;
  let firstOutputSeconds: number | null = null;
  let linuxOutputSeconds: number | null = null;
  let linuxOutputCpuSeconds: number | null = null;
  let cpuAtEnd = 0;
  // performance.now() counts from process start.
  const start = performance.now();
  const vmStartMicros = monotonicMicros();
  const deadline = start + job.timeoutSeconds * 1000;
  const watcher = new SerialWatcher(() => {
    bootSeconds = (performance.now() - start) / 1000;
    cpuAtEnd = cpuSeconds();
  }, undefined, () => {
    linuxOutputSeconds = (performance.now() - start) / 1000;
    linuxOutputCpuSeconds = cpuSeconds();
  });
  console.onOutput = (text) => {
    firstOutputSeconds ??= (performance.now() - start) / 1000;
    if (job.echoSerial) process.stderr.write(text);
    watcher.text(text);
  };
  let timedOut = false;
  const result = await runVm({
    name: "bench",
    memoryBytes: job.memoryBytes,
    kernelImage,
    kernelName: job.kernel,
    initrd,
    append: job.append,
    console,
    engine: createX86Engine,
    cpus: job.cpus,
    apic: (job.cpus ?? 1) > 1,
    // Stop as soon as BOOT-OK is seen (the poweroff after it is not part of the boot).
    stopRequested: () => {
      if (bootSeconds !== null) return true;
      timedOut = performance.now() > deadline;
      return timedOut;
    },
  });
  const booted = bootSeconds !== null;
  if (!booted) cpuAtEnd = cpuSeconds();
  const virtualSeconds = (result.kernel.clock.now / 1e9).toFixed(3);
  emitReport({
    runner: "ours",
    booted,
    bootSeconds,
    firstOutputSeconds,
    linuxOutputSeconds,
    linuxOutputCpuSeconds,
    cpuSeconds: cpuAtEnd,
    guestUptime: watcher.bootOkUptime,
    setupSeconds: start / 1000,
    vmStartMicros,
    peakRssMiB: peakRssMiB(),
    end: booted ? "boot-ok" : timedOut ? "timeout" : endName(result),
    detail: [timedOut && !booted ? `no BOOT-OK within ${job.timeoutSeconds} s (wall)` : "", result.message, `virtual time ${virtualSeconds} s`].filter(Boolean).join("; "),
    lastLines: watcher.lastLines(),
  });
  process.exitCode = booted ? 0 : 1;
}

main().catch((error: unknown) => {
  emitReport({
    runner: "ours", booted: false, bootSeconds: null, firstOutputSeconds: null, linuxOutputSeconds: null, linuxOutputCpuSeconds: null, cpuSeconds: cpuSeconds(), guestUptime: null,
    setupSeconds: 0, peakRssMiB: peakRssMiB(), end: "error", detail: error instanceof Error ? error.stack ?? error.message : String(error), lastLines: [],
  });
  process.exitCode = 1;
});
