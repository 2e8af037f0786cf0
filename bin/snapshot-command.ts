// `hv snapshot`: snapshot files. `info` shows what a file holds; the VMM adds save and restore.
import type { Command } from "commander";
import { SnapshotError, openSnapshot } from "../services/snapshot/file.js";
import { renderInfo, snapshotInfo } from "../services/snapshot/info.js";

/** Where the commands write; tests pass their own. */
export interface SnapshotIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  setExitCode: (code: number) => void;
}

const defaultIo = (): SnapshotIo => ({
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  setExitCode: (c) => {
    process.exitCode = c;
  },
});

/** Registers `snapshot` and its subcommands; returns the `snapshot` command so others can add theirs. */
export function registerSnapshotCommand(program: Command, io: SnapshotIo = defaultIo()): Command {
  const snapshot = program.command("snapshot").description("inspect VM snapshot files");
  snapshot
    .command("info")
    .description("show a snapshot's header, sections and sizes, RAM, ROMs, devices and drives (reads the header and index, not the RAM)")
    .option("--json", "print the same as JSON")
    .option("--verify", "also read every RAM chunk and check its checksum")
    .argument("<file>")
    .action((file: string, opts: { json?: boolean; verify?: boolean }) => {
      try {
        const reader = openSnapshot(file);
        try {
          if (opts.verify) reader.verify();
          const info = { ...snapshotInfo(reader), ...(opts.verify ? { verified: true } : {}) };
          io.stdout(opts.json ? `${JSON.stringify(info, null, 2)}\n` : renderInfo(info));
        } finally {
          reader.close();
        }
      } catch (err) {
        if (!(err instanceof SnapshotError)) throw err;
        io.stderr(`hv: ${err.message}\n`);
        io.setExitCode(1);
      }
    });
  return snapshot;
}
