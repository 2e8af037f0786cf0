import { describe, expect, it } from "vitest";
import { VmEnd } from "../services/root-protocol.js";
import { exitVerdict } from "./vm-runner.js";

describe("hv run's exit status", () => {
  const ended = (why: VmEnd | 0, status = 0, message = "") => ({ stop: "ended" as const, why, status, message });
  it("maps how the VM ended to a status and a message", () => {
    expect(exitVerdict(ended(VmEnd.HALTED, 0, "the CPU halted with interrupts disabled"), "reboot: System halted")).toEqual({ status: 0, message: "" });
    expect(exitVerdict(ended(VmEnd.DEBUG_EXIT, 67), "")).toEqual({ status: 67, message: "" });
    expect(exitVerdict(ended(VmEnd.RESET, 0, "the guest asked for a reset"), "Kernel panic - not syncing: x")).toEqual({ status: 1, message: "the guest panicked" });
    expect(exitVerdict(ended(VmEnd.RESET, 0, "the guest asked for a reset"), "reboot")).toEqual({ status: 0, message: "VM ended: the guest asked for a reset" });
    expect(exitVerdict(ended(VmEnd.ERROR, 1, "vCPU exit INVALID_STATE at eip 0x10"), "")).toEqual({ status: 1, message: "vCPU exit INVALID_STATE at eip 0x10" });
    expect(exitVerdict({ stop: "timeout", why: 0, status: 0, message: "" }, "").status).toBe(124);
    expect(exitVerdict({ stop: "quit", why: 0, status: 0, message: "" }, "Kernel panic").status).toBe(0);
  });
});
