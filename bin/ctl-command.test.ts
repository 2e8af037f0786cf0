// `hv ctl` through commander against a QMP server on a real socket (a fake VM behind it): readable
// and JSON output, arguments as key=value or JSON, relative files resolved where ctl runs, and
// errors as `hv: desc` with exit 1.

import fs from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openSnapshot } from "../services/snapshot/file.js";
import { scratchDir } from "../services/snapshot/test-util.js";
import { parseArguments, registerCtlCommand } from "./ctl-command.js";
import { HostControl } from "./host-control.js";
import { QmpServer } from "./qmp.js";
import { QmpListener } from "./qmp-socket.js";
import { FakeVm, testVm } from "./qmp-test-util.js";

let dir: string;
let socketPath: string;
let control: HostControl;
let vm: FakeVm;
let listener: QmpListener;
let quits: number;

beforeEach(async () => {
  dir = scratchDir("hv-ctl-");
  fs.mkdirSync(path.join(dir, "hv-cwd"));
  fs.mkdirSync(path.join(dir, "ctl-cwd"));
  socketPath = path.join(dir, "vm.qmp");
  control = new HostControl();
  vm = new FakeVm(control);
  quits = 0;
  const server = new QmpServer({ control, vms: [testVm("web")], quit: () => void quits++, now: () => Date.now(), cwd: path.join(dir, "hv-cwd") });
  listener = await QmpListener.listen(socketPath, server);
});
afterEach(async () => {
  control.close("test over");
  await listener.close("host-qmp-quit");
  fs.rmSync(dir, { recursive: true, force: true });
});

async function ctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  let code = 0;
  const program = new Command().exitOverride().configureOutput({ writeOut: (t) => (out += t), writeErr: (t) => (err += t) });
  registerCtlCommand(program, { stdout: (t) => (out += t), stderr: (t) => (err += t), setExitCode: (c) => (code = c), cwd: () => path.join(dir, "ctl-cwd") });
  try {
    await program.parseAsync(["node", "hv", "ctl", ...args]);
  } catch (e) {
    code = (e as { exitCode?: number }).exitCode ?? 1;
  }
  return { code, out, err };
}

describe("hv ctl", () => {
  it("stops, queries, continues; prints for people or --json", async () => {
    expect(await ctl(socketPath, "query-status")).toEqual({ code: 0, out: "VM status: running\n", err: "" });
    expect(await ctl(`unix:${socketPath}`, "stop")).toEqual({ code: 0, out: "", err: "" });
    expect(vm.running).toBe(false);
    expect(JSON.parse((await ctl("--json", socketPath, "query-status")).out)).toEqual({ status: "paused", running: false, singlestep: false });
    expect((await ctl(socketPath, "cont")).code).toBe(0);
    expect(vm.running).toBe(true);
    expect((await ctl(socketPath, "query-version")).out).toBe("hv 0.1.0 (QMP of QEMU 8.0.0)\n");
    expect((await ctl(socketPath, "query-commands")).out).toContain("hv-snapshot-save\n");
    expect((await ctl(socketPath, "query-name")).out).toBe("name: web\n");
    expect((await ctl(socketPath, "human-monitor-command", "command-line=info status")).out).toBe("VM status: running\n");
    expect((await ctl(socketPath, "quit")).code).toBe(0);
    expect(quits).toBe(1);
  });

  it("saves where ctl runs (key=value or JSON arguments), and reports refusals as hv: desc with exit 1", async () => {
    const saved = await ctl(socketPath, "hv-snapshot-save", "file=vm.hvsnap", "compress=true");
    expect(saved).toEqual({ code: 0, out: `saved the VM to ${path.join(dir, "ctl-cwd", "vm.hvsnap")}\n`, err: "" });
    openSnapshot(path.join(dir, "ctl-cwd", "vm.hvsnap")).close();
    expect(fs.readdirSync(path.join(dir, "hv-cwd"))).toEqual([]);
    expect((await ctl(socketPath, "hv-snapshot-save", '{"file": "two.hvsnap", "vm": "web"}')).code).toBe(0);
    expect(fs.existsSync(path.join(dir, "ctl-cwd", "two.hvsnap"))).toBe(true);

    expect(await ctl(socketPath, "hv-snapshot-save", "file=no/such/dir/x.hvsnap")).toMatchObject({ code: 1, out: "", err: expect.stringMatching(/^hv: cannot write '.*x\.hvsnap': '.*dir' is not a directory\n$/) });
    expect(await ctl(socketPath, "eject", "device=cd0")).toEqual({ code: 1, out: "", err: "hv: The command eject has not been found\n" });
    expect(await ctl(socketPath, "stop", "when")).toEqual({ code: 1, out: "", err: "hv: 'when' is not key=value (or give one JSON object)\n" });
    expect((await ctl(path.join(dir, "nothing.qmp"), "stop")).err).toMatch(/^hv: cannot talk to '.*nothing\.qmp': ENOENT \(is hv running with --qmp unix:.*\?\)\n$/);
  });

  it("parses arguments: booleans and integers as JSON, the rest as strings", () => {
    expect(parseArguments(["file=a b.hvsnap", "compress=false", "n=-12", "x=1.5", "e="])).toEqual({ file: "a b.hvsnap", compress: false, n: -12, x: "1.5", e: "" });
    expect(parseArguments(['{"file": "123"}'])).toEqual({ file: "123" });
    expect(() => parseArguments(["[1]"])).toThrow("'[1]' is not key=value");
    expect(() => parseArguments(["{bad"])).toThrow(/^the arguments are not JSON/);
  });
});

/** A migration as QMP sees it, scripted: active for `activePolls` looks, then `outcome`. */
class ScriptedMigration {
  status = "none";
  polls = 0;
  readonly parameters = {};
  readonly capabilities = {};
  server: QmpServer | null = null;
  constructor(
    readonly activePolls: number,
    /** failed: query-migrate says so (the source goes on); completed: the source's MIGRATION event, then it ends. */
    readonly outcome: "failed" | "completed",
    readonly end: () => void,
  ) {}
  start(): void {
    this.status = "active";
  }
  cancel(): void {}
  setParameters(): void {}
  setCapabilities(): void {}
  startPostcopy(): void {}
  query(): Record<string, unknown> {
    if (this.status === "none") return {};
    const ram = { transferred: this.polls * 2 ** 20, remaining: 2 ** 20, "dirty-sync-count": this.polls + 1, normal: 0 };
    if (++this.polls <= this.activePolls) return { status: "active", ram };
    if (this.outcome === "failed") return { status: "failed", ram, "error-desc": "the destination did not take the VM: stream refused" };
    // A source hv ends once the VM runs at the destination: the event goes out, then the connection.
    this.server!.emit("MIGRATION", { status: "completed", ram, downtime: 12 });
    setImmediate(this.end);
    return { status: "active", ram };
  }
}

describe("hv ctl migrate", () => {
  async function serve(outcome: "failed" | "completed"): Promise<{ path: string; migration: ScriptedMigration; close: () => Promise<void> }> {
    const sock = path.join(dir, `${outcome}.qmp`);
    let migrating: QmpListener | null = null;
    const migration = new ScriptedMigration(3, outcome, () => void migrating?.close("host-qmp-quit"));
    const server = new QmpServer({ control, vms: [testVm("web")], quit: () => {}, now: () => Date.now(), cwd: dir, migration });
    migration.server = server;
    migrating = await QmpListener.listen(sock, server);
    return { path: sock, migration, close: () => migrating!.close("host-qmp-quit") };
  }

  it("without a terminal: no bar, polls until the source's MIGRATION event says completed, then one line (exit 0)", async () => {
    const s = await serve("completed");
    const r = await ctl(s.path, "migrate", "uri=tcp:127.0.0.1:4444");
    await s.close();
    expect(r).toEqual({ code: 0, out: "migration completed, 3.0 MiB sent in 4 passes, downtime 12 ms; the VM runs at the destination\n", err: "" });
    // It asked until the end came: the 3 active looks and the one the event came with.
    expect(s.migration.polls).toBe(4);
  });

  it("a failed migration: hv: and the reason on stderr, exit 1; --json prints the last MigrationInfo", async () => {
    const s = await serve("failed");
    const r = await ctl(s.path, "migrate", "uri=tcp:127.0.0.1:4444");
    expect(r).toEqual({ code: 1, out: "", err: "hv: the migration failed: the destination did not take the VM: stream refused\n" });
    s.migration.status = "active";
    s.migration.polls = 0;
    const j = await ctl("--json", s.path, "migrate", "uri=tcp:127.0.0.1:4444");
    await s.close();
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ status: "failed", "error-desc": "the destination did not take the VM: stream refused" });
  });
});
