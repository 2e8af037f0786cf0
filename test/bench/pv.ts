// bench:pv — our own paravirtual ABI, measured on C guests (test/guest) on the whole stack, wall
// time of whole runs, each against a baseline run of the same guest with less work in the same
// process (so boot and set-up cancel out):
//   multicall_speedup  wall of ROUNDS x 32 single hypercalls / wall of ROUNDS multicalls of 32
//   evtchn_rtt_us      VM-to-VM event-channel ping-pong round trip, wall
//   ring_pairs_per_s   request + response pairs per second over a ring between two VMs
//   pv_boot_exit_ratio VM exits to the default guest's prompt with / without KVM's interface: the
//                      code path of `bench:boot --pv` (boot/pv.ts), two Linux boots; --no-boot skips
//                      them (then it prints "skipped": run `npm run bench:boot -- --pv` for it)
// Options: --rounds N (multicall rounds, default 20000), --pings N (default 5000), --pairs N
// (default 200000), --no-boot, --quiet. The work is sized so that it outweighs the runs' noise.
import { parseArgs } from "node:util";
import { MemoryConsole } from "../../drivers/console/host.js";
import { bootPlanFor, runFleet, runVm, type FleetVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { buildGuest } from "../guest/build.js";
import { measurePv } from "./boot/pv.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "20000" },
    pings: { type: "string", default: "5000" },
    pairs: { type: "string", default: "200000" },
    "no-boot": { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds), pings = Number(values.pings), pairs = Number(values.pairs);

function dwords(bytes: readonly number[]): number[] {
  const b = Uint8Array.from(bytes);
  return Array.from({ length: b.length >> 2 }, (_, i) => new DataView(b.buffer).getInt32(4 * i, true));
}

/** Wall ms of one VM running `image` to its end; throws unless it printed DONE. */
async function one(image: Uint8Array): Promise<number> {
  const con = new MemoryConsole();
  const t0 = performance.now();
  await runVm({ memoryBytes: 16 << 20, kernelImage: image, console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 600e9 });
  const ms = performance.now() - t0;
  if (dwords(con.debugcon).at(-1) !== 0x454e4f44) throw new Error("the multicall guest did not finish");
  return ms;
}

/** Wall ms of two connected VMs running to their end; the client's dwords. */
async function two(a: Uint8Array, b: Uint8Array): Promise<{ ms: number; out: number[][] }> {
  const cons = [new MemoryConsole(), new MemoryConsole()];
  const vms: FleetVm[] = [a, b].map((image, i) => ({ name: `vm${i}`, memoryBytes: 16 << 20, plan: bootPlanFor({ memoryBytes: 16 << 20, kernelImage: image }), console: cons[i], debugExitPort: 0xf4, debugcon: true }));
  const t0 = performance.now();
  const r = await runFleet(vms, { engine: createX86Engine, maxVirtualNs: 600e9, channels: [["vm0", "vm1"]] });
  const ms = performance.now() - t0;
  const out = cons.map((c) => dwords(c.debugcon));
  if (r.stop !== "ended" || out.some((o) => o.at(-1) !== 0x454e4f44)) throw new Error(`the two guests did not finish: ${JSON.stringify(r.vms)}`);
  return { ms, out };
}

/** The least of `n` measurements (noise only adds). */
async function best(n: number, f: () => Promise<number>): Promise<number> {
  let m = Infinity;
  for (let i = 0; i < n; i++) m = Math.min(m, await f());
  return m;
}

const say = (s: string) => values.quiet || process.stderr.write(`bench:pv: ${s}\n`);

async function main(): Promise<void> {
  say(`multicall: ${rounds} x 32 single hypercalls vs ${rounds} multicalls of 32`);
  const base = buildGuest("multicall", { ROUNDS: rounds, MODE: 0 });
  const singles = buildGuest("multicall", { ROUNDS: rounds, MODE: 1 });
  const multis = buildGuest("multicall", { ROUNDS: rounds, MODE: 2 });
  await one(base); // warm up the engine's caches
  const tBase = await best(3, () => one(base));
  const tSingles = await best(3, () => one(singles));
  const tMultis = await best(3, () => one(multis));
  const multicallSpeedup = (tSingles - tBase) / Math.max(tMultis - tBase, 1e-3);
  console.log(`multicall: base ${tBase.toFixed(1)} ms, singles ${tSingles.toFixed(1)} ms (${(((tSingles - tBase) * 1e3) / (rounds * 32)).toFixed(2)} us/call), multicalls ${tMultis.toFixed(1)} ms (${(((tMultis - tBase) * 1e3) / rounds).toFixed(2)} us/multicall)`);

  say(`event channels: ping-pong of ${pings} rounds vs ${pings / 10}`);
  const ping = (n: number) => two(buildGuest("pingpong", { ROLE: 0, ROUNDS: n }), buildGuest("pingpong", { ROLE: 1, ROUNDS: n }));
  await ping(10);
  const pShort = await best(2, async () => (await ping(pings / 10)).ms);
  const pLong = await best(2, async () => (await ping(pings)).ms);
  const rttUs = ((pLong - pShort) * 1e3) / (pings - pings / 10);
  console.log(`evtchn: ${pings / 10} rounds ${pShort.toFixed(1)} ms, ${pings} rounds ${pLong.toFixed(1)} ms`);

  say(`ring: echo of ${pairs} requests vs ${pairs / 10}`);
  const ring = (n: number) => two(buildGuest("ring", { ROLE: 0, N: n }), buildGuest("ring", { ROLE: 1, N: n }));
  const rShort = await ring(pairs / 10);
  const rLong = await ring(pairs);
  const pairsPerS = (pairs - pairs / 10) / ((rLong.ms - rShort.ms) / 1e3);
  console.log(`ring: ${pairs / 10} pairs ${rShort.ms.toFixed(1)} ms, ${pairs} pairs ${rLong.ms.toFixed(1)} ms; notifications client ${rLong.out[0][3]}, server ${rLong.out[1][3]} (of ${pairs} pairs)`);

  let exitRatio = "skipped";
  if (!values["no-boot"]) {
    say("booting the default guest with and without KVM's interface (bench:boot --pv's code path)...");
    const guest = await ensureDefaultGuest({ quiet: values.quiet });
    const on = await measurePv(guest, true, 0.5, 1800);
    const off = await measurePv(guest, false, 0.5, 1800);
    console.log(`boot: exits to the prompt ${on.exits} with, ${off.exits} without (reached: ${on.reached}, ${off.reached})`);
    if (on.reached && off.reached && off.exits > 0) exitRatio = (on.exits / off.exits).toFixed(3);
  }
  console.log(`multicall_speedup=${multicallSpeedup.toFixed(2)} evtchn_rtt_us=${rttUs.toFixed(2)} ring_pairs_per_s=${Math.round(pairsPerS)} pv_boot_exit_ratio=${exitRatio}`);
}

await main();
