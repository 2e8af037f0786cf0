// bench:cpu's kernel on our x86 core, in this process: the engine alone, as Multiboot leaves the
// machine (flat 32-bit protected mode at the entry), COM1's data port read from its exits.
import { ExitReason, type VcpuExitHandler } from "../../../kernel/vcpu.js";
import { Machine } from "../../../vmm/x86/testing.js";
import { cpuSeconds } from "../boot/protocol.js";
import { LOAD_ADDRESS, RAM_BYTES, type Kernel, type KernelOutput } from "./kernel.js";

const STACK = 0x7f0000;

/** Our core runs with its WebAssembly tier as `hv` does (off with HV_WASM=0: the JS tier alone). */
export const WASM_TIER = process.env.HV_WASM !== "0";

/** A fresh machine with `kernel` loaded, at its entry in flat 32-bit protected mode (Multiboot's state). */
export function machine(kernel: Kernel): Machine {
  const m = new Machine(RAM_BYTES, 0, WASM_TIER);
  m.write(LOAD_ADDRESS, kernel.image);
  m.flat(0, kernel.entry, STACK);
  return m;
}

/** Run on our core until the kernel ends (or `budget` instructions); COM1 bytes go to `output`. */
export function runOurs(kernel: Kernel, output: KernelOutput, budget = Infinity): { retired: number; seconds: number } {
  const m = machine(kernel);
  const handler: VcpuExitHandler = {
    exit: (reason, st) => {
      const q = st.qual;
      if (reason === ExitReason.PIO && q.write && q.address === 0x3f8) output.byte(q.data & 0xff, cpuSeconds(), m.engine.retired);
      return true;
    },
  };
  const t0 = cpuSeconds();
  while (!output.ended && m.engine.retired < budget) {
    const reason = m.engine.run(Math.min(50_000_000, budget - m.engine.retired), handler);
    if (reason !== ExitReason.BUDGET && reason !== ExitReason.HLT) throw new Error(`the kernel ended with ${ExitReason[reason]}`);
    if (reason === ExitReason.HLT) break;
  }
  return { retired: m.engine.retired, seconds: cpuSeconds() - t0 };
}

