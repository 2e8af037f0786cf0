// HostControl's migration stop (stopAndCapture) against a scripted control component: the four
// commands go out together, RAM is handed to the reader only once the VM is known to be paused and
// its last dirty log collected, and the state follows the read.
import { describe, expect, it } from "vitest";
import { Status } from "../kernel/index.js";
import type { ControlCommand, ControlResult } from "../services/vm-control.js";
import type { RamPages } from "../vmm/protocol.js";
import { ControlError, HostControl } from "./host-control.js";

const RAM: RamPages = { pages: 4, read: (n) => (n === 1 ? new Uint8Array(4096).fill(7) : null) };
const STATE = new Uint8Array([1, 2, 3]);
const DIRTY = new Uint8Array([0b10]);

/** Answers every queued command as the control component would, with the statuses given per op. */
function answerAll(control: HostControl, failing: ReadonlySet<ControlCommand["op"]>): string[] {
  const ops: string[] = [];
  for (let command = control.take(); command !== null; command = control.take()) {
    ops.push(command.op === "dirty" ? `dirty ${command.action}` : command.op);
    const status = failing.has(command.op) ? Status.BAD_PARAMETER : Status.SUCCESS;
    const result: ControlResult =
      status !== Status.SUCCESS ? { status }
      : command.op === "dirty" ? { status, dirty: DIRTY, pages: 4 }
      : command.op === "ram" ? { status, pages: RAM }
      : command.op === "state" ? { status, vmState: STATE }
      : { status };
    control.done(command, result);
  }
  return ops;
}

describe("HostControl: a migration's stop", () => {
  it("reads RAM after the pause and the last dirty log, then takes the state, in one round", async () => {
    const control = new HostControl();
    const seen: string[] = [];
    const stopped = control.stopAndCapture(0, (dirty, ram) => {
      seen.push(`read dirty=${dirty?.[0]} page1=${ram.read(1)?.[0]}`);
      return "pages sent";
    }, (state, read) => {
      seen.push(`state ${Array.from(state).join(",")} after ${read}`);
      return "done";
    }, (step) => seen.push(step));
    // The dirty log's last collection (LAST): the pages written are not protected again in the downtime.
    expect(answerAll(control, new Set())).toEqual(["pause", "dirty last", "ram", "state"]);
    await expect(stopped).resolves.toBe("done");
    expect(seen).toEqual(["paused", "collected", "read dirty=2 page1=7", "state 1,2,3 after pages sent"]);
    expect(control.idle).toBe(true);
  });

  it("never hands RAM to the reader when the pause or the dirty log failed: the VM may still run", async () => {
    for (const failing of ["pause", "dirty"] as const) {
      const control = new HostControl();
      let reads = 0, uses = 0;
      const stopped = control.stopAndCapture(0, () => reads++, () => uses++);
      answerAll(control, new Set([failing]));
      await expect(stopped).rejects.toBeInstanceOf(ControlError);
      await expect(stopped).rejects.toThrow(failing === "pause" ? /could not be paused/ : /could not be logged/);
      expect([reads, uses]).toEqual([0, 0]);
    }
  });

  it("takes no state without the read before it", async () => {
    const control = new HostControl();
    let uses = 0;
    const stopped = control.stopAndCapture(0, () => 1, () => uses++);
    answerAll(control, new Set(["ram"]));
    await expect(stopped).rejects.toThrow(/could not be read/);
    expect(uses).toBe(0);
  });
});
