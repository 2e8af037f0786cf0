// A fake VM for the QMP tests: the control component's part of HostControl, answered in memory.

import { encode } from "@msgpack/msgpack";
import { Status } from "../kernel/index.js";
import type { VmState } from "../vmm/protocol.js";
import type { HostControl } from "./host-control.js";
import type { QmpVm } from "./qmp.js";

export const RAM_BYTES = 16 * 4096;

/** The control component's part, faked: answers each queued command on a later turn of the event loop, as a kernel slice would. */
export class FakeVm {
  running = true;
  vmTimeNs = 1_000_000;
  /** A status to answer every command with, instead of doing it. */
  refuse: Status | null = null;
  /** Busy: commands stay queued until release(). */
  held = false;
  readonly ram = new Uint8Array(RAM_BYTES).fill(0x5a, 4096, 8192);
  readonly seen: string[] = [];

  constructor(readonly control: HostControl) {
    control.raise = () => void setImmediate(() => this.serve());
  }

  release(): void {
    this.held = false;
    this.serve();
  }

  private serve(): void {
    if (this.held) return;
    for (let c = this.control.take(); c; c = this.control.take()) {
      this.seen.push(c.op);
      if (this.refuse !== null) this.control.done(c, { status: this.refuse });
      else if (c.op === "query") this.control.done(c, { status: Status.SUCCESS, running: this.running, vmTimeNs: this.vmTimeNs });
      else if (c.op === "pause" || c.op === "resume") {
        this.running = c.op === "resume";
        this.control.done(c, { status: Status.SUCCESS });
      } else if (c.op === "save") {
        const state: VmState = { vmTimeNs: this.vmTimeNs, vcpu: { eax: 1 }, halted: false, platform: { pic: { imr: 0xff } }, ignneChanged: false };
        this.control.done(c, { status: Status.SUCCESS, state: encode(state), ram: { pages: RAM_BYTES / 4096, read: (n) => this.ram.subarray(n * 4096, (n + 1) * 4096) } });
      }
      this.vmTimeNs += 1000;
    }
  }
}

/** VM 0 of a QMP server, saved as a FakeVm's RAM. */
export function testVm(name: string): QmpVm {
  return {
    name,
    index: 0,
    saveRequest: (path, compress) => ({ path, name, memoryBytes: RAM_BYTES, platform: { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true }, roms: [], drives: [], compress }),
  };
}
