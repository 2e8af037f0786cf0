// The reference guest on two vCPUs: Linux finds both processors in the MADT, starts the second
// with INIT/SIPI (and again after taking it offline), and a workload of two busy processes runs on both (the per-CPU busy time in
// /proc/stat grows on each). `poweroff` goes through ACPI S5. Needs apt-get, as test/vm/linux does.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { VmEnd } from "../../services/root-protocol.js";
import { runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { canFetchGuest } from "../support/guest.js";

const canFetch = canFetchGuest("test/vm/linux-smp");

/** Shell loop iterations of each of the two busy processes. */
const SPINS = 4000;
const spinner = (name: string) => `(i=0; while [ $i -lt ${SPINS} ]; do i=$((i+1)); done; echo ${name}-done)`;

/** Busy jiffies (user, nice, system) of cpu0 and cpu1 in the /proc/stat lines after `marker`. */
function busy(text: string, marker: string): number[] {
  const at = text.indexOf(`\n${marker}`);
  const out: number[] = [];
  for (const m of text.slice(at).matchAll(/^cpu([01]) (\d+) (\d+) (\d+)/gm)) {
    if (out.length === 2) break;
    out[Number(m[1])] = Number(m[2]) + Number(m[3]) + Number(m[4]);
  }
  return out;
}

describe.skipIf(!canFetch)("the reference Linux guest with --smp 2", () => {
  it("shows two processors, runs a two-process workload on both, and powers off", async () => {
    const guest = await ensureDefaultGuest({ quiet: true });
    const plan = loadKernel(new Uint8Array(readFileSync(guest.kernel)), { memSize: 128 << 20, cmdline: guest.append, initrd: new Uint8Array(readFileSync(guest.initrd)) });
    const con = new MemoryConsole();
    const steps = [
      {
        expect: /hv-init: ready[\s\S]*# /,
        type:
          "echo cpus=$(grep -c ^processor /proc/cpuinfo); dmesg | grep 'smp: Brought up'; " +
          // CPU hotplug: cpu1 goes offline (halts with interrupts off) and comes back (INIT, SIPI).
          "echo 0 > /sys/devices/system/cpu/cpu1/online; echo offline=$(cat /sys/devices/system/cpu/online); " +
          "echo 1 > /sys/devices/system/cpu/cpu1/online; echo online=$(cat /sys/devices/system/cpu/online); echo before; grep -E '^cpu[01] ' /proc/stat; " +
          `${spinner("one")} & ${spinner("two")} & wait; echo after; grep -E '^cpu[01] ' /proc/stat; echo done-$((6*7))\n`,
      },
      { expect: /done-42/, type: "poweroff\n" },
    ];
    let step = 0;
    let mark = 0;
    const result = await runVm({
      memoryBytes: 128 << 20,
      plan,
      console: con,
      engine: createX86Engine,
      apic: true,
      cpus: 2,
      maxVirtualNs: 200e9,
      onStart: (_k, { input: raise }) => {
        con.onOutput = () => {
          while (step < steps.length && steps[step].expect.test(con.text.slice(mark))) {
            mark = con.text.length;
            con.type(steps[step++].type);
            raise();
          }
        };
      },
    });
    const text = con.text;
    if (result.why !== VmEnd.HALTED) console.error(text.slice(-3000));
    expect(result.why).toBe(VmEnd.HALTED);
    expect(result.status).toBe(0);
    expect(text).toMatch(/smp: Brought up 1 node, 2 CPUs/);
    expect(text).toMatch(/^cpus=2\r?$/m);
    expect(text).toMatch(/^offline=0\r?$/m);
    expect(text).toMatch(/^online=0-1\r?$/m);
    expect(text).toMatch(/^one-done\r?$/m);
    expect(text).toMatch(/^two-done\r?$/m);
    const before = busy(text, "before");
    const after = busy(text, "after");
    expect(before).toHaveLength(2);
    expect(after).toHaveLength(2);
    // Both CPUs did work: each one's busy time grew by a good share of the workload.
    const grown = [after[0] - before[0], after[1] - before[1]];
    expect(Math.min(...grown)).toBeGreaterThan(0.25 * Math.max(...grown));
    expect(Math.min(...grown)).toBeGreaterThanOrEqual(8);
    expect(result.message).toBe("the guest powered off (ACPI S5)");
  }, 60 * 60 * 1000);
});
