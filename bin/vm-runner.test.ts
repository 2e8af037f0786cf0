import { describe, expect, it } from "vitest";
import { VmEnd } from "../services/root-protocol.js";
import { exitVerdict } from "./vm-runner.js";
import { ExitStatus, statusForError } from "./exit-status.js";
import { CommanderError, InvalidArgumentError } from "commander";
import { HostFileError } from "./host-files.js";
import { BootImageError } from "../vmm/boot/plan.js";

describe("hv run's exit status", () => {
  const ended = (why: VmEnd | 0, status = 0, message = "") => ({ stop: "ended" as const, why, status, message });
  it("maps how the VM ended to a status and a message", () => {
    expect(exitVerdict(ended(VmEnd.HALTED, 0, "the CPU halted with interrupts disabled"), "reboot: System halted")).toEqual({ status: 0, message: "" });
    expect(exitVerdict(ended(VmEnd.DEBUG_EXIT, 67), "")).toEqual({ status: 67, message: "" });
    const reset = "the guest asked for a reset (port 0xcf9); hv does not reboot, so the VM ended";
    expect(exitVerdict(ended(VmEnd.RESET, 0, reset), "Kernel panic - not syncing: x")).toEqual({ status: 4, message: "the guest panicked" });
    expect(exitVerdict(ended(VmEnd.RESET, 0, reset), "reboot")).toEqual({ status: 0, message: reset });
    // A VM that migrated away runs on elsewhere: no failure here, whatever its console said last.
    const moved = "the VM migrated away: it runs in another hv now";
    expect(exitVerdict(ended(VmEnd.MIGRATED, 0, moved), "Kernel panic - not syncing: x")).toEqual({ status: 0, message: moved });
    expect(exitVerdict(ended(VmEnd.TRIPLE_FAULT, 1, "triple fault at 0010:00100040"), "")).toEqual({ status: 4, message: "triple fault at 0010:00100040" });
    expect(exitVerdict(ended(VmEnd.ERROR, 1, "vCPU exit EXCEPTION at 0010:00000010"), "")).toEqual({ status: 4, message: "vCPU exit EXCEPTION at 0010:00000010" });
    expect(exitVerdict({ stop: "timeout", why: 0, status: 0, message: "" }, "").status).toBe(124);
    expect(exitVerdict({ stop: "wall-timeout", why: 0, status: 0, message: "" }, "")).toEqual({ status: 124, message: "stopped at the wall-clock limit (--wall-timeout)" });
    expect(exitVerdict({ stop: "quit", why: 0, status: 0, message: "" }, "Kernel panic").status).toBe(0);
  });

  it("gives a debug-exit value as a process has it: its low 8 bits", () => {
    const ended = (status: number) => ({ stop: "ended" as const, why: VmEnd.DEBUG_EXIT, status, message: "" });
    expect(exitVerdict(ended((0x7f << 1) | 1), "").status).toBe(255);
    expect(exitVerdict(ended((0x80 << 1) | 1), "").status).toBe(1);
    expect(exitVerdict(ended(0xffffffff), "").status).toBe(255);
  });

  it("gives hv's own statuses even, so no debug-exit value can look like one", () => {
    const verdicts = [
      exitVerdict(ended(VmEnd.TRIPLE_FAULT, 1, "x"), ""),
      exitVerdict(ended(VmEnd.ERROR, 1, "x"), ""),
      exitVerdict(ended(VmEnd.HALTED), "Kernel panic - not syncing"),
      exitVerdict(ended(0, 7, "component fault"), ""),
      exitVerdict({ stop: "idle", why: 0, status: 0, message: "" }, ""),
      exitVerdict({ stop: "timeout", why: 0, status: 0, message: "" }, ""),
    ];
    for (const v of verdicts) expect(v.status % 2).toBe(0);
    expect(verdicts.map((v) => v.status)).not.toContain(0);
    for (const s of Object.values(ExitStatus)) expect(s % 2).toBe(0);
    expect(statusForError(new InvalidArgumentError("bad"))).toBe(ExitStatus.USAGE);
    expect(statusForError(new CommanderError(1, "commander.unknownOption", "x"))).toBe(ExitStatus.USAGE);
    expect(statusForError(new CommanderError(0, "commander.helpDisplayed", "x"))).toBe(0);
    expect(statusForError(new HostFileError("--kernel 'x': is a FIFO"))).toBe(ExitStatus.USAGE);
    expect(statusForError(new BootImageError("OVERLAP", "x"))).toBe(ExitStatus.USAGE);
    expect(statusForError(new Error("EIO"))).toBe(ExitStatus.HV_ERROR);
  });
});
