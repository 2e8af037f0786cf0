// The auto-converge throttle (VMM control THROTTLE): a busy vCPU held back p% runs exactly
// (100 - p)% of the host's virtual time it ran before, period by period, and all of it again once
// the throttle is off. The guest does not see it: its own time only passes while it runs.

import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { HostControl } from "../../bin/host-control.js";
import { platformConfig } from "../../bin/snapshot.js";
import { runVm } from "../../bin/vm-runner.js";
import type { Kernel } from "../../kernel/index.js";
import type { ControlCommand, ControlResult } from "../../services/vm-control.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { THROTTLE_PERIOD_NS } from "../../vmm/protocol.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { DIRTIER_GUEST } from "./guests.js";
import { hasNasm } from "./nasm.js";

const MEMORY = 32 << 20;
const platform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };

/** HostControl that notes the kernel's time when each query is answered (inside the slice). */
class TimedControl extends HostControl {
  kernel: Kernel | null = null;
  answeredAt = 0;
  override done(command: ControlCommand, result: ControlResult): void {
    if (command.op === "query") this.answeredAt = this.kernel!.clock.now;
    super.done(command, result);
  }
}

describe.skipIf(!hasNasm())("the auto-converge throttle", () => {
  it("holds a busy vCPU back exactly its percentage of each period, unseen by the guest, and lets it go at 0", async () => {
    const plan = loadKernel(DIRTIER_GUEST(), { memSize: MEMORY });
    const control = new TimedControl();
    const con = new MemoryConsole();
    /** The VM's time per host virtual time over `spanNs` of host virtual time from now. */
    const share = async (spanNs: number) => {
      const a = await control.query(0);
      const ka = control.answeredAt;
      while (control.kernel!.clock.now < ka + spanNs) await new Promise((r) => setImmediate(r));
      const b = await control.query(0);
      return (b.vmTimeNs - a.vmTimeNs) / (control.answeredAt - ka);
    };
    const shares: number[] = [];
    let finished = false;
    const periods = 20;
    const span = periods * THROTTLE_PERIOD_NS;
    const drive = async () => {
      shares.push(await share(span));
      await control.throttle(0, 75);
      shares.push(await share(span));
      await control.throttle(0, 99);
      shares.push(await share(span));
      await control.throttle(0, 0);
      shares.push(await share(span));
      finished = true;
    };
    let failure: unknown = null;
    await runVm({
      memoryBytes: MEMORY, plan, console: con, engine: createX86Engine, control, ...platformConfig(platform), maxVirtualNs: 60e9,
      onStart: (k, raise) => {
        control.kernel = k;
        control.raise = raise.control;
        drive().catch((error) => (failure = error));
      },
      stopRequested: () => finished || failure !== null,
    });
    expect(failure).toBeNull();
    const [free, at75, at99, again] = shares;
    // Unthrottled, the VM has nearly all the time (the VMM's exit handling is the rest).
    expect(free).toBeGreaterThan(0.9);
    // The share is exact up to the part of one period at the ends of the span.
    expect(Math.abs(at75 / free - 0.25)).toBeLessThan(1 / periods);
    expect(Math.abs(at99 / free - 0.01)).toBeLessThan(1 / periods);
    expect(again / free).toBeGreaterThan(0.97);
    // The guest counted on through all of it, every line whole and in order.
    const lines = String.fromCharCode(...con.serial).split("\n").slice(0, -1);
    lines.forEach((l, i) => expect(l).toBe(`L${i + 1}`));
  });
});
