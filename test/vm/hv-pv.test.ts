// Our own paravirtual ABI on the whole stack, with C guests built at test time (test/guest):
// a multicall test in one VM, an event-channel ping-pong between two VMs of a fleet, and an
// echo service over a ring in a granted page between two VMs.
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { runFleet, runVm, type FleetVm } from "../../bin/vm-runner.js";
import { bootPlanFor } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { HV_HYPERCALL_BASE, HvError, HvOp, HvPortState } from "../../vmm/paravirt/hv-abi.js";
import { buildGuest, hasGcc32 } from "../guest/build.js";

const gcc = hasGcc32();

/** The guest's dwords on debugcon. */
export function dwords(bytes: readonly number[]): number[] {
  const b = Uint8Array.from(bytes);
  return Array.from({ length: b.length >> 2 }, (_, i) => new DataView(b.buffer).getInt32(4 * i, true));
}

describe.skipIf(!gcc)("hv PV ABI: guest programs", () => {
  it("multicall: detection, 32 entries with results stored back, stop at the first failure", async () => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 16 << 20, kernelImage: buildGuest("multicall"), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 2e9 });
    expect(result.why, result.message).toBeDefined();
    const w = dwords(con.debugcon);
    expect(w[0]).toBe(0x4d43414c);
    expect(w[w.length - 1]).toBe(0x454e4f44);
    expect(w.slice(1, 5)).toEqual([1, HV_HYPERCALL_BASE, 1, 32]);
    const results = w.slice(5, 37);
    expect(results.slice(0, 16)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(results.slice(16)).toEqual(new Array(16).fill(HvPortState.UNBOUND));
    // close 1 (ok), close 1 (fails: stop), close 2 never ran
    expect(w.slice(37, 42)).toEqual([2, 0, -HvError.EINVAL, 0x1234, HvPortState.UNBOUND]);
  });
});
