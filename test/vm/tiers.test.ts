// The x86 core's tiers run the same guest: a VM whose every step depends on time (PIT interrupts,
// the TSC, the PIT counter) and whose repeated string instructions copy and fill as many elements as
// that time says gives the same serial output and the same whole state (vCPU, devices, RAM) at the
// same VM time, whether its code is interpreted, translated on its first run, or translated at the
// default thresholds. Any difference in when an instruction retires, or in how many retire, changes
// everything after it (a repeated instruction's elements were once counted once when translated).

import { copyRam } from "../support/ram.js";
import { decode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { Status } from "../../kernel/index.js";
import type { VcpuEngineFactory } from "../../kernel/vcpu.js";
import { runVm } from "../../bin/vm-runner.js";
import type { ControlCommand, ControlResult } from "../../services/vm-control.js";
import { createX86Engine, type X86Engine } from "../../vmm/x86/index.js";
import { HASHED_REPEATS, timeMixingRom } from "./guests.js";
import { assemble, hasNasm } from "./nasm.js";

const MEMORY = 4 << 20;
/** VM time of the save: the guest is in the middle of its run then (it ends after 400 ticks). */
const SAVE_AT_NS = 20e6;

interface Seen {
  state: unknown;
  ram: Uint8Array;
  serial: string;
  exit: string;
}

async function run(rom: Uint8Array, engine: VcpuEngineFactory): Promise<Seen> {
  const con = new MemoryConsole();
  const queue: ControlCommand[] = [{ vm: 0, op: "save", atVmTimeNs: SAVE_AT_NS }];
  let saved: { state: unknown; ram: Uint8Array } | null = null;
  const result = await runVm({
    memoryBytes: MEMORY, bios: rom, console: con, engine, debugExitPort: 0xf4, maxVirtualNs: 10e9,
    control: {
      take: () => queue.shift() ?? null,
      done: (command: ControlCommand, r: ControlResult) => {
        expect(r.status).toBe(Status.SUCCESS);
        if (command.op === "save" && "state" in r) saved = { state: decode(r.state), ram: copyRam(r.ram) };
      },
    },
    onStart: (_k, raise) => raise.control(),
  });
  expect(saved).not.toBeNull();
  return { ...saved!, serial: con.text, exit: `${result.why} ${result.status}` };
}

/** The x86 engine with the given translation threshold (0: interpret only). */
function engineWith(translateAfter: number): VcpuEngineFactory {
  return (memory) => {
    const e = createX86Engine(memory, { translate: translateAfter > 0 }) as X86Engine;
    if (translateAfter > 0) e.translateAfter = translateAfter;
    return e;
  };
}

describe.skipIf(!hasNasm())("the x86 core's tiers", () => {
  it("run a time-mixing guest with repeated string instructions alike: output, exit and whole state at the same VM time", async () => {
    const rom = assemble(timeMixingRom(HASHED_REPEATS));
    const interpreted = await run(rom, engineWith(0));
    expect(interpreted.serial.length).toBeGreaterThan(350);
    for (const translateAfter of [1, 3, 40000]) {
      const translated = await run(rom, engineWith(translateAfter));
      expect(translated.exit).toBe(interpreted.exit);
      expect(translated.serial).toBe(interpreted.serial);
      expect(translated.state).toEqual(interpreted.state);
      expect(Buffer.compare(translated.ram, interpreted.ram)).toBe(0);
    }
  });
});
