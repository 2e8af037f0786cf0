// Benchmark: the memory services on the default guest.
//  1. Overcommit: boots it with 2031 MiB of RAM (the most a VM can have) to its prompt, pauses it
//     and asks the memory manager what it holds: the guest RAM the guest touched, the host frames
//     its VM holds (pages written, plus its ROMs, state and bounce regions), the process's RSS.
//  2. Ballooning: boots it with 128 MiB; at the prompt fills a 32 MiB tmpfs file and deletes it
//     (free page reporting should give those frames back without a target), then sets a balloon
//     target of 96 MiB and times, in VM time, until the balloon holds the rest.
//  3. Page sharing: saves the 128 MiB guest at its prompt, then restores 8 full, independent copies
//     of it (every saved page read in, not clones) in one fleet and lets them idle until the
//     scanner settles; does the same with one copy. Host frames in use for 8 against 1, and the
//     scanner's host time against the run's.
// Last line:
//   share8_ratio=<host frames, 8 VMs / 1 VM> scan_cpu=<scanner time / run time> overcommit_ratio=<host frames / guest-touched pages> balloon_s=<VM seconds to the 96 MiB target>

import { readFileSync } from "node:fs";
import { MemoryConsole } from "../../drivers/console/host.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSavedVm, saveSnapshot } from "../../bin/snapshot.js";
import { runFleet, runVm } from "../../bin/vm-runner.js";
import { relaunch, wantsRelaunch } from "../../bin/host-memory.js";
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
  // HV_BENCH_ONLY=balloon or share runs that part alone (each boots the guest).
  const only = process.env.HV_BENCH_ONLY;
  const sh = only && only !== "share" ? null : await sharing(loadKernel(kernel, { memSize: BALLOON_MEMORY, cmdline: guest.append, initrd }));
  if (sh) {
    console.log(`page sharing: 1 VM holds ${mib(sh.one.used)} MiB (${sh.one.scanner.merged} pages merged, ${sh.one.scanner.zeroed} zero pages given back)`);
    console.log(`page sharing: 8 VMs hold ${mib(sh.eight.used)} MiB (${sh.eight.scanner.sharedFrames} shared frames, ${sh.eight.scanner.merged} pages merged, ${sh.eight.scanner.zeroed} zeroed, ${sh.eight.scanner.scanned} scanned) after ${sh.eight.vmS} VM s, ${(sh.eight.hostMs / 1000).toFixed(1)} s of host time`);
  }
  const c = only && only !== "overcommit" ? null : await overcommit(loadKernel(kernel, { memSize: MEMORY, cmdline: guest.append, initrd }));
  const rss = process.memoryUsage().rss;
  if (c) console.log(`guest RAM: ${mib(MEMORY / 4096)} MiB; touched by the guest: ${mib(c.touched)} MiB (${c.zero} pages of them on the zero frame)`);
  if (c) console.log(`host frames the VM holds: ${mib(c.private)} MiB; the host's pool: ${mib(c.hostTotal)} MiB, ${mib(c.hostFree)} MiB free; process RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
  const b = only && only !== "balloon" ? null : await ballooning(loadKernel(kernel, { memSize: BALLOON_MEMORY, cmdline: guest.append, initrd }));
  if (b) console.log(`free page reporting: ${mib(b.peak)} MiB held after a 32 MiB file, ${mib(b.afterReport)} MiB ${b.reportS.toFixed(2)} VM s after it was deleted`);
  if (b) {
    console.log(`balloon: target 96 MiB reached after ${b.balloonS.toFixed(3)} VM s; the VM holds ${mib(b.afterBalloon)} MiB`);
    const [storage, rss] = [b.storage.map((n) => (n / 2 ** 20).toFixed(1)), b.rss.map((n) => (n / 2 ** 20).toFixed(0))];
    console.log(`host storage of the kernel's frames: ${storage[2]} MiB at the file's peak, ${storage[0]} after reporting, ${storage[1]} after the balloon; process RSS ${rss[2]}, ${rss[0]}, ${rss[1]} MiB`);
  }
  const share8 = sh ? (sh.eight.used / sh.one.used).toFixed(3) : "skipped";
  const scanCpu = sh ? (sh.eight.scanner.hostNs / 1e6 / sh.eight.hostMs).toFixed(4) : "skipped";
  console.log(`share8_ratio=${share8} scan_cpu=${scanCpu} overcommit_ratio=${c ? (c.private / c.touched).toFixed(3) : "skipped"} balloon_s=${b ? b.balloonS.toFixed(3) : "skipped"}`);
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

/** Boot the guest to its prompt and save it; then restore 1 and 8 full copies and let the scanner settle. */
async function sharing(plan: ReturnType<typeof loadKernel>) {
  const dir = mkdtempSync(join(tmpdir(), "hv-bench-memory-"));
  try {
    const file = join(dir, "prompt.hvsnap");
    const con = new MemoryConsole();
    let saved = false;
    const queue: ControlCommand[] = [];
    let raise = () => {};
    const control: ControlHost = {
      take: () => queue.shift() ?? null,
      done: (command: ControlCommand, result: ControlResult) => {
        if (command.op !== "save" || !("state" in result)) return;
        const platform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };
        saveSnapshot({ path: file, name: "share", memoryBytes: BALLOON_MEMORY, platform, roms: plan.roms, drives: [] }, result.state, result.ram);
        saved = true;
      },
    };
    process.stderr.write("bench:memory: booting the default guest with 128 MiB of RAM, to save it at its prompt...\n");
    await runVm({
      memoryBytes: BALLOON_MEMORY,
      plan,
      console: con,
      engine: createX86Engine,
      control,
      maxVirtualNs: 300e9,
      scanRate: 0,
      stopRequested: () => saved,
      onStart: (_k, r) => {
        raise = r.control;
        con.onOutput = () => {
          if (queue.length > 0 || saved || !PROMPT.test(con.text)) return;
          queue.push({ vm: 0, op: "save" });
          raise();
        };
      },
    });
    if (!saved) throw new Error("the guest never reached its prompt");
    const one = await idleCopies(file, 1);
    const eight = await idleCopies(file, 8);
    return { one, eight };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** VM time the copies idle at least, and at most, while the scanner settles. */
const SETTLE_MIN_NS = 10e9;
const SETTLE_MAX_NS = 120e9;

/** `n` full copies of the saved VM, idle until the scanner has merged nothing new for 2 VM seconds: host frames in use. */
async function idleCopies(file: string, n: number) {
  process.stderr.write(`bench:memory: ${n} full cop${n === 1 ? "y" : "ies"} of the saved guest, idle until the scanner settles...\n`);
  const saved = Array.from({ length: n }, () => openSavedVm(file));
  const queue: ControlCommand[] = [];
  let raise = () => {};
  let counts: MemoryCounts | null = null;
  let asked = false;
  let lastAsk = 0;
  let lastMerged = -1;
  let still = 0;
  let done = false;
  const control: ControlHost = {
    take: () => queue.shift() ?? null,
    done: (_command: ControlCommand, result: ControlResult) => {
      if ("memory" in result && result.memory) counts = result.memory;
      asked = false;
    },
  };
  const start = performance.now();
  try {
    const result = await runFleet(
      saved.map((vm, i) => ({ name: `copy${i}`, memoryBytes: vm.memoryBytes, plan: vm.plan, console: new MemoryConsole(), resume: { state: vm.state, ram: vm.reader, eager: true } })),
      {
        engine: createX86Engine,
        control,
        maxVirtualNs: SETTLE_MAX_NS,
        scanClock: () => performance.now() * 1e6,
        stopRequested: () => done,
        onStart: (_k, r) => {
          raise = r.control;
          for (let i = 0; i < n; i++) queue.push({ vm: i, op: "resume" });
          raise();
        },
        onSlice: (k) => {
          if (asked || k.clock.now - lastAsk < 1e9) return;
          const c = counts as MemoryCounts | null;
          if (c) {
            still = c.scanner.merged + c.scanner.zeroed === lastMerged ? still + 1 : 0;
            lastMerged = c.scanner.merged + c.scanner.zeroed;
            if (still >= 2 && k.clock.now >= SETTLE_MIN_NS) return void (done = true);
          }
          lastAsk = k.clock.now;
          asked = true;
          queue.push({ vm: 0, op: "query" });
          raise();
        },
      },
    );
    const c = counts as MemoryCounts | null;
    if (!c) throw new Error("no memory counts");
    return { used: c.hostTotal - c.hostFree - 1, scanner: result.scanner, vmS: Math.round(result.kernel.clock.now / 1e9), hostMs: performance.now() - start };
  } finally {
    for (const vm of saved) vm.reader.close();
  }
}
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
  const out = { peak: 0, afterReport: 0, reportS: 0, balloonS: NaN, afterBalloon: 0, storage: [0, 0, 0], rss: [0, 0, 0] };
  let settleUntil = Infinity;
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
        if (k.memory.residentBytes > out.storage[2]) [out.storage[2], out.rss[2]] = [k.memory.residentBytes, process.memoryUsage().rss];
        // Reporting waits 2 s after pages are freed; give it 6 s of VM time.
        if (now - phaseAt >= 6e9) {
          out.afterReport = held;
          out.reportS = (now - phaseAt) / 1e9;
          out.storage[0] = k.memory.residentBytes;
          out.rss[0] = process.memoryUsage().rss;
          phase = "balloon";
          phaseAt = now;
          queue.push({ vm: 0, op: "balloon", guestPages: BALLOON_TARGET / 4096 });
        }
        queue.push({ vm: 0, op: "query" });
      } else if (phase === "balloon") {
        const b = balloon as BalloonInfo | null;
        if (settleUntil === Infinity && b && b.actual * 4096 <= BALLOON_TARGET && b.target * 4096 === BALLOON_TARGET) {
          out.balloonS = (now - phaseAt) / 1e9;
          // The host's storage and RSS after one more VM second (the JS heap frees dropped chunks at its next collection).
          settleUntil = now + 1e9;
        } else if (now >= settleUntil || now - phaseAt > 60e9) {
          out.storage[1] = k.memory.residentBytes;
          out.rss[1] = process.memoryUsage().rss;
          phase = "done";
        }
        queue.push({ vm: 0, op: "balloon" }, { vm: 0, op: "query" });
      }
      raise();
    },
  });
  out.afterBalloon = held;
  return out;
}

// Like `hv run`: a process whose malloc gives dropped frame storage back to the OS.
if (wantsRelaunch()) relaunch();
else
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
