// Benchmark: the memory services on the default guest. Boots it with 2031 MiB of RAM (the most a
// VM can have) to its prompt, pauses it and asks the memory manager what it holds. Prints the
// guest RAM the guest touched, the host frames its VM holds (guest pages written, plus its ROMs,
// state and bounce regions), the process's resident memory, and last:
//   overcommit_ratio=<host frames / guest-touched pages>
// Page sharing (share8_ratio, scan_cpu) and ballooning (balloon_s) come with those services.

import { readFileSync } from "node:fs";
import { MemoryConsole } from "../../drivers/console/host.js";
import { runVm } from "../../bin/vm-runner.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import type { ControlCommand, ControlHost, ControlResult, MemoryCounts } from "../../services/vm-control.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";

const MEMORY = 2031 << 20;
const mib = (pages: number) => (pages / 256).toFixed(1);

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest({ quiet: true });
  const plan = loadKernel(new Uint8Array(readFileSync(guest.kernel)), { memSize: MEMORY, cmdline: guest.append, initrd: new Uint8Array(readFileSync(guest.initrd)) });
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
        if (queue.length > 0 || counts || !/hv-init: ready[\s\S]*# /.test(con.text)) return;
        process.stderr.write(`bench:memory: at the prompt after ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
        queue.push({ vm: 0, op: "pause" }, { vm: 0, op: "query" });
        raise();
      };
    },
  });
  const c = counts as MemoryCounts | null;
  if (!c) throw new Error("the guest never reached its prompt");
  const rss = process.memoryUsage().rss;
  console.log(`guest RAM: ${mib(MEMORY / 4096)} MiB; touched by the guest: ${mib(c.touched)} MiB (${c.zero} pages of them on the zero frame)`);
  console.log(`host frames the VM holds: ${mib(c.private)} MiB; the host's pool: ${mib(c.hostTotal)} MiB, ${mib(c.hostFree)} MiB free; process RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
  console.log(`overcommit_ratio=${(c.private / c.touched).toFixed(3)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
