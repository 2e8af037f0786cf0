// Benchmark: snapshots of the default guest (128 MiB). Boots it to its prompt once, then measures,
// as medians of HV_BENCH_REPS runs (default 10): a save of the running VM (pause, encode, write the
// file, resume), the file against the guest's non-zero pages, a restore to its first guest
// instruction (open the file, compose the VM, resume it), a restore to a prompt that answered
// `echo`, a linked clone to its first instruction, and the host memory (RSS) of a process that
// runs 8 idle clones against one that runs 1 (each idles 2 s of VM time). Last line:
//   save_ms=<n> restore_ms=<n> echo_ms=<n> snapshot_ratio=<x> clone_ms=<n> clones8_mem_ratio=<x>
// HV_BENCH_SNAPSHOT=FILE: a snapshot of the default guest at its prompt, to skip the ~90 s boot;
// the saves are then of that VM restored from a copy of FILE (FILE itself is only read).
// It runs under the malloc settings and node flags `hv run` and `hv fleet` run under
// (bin/host-memory.ts starts it again with them, as they do; the processes that measure idle
// clones get the same node flags): what it measures is what hv does.

import type { RamPages } from "../../vmm/protocol.js";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryConsole } from "../../drivers/console/host.js";
import { openSavedVm, saveSnapshot, type SaveRequest } from "../../bin/snapshot.js";
import { runFleet, runVm } from "../../bin/vm-runner.js";
import { spawnSync } from "node:child_process";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import type { ControlCommand, ControlHost, ControlResult } from "../../services/vm-control.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { readFileSync } from "node:fs";
import { HOST_NODE_FLAGS, relaunch, wantsRelaunch } from "../../bin/host-memory.js";

const REPS = Number(process.env.HV_BENCH_REPS ?? 10);
const MEMORY = 128 << 20;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const dir = mkdtempSync(join(tmpdir(), "hv-bench-snapshot-"));

/** Commands queued by the benchmark; `done` tells it what came back. */
class BenchControl implements ControlHost {
  readonly queue: ControlCommand[] = [];
  raise = () => {};
  constructor(private readonly onDone: (command: ControlCommand, result: ControlResult) => void) {}
  push(command: ControlCommand): void {
    this.queue.push(command);
    this.raise();
  }
  take(): ControlCommand | null {
    return this.queue.shift() ?? null;
  }
  done(command: ControlCommand, result: ControlResult): void {
    this.onDone(command, result);
  }
}

function nonZeroPages(ram: RamPages): number {
  let n = 0;
  for (let p = 0; p < ram.pages; p++) if (ram.read(p)?.some((b) => b !== 0)) n++;
  return n;
}

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest({ quiet: true });
  const kernelImage = new Uint8Array(readFileSync(guest.kernel));
  const initrd = new Uint8Array(readFileSync(guest.initrd));
  const plan = loadKernel(kernelImage, { memSize: MEMORY, cmdline: guest.append, initrd });
  const file = join(dir, "prompt.hvsnap");
  const request = (path: string): SaveRequest => ({ path, name: "bench", memoryBytes: MEMORY, platform: { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true }, roms: plan.roms, drives: [] });

  // Boot once (or restore HV_BENCH_SNAPSHOT); at the prompt, save REPS times (each timed from the
  // request to the file's rename).
  const given = process.env.HV_BENCH_SNAPSHOT;
  const con = new MemoryConsole();
  const saves: number[] = [];
  let asked = 0;
  let requestedAt = 0;
  let ratio = NaN;
  let raiseInput = () => {};
  let stopSaving = false;
  const control: BenchControl = new BenchControl((command, result) => {
    if (command.op === "resume") return;
    if (command.op !== "save" || !("state" in result)) throw new Error(`save failed: ${result.status}`);
    const { bytes } = saveSnapshot(request(file), result.state, result.ram);
    saves.push(performance.now() - requestedAt);
    ratio = bytes / (nonZeroPages(result.ram) * 4096);
    if (asked < REPS) ask();
    else if (given) stopSaving = true;
    else {
      con.type("poweroff\n");
      raiseInput();
    }
  });
  const ask = () => {
    asked++;
    requestedAt = performance.now();
    control.push({ vm: 0, op: "save" });
  };
  if (given) {
    process.stderr.write(`bench:snapshot: restoring ${given} instead of booting\n`);
    const source = join(dir, "given.hvsnap");
    copyFileSync(given, source);
    const vm = openSavedVm(source, {});
    control.queue.push({ vm: 0, op: "resume" });
    try {
      await runVm({
        memoryBytes: vm.memoryBytes,
        resume: { plan: vm.plan, state: vm.state, ram: vm.reader },
        console: con,
        engine: createX86Engine,
        control,
        maxVirtualNs: 60e9,
        stopRequested: () => stopSaving,
        onStart: (_k, raise) => {
          control.raise = raise.control;
          raise.control();
          ask();
        },
      });
    } finally {
      vm.reader.close();
    }
  } else {
    process.stderr.write("bench:snapshot: booting the default guest...\n");
    const booted = performance.now();
    await runVm({
      memoryBytes: MEMORY,
      plan,
      console: con,
      engine: createX86Engine,
      control,
      maxVirtualNs: 300e9,
      onStart: (_k, raise) => {
        control.raise = raise.control;
        raiseInput = raise.input;
        con.onOutput = () => {
          if (asked === 0 && /hv-init: ready[\s\S]*# /.test(con.text)) {
            process.stderr.write(`bench:snapshot: at the prompt after ${((performance.now() - booted) / 1000).toFixed(1)} s; saving\n`);
            ask();
          }
        };
      },
    });
  }
  if (saves.length < REPS) throw new Error(`the guest ended before ${REPS} saves (${saves.length})`);
  process.stderr.write(`bench:snapshot: saves (ms): ${saves.map((t) => t.toFixed(0)).join(" ")}\n`);

  // Restore REPS times to the first instruction, and REPS times to a prompt that answered echo.
  // Each is also timed in CPU time (this process's, all threads): on a shared machine it says
  // what a restore costs when wall time says mostly how busy the others were.
  const cpuTimes: Record<string, number[]> = { restore: [], echo: [], clone: [] };
  const restore = async (typed: string | null, clone?: string): Promise<number> => {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const kind = typed !== null ? "echo" : clone ? "clone" : "restore";
    let took = NaN;
    const stopClock = () => {
      took = performance.now() - start;
      const c = process.cpuUsage(cpuStart);
      cpuTimes[kind].push((c.user + c.system) / 1000);
    };
    const vm = openSavedVm(file, clone ? { clone: { dir, name: clone } } : {});
    const console = new MemoryConsole();
    let stop = false;
    const ctl = new BenchControl((command) => {
      if (command.op !== "resume" || typed !== null) return;
      stopClock();
      stop = true;
    });
    ctl.queue.push({ vm: 0, op: "resume" });
    try {
      await runVm({
        memoryBytes: vm.memoryBytes,
        resume: { plan: vm.plan, state: vm.state, ram: vm.reader, share: vm.clone },
        console,
        engine: createX86Engine,
        control: ctl,
        maxVirtualNs: 60e9,
        stopRequested: () => stop,
        onStart: (_k, raise) => {
          raise.control();
          if (typed === null) return;
          console.type(typed);
          raise.input();
          console.onOutput = () => {
            if (!stop && /bench-42/.test(console.text)) {
              stopClock();
              stop = true;
            }
          };
        },
      });
    } finally {
      vm.reader.close();
    }
    return took;
  };
  const restores: number[] = [];
  const echoes: number[] = [];
  const clones: number[] = [];
  for (let i = 0; i < REPS; i++) restores.push(await restore(null));
  for (let i = 0; i < REPS; i++) echoes.push(await restore("echo bench-$((6*7))\n"));
  for (let i = 0; i < REPS; i++) clones.push(await restore(null, `clone${i}`));
  const rss = (n: number) => {
    const r = spawnSync(process.execPath, [...HOST_NODE_FLAGS, "--import", "tsx", new URL(import.meta.url).pathname], { env: { ...process.env, HV_BENCH_CLONES: String(n), HV_BENCH_FILE: file }, encoding: "utf8" });
    const m = /rss=(\d+)/.exec(r.stdout);
    if (!m) throw new Error(`the ${n}-clone process failed: ${r.stderr}`);
    return Number(m[1]);
  };
  const one = rss(1);
  const eight = rss(8);
  console.log(`host memory: 1 clone ${(one / 2 ** 20).toFixed(0)} MiB, 8 clones ${(eight / 2 ** 20).toFixed(0)} MiB`);

  console.log(`snapshot: ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB for a ${MEMORY / 2 ** 20} MiB guest`);
  console.log(`save ms (median of ${REPS}): ${median(saves).toFixed(1)}; restore to the first instruction: ${median(restores).toFixed(1)}; to echo answered: ${median(echoes).toFixed(1)}`);
  console.log(`CPU ms (medians): restore ${median(cpuTimes.restore).toFixed(1)}, echo ${median(cpuTimes.echo).toFixed(1)}, clone ${median(cpuTimes.clone).toFixed(1)}; wall ms (minima): restore ${Math.min(...restores).toFixed(1)}, echo ${Math.min(...echoes).toFixed(1)}, clone ${Math.min(...clones).toFixed(1)}`);
  console.log(`save_ms=${median(saves).toFixed(1)} restore_ms=${median(restores).toFixed(1)} echo_ms=${median(echoes).toFixed(1)} snapshot_ratio=${ratio.toFixed(4)} clone_ms=${median(clones).toFixed(1)} clones8_mem_ratio=${(eight / one).toFixed(2)}`);
}

/** The child of the memory measurement: N linked clones of the file idle 2 s of VM time in one fleet; prints its RSS. */
async function idleClones(n: number, file: string): Promise<void> {
  const clones = Array.from({ length: n }, (_, i) => openSavedVm(file, { clone: { dir, name: `idle${i}` } }));
  const control = new BenchControl(() => undefined);
  control.queue.push(...clones.map((_, vm) => ({ vm, op: "resume" as const })));
  await runFleet(
    clones.map((c) => ({ name: c.name, memoryBytes: c.memoryBytes, plan: c.plan, console: new MemoryConsole(), drives: c.drives, resume: { state: c.state, ram: c.reader, share: c.clone } })),
    { engine: createX86Engine, control, maxVirtualNs: 2e9, onStart: (_k, raise) => raise.control() },
  );
  console.log(`rss=${process.memoryUsage().rss}`);
}

if (wantsRelaunch()) {
  rmSync(dir, { recursive: true, force: true });
  relaunch();
} else (process.env.HV_BENCH_CLONES ? idleClones(Number(process.env.HV_BENCH_CLONES), process.env.HV_BENCH_FILE!) : main())
  .catch((error: unknown) => {
    process.stderr.write(`bench:snapshot: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
