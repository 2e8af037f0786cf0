// hv's exit statuses: which ones hv itself gives, and why none of them is odd.
import { CommanderError, InvalidArgumentError } from "commander";
import { ImageError } from "../drivers/block/errors.js";
import { BootDescriptionError } from "../services/root.js";
import { SnapshotError } from "../services/snapshot/errors.js";
import { BootImageError } from "../vmm/boot/plan.js";
import { LayoutError } from "./compose.js";
import { ControlError } from "./host-control.js";
import { HostFileError } from "./host-files.js";

/**
 * The statuses `hv run` and `hv fleet` end with. isa-debug-exit (`--debug-exit`) ends hv with
 * `(v << 1) | 1`, always odd, so every status hv gives on its own is even: a test harness that reads
 * an odd status as the guest's verdict cannot mistake a refused kernel or a triple fault for one.
 */
export const ExitStatus = {
  /** The guest powered off, asked for a reset, or the user quit. */
  OK: 0,
  /** A refused command line, option or input file; nothing has run. */
  USAGE: 2,
  /** The VM failed: a guest panic, a triple fault, a vCPU that cannot go on, a component fault, a VM nothing can wake. */
  VM_FAILED: 4,
  /** hv itself failed (a host I/O error or a bug); stderr names it. */
  HV_ERROR: 6,
  /** A time limit ran out, as timeout(1) has it. */
  TIMEOUT: 124,
} as const;

/** Errors that refuse something the user gave (a file, an image, a snapshot, a VM description) before it is used. */
const REFUSALS = [InvalidArgumentError, HostFileError, BootImageError, ImageError, SnapshotError, BootDescriptionError, ControlError, LayoutError];

/** The status for an error that reached hv's top level: USAGE for a refusal, commander's own exits (help, version) as they are, else HV_ERROR. */
export function statusForError(error: unknown): number {
  if (REFUSALS.some((kind) => error instanceof kind)) return ExitStatus.USAGE;
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : ExitStatus.USAGE;
  return ExitStatus.HV_ERROR;
}
