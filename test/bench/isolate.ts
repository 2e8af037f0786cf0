// What `--isolate` costs the guest: the default guest with a 64 MiB raw disk boots to its prompt
// and then writes the whole disk with dd (fsync at the end) and reads it back after dropping the
// page cache, once with the block
// driver in-process and once in a worker thread. Wall time, in the same run.
//
//   npm run bench:isolate   (last line: isolate_boot_ratio=… isolate_disk_ratio=… and the same in CPU time)

import { mkdtempSync, rmSync } from "node:fs";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryConsole } from "../../drivers/console/host.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { runVm } from "../../bin/vm-runner.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";

const MEMORY = 128 << 20;
const DISK_MIB = 64;
/** The guest's disk work: write the whole disk and flush it, then read it back from the disk. */
const WORKLOAD =
  `dd if=/dev/zero of=/dev/vda bs=64k count=${DISK_MIB * 16} conv=fsync; echo 3 > /proc/sys/vm/drop_caches; ` +
  `dd if=/dev/vda of=/dev/null bs=64k; echo disk-done-$((40+2))\n`;

interface Phases {
  bootS: number;
  diskS: number;
  bootCpuS: number;
  diskCpuS: number;
}

/** CPU seconds of this process so far (every thread). */
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function once(isolated: boolean, kernelImage: Uint8Array, initrd: Uint8Array, append: string): Promise<Phases> {
  const dir = mkdtempSync(join(tmpdir(), "hv-bench-isolate-"));
  const disk = join(dir, "disk.raw");
  createImage(disk, "raw", DISK_MIB << 20);
  const plan = loadKernel(kernelImage, { memSize: MEMORY, cmdline: append, initrd });
  const con = new MemoryConsole();
  const start = performance.now();
  const startCpu = cpuNow();
  let prompt = 0, promptCpu = 0;
  let done = 0, doneCpu = 0;
  try {
    const result = await runVm({
      memoryBytes: MEMORY,
      plan,
      console: con,
      engine: createX86Engine,
      drives: [{ path: disk, format: "raw" }],
      isolate: isolated ? {} : null,
      maxVirtualNs: 600e9,
      stopRequested: () => done > 0,
      onStart: (_k, raise) => {
        con.onOutput = () => {
          if (prompt === 0 && /hv-init: ready[\s\S]*# /.test(con.text)) {
            prompt = performance.now();
            promptCpu = cpuNow();
            con.type(WORKLOAD);
            raise.input();
          }
          if (done === 0 && con.text.includes("disk-done-42")) {
            done = performance.now();
            doneCpu = cpuNow();
          }
        };
      },
    });
    if (done === 0) throw new Error(`the guest stopped (${result.stop}) before its disk work was done:\n${con.text.slice(-2000)}`);
    // Both dd runs must have moved the whole disk.
    const full = `${DISK_MIB * 16}+0 records`;
    if (con.text.split(full).length - 1 < 4) throw new Error(`dd did not move ${DISK_MIB} MiB both ways:\n${con.text.slice(-2000)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { bootS: (prompt - start) / 1000, diskS: (done - prompt) / 1000, bootCpuS: promptCpu - startCpu, diskCpuS: doneCpu - promptCpu };
}

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest({ quiet: true });
  const kernelImage = new Uint8Array(readFileSync(guest.kernel));
  const initrd = new Uint8Array(readFileSync(guest.initrd));
  const runs: Record<string, Phases> = {};
  for (const isolated of [false, true]) {
    const name = isolated ? "in a worker" : "in-process";
    process.stderr.write(`bench:isolate: block driver ${name}...\n`);
    runs[name] = await once(isolated, kernelImage, initrd, guest.append);
    const r = runs[name];
    console.log(`block driver ${name.padEnd(11)}  boot to prompt ${r.bootS.toFixed(1)} s (CPU ${r.bootCpuS.toFixed(1)} s)   dd ${DISK_MIB} MiB write + read ${r.diskS.toFixed(2)} s (CPU ${r.diskCpuS.toFixed(2)} s)`);
  }
  const [a, b] = [runs["in-process"], runs["in a worker"]];
  console.log(
    `isolate_boot_ratio=${(b.bootS / a.bootS).toFixed(2)} isolate_disk_ratio=${(b.diskS / a.diskS).toFixed(2)} ` +
      `isolate_boot_cpu_ratio=${(b.bootCpuS / a.bootCpuS).toFixed(2)} isolate_disk_cpu_ratio=${(b.diskCpuS / a.diskCpuS).toFixed(2)}`,
  );
}

await main();
