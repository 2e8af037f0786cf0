// hv: the command line of the hypervisor. It only composes components; the work is theirs.
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { registerImgCommand } from "../drivers/block/cli.js";
import { registerCtlCommand } from "./ctl-command.js";
import { registerDemoCommand } from "./demo-command.js";
import { registerRunCommand } from "./run-command.js";
import { registerFleetCommand } from "./fleet-command.js";
import { registerSnapshotCommand } from "./snapshot-command.js";
import { statusForError } from "./exit-status.js";
import { relaunch, wantsRelaunch, watchParent } from "./host-memory.js";

const program = new Command();
program
  .name("hv")
  .description("A NOVA-style microhypervisor: capability kernel, user-mode VMMs and drivers, x86 core")
  .version("0.1.0")
  // Commander's own refusals (an unknown option, a bad value) come back here to get hv's usage status, not commander's 1.
  .exitOverride();

registerRunCommand(program);
registerFleetCommand(program);
registerDemoCommand(program);
registerImgCommand(program);
registerSnapshotCommand(program);
registerCtlCommand(program);

// The commands that host VMs run in a process whose memory follows what the VMs hold (host-memory.ts).
if (["run", "fleet"].includes(process.argv[2]) && wantsRelaunch()) relaunch();
else {
  watchParent();
  program.parseAsync(process.argv).catch((err: unknown) => {
    // Commander has printed its own errors already; an InvalidArgumentError thrown by an action has not.
    if (!(err instanceof CommanderError) || err instanceof InvalidArgumentError) process.stderr.write(`hv: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(statusForError(err));
  });
}
