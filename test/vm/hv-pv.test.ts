// Our own paravirtual ABI on the whole stack, with C guests built at test time (test/guest):
// a multicall test in one VM, an event-channel ping-pong between two VMs of a fleet, and an
// echo service over a ring in a granted page between two VMs.
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { runFleet, runVm, type FleetVm } from "../../bin/vm-runner.js";
import { bootPlanFor } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { GrantFlag, HV_HYPERCALL_BASE, HvError, HvOp, HvPortState } from "../../vmm/paravirt/hv-abi.js";
import { buildGuest, hasGcc32 } from "../guest/build.js";
import type { ControlCommand, ControlHost } from "../../services/vm-control.js";
import { copyRam } from "../support/ram.js";

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

/** Run guests `a` and `b` (built images) as a fleet connected by one channel (unless `connect` is false). */
export async function pair(a: Uint8Array, b: Uint8Array, connect = true, maxVirtualNs = 5e9) {
  const cons = [new MemoryConsole(), new MemoryConsole()];
  const vms: FleetVm[] = [a, b].map((image, i) => ({
    name: i === 0 ? "a" : "b",
    memoryBytes: 16 << 20,
    plan: bootPlanFor({ memoryBytes: 16 << 20, kernelImage: image }),
    console: cons[i],
    debugExitPort: 0xf4,
    debugcon: true,
  }));
  const result = await runFleet(vms, { engine: createX86Engine, maxVirtualNs, channels: connect ? [["a", "b"]] : [] });
  return { result, out: cons.map((c) => dwords(c.debugcon)) };
}

describe.skipIf(!gcc)("hv PV ABI: two VMs", () => {
  it("event-channel ping-pong: every event answered, both ends see each round", async () => {
    const rounds = 25;
    const { result, out } = await pair(buildGuest("pingpong", { ROLE: 0, ROUNDS: rounds }), buildGuest("pingpong", { ROLE: 1, ROUNDS: rounds }));
    expect(result.stop, JSON.stringify(result.vms)).toBe("ended");
    const [a, b] = out;
    // PING, peers 1, init 0, port, rounds, events left over 0, cycles, DONE
    expect(b.slice(0, 4)).toEqual([0x474e4950, 1, 0, 1]);
    expect(a.slice(0, 3)).toEqual([0x474e4950, 1, 0]);
    expect(a[3]).toBeGreaterThan(0);
    expect(a.slice(4, 6)).toEqual([rounds, 0]);
    expect(b.slice(4, 6)).toEqual([rounds, 0]);
    expect(a[6]).toBeGreaterThan(0);
    expect(a[7]).toBe(0x454e4f44);
  });
});

describe.skipIf(!gcc)("hv PV ABI: echo over a ring", () => {
  it.each([
    ["grant copies", 0],
    ["the client's page mapped into the server (grant map)", 1],
  ])("every request answered through %s; notifications suppressed under load", async (_how, map) => {
    const n = 3000;
    const { result, out } = await pair(buildGuest("ring", { ROLE: 0, N: n, MAP: map }), buildGuest("ring", { ROLE: 1, N: n, MAP: map }), true, 20e9);
    expect(result.stop, JSON.stringify(result.vms)).toBe("ended");
    const [client, server] = out;
    // RING, port, count, good (server: answered), notifications, cycles, DONE
    expect(client[0]).toBe(0x474e4952);
    expect(client[1]).toBeGreaterThan(0);
    expect(client.slice(2, 4)).toEqual([n, n]); // every response good
    expect(server.slice(0, 4)).toEqual([0x474e4952, 1, n, n]);
    expect(client[6]).toBe(0x454e4f44);
    expect(server[6]).toBe(0x454e4f44);
    // Event indices: far fewer notifications than requests, both ways.
    expect(client[4]).toBeGreaterThan(0);
    expect(client[4]).toBeLessThan(n / 10);
    expect(server[4]).toBeLessThan(n / 10);
  });
});

describe.skipIf(!gcc)("hv PV ABI: grant map between two VMs", () => {
  it("maps as granted (read-only, writable), shares the frame, and ending the grants revokes the mappings", async () => {
    const { result, out } = await pair(buildGuest("grantmap", { ROLE: 0 }), buildGuest("grantmap", { ROLE: 1 }));
    expect(result.stop, JSON.stringify(result.vms)).toBe("ended");
    const [granter, grantee] = out;
    const GMAP = 0x50414d47, DONE = 0x454e4f44, EACCES = -HvError.EACCES, EBUSY = -HvError.EBUSY;
    // The grantee: refused a writable mapping of the read-only grant, mapped both, refused a busy
    // page; read the granter's word, its write to the read-only mapping went nowhere; after the
    // grants ended, nothing there (all ones) and a new mapping refused; both unmapped.
    expect(grantee).toEqual([GMAP, 1, EACCES, 0, 0, EBUSY, 0x600df00d, 0x600df00d, 0x12345678, -1, -1, EACCES, 0, 0, DONE]);
    // The granter: its table, its port; its page took the grantee's write; the entries showed the
    // mappings (READING, and WRITING for the writable one) until the grants ended, cleared then.
    const { PERMIT_ACCESS: P, READONLY: R, READING, WRITING } = GrantFlag;
    expect(granter).toEqual([GMAP, 0, 1, 0x12345678, P | R | READING, P | READING | WRITING, 0, 0, 0, DONE]);
  });

  it("a page the peer writes through its mapping is in the granter's dirty log, though the granter never writes it", async () => {
    const cons = [new MemoryConsole(), new MemoryConsole()];
    const vms: FleetVm[] = [3, 4].map((role, i) => {
      const image = buildGuest("grantmap", { ROLE: role });
      return { name: i === 0 ? "a" : "b", memoryBytes: 16 << 20, plan: bootPlanFor({ memoryBytes: 16 << 20, kernelImage: image }), console: cons[i], debugExitPort: 0xf4, debugcon: true };
    });
    const logs: Uint8Array[] = [];
    const control: ControlHost & { queue: ControlCommand[] } = {
      queue: [{ vm: 0, op: "dirty", action: "start" }],
      take() {
        return this.queue.shift() ?? null;
      },
      done(command, result) {
        if (command.op === "dirty" && command.action === "collect" && "dirty" in result) logs.push(result.dirty.slice());
        if (command.op === "ram" && "pages" in result && typeof result.pages === "object") {
          ram = copyRam(result.pages);
          reported = dwords(cons[1].debugcon).slice(2);
        }
      },
    };
    let ram: Uint8Array | null = null;
    /** The counts the grantee reported when the granter's RAM was read. */
    let reported: number[] = [];
    let raise = () => {};
    const result = await runFleet(vms, {
      engine: createX86Engine,
      maxVirtualNs: 20e9,
      channels: [["a", "b"]],
      control,
      onStart: (_k, r) => {
        raise = r.control;
        raise();
      },
      // Once the grantee mapped the page (and the granter only waits), a log at every slice; then the granter's RAM.
      onSlice: () => {
        if (dwords(cons[1].debugcon).length < 3 || control.queue.length > 0) return;
        control.queue.push(logs.length < 4 ? { vm: 0, op: "dirty", action: "collect" } : { vm: 0, op: "ram" });
        raise();
      },
      stopRequested: () => ram !== null,
    });
    expect(result.stop, JSON.stringify(result.vms)).toBe("quit");
    const [granter, grantee] = cons.map((c) => dwords(c.debugcon));
    expect(grantee.slice(0, 2)).toEqual([0x50414d47, 0]); // mapped
    const page = granter[2];
    expect(page).toBeGreaterThan(0x100);
    const dirty = (log: Uint8Array, p: number) => (log[p >> 3] >> (p & 7)) & 1;
    // The first log may hold the granter's own set-up; in the later ones it waits in HLT and writes nothing.
    for (const log of logs.slice(1)) expect(dirty(log, page)).toBe(1);
    // And the peer's writes while the granter was logged are in its page, up to the last the peer
    // reported (they used to go nowhere once logging write-protected the page: the export lost
    // its write right with the VM's mapping, and a writable mapping of it came back read-only).
    const words = new Uint32Array(ram!.buffer, page * 4096, 1024);
    expect(reported.length).toBeGreaterThan(4);
    expect(Math.max(...words)).toBeGreaterThanOrEqual(reported.at(-1)!);
  });

  it("grant map of a VM's own grants (HV_PEER_SELF): the same page twice, through capabilities, revoked when the grant ends", async () => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 16 << 20, kernelImage: buildGuest("grantmap", { ROLE: 2 }), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 2e9 });
    expect(result.why, result.message).toBeDefined();
    const { PERMIT_ACCESS: P, READONLY: R, READING, WRITING } = GrantFlag;
    // Set up; a writable mapping of the read-only grant refused; both mapped; the entries show it;
    // its write through the mapping is in its page, its page's write shows through the mapping, the
    // read-only mapping took no write; the grant ended: nothing there; unmapped, the entry is free.
    expect(dwords(con.debugcon)).toEqual([
      0x50414d47, 0, -HvError.EACCES, 0, 0, P | R | READING, P | READING | WRITING, 0x12345678, 0xabcd, 0x600df00d, 0, -1, 0, P | R, 0, 0x454e4f44,
    ]);
  });
});
