// What KVM's paravirtual interface buys the default guest (`npm run bench:boot -- --pv`): boot it
// to its shell prompt with and without the interface and count guest instructions and VM exits
// to get there, then let the shell idle and count exits per second of VM time. Counts, not wall
// times: the guest runs the same on every machine; only where the prompt is seen moves a little
// (between slices of host time, which the wall-time limit sizes), a few exits from run to run.
import { readFileSync } from "node:fs";
import { MemoryConsole } from "../../../drivers/console/host.js";
import { ExitReason, type Kernel, type TraceSink, type VcpuEngine } from "../../../kernel/index.js";
import { runVm } from "../../../bin/vm-runner.js";
import { createX86Engine } from "../../../vmm/x86/index.js";
import type { DefaultGuest } from "../../../services/guest/index.js";

/** The default guest's shell is up (its init prints this, then the prompt). */
const PROMPT = /hv-init: ready[\s\S]*# /;
/** The answer to the question typed after the idle time (the line, not the echo of the command). */
const CLOCKSOURCE = /^cs=([\w-]+)\r?$/m;

export interface PvMeasure {
  pv: boolean;
  /** The prompt came (else the counts are up to the time limit). */
  reached: boolean;
  /** Guest instructions retired and VM exits (boundary and synchronous) up to the prompt. */
  instructions: number;
  exits: number;
  /** Exits up to the prompt by reason name. */
  byReason: Record<string, number>;
  /** VM time at the prompt, s. */
  promptSeconds: number;
  /** Exits per second of VM time while the shell idles at its prompt, in all and by reason name. */
  idleExitsPerSecond: number;
  idleByReason: Record<string, number>;
  /** The guest's clocksource and what its kernel log says about the hypervisor. */
  clocksource: string;
  wallSeconds: number;
}

/** Boot `guest` (pv on or off), then idle `idleSeconds` of VM time at the prompt. */
export async function measurePv(guest: DefaultGuest, pv: boolean, idleSeconds: number, wallTimeoutSeconds: number): Promise<PvMeasure> {
  const byReason: Record<string, number> = {};
  let exits = 0;
  const trace: TraceSink = {
    schedule() {},
    callBegin() {},
    callEnd() {},
    fault() {},
    count() {},
    vmExit(_t, _pd, reason) {
      exits++;
      const name = ExitReason[reason] ?? String(reason);
      byReason[name] = (byReason[name] ?? 0) + 1;
    },
  };
  const engines: VcpuEngine[] = [];
  const con = new MemoryConsole();
  let kernel: Kernel | null = null;
  let atPrompt: { instructions: number; exits: number; byReason: Record<string, number>; ns: number } | null = null;
  let raise = () => {};
  let asked = false;
  /** Exits and VM time of the idle window at the prompt. */
  let idle = { exits: 0, ns: 0, byReason: {} as Record<string, number> };
  con.onOutput = () => {
    if (atPrompt || !PROMPT.test(con.text)) return;
    atPrompt = { instructions: engines[0]?.retired ?? 0, exits, byReason: { ...byReason }, ns: kernel!.clock.now };
  };
  const start = performance.now();
  await runVm({
    memoryBytes: 128 << 20,
    kernelImage: new Uint8Array(readFileSync(guest.kernel)),
    initrd: new Uint8Array(readFileSync(guest.initrd)),
    append: guest.append,
    console: con,
    pv,
    engine: (memory) => {
      const e = createX86Engine(memory);
      engines.push(e);
      return e;
    },
    trace,
    wallTimeout: { clock: { now: () => performance.now() * 1e6 }, ns: wallTimeoutSeconds * 1e9 },
    maxVirtualNs: 300e9,
    onStart: (k, r) => {
      kernel = k;
      raise = r.input;
    },
    stopRequested: () => {
      const prompt = atPrompt as { exits: number; ns: number } | null;
      if (!prompt || kernel!.clock.now < prompt.ns + idleSeconds * 1e9) return false;
      if (!asked) {
        // Idle time is over: ask the shell what it runs on, then stop once it answered.
        asked = true;
        con.type("echo cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\n");
        const before = (atPrompt as { byReason: Record<string, number> }).byReason;
        const perSecond = (n: number) => n / ((kernel!.clock.now - prompt.ns) / 1e9);
        idle = {
          exits: exits - prompt.exits,
          ns: kernel!.clock.now - prompt.ns,
          byReason: Object.fromEntries(Object.entries(byReason).map(([k, n]) => [k, perSecond(n - (before[k] ?? 0))]).filter(([, n]) => (n as number) > 0)),
        };
        raise();
        return false;
      }
      return CLOCKSOURCE.test(con.text);
    },
  });
  const p = atPrompt as { instructions: number; exits: number; byReason: Record<string, number>; ns: number } | null;
  return {
    pv,
    reached: p !== null,
    instructions: p?.instructions ?? engines[0]?.retired ?? 0,
    exits: p?.exits ?? exits,
    byReason: p?.byReason ?? byReason,
    promptSeconds: (p?.ns ?? 0) / 1e9,
    idleExitsPerSecond: idle.ns > 0 ? idle.exits / (idle.ns / 1e9) : Number.NaN,
    clocksource: CLOCKSOURCE.exec(con.text)?.[1] ?? "?",
    idleByReason: idle.byReason,
    wallSeconds: (performance.now() - start) / 1000,
  };
}
