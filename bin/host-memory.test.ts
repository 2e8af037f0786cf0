// Tests of the settings a process that hosts VMs runs under (node flags, malloc environment).
import { describe, expect, it } from "vitest";
import { HOST_NODE_FLAGS, hostEnv, relaunchArgs, wantsRelaunch } from "./host-memory.js";

describe("host process settings", () => {
  it("caps V8's young generation in the relaunched process, before the user's own node flags", () => {
    expect(HOST_NODE_FLAGS).toContain("--max-semi-space-size=8");
    const args = relaunchArgs(["--import", "tsx", "--max-semi-space-size=2"], ["/usr/bin/node", "bin/hv.ts", "run", "--mem", "64M"]);
    expect(args).toEqual([...HOST_NODE_FLAGS, "--import", "tsx", "--max-semi-space-size=2", "bin/hv.ts", "run", "--mem", "64M"]);
    // V8 takes the last of a repeated flag: the user's.
    expect(args.lastIndexOf("--max-semi-space-size=2")).toBeGreaterThan(args.indexOf("--max-semi-space-size=8"));
  });

  it("fixes malloc's mmap threshold unless it is set, and keeps the rest of the environment", () => {
    const env = hostEnv({ PATH: "/bin", HV_WASM: "0" });
    expect(env).toEqual({ PATH: "/bin", HV_WASM: "0", MALLOC_MMAP_THRESHOLD_: "131072" });
    expect(hostEnv({ MALLOC_MMAP_THRESHOLD_: "65536" }).MALLOC_MMAP_THRESHOLD_).toBe("65536");
    // A process started with it does not start itself again.
    expect(wantsRelaunch(env)).toBe(false);
  });
});
