// Benchmark: live migration of the default guest (128 MiB) between two hv processes on loopback.
// Boots the guest to its prompt once (in this process) and saves it; then, for each max-bandwidth
// (1 Gbit/s, then 100 Mbit/s): a source `hv run --restore` of that snapshot and a destination
// `hv run --incoming`. In the source's shell a loop rewrites a 2 MiB tmpfs file from a non-zero
// one while another prints a numbered heartbeat every 10 ms of guest time; once 20 beats came,
// QMP turns on auto-converge and sets max-bandwidth, downtime-limit 10 ms, and migrates. The
// heartbeat must go on at the destination with no beat lost or twice. Progress on stderr; last line:
//   downtime_ms=<source stop to the destination's resume, 1 Gbit/s> downtime_100m_ms=<n>
//   total_s=<migration time at 1 Gbit/s> bytes_ratio=<bytes sent / non-zero guest RAM, 1 Gbit/s>
//   ack_ms=<n> ack_100m_ms=<n>
// Downtime is wall time from the source's stop to the moment the destination resumes the VM, before
// its first instruction: both ends print when (ms since the epoch, on this one machine's clock).
// ack_ms is what the source measured itself, from its stop to the destination's ACK, which the
// destination sends at that moment (the ACK's trip back and the source's wake-up on top).
// The detail lines show each end's steps after the stop on one time line.
// HV_BENCH_ONLY=1g or 100m: that run only (while working on it; no last line).
// --postcopy: then the same two migrations again with postcopy-ram, switched (migrate-start-postcopy)
// once the first pass is over; the last line adds postcopy_downtime_ms, postcopy_arrived_ms (the
// source's stop to the destination having every page), and the same at 100 Mbit/s
// (postcopy_downtime_100m_ms, postcopy_arrived_100m_ms). HV_BENCH_ONLY=postcopy: only the post-copy
// run at 1 Gbit/s (no last line).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostControl } from "../../bin/host-control.js";
import { runVm } from "../../bin/vm-runner.js";
import { MemoryConsole } from "../../drivers/console/host.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { loadKernel } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { freePort, hvRun, until } from "../support/hv-process.js";
import { qmpClient } from "../support/qmp-client.js";

const MEMORY = 128 << 20;
const HV = join(import.meta.dirname, "../../dist/hv.js");
const dir = mkdtempSync(join(tmpdir(), "hv-bench-migrate-"));
const say = (text: string) => void process.stderr.write(`bench:migrate: ${text}\n`);

/** The workload, typed at the prompt: a 2 MiB non-zero file copied over another, round and round; a heartbeat every 10 ms. */
const WORKLOAD =
  "mkdir -p /t && mount -t tmpfs none /t && yes migrate | head -c 2097152 > /t/src && " +
  "(while :; do cp /t/src /t/f; done) & i=0; while :; do i=$((i+1)); echo HB$i; usleep 10000; done\n";

const hv = (args: string[]) => hvRun([HV], args, { stdin: "pipe" });
const waitFor = (what: string, ok: () => boolean) => until(what, ok, 600_000);

/** The heartbeat numbers in `text`, in order (a line cut by the end is left out). */
const beats = (text: string) => [...text.matchAll(/HB(\d+)\r?\n/g)].map((m) => Number(m[1]));

async function bootAndSave(file: string): Promise<void> {
  const guest = await ensureDefaultGuest({ quiet: true });
  const plan = loadKernel(new Uint8Array(readFileSync(guest.kernel)), { memSize: MEMORY, cmdline: guest.append, initrd: new Uint8Array(readFileSync(guest.initrd)) });
  const request = { path: file, name: "bench", memoryBytes: MEMORY, platform: { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true }, roms: plan.roms, drives: [] };
  say("booting the default guest...");
  const con = new MemoryConsole();
  const control = new HostControl();
  let saved = false;
  let asked = false;
  await runVm({
    memoryBytes: MEMORY, plan, console: con, engine: createX86Engine, control, maxVirtualNs: 300e9,
    onStart: (_k, raise) => {
      control.raise = raise.control;
      con.onOutput = () => {
        if (asked || !/hv-init: ready[\s\S]*# /.test(con.text)) return;
        asked = true;
        say("at the prompt; saving");
        void control.save(0, request).then(() => (saved = true));
      };
    },
    stopRequested: () => saved,
  });
  if (!saved) throw new Error("the guest did not reach its prompt");
}

interface Run {
  /** Stop to the destination's resume (ms), and to the ACK at the source. */
  downtimeMs: number;
  ackMs: number;
  totalS: number;
  ratio: number;
  passes: number;
  throttle: number;
  /** Post-copy: the source's stop to the destination having every page (ms). */
  arrivedMs?: number;
}

const USAGE = `usage: npm run bench:migrate [-- --postcopy]
  --postcopy  also migrate with post-copy (switched after the first pass), at 1 Gbit/s and 100 Mbit/s;
              the last line adds postcopy_downtime_ms= postcopy_arrived_ms= postcopy_downtime_100m_ms= postcopy_arrived_100m_ms=
last line: downtime_ms=… downtime_100m_ms=… total_s=… bytes_ratio=… ack_ms=… ack_100m_ms=…[ postcopy_…]
`;

async function migrate(snapshot: string, bandwidth: number, label: string, postcopy = false): Promise<Run> {
  const port = await freePort();
  const sock = join(dir, `source-${bandwidth}.qmp`);
  const destination = hv(["--incoming", `tcp:127.0.0.1:${port}`, ...(postcopy ? ["--postcopy-ram"] : []), "--no-pace"]);
  await waitFor("the destination to listen", () => destination.err().includes("waiting for a migration"));
  const source = hv(["--restore", snapshot, "--qmp", `unix:${sock}`, "--no-pace"]);
  try {
    const alive = () => {
      if (source.child.exitCode !== null) throw new Error(`the source ended (${source.child.exitCode}): ${source.err()}\n${source.out().slice(-2000)}`);
      return true;
    };
    // A restored shell says nothing until it hears something: a newline brings its prompt back.
    source.child.stdin!.write("\n");
    await waitFor("the source's prompt", () => alive() && source.out().includes("# "));
    source.child.stdin!.write(WORKLOAD);
    await waitFor("20 heartbeats", () => alive() && beats(source.out()).length >= 20);
    say(`${label}: the workload runs (20 beats); migrating`);
    const q = await qmpClient(sock);
    await q.run("migrate-set-capabilities", { capabilities: [{ capability: "auto-converge", state: true }, { capability: "postcopy-ram", state: postcopy }] });
    // Post-copy: pre-copy must not end by itself (downtime-limit 0): the switch ends it.
    await q.run("migrate-set-parameters", { "max-bandwidth": bandwidth, "downtime-limit": postcopy ? 0 : 10 });
    const started = performance.now();
    await q.run("migrate", { uri: `tcp:127.0.0.1:${port}` });
    if (postcopy) {
      // Switch once the first pass is over (the second has begun: the next frame switches).
      for (let pass = 0; pass < 2; await new Promise((r) => setTimeout(r, 5))) pass = ((await q.run("query-migrate")) as { ram?: { "dirty-sync-count": number } }).ram?.["dirty-sync-count"] ?? 0;
      await q.run("migrate-start-postcopy");
      say(`${label}: pass 1 done; migrate-start-postcopy`);
    }
    const progress = setInterval(() => {
      q.run("query-migrate").then((m) => {
        const info = m as { status?: string; ram?: { transferred: number; "dirty-sync-count": number; remaining: number }; "cpu-throttle-percentage"?: number };
        if (info.ram) say(`${label}: pass ${info.ram["dirty-sync-count"]}, ${(info.ram.transferred / 2 ** 20).toFixed(1)} MiB sent, ${(info.ram.remaining / 2 ** 20).toFixed(2)} MiB dirty, throttle ${info["cpu-throttle-percentage"] ?? 0}%`);
      }, () => {});
    }, 500);
    const code = await source.exited;
    clearInterval(progress);
    q.close();
    const totalS = (performance.now() - started) / 1000;
    if (code !== 0) throw new Error(`the source ended with ${code}: ${source.err()}`);
    const m = /migrated in (\d+) passes: .* \(ratio ([\d.]+)\), downtime ([\d.]+) ms, throttle (\d+)%/.exec(source.err());
    if (!m) throw new Error(`the source did not say how it went: ${source.err()}`);
    say(`${label}: ${/migrated in [^\r\n]*/.exec(source.err())![0]}`);
    // Where the downtime went: the source's steps after its stop, and the destination's after END, on one time line.
    const steps = /hv: downtime: (.*) ms after the stop \(at ([\d.]+) ms since the epoch\)/.exec(source.err());
    await waitFor("the destination's timeline", () => /the migrated VM runs: /.test(destination.err()));
    const arrived = /the migrated VM runs: (.*) ms after end \(at ([\d.]+) ms since the epoch\)/.exec(destination.err());
    if (!steps || !arrived) throw new Error(`the ends did not say when they stopped and resumed:\n${source.err()}\n${destination.err()}`);
    say(`${label}: source after the stop: ${steps[1]} ms${/ since the epoch\); (CPU [^\r\n]*)/.exec(source.err())?.[1].replace(/^/, "; ") ?? ""}`);
    const resumedMs = Number(arrived[2]) - Number(steps[2]) + Number(/resumed (-?[\d.]+)/.exec(arrived[1])![1]);
    {
      const endAfterStop = Number(arrived[2]) - Number(steps[2]);
      const shifted = arrived[1].split(", ").map((p) => p.replace(/(-?[\d.]+)$/, (ms) => (Number(ms) + endAfterStop).toFixed(1)));
      say(`${label}: destination after the stop: ${shifted.join(", ")} ms`);
      const cpu = /the migrated VM's start took (.*)/.exec(destination.err());
      if (cpu) say(`${label}: destination: ${cpu[1]}`);
    }
    const before = beats(source.out());
    await until("10 heartbeats at the destination", () => beats(destination.out()).length >= 10, 120_000).catch((error: Error) => {
      throw new Error(`${error.message}; the destination printed:\n${destination.out().slice(-2000)}\n${destination.err().slice(-2000)}`);
    });
    const after = beats(destination.out());
    // One sequence: the source's beats, then the destination's, each the one before plus one, counted
    // in the two outputs as one text: the VM can stop in the middle of a line ("HB23" at the source,
    // its newline at the destination), which counted apart was a beat lost.
    const all = beats(source.out() + destination.out());
    all.forEach((n, i) => {
      if (i > 0 && n !== all[i - 1] + 1) throw new Error(`heartbeat ${all[i - 1]} is followed by ${n} (the source's output ended ${JSON.stringify(source.out().slice(-40))}, the destination's began ${JSON.stringify(destination.out().slice(0, 40))})`);
    });
    say(`${label}: heartbeats ${before[0]}..${before.at(-1)} at the source, ${after[0]}..${after.at(-1)} at the destination: none lost`);
    const allThere = /all there ([\d.]+) ms after the stop/.exec(source.err());
    if (postcopy && !allThere) throw new Error(`the source did not switch to post-copy: ${source.err()}`);
    return { passes: Number(m[1]), ratio: Number(m[2]), downtimeMs: resumedMs, ackMs: Number(m[3]), throttle: Number(m[4]), totalS, arrivedMs: allThere ? Number(allThere[1]) : undefined };
  } finally {
    source.child.kill("SIGKILL");
    destination.child.kill("SIGKILL");
    await Promise.all([source.exited, destination.exited]);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) return void process.stdout.write(USAGE);
  const unknown = args.find((a) => a !== "--postcopy");
  if (unknown !== undefined) {
    process.stderr.write(`bench:migrate: '${unknown}' is not an option\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const postcopy = args.includes("--postcopy");
  // HV_BENCH_SNAPSHOT: a snapshot of the default guest at its prompt, to skip the boot.
  const snapshot = process.env.HV_BENCH_SNAPSHOT ?? join(dir, "prompt.hvsnap");
  try {
    if (!process.env.HV_BENCH_SNAPSHOT) await bootAndSave(snapshot);
    const only = process.env.HV_BENCH_ONLY;
    if (only === "100m") return void (await migrate(snapshot, 12_500_000, "100 Mbit/s"));
    if (only === "postcopy") {
      const r = await migrate(snapshot, 125_000_000, "post-copy, 1 Gbit/s", true);
      return say(`post-copy, 1 Gbit/s: downtime ${r.downtimeMs.toFixed(1)} ms to the resume, every page there ${r.arrivedMs!.toFixed(1)} ms after the stop`);
    }
    const fast = await migrate(snapshot, 125_000_000, "1 Gbit/s");
    say(`1 Gbit/s: ${fast.passes} passes, downtime ${fast.downtimeMs.toFixed(1)} ms to the resume, ${fast.ackMs.toFixed(1)} ms to the ACK`);
    if (only === "1g") return;
    const slow = await migrate(snapshot, 12_500_000, "100 Mbit/s");
    say(`100 Mbit/s: ${slow.passes} passes, throttle ${slow.throttle}%, ratio ${slow.ratio}, ${slow.totalS.toFixed(2)} s`);
    let post = "";
    if (postcopy) {
      const pFast = await migrate(snapshot, 125_000_000, "post-copy, 1 Gbit/s", true);
      const pSlow = await migrate(snapshot, 12_500_000, "post-copy, 100 Mbit/s", true);
      post = ` postcopy_downtime_ms=${pFast.downtimeMs.toFixed(1)} postcopy_arrived_ms=${pFast.arrivedMs!.toFixed(1)} postcopy_downtime_100m_ms=${pSlow.downtimeMs.toFixed(1)} postcopy_arrived_100m_ms=${pSlow.arrivedMs!.toFixed(1)}`;
    }
    process.stdout.write(
      `downtime_ms=${fast.downtimeMs.toFixed(1)} downtime_100m_ms=${slow.downtimeMs.toFixed(1)} total_s=${fast.totalS.toFixed(2)} bytes_ratio=${fast.ratio.toFixed(3)} ack_ms=${fast.ackMs.toFixed(1)} ack_100m_ms=${slow.ackMs.toFixed(1)}${post}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
