// Where the instructions before the first serial byte go (issue 15): boots the default guest with
// our stack in this process until its first serial byte and prints, per phase (the first run from
// the loader's entry point, the bzImage's decompressor, the kernel proper), retired instructions
// and CPU seconds, then the synchronous exits by reason and port, and the block cache's statistics.
//
// Phases are told apart by where the vCPU is when a run starts, so they are exact only to a run's
// budget (the kernel hands out a few million instructions at a time): the decompressor runs from
// the relocated bzImage below the kernel's virtual base, the kernel proper at or above 0xC0000000
// (a 32-bit guest). The run that prints the first byte is counted whole.
// With --until boot-ok it goes on to BOOT-OK, the time after the first byte a phase of its own.
// Usage: npm run bench:boot-phases [-- --translate-after N] [--wasm-after N] [--wasm-pure] [--until first-byte|boot-ok]
// (HV_WASM=0: without the wasm tier, vmm/x86/wasm)

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { runVm } from "../../bin/vm-runner.js";
import { MemoryConsole } from "../../drivers/console/host.js";
import { ExitReason, type VcpuExitHandler, type VcpuState } from "../../kernel/vcpu.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { createX86Engine, type X86Engine } from "../../vmm/x86/index.js";
import { cpuSeconds } from "./boot/protocol.js";

const KERNEL_BASE = 0xc0000000;

const HELP = `usage: npm run bench:boot-phases -- [options]
  --until first-byte|boot-ok   stop at the first serial byte (default) or go on to BOOT-OK
  --translate-after N          runs of a block before the JS tier translates it (1-65535; default the engine's)
  --wasm-after N               runs before the wasm tier takes it (1-65535; default the engine's)
  --wasm-pure                  only blocks whose instructions all have a wasm form go to wasm
Prints instructions and CPU seconds per phase, the exits by reason and port, the block cache's
statistics, and last \`phases_<until>_instructions=<n>\`. HV_WASM=0: without the wasm tier.`;

/** A run count option: an integer from 1 to 65535 (the block cache's counters), or undefined when not given. */
function runs(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`--${name} takes a whole number from 1 to 65535, not '${v}'`);
  return n;
}

interface Phase {
  name: string;
  retired: number;
  cpu: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "translate-after": { type: "string" }, "wasm-after": { type: "string" }, "wasm-pure": { type: "boolean", default: false }, until: { type: "string", default: "first-byte" }, help: { type: "boolean", default: false } } });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const translateAfter = runs("translate-after", values["translate-after"]);
  const wasmAfter = runs("wasm-after", values["wasm-after"]);
  if (values.until !== "first-byte" && values.until !== "boot-ok") throw new Error(`--until takes first-byte or boot-ok, not '${values.until}'`);
  const toBootOk = values.until === "boot-ok";
  const guest = await ensureDefaultGuest({ bootOk: true });
  const con = new MemoryConsole();
  let engine: X86Engine | null = null;
  let firstByte = false;
  let bootOk = false;
  let serial = "";
  const phases: Phase[] = [];
  const exits = new Map<string, number>();
  const enter = (name: string, e: X86Engine) => {
    if (phases.at(-1)?.name !== name) phases.push({ name, retired: e.retired, cpu: cpuSeconds() });
  };
  con.onOutput = (text) => {
    if (!firstByte && engine !== null) phases.push({ name: "after first byte", retired: (engine as X86Engine).retired, cpu: cpuSeconds() });
    firstByte = true;
    serial = (serial + text).slice(-200);
    bootOk ||= serial.includes("BOOT-OK");
  };
  await runVm({
    name: "phases",
    memoryBytes: 128 << 20,
    kernelImage: new Uint8Array(readFileSync(guest.kernel)),
    kernelName: guest.kernel,
    initrd: new Uint8Array(readFileSync(guest.initrd)),
    append: guest.append,
    console: con,
    engine: (memory) => {
      const e = createX86Engine(memory) as X86Engine;
      if (translateAfter !== undefined) e.translateAfter = translateAfter;
      if (wasmAfter !== undefined) e.wasmAfter = wasmAfter;
      if (values["wasm-pure"]) e.wasmMixed = false;
      engine = e;
      const run = e.run.bind(e);
      e.run = (budget: number, handler: VcpuExitHandler) => {
        const eip = e.cpu.eip >>> 0;
        if (!firstByte) enter(eip >= KERNEL_BASE ? "kernel" : phases.length > 0 ? "decompressor" : "first run", e);
        const counting: VcpuExitHandler = {
          exit: (reason: ExitReason, st: VcpuState) => {
            const q = st.qual;
            const key = reason === ExitReason.PIO ? `PIO ${q.write ? "out" : "in"} 0x${q.address.toString(16)}` : ExitReason[reason];
            exits.set(key, (exits.get(key) ?? 0) + 1);
            return handler.exit(reason, st);
          },
          get stopRequested() {
            return handler.stopRequested;
          },
        };
        return run(budget, counting);
      };
      return e;
    },
    stopRequested: () => (toBootOk ? bootOk : firstByte),
  });
  const e = engine as X86Engine | null;
  if (e === null) throw new Error("no engine was created");
  if (!toBootOk) phases.pop(); // the "after first byte" mark
  phases.push({ name: toBootOk ? "(BOOT-OK)" : "(first byte)", retired: e.retired, cpu: cpuSeconds() });
  console.log(`${"phase".padEnd(14)} ${"instructions".padStart(14)} ${"cpu_s".padStart(7)} ${"MIPS".padStart(7)}`);
  for (let k = 0; k + 1 < phases.length; k++) {
    const n = phases[k + 1].retired - phases[k].retired;
    const s = phases[k + 1].cpu - phases[k].cpu;
    console.log(`${phases[k].name.padEnd(14)} ${String(n).padStart(14)} ${s.toFixed(2).padStart(7)} ${(n / s / 1e6).toFixed(1).padStart(7)}`);
  }
  console.log("exits:", [...exits].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k, n]) => `${k}: ${n}`).join(", "));
  console.log("blocks:", JSON.stringify(e.blocks.stats));
  console.log(`translated: ${((100 * e.blocks.stats.translatedRetired) / e.retired).toFixed(1)}% of the instructions`);
  console.log(`phases_${toBootOk ? "boot_ok" : "first_byte"}_instructions=${e.retired}`);
}

await main();
