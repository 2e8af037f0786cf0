// Benchmark: the memory services on the default guest.
//  1. Overcommit: boots it with 2031 MiB of RAM (the most a VM can have) to its prompt, pauses it
//     and asks the memory manager what it holds: the guest RAM the guest touched, the host frames
//     its VM holds (pages written, plus its ROMs, state and bounce regions), the process's RSS.
//  2. Ballooning: boots it with 128 MiB; at the prompt fills a 32 MiB tmpfs file and deletes it
//     (free page reporting should give those frames back without a target), then sets a balloon
//     target of 96 MiB and times, in VM time, until the balloon holds the rest.
// Last line:
//   overcommit_ratio=<host frames / guest-touched pages> balloon_s=<VM seconds to the 96 MiB target>
// Page sharing (share8_ratio, scan_cpu) comes with the scanner.

import { readFileSync } from "node:fs";
import { MemoryConsole } from "../../drivers/console/host.js";
import { runVm } from "../../bin/vm-runner.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import type { BalloonInfo, ControlCommand, ControlHost, ControlResult, MemoryCounts } from "../../services/vm-control.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";

const MEMORY = 2031 << 20;
const mib = (pages: number) => (pages / 256).toFixed(1);

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest({ quiet: true });
  const kernel = new Uint8Array(readFileSync(guest.kernel));
  const initrd = new Uint8Array(readFileSync(guest.initrd));
  // HV_BENCH_ONLY=balloon skips the first part (a boot of its own).
  const only = process.env.HV_BENCH_ONLY;
  const c = only === "balloon" ? null : await overcommit(loadKernel(kernel, { memSize: MEMORY, cmdline: guest.append, initrd }));
  const rss = process.memoryUsage().rss;
  if (c) console.log(`guest RAM: ${mib(MEMORY / 4096)} MiB; touched by the guest: ${mib(c.touched)} MiB (${c.zero} pages of them on the zero frame)`);
  if (c) console.log(`host frames the VM holds: ${mib(c.private)} MiB; the host's pool: ${mib(c.hostTotal)} MiB, ${mib(c.hostFree)} MiB free; process RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
  const b = await ballooning(loadKernel(kernel, { memSize: BALLOON_MEMORY, cmdline: guest.append, initrd }));
  console.log(`free page reporting: ${mib(b.peak)} MiB held after a 32 MiB file, ${mib(b.afterReport)} MiB ${b.reportS.toFixed(2)} VM s after it was deleted`);
  console.log(`balloon: target 96 MiB reached after ${b.balloonS.toFixed(3)} VM s; the VM holds ${mib(b.afterBalloon)} MiB`);
  console.log(`overcommit_ratio=${c ? (c.private / c.touched).toFixed(3) : "skipped"} balloon_s=${b.balloonS.toFixed(3)}`);
}

/** The shell prompt the guest's init prints. */
const PROMPT = /hv-init: ready[\s\S]*# /;

async function overcommit(plan: ReturnType<typeof loadKernel>): Promise<MemoryCounts> {
  const con = new MemoryConsole();
  let counts: MemoryCounts | null = null;
  const queue: ControlCommand[] = [];
  let raise = () => {};
  const control: ControlHost = {
    take: () => queue.shift() ?? null,
    done: (command: ControlCommand, result: ControlResult) => {
      if (command.op === "query" && "memory" in result && result.memory) counts = result.memory;
    },
  };
  const start = performance.now();
  process.stderr.write("bench:memory: booting the default guest with 2031 MiB of RAM...\n");
  await runVm({
    memoryBytes: MEMORY,
    plan,
    console: con,
    engine: createX86Engine,
    control,
    maxVirtualNs: 300e9,
    stopRequested: () => counts !== null,
    onStart: (_k, r) => {
      raise = r.control;
      con.onOutput = () => {
        if (queue.length > 0 || counts || !PROMPT.test(con.text)) return;
        process.stderr.write(`bench:memory: at the prompt after ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
        queue.push({ vm: 0, op: "pause" }, { vm: 0, op: "query" });
        raise();
      };
    },
  });
  const c = counts as MemoryCounts | null;
  if (!c) throw new Error("the guest never reached its prompt");
  return c;
}

const BALLOON_MEMORY = 128 << 20;
const BALLOON_TARGET = 96 << 20;
/** VM time between two looks at the VM. */
const POLL_NS = 20e6;

async function ballooning(plan: ReturnType<typeof loadKernel>) {
  const con = new MemoryConsole();
  const queue: ControlCommand[] = [];
  let raise = () => {};
  let raiseInput = () => {};
  let held = 0;
  let balloon: BalloonInfo | null = null;
  let answered = true;
  const control: ControlHost = {
    take: () => queue.shift() ?? null,
    done: (_command: ControlCommand, result: ControlResult) => {
      if ("memory" in result && result.memory) held = result.memory.private;
      if ("balloon" in result) balloon = result.balloon;
      answered = true;
    },
  };
  let phase: "boot" | "fill" | "report" | "balloon" | "done" = "boot";
  let phaseAt = 0;
  let lastPoll = 0;
  const out = { peak: 0, afterReport: 0, reportS: 0, balloonS: NaN, afterBalloon: 0 };
  process.stderr.write("bench:memory: booting the default guest with 128 MiB of RAM...\n");
  await runVm({
    memoryBytes: BALLOON_MEMORY,
    plan,
    console: con,
    engine: createX86Engine,
    control,
    maxVirtualNs: 300e9,
    stopRequested: () => phase === "done",
    onStart: (_k, r) => {
      raise = r.control;
      raiseInput = r.input;
    },
    onSlice: (k) => {
      const now = k.clock.now;
      if (phase === "boot" && PROMPT.test(con.text)) {
        phase = "fill";
        con.type("dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>/dev/null; rm /tmp/fill; echo fill-$((6*7))\n");
        raiseInput();
      } else if (phase === "fill" && con.text.includes("fill-42")) {
        phase = "report";
        phaseAt = now;
      }
      if (!answered || now - lastPoll < POLL_NS || phase === "boot" || phase === "fill") return;
      lastPoll = now;
      answered = false;
      if (phase === "report") {
        out.peak = Math.max(out.peak, held);
        // Reporting waits 2 s after pages are freed; give it 6 s of VM time.
        if (now - phaseAt >= 6e9) {
          out.afterReport = held;
          out.reportS = (now - phaseAt) / 1e9;
          phase = "balloon";
          phaseAt = now;
          queue.push({ vm: 0, op: "balloon", guestPages: BALLOON_TARGET / 4096 });
        }
        queue.push({ vm: 0, op: "query" });
      } else if (phase === "balloon") {
        const b = balloon as BalloonInfo | null;
        if (b && b.actual * 4096 <= BALLOON_TARGET && b.target * 4096 === BALLOON_TARGET) {
          out.balloonS = (now - phaseAt) / 1e9;
          phase = "done";
        } else if (now - phaseAt > 60e9) phase = "done";
        queue.push({ vm: 0, op: "balloon" }, { vm: 0, op: "query" });
      }
      raise();
    },
  });
  out.afterBalloon = held;
  return out;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
