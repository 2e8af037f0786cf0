// The QMP server's protocol against a fake VM behind the real control queue (HostControl): greeting,
// capabilities negotiation, errors as QEMU words them, ids, ordering, events to every client,
// snapshot saves, quit and shutdown; then the Unix socket: mode, several clients, refused and
// stale paths, removal at the end.

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Status } from "../kernel/index.js";
import { openSnapshot } from "../services/snapshot/file.js";
import { scratchDir } from "../services/snapshot/test-util.js";
import { OutgoingMigration } from "./migrate.js";
import { HostControl } from "./host-control.js";
import { QmpServer, type QmpPeer, type QmpSession } from "./qmp.js";
import { QmpListener, parseQmpAddress } from "./qmp-socket.js";
import { FakeVm, testVm } from "./qmp-test-util.js";

type Message = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A client as the server sees it: every line it was sent, read in order. */
class MemoryPeer implements QmpPeer {
  readonly received: Message[] = [];
  private read = 0;
  private wake: (() => void) | null = null;
  paused = false;
  ended = false;
  session!: QmpSession;

  send(line: string): void {
    expect(line.endsWith("\n")).toBe(true);
    this.received.push(JSON.parse(line) as Message);
    this.wake?.();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.ended = true;
  }

  async next(): Promise<Message> {
    while (this.read >= this.received.length) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.received[this.read++];
  }

  /** Send one command and read until its reply, returning the events that came before it too. */
  async execute(execute: string, args?: Message, id: unknown = execute): Promise<{ reply: Message; events: Message[] }> {
    this.session.feed(JSON.stringify({ execute, ...(args ? { arguments: args } : {}), id }) + "\n");
    const events: Message[] = [];
    for (;;) {
      const m = await this.next();
      if ("event" in m) events.push(m);
      else return { reply: m, events };
    }
  }
}

let dir: string;
let control: HostControl;
let vm: FakeVm;
let server: QmpServer;
let quits: number;

beforeEach(() => {
  dir = scratchDir("hv-qmp-");
  control = new HostControl();
  vm = new FakeVm(control);
  quits = 0;
  server = new QmpServer({
    control,
    vms: [testVm("guest")],
    quit: () => ++quits, // what the host returns is not the reply
    now: () => 1_700_000_000_123.456,
    cwd: dir,
  });
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function connect(): MemoryPeer {
  const peer = new MemoryPeer();
  peer.session = server.connect(peer);
  return peer;
}

async function negotiated(): Promise<MemoryPeer> {
  const peer = connect();
  await peer.next();
  expect((await peer.execute("qmp_capabilities")).reply).toEqual({ return: {}, id: "qmp_capabilities" });
  return peer;
}

describe("x-component-kill", () => {
  it("kills an isolated component the host has, and refuses a name it has not (or a server without any)", async () => {
    let peer = await negotiated();
    expect((await peer.execute("x-component-kill", { component: "block" })).reply).toEqual({
      error: { class: "GenericError", desc: "no isolated component 'block' (hv run --isolate runs 'block' in a worker)" },
      id: "x-component-kill",
    });
    const killed: string[] = [];
    server = new QmpServer({ control, vms: [testVm("guest")], quit: () => ++quits, now: () => 0, cwd: dir, components: { kill: (name) => name === "block" && killed.push(name) > 0 } });
    peer = await negotiated();
    expect((await peer.execute("x-component-kill", { component: "block" })).reply).toEqual({ return: {}, id: "x-component-kill" });
    expect((await peer.execute("x-component-kill", { component: "vmm" })).reply).toMatchObject({ error: { class: "GenericError" } });
    expect((await peer.execute("x-component-kill", {})).reply).toMatchObject({ error: { class: "GenericError" } });
    expect(killed).toEqual(["block"]);
  });
});

describe("QMP protocol", () => {
  it("greets, accepts only qmp_capabilities before negotiation, and refuses it after", async () => {
    const peer = connect();
    expect(await peer.next()).toEqual({ QMP: { version: { qemu: { micro: 0, minor: 0, major: 8 }, package: "hv 0.1.0" }, capabilities: [] } });
    const notYet = { error: { class: "CommandNotFound", desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } };
    expect((await peer.execute("query-status")).reply).toEqual({ ...notYet, id: "query-status" });
    expect((await peer.execute("no-such-command")).reply).toEqual({ ...notYet, id: "no-such-command" });
    expect((await peer.execute("qmp_capabilities", { enable: ["oob"] })).reply).toEqual({ error: { class: "GenericError", desc: "Capability 'oob' not available" }, id: "qmp_capabilities" });
    expect((await peer.execute("qmp_capabilities", { enable: [] })).reply).toEqual({ return: {}, id: "qmp_capabilities" });
    expect((await peer.execute("qmp_capabilities")).reply).toEqual({
      error: { class: "CommandNotFound", desc: "Capabilities negotiation is already complete, command ignored" },
      id: "qmp_capabilities",
    });
    expect(vm.seen).toEqual([]);
  });

  it("answers malformed input with GenericError and keeps the connection; echoes any id", async () => {
    const peer = await negotiated();
    peer.session.feed('{"execute": "query-status",,}\n');
    expect(await peer.next()).toMatchObject({ error: { class: "GenericError", desc: expect.stringMatching(/^JSON parse error, /) } });
    peer.session.feed("nonsense\n");
    expect((await peer.next()).error.class).toBe("GenericError");
    for (const [input, desc] of [
      ["[1, 2]", "QMP input must be a JSON object"],
      ['{"arguments": {}}', "QMP input lacks member 'execute'"],
      ['{"execute": 7}', "QMP input member 'execute' must be a string"],
      ['{"execute": "stop", "arguments": []}', "QMP input member 'arguments' must be an object"],
      ['{"execute": "stop", "exec-oob": "stop"}', "QMP input member 'exec-oob' is unexpected"],
    ]) {
      peer.session.feed(input);
      expect(await peer.next()).toEqual({ error: { class: "GenericError", desc } });
    }
    for (const id of [7, "x", { nested: [1, "a"] }, null]) expect((await peer.execute("query-version", undefined, id)).reply).toEqual({ return: { qemu: { micro: 0, minor: 0, major: 8 }, package: "hv 0.1.0" }, id });
    expect((await peer.execute("frobnicate", undefined, 1)).reply).toEqual({ error: { class: "CommandNotFound", desc: "The command frobnicate has not been found" }, id: 1 });
    expect((await peer.execute("stop", { now: true })).reply.error).toEqual({ class: "GenericError", desc: "Parameter 'now' is unexpected" });
    expect((await peer.execute("hv-snapshot-save", {})).reply.error).toEqual({ class: "GenericError", desc: "Parameter 'file' is missing" });
    expect((await peer.execute("hv-snapshot-save", { file: "a", compress: "yes" })).reply.error).toEqual({ class: "GenericError", desc: "Invalid parameter type for 'compress', expected: boolean" });
    expect((await peer.execute("query-status", { vm: "other" })).reply.error).toEqual({ class: "GenericError", desc: "No VM named 'other' (this hv runs guest)" });
    // Refused calls reached no VM.
    expect(vm.seen).toEqual([]);
    expect((await peer.execute("query-status", { vm: "guest" })).reply.return).toEqual({ status: "running", running: true, singlestep: false });
  });

  it("reads messages split anywhere, without newlines, several in one piece; answers in the order sent", async () => {
    const peer = connect();
    await peer.next();
    const text = '{"execute":"qmp_capabilities","id":1}{"execute":"stop","id":2} {"execute":"query-version","id":3}\n{"execute":"query-status","id":"{\\"}"}';
    for (let i = 0; i < text.length; i += 7) peer.session.feed(text.slice(i, i + 7));
    const replies = [await peer.next(), await peer.next(), await peer.next(), await peer.next(), await peer.next()];
    // STOP (an event) comes before stop's reply; query-version, which needs no VM, waits its turn.
    expect(replies.map((r) => r.id ?? r.event)).toEqual([1, "STOP", 2, 3, '{"}']);
    expect(replies[4].return.status).toBe("paused");
  });

  it("stop and cont reach the VM, announce STOP and RESUME to every negotiated client, only on a change", async () => {
    const a = await negotiated();
    const b = await negotiated();
    const c = connect(); // still negotiating: no events
    await c.next();
    const stop = await a.execute("stop");
    expect(stop.reply).toEqual({ return: {}, id: "stop" });
    expect(stop.events).toEqual([{ timestamp: { seconds: 1_700_000_000, microseconds: 123_456 }, event: "STOP" }]);
    expect(await b.next()).toEqual(stop.events[0]);
    expect((await b.execute("query-status")).reply.return).toEqual({ status: "paused", running: false, singlestep: false });
    expect((await b.execute("stop")).events).toEqual([]); // already paused: no STOP
    const cont = await b.execute("cont");
    expect(cont.events.map((e) => e.event)).toEqual(["RESUME"]);
    expect((await a.next()).event).toBe("RESUME");
    expect((await a.execute("cont")).events).toEqual([]);
    expect((await a.execute("query-status")).reply.return.running).toBe(true);
    expect(c.received).toHaveLength(1);
    expect(vm.seen).toEqual(["query", "pause", "query", "query", "pause", "query", "resume", "query", "resume", "query"]);
  });

  it("hv-snapshot-save writes the file before it answers; refuses what it cannot write before touching the VM", async () => {
    const peer = await negotiated();
    expect((await peer.execute("hv-snapshot-save", { file: "one.hvsnap" })).reply).toEqual({ return: {}, id: "hv-snapshot-save" });
    const reader = openSnapshot(path.join(dir, "one.hvsnap"));
    try {
      expect(reader.header.name).toBe("guest");
      expect(reader.header.vmTimeNs).toBe(1_000_000);
      const page = new Uint8Array(4096);
      reader.readPage(1, page);
      expect(page.every((b) => b === 0x5a)).toBe(true);
    } finally {
      reader.close();
    }
    expect(fs.statSync(path.join(dir, "one.hvsnap")).mode & 0o777).toBe(0o600);
    expect((await peer.execute("hv-snapshot-save", { file: path.join(dir, "two.hvsnap"), compress: true })).reply.return).toEqual({});
    expect(openSnapshot(path.join(dir, "two.hvsnap")).sections.find((s) => s.name === "ram")).toBeDefined();

    const seen = vm.seen.length;
    fs.mkdirSync(path.join(dir, "adir"));
    expect((await peer.execute("hv-snapshot-save", { file: "adir" })).reply.error).toEqual({ class: "GenericError", desc: `'${path.join(dir, "adir")}' exists and is not a regular file` });
    expect((await peer.execute("hv-snapshot-save", { file: "no/such/dir.hvsnap" })).reply.error.desc).toMatch(/^cannot write '.*dir\.hvsnap': '.*no\/such' is not a directory$/);
    expect((await peer.execute("hv-snapshot-save", { file: "" })).reply.error.desc).toBe("Parameter 'file' is empty");
    expect(vm.seen.length).toBe(seen);

    vm.refuse = Status.BAD_FEATURE;
    expect((await peer.execute("hv-snapshot-save", { file: "three.hvsnap" })).reply.error).toEqual({ class: "GenericError", desc: "the VM could not be saved (BAD_FEATURE)" });
    expect((await peer.execute("stop")).reply.error.desc).toBe("the VM could not be queried (BAD_FEATURE)");
    expect(fs.existsSync(path.join(dir, "three.hvsnap"))).toBe(false);
  });

  it("human-monitor-command: info status, stop, cont, savevm, unknown commands", async () => {
    const peer = await negotiated();
    const hmp = async (line: string) => (await peer.execute("human-monitor-command", { "command-line": line })).reply.return;
    expect(await hmp("info status")).toBe("VM status: running\r\n");
    expect(await hmp("stop")).toBe("");
    expect(await hmp("info status")).toBe("VM status: paused\r\n");
    expect(await hmp("c")).toBe("");
    expect(await hmp("savevm before-upgrade")).toBe("");
    expect(fs.existsSync(path.join(dir, "before-upgrade.hvsnap"))).toBe(true);
    expect(await hmp("loadvm x")).toBe("unknown command: 'loadvm x'\r\n");
    expect(await hmp("quit")).toBe("");
    expect(quits).toBe(1);
  });

  it("quit asks hv to end; at the end pending commands fail, SHUTDOWN goes out and connections end", async () => {
    const a = await negotiated();
    const b = connect();
    await b.next();
    expect((await a.execute("quit")).reply).toEqual({ return: {}, id: "quit" });
    expect(quits).toBe(1);
    // A command the VM never answers: hv ends first.
    vm.held = true;
    a.session.feed('{"execute": "stop", "id": "late"}');
    await new Promise((resolve) => setImmediate(resolve));
    control.close("the VM has ended");
    await server.close("host-qmp-quit");
    expect(a.received.slice(-2)).toEqual([
      { error: { class: "GenericError", desc: "the VM has ended" }, id: "late" },
      { timestamp: { seconds: 1_700_000_000, microseconds: 123_456 }, event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" } },
    ]);
    expect(a.ended && b.ended).toBe(true);
    expect(b.received).toHaveLength(1);
  });

  it("migration settings: QEMU's parameters and the auto-converge capability, checked by type and range; refused without a migration", async () => {
    const peer = await negotiated();
    expect((await peer.execute("migrate-set-capabilities", { capabilities: [] })).reply.error).toEqual({ class: "GenericError", desc: "this hv cannot migrate its VMs" });
    const migration = new OutgoingMigration(control, () => ({}) as never, () => ({}) as never, () => {});
    server = new QmpServer({ control, vms: [testVm("guest")], quit: () => ++quits, now: () => 0, cwd: dir, migration });
    const p = await negotiated();
    expect((await p.execute("query-migrate-capabilities")).reply.return).toEqual([{ capability: "auto-converge", state: false }, { capability: "postcopy-ram", state: false }]);
    expect((await p.execute("migrate-set-capabilities", { capabilities: [{ capability: "auto-converge", state: true }] })).reply.return).toEqual({});
    expect((await p.execute("query-migrate-capabilities")).reply.return).toEqual([{ capability: "auto-converge", state: true }, { capability: "postcopy-ram", state: false }]);
    expect((await p.execute("migrate-set-capabilities", { capabilities: [{ capability: "auto-converge", state: "on" }] })).reply.error).toEqual({
      class: "GenericError",
      desc: "Invalid parameter type for 'capabilities', expected: array of {capability: string, state: boolean}",
    });
    expect((await p.execute("migrate-set-capabilities", { capabilities: [{ capability: "xbzrle", state: true }] })).reply.error.desc).toMatch(/Capability 'xbzrle' is not one hv has/);
    // migrate-start-postcopy: QEMU's errors, before postcopy-ram is on and with no migration to switch.
    expect((await p.execute("migrate-start-postcopy")).reply.error).toEqual({ class: "GenericError", desc: "Enable postcopy with migrate-set-capabilities (postcopy-ram) before the start of migration" });
    expect((await p.execute("migrate-set-capabilities", { capabilities: [{ capability: "postcopy-ram", state: true }] })).reply.return).toEqual({});
    expect((await p.execute("migrate-start-postcopy")).reply.error.desc).toMatch(/no migration to switch to post-copy/);
    expect((await p.execute("migrate-set-capabilities", { capabilities: [{ capability: "postcopy-ram", state: false }] })).reply.return).toEqual({});
    expect((await p.execute("migrate-set-parameters", { "cpu-throttle-initial": 30, "max-cpu-throttle": 90 })).reply.return).toEqual({});
    expect((await p.execute("migrate-set-parameters", { "cpu-throttle-increment": 100 })).reply.error.desc).toMatch(/Parameter 'cpu-throttle-increment' expects a whole number from 1 to 99/);
    expect((await p.execute("query-migrate-parameters")).reply.return).toMatchObject({ "cpu-throttle-initial": 30, "max-cpu-throttle": 90, "cpu-throttle-increment": 10, "throttle-trigger-threshold": 50 });
    // Block migration: blk (whole disks) is not hv's; inc of a VM without a writable drive is refused before anything starts.
    expect((await p.execute("migrate", { uri: "tcp:127.0.0.1:9", blk: true })).reply.error.desc).toMatch(/blk: hv does not copy whole disks; .* use inc/);
    expect((await p.execute("migrate", { uri: "tcp:127.0.0.1:9", inc: "yes" })).reply.error.desc).toMatch(/inc/);
    expect(migration.status).toBe("none");
  });

  it("pauses a client that sends faster than its commands finish, and resumes it", async () => {
    const peer = await negotiated();
    vm.held = true;
    peer.session.feed('{"execute": "query-status"}'.repeat(12));
    expect(peer.paused).toBe(true);
    vm.release();
    for (let i = 0; i < 12; i++) expect((await peer.next()).return.status).toBe("running");
    expect(peer.paused).toBe(false);
  });
});

describe("QMP socket", () => {
  /** A raw client: one JSON line at a time. */
  async function open(socketPath: string): Promise<{ next: () => Promise<Message>; send: (m: Message) => void; socket: net.Socket }> {
    const socket = net.createConnection(socketPath);
    await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const lines: string[] = [];
    let wake: (() => void) | null = null;
    let buffer = "";
    socket.setEncoding("utf8").on("data", (t: string) => {
      buffer += t;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        lines.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
      wake?.();
    });
    return {
      socket,
      send: (m) => socket.write(`${JSON.stringify(m)}\n`),
      next: async () => {
        while (lines.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        return JSON.parse(lines.shift()!) as Message;
      },
    };
  }

  it("listens with mode 0600, serves several clients, refuses what is not a stale socket, and removes its socket", async () => {
    const socketPath = path.join(dir, "vm.qmp");
    const listener = await QmpListener.listen(socketPath, server);
    expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
    expect(fs.lstatSync(socketPath).mode & 0o777).toBe(0o600);
    await expect(QmpListener.listen(socketPath, server)).rejects.toThrow(/is in use/);

    const a = await open(socketPath);
    const b = await open(socketPath);
    for (const c of [a, b]) {
      expect((await c.next()).QMP).toBeDefined();
      c.send({ execute: "qmp_capabilities" });
      expect(await c.next()).toEqual({ return: {} });
    }
    a.send({ execute: "stop", id: 1 });
    expect((await a.next()).event).toBe("STOP");
    expect(await a.next()).toEqual({ return: {}, id: 1 });
    expect((await b.next()).event).toBe("STOP");
    b.send({ execute: "query-status", id: 2 });
    expect(await b.next()).toEqual({ return: { status: "paused", running: false, singlestep: false }, id: 2 });

    const bClosed = new Promise((resolve) => b.socket.once("end", resolve));
    control.close("the VM has ended");
    await listener.close("guest-shutdown");
    expect(await b.next()).toMatchObject({ event: "SHUTDOWN", data: { guest: true, reason: "guest-shutdown" } });
    await bClosed;
    expect(fs.existsSync(socketPath)).toBe(false);
  });

  it("never replaces a regular file; replaces a stale socket", async () => {
    const file = path.join(dir, "important.txt");
    fs.writeFileSync(file, "keep me");
    await expect(QmpListener.listen(file, server)).rejects.toThrow(`'${file}' exists and is not a socket; hv does not replace it`);
    expect(fs.readFileSync(file, "utf8")).toBe("keep me");

    // A socket nobody listens on any more (its process died without removing it).
    const stale = path.join(dir, "stale.qmp");
    const old = net.createServer().listen(stale);
    await new Promise((resolve) => old.once("listening", resolve));
    fs.linkSync(stale, `${stale}.keep`);
    await new Promise((resolve) => old.close(resolve));
    fs.renameSync(`${stale}.keep`, stale); // the socket file outlives its listener, as after a crash
    expect(fs.lstatSync(stale).isSocket()).toBe(true);
    const listener = await QmpListener.listen(stale, server);
    const c = await open(stale);
    expect((await c.next()).QMP).toBeDefined();
    control.close("done");
    await listener.close("host-qmp-quit");
    expect(fs.existsSync(stale)).toBe(false);
  });

  it("parses --qmp addresses as QEMU writes them", () => {
    expect(parseQmpAddress("unix:/tmp/vm.qmp")).toBe("/tmp/vm.qmp");
    expect(parseQmpAddress("unix:/tmp/vm.qmp,server=on,wait=off")).toBe("/tmp/vm.qmp");
    expect(parseQmpAddress("unix:vm.qmp,server,nowait")).toBe("vm.qmp");
    expect(() => parseQmpAddress("tcp:localhost:4444")).toThrow("--qmp takes unix:PATH, not 'tcp:localhost:4444'");
    expect(() => parseQmpAddress("unix:")).toThrow("needs a path");
    expect(() => parseQmpAddress("unix:/x,wait=on")).toThrow("'wait=on' is not supported");
  });
});
