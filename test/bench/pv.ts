// bench:pv — our own paravirtual ABI, measured on C guests (test/guest) on the whole stack, in
// wall time of the guests' timed loops only: the host stamps each debugcon byte as it arrives, and
// a loop's time is from the last byte of the dword the guest writes before it to the first byte of
// the one after (so boot, set-up and a peer's start-up never count):
//   multicall_speedup  wall of ROUNDS x 32 single hypercalls / wall of ROUNDS multicalls of 32
//   evtchn_rtt_us      VM-to-VM event-channel ping-pong round trip, wall (the process's CPU time per
//                      round trip is printed before: a loaded machine moves it much less)
//   ring_pairs_per_s   request + response pairs per second over a ring between two VMs (the server
//                      maps the client's ring page; the same over grant copies is printed before,
//                      and ring_exits_per_pair: VM exits of both VMs per pair, in a counted run)
//   pv_boot_exit_ratio VM exits to the default guest's prompt with / without KVM's interface: the
//                      code path of `bench:boot --pv` (boot/pv.ts), two Linux boots; --no-boot skips
//                      them (then it prints "skipped": run `npm run bench:boot -- --pv` for it).
//                      The kernel boots with `quiet` (as `bench:boot --pv --quiet`): its log on the
//                      serial line is the same with and without the interface, about 36,800 port
//                      exits on each side that say nothing of it; --kernel-log boots without `quiet`.
// Options: --rounds N (multicall rounds, default 50000), --pings N (default 5000), --pairs N
// (default 200000), --no-boot, --kernel-log, --quiet (no progress lines). The work is sized so
// that it outweighs the runs' noise.
import { parseArgs } from "node:util";
import { MemoryConsole } from "../../drivers/console/host.js";
import { bootPlanFor, runFleet, runVm, type FleetVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { buildGuest } from "../guest/build.js";
import { measurePv } from "./boot/pv.js";
import { ExitReason } from "../../kernel/vcpu.js";
import type { TraceSink } from "../../kernel/trace.js";

const HELP = `usage: npm run bench:pv -- [options]
  --rounds N     multicall rounds (default 50000)
  --pings N      event-channel round trips (default 5000)
  --pairs N      ring request/response pairs (default 200000)
  --no-boot      skip the two Linux boots of pv_boot_exit_ratio (prints "skipped")
  --kernel-log   boot those without 'quiet'
  --quiet        no progress lines
Last line: \`multicall_speedup=<n> evtchn_rtt_us=<n> ring_pairs_per_s=<n> pv_boot_exit_ratio=<n>\`.`;

const { values } = parseArgs({
  options: {
    help: { type: "boolean", default: false },
    rounds: { type: "string", default: "50000" },
    pings: { type: "string", default: "5000" },
    pairs: { type: "string", default: "200000" },
    "no-boot": { type: "boolean", default: false },
    "kernel-log": { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const rounds = Number(values.rounds), pings = Number(values.pings), pairs = Number(values.pairs);
for (const [name, n] of [["rounds", rounds], ["pings", pings], ["pairs", pairs]] as const) {
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a whole number of at least 1, not '${values[name]}'`);
}

function dwords(bytes: readonly number[]): number[] {
  const b = Uint8Array.from(bytes);
  return Array.from({ length: b.length >> 2 }, (_, i) => new DataView(b.buffer).getInt32(4 * i, true));
}

/** Counts VM exits (by VM and reason) while `on`: the kernel's trace sink, for an untimed run. */
class ExitCounter implements TraceSink {
  on = false;
  total = 0;
  readonly byReason = new Map<string, number>();
  vmExit(_t: number, pd: string, reason: number): void {
    if (!this.on) return;
    this.total++;
    const key = `${pd} ${ExitReason[reason]}`;
    this.byReason.set(key, (this.byReason.get(key) ?? 0) + 1);
  }
  schedule(): void {}
  callBegin(): void {}
  callEnd(): void {}
  fault(): void {}
  count(): void {}
}

/** A console that stamps each debugcon byte with the wall time it arrived (and counts exits between two dwords, if asked). */
class StampConsole extends MemoryConsole {
  readonly stamps: number[] = [];
  /** The process's CPU time (user + system, µs) at each byte: a loaded machine moves wall time much more. */
  readonly cpuStamps: number[] = [];
  counting: { counter: ExitCounter; before: number; after: number } | null = null;
  override write(channel: number, bytes: Uint8Array): void {
    super.write(channel, bytes);
    const now = performance.now();
    const cpu = process.cpuUsage();
    while (this.stamps.length < this.debugcon.length) this.stamps.push(now), this.cpuStamps.push(cpu.user + cpu.system);
    const c = this.counting;
    if (c) c.counter.on = this.stamps.length >= 4 * c.before + 4 && this.stamps.length < 4 * c.after + 1;
  }
  /** Wall ms from the last byte of dword `before` to the first byte of dword `after`. */
  between(before: number, after: number): number {
    if (this.stamps.length < 4 * after + 1) throw new Error(`the guest wrote ${this.stamps.length >> 2} dwords, not ${after + 1}`);
    return this.stamps[4 * after] - this.stamps[4 * before + 3];
  }
  /** CPU ms of the process over the same stretch. */
  cpuBetween(before: number, after: number): number {
    return (this.cpuStamps[4 * after] - this.cpuStamps[4 * before + 3]) / 1e3;
  }
}

/** Wall ms of the timed loop of one VM running `image` (between dwords `before` and `after`); throws unless it printed DONE. */
async function one(image: Uint8Array, before: number, after: number): Promise<number> {
  const con = new StampConsole();
  await runVm({ memoryBytes: 16 << 20, kernelImage: image, console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 600e9 });
  if (dwords(con.debugcon).at(-1) !== 0x454e4f44) throw new Error("the multicall guest did not finish");
  return con.between(before, after);
}

/**
 * Two connected VMs run to their end: the wall ms of vm0's timed loop (between its dwords `before`
 * and `after`), and their dwords. With `counter`, the exits of the timed loop are counted (a
 * run of its own: the trace costs time).
 */
async function two(a: Uint8Array, b: Uint8Array, before: number, after: number, counter: ExitCounter | null = null): Promise<{ ms: number; cpuMs: number; out: number[][] }> {
  const cons = [new StampConsole(), new StampConsole()];
  if (counter) cons[0].counting = { counter, before, after };
  const vms: FleetVm[] = [a, b].map((image, i) => ({ name: `vm${i}`, memoryBytes: 16 << 20, plan: bootPlanFor({ memoryBytes: 16 << 20, kernelImage: image }), console: cons[i], debugExitPort: 0xf4, debugcon: true }));
  const r = await runFleet(vms, { engine: createX86Engine, maxVirtualNs: 600e9, channels: [["vm0", "vm1"]], trace: counter });
  const out = cons.map((c) => dwords(c.debugcon));
  if (r.stop !== "ended" || out.some((o) => o.at(-1) !== 0x454e4f44)) throw new Error(`the two guests did not finish: ${JSON.stringify(r.vms)}`);
  return { ms: cons[0].between(before, after), cpuMs: cons[0].cpuBetween(before, after), out };
}

const say = (s: string) => values.quiet || process.stderr.write(`bench:pv: ${s}\n`);

async function main(): Promise<void> {
  say(`multicall: ${rounds} x 32 single hypercalls vs ${rounds} multicalls of 32`);
  // multicall.c: dword 41 is the last before the timed loop, 42 (the sum) the first after.
  const singles = buildGuest("multicall", { ROUNDS: rounds, MODE: 1 });
  const multis = buildGuest("multicall", { ROUNDS: rounds, MODE: 2 });
  await one(multis, 41, 42); // warm up the engine's caches
  // Taken in turns, so that a busy moment of the machine falls on both alike.
  let tSingles = Infinity, tMultis = Infinity;
  for (let i = 0; i < 5; i++) {
    tSingles = Math.min(tSingles, await one(singles, 41, 42));
    tMultis = Math.min(tMultis, await one(multis, 41, 42));
  }
  const multicallSpeedup = tSingles / tMultis;
  console.log(`multicall: singles ${tSingles.toFixed(1)} ms (${((tSingles * 1e3) / (rounds * 32)).toFixed(3)} us/call), multicalls ${tMultis.toFixed(1)} ms (${((tMultis * 1e3) / rounds).toFixed(3)} us/multicall)`);

  say(`event channels: ping-pong of ${pings} rounds`);
  // pingpong.c, the initiator: dword 3 (its port) before the rounds, 4 (ROUNDS) after.
  const ping = (n: number) => two(buildGuest("pingpong", { ROLE: 0, ROUNDS: n }), buildGuest("pingpong", { ROLE: 1, ROUNDS: n }), 3, 4);
  await ping(pings / 10);
  let pMs = Infinity, pCpuMs = Infinity;
  for (let i = 0; i < 3; i++) {
    const r = await ping(pings);
    pMs = Math.min(pMs, r.ms);
    pCpuMs = Math.min(pCpuMs, r.cpuMs);
  }
  const rttUs = (pMs * 1e3) / pings;
  console.log(`evtchn: ${pings} rounds ${pMs.toFixed(1)} ms wall, ${pCpuMs.toFixed(1)} ms CPU (${((pCpuMs * 1e3) / pings).toFixed(2)} us CPU per round trip)`);

  say(`ring: echo of ${pairs} requests, the server on the client's page mapped (grant map), then through grant copies`);
  // ring.c, the client: dword 1 (its port, once bound) before the pairs, 2 (N) after.
  const ring = (map: number, counter: ExitCounter | null = null) => two(buildGuest("ring", { ROLE: 0, N: pairs, MAP: map }), buildGuest("ring", { ROLE: 1, N: pairs, MAP: map }), 1, 2, counter);
  const bestRing = async (map: number) => {
    let b = await ring(map);
    for (let i = 0; i < 2; i++) {
      const r = await ring(map);
      if (r.ms < b.ms) b = r;
    }
    return b;
  };
  const rMap = await bestRing(1), rCopy = await bestRing(0);
  const pairsPerS = pairs / (rMap.ms / 1e3);
  for (const [how, r] of [["mapped", rMap], ["copies", rCopy]] as const)
    console.log(`ring (${how}): ${pairs} pairs ${r.ms.toFixed(1)} ms (${Math.round(pairs / (r.ms / 1e3))}/s); notifications client ${r.out[0][4]}, server ${r.out[1][4]}`);
  // Exits per pair (both VMs, the client's timed loop): virtual time decides them, not the host's
  // load, so they show whether notification suppression holds.
  const exitsPerPair: string[] = [];
  for (const [how, map] of [["mapped", 1], ["copies", 0]] as const) {
    const counter = new ExitCounter();
    await ring(map, counter);
    const reasons = [...counter.byReason].sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k} ${n}`).join(", ");
    console.log(`ring (${how}): ${counter.total} exits, ${(counter.total / pairs).toFixed(4)} per pair (${reasons})`);
    exitsPerPair.push((counter.total / pairs).toFixed(4));
  }

  let exitRatio = "skipped";
  if (!values["no-boot"]) {
    say("booting the default guest with and without KVM's interface (bench:boot --pv's code path)...");
    const kernelLog = values["kernel-log"];
    const guest = await ensureDefaultGuest({ quiet: !kernelLog });
    const on = await measurePv(guest, true, 0.5, 1800);
    const off = await measurePv(guest, false, 0.5, 1800);
    const how = kernelLog ? "the kernel's log on the serial line" : "kernel command line with 'quiet'";
    console.log(`boot (${how}): exits to the prompt ${on.exits} with, ${off.exits} without (reached: ${on.reached}, ${off.reached})`);
    if (on.reached && off.reached && off.exits > 0) exitRatio = (on.exits / off.exits).toFixed(3);
  }
  console.log(`ring_exits_per_pair=${exitsPerPair[0]} (copies ${exitsPerPair[1]})`);
  console.log(`multicall_speedup=${multicallSpeedup.toFixed(2)} evtchn_rtt_us=${rttUs.toFixed(2)} ring_pairs_per_s=${Math.round(pairsPerS)} pv_boot_exit_ratio=${exitRatio}`);
}

await main();
