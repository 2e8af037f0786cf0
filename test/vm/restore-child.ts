// A fresh process that resumes a snapshot file, saves the VM again when its clock reaches a given
// VM time, and prints what it saw: hashes of the whole state and RAM, and the serial output.
// test/vm/snapshot.test.ts compares them with the process that made the file.
//   node --import tsx test/vm/restore-child.ts FILE AT_VM_TIME_NS

import { copyRam } from "../support/ram.js";
import { createHash } from "node:crypto";
import { decode, encode } from "@msgpack/msgpack";
import { openSavedVm, platformConfig } from "../../bin/snapshot.js";
import { runVm } from "../../bin/vm-runner.js";
import { MemoryConsole } from "../../drivers/console/host.js";
import type { ControlCommand, ControlResult } from "../../services/vm-control.js";
import { createX86Engine } from "../../vmm/x86/index.js";

const [file, at] = process.argv.slice(2);
const vm = openSavedVm(file);
const con = new MemoryConsole();
let seen: { state: string; ram: string } | null = null;
const queue: ControlCommand[] = [{ vm: 0, op: "resume" }, { vm: 0, op: "save", atVmTimeNs: Number(at) }];
await runVm({
  memoryBytes: vm.memoryBytes,
  resume: { plan: vm.plan, state: vm.state, ram: vm.reader },
  console: con,
  engine: createX86Engine,
  ...platformConfig(vm.platform),
  control: {
    take: () => queue.shift() ?? null,
    done: (command: ControlCommand, result: ControlResult) => {
      if (command.op !== "save" || !("state" in result)) return;
      seen = { state: hash(encode(decode(result.state))), ram: hash(copyRam(result.ram)) };
    },
  },
  maxVirtualNs: 10e9,
  onStart: (_k, raise) => raise.control(),
});
vm.reader.close();
process.stdout.write(JSON.stringify({ ...(seen ?? {}), serial: con.text }));

function hash(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
