// QMP on a running VM: a ROM guest counts and prints under runVm while a raw socket client (and,
// where python3 exists, a plain Python one: a socket and json, no QMP library) stops it, queries it,
// saves it to a file, lets it go on and quits hv. The saved file must open and be resumable.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { HostControl } from "../../bin/host-control.js";
import { QmpServer } from "../../bin/qmp.js";
import { QmpListener, shutdownCause } from "../../bin/qmp-socket.js";
import { openSavedVm } from "../../bin/snapshot.js";
import { runVm } from "../../bin/vm-runner.js";
import { openSnapshot } from "../../services/snapshot/file.js";
import { loadBios } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, hasNasm, realModeRom } from "./nasm.js";
import { hostHas } from "../support/host-tools.js";

/** Real mode at the reset vector: counts in [0x600] forever and prints a dot every 2^16 counts. */
const ROM = realModeRom(
  `  mov dx, 0x3f8
main:
  inc dword [0x600]
  test word [0x600], 0xffff
  jnz main
  mov al, '.'
  out dx, al
  jmp main`,
  0xe000,
);

const MEMORY = 4 << 20;

type Message = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A raw QMP client: JSON lines over the socket, events kept apart from replies. */
async function rawClient(path: string) {
  const socket = net.createConnection(path);
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const lines: Message[] = [];
  let wake: (() => void) | null = null;
  let buffer = "";
  socket.setEncoding("utf8").on("data", (text: string) => {
    buffer += text;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      lines.push(JSON.parse(buffer.slice(0, nl)) as Message);
      buffer = buffer.slice(nl + 1);
    }
    wake?.();
  });
  const next = async (): Promise<Message> => {
    while (lines.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return lines.shift()!;
  };
  const events: Message[] = [];
  return {
    next,
    events,
    socket,
    async execute(execute: string, args: Message = {}): Promise<Message> {
      const id = `${execute}-${Math.random()}`;
      socket.write(`${JSON.stringify({ execute, arguments: args, id })}\n`);
      for (;;) {
        const m = await next();
        if ("event" in m) events.push(m);
        else {
          expect(m.id).toBe(id);
          return m;
        }
      }
    },
  };
}

function hasPython(): boolean {
  return hostHas("python3");
}

/** A plain Python QMP client, as a script would write one; it sends without newlines, as python's qemu.qmp does. */
const PYTHON_CLIENT = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rw")
greeting = json.loads(f.readline())
events = []
def cmd(name, **args):
    f.write(json.dumps({"execute": name, "arguments": args}))
    f.flush()
    while True:
        m = json.loads(f.readline())
        if "event" in m:
            events.append(m["event"])
        else:
            return m
out = {
    "qemu": greeting["QMP"]["version"]["qemu"],
    "caps": cmd("qmp_capabilities"),
    "before": cmd("query-status")["return"]["status"],
    "stop": cmd("stop"),
    "paused": cmd("query-status")["return"]["status"],
    "cont": cmd("cont"),
    "after": cmd("query-status")["return"]["status"],
    "unknown": cmd("savevm-to-tape")["error"]["class"],
}
out["events"] = events
print(json.dumps(out))
`;

describe.skipIf(!hasNasm())("QMP on a running VM", () => {
  it("stop, query-status, hv-snapshot-save, cont and quit through the socket; the saved file opens", async () => {
    const rom = assemble(ROM);
    const dir = mkdtempSync(join(tmpdir(), "hv-qmp-vm-"));
    const socketPath = join(dir, "vm.qmp");
    const snapshot = join(dir, "saved.hvsnap");
    const con = new MemoryConsole();
    const control = new HostControl();
    let quit = false;
    const plan = loadBios(rom, { memSize: MEMORY });
    const server = new QmpServer({
      control,
      vms: [{ name: "counter", index: 0, saveRequest: (path, compress) => ({ path, name: "counter", memoryBytes: MEMORY, platform: { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true }, roms: plan.roms, drives: [], compress }) }],
      quit: () => void (quit = true),
      now: () => Date.now(),
      cwd: dir,
    });
    const listener = await QmpListener.listen(socketPath, server);
    const run = runVm({
      memoryBytes: MEMORY,
      plan,
      console: con,
      engine: createX86Engine,
      // 1 M instructions a slice (of 10 ms): commands are answered between slices, so short ones answer sooner.
      nsPerInstruction: 10,
      control,
      onStart: (_k, raise) => {
        control.raise = raise.control;
        raise.control();
      },
      stopRequested: () => quit,
    });
    /** Waits (one host-loop turn at a time) until the guest has printed more than `count` dots. */
    const printed = async (count: number) => {
      while (con.serial.length <= count) await new Promise((resolve) => setTimeout(resolve, 5));
    };
    try {
      const qmp = await rawClient(socketPath);
      expect((await qmp.next()).QMP.version.qemu).toEqual({ micro: 0, minor: 0, major: 8 });
      expect((await qmp.execute("qmp_capabilities")).return).toEqual({});
      await printed(2);
      expect((await qmp.execute("query-status")).return).toEqual({ status: "running", running: true, singlestep: false });

      expect((await qmp.execute("stop")).return).toEqual({});
      expect(qmp.events.map((e) => e.event)).toEqual(["STOP"]);
      expect(Object.keys(qmp.events[0].timestamp)).toEqual(["seconds", "microseconds"]);
      expect((await qmp.execute("query-status")).return).toEqual({ status: "paused", running: false, singlestep: false });
      const dotsWhenPaused = con.serial.length;
      expect((await qmp.execute("hv-snapshot-save", { file: "saved.hvsnap" })).return).toEqual({});
      // Paused through several commands (each waits for the kernel's slices): not one more dot.
      for (let i = 0; i < 3; i++) expect((await qmp.execute("query-status")).return.running).toBe(false);
      expect(con.serial.length).toBe(dotsWhenPaused);

      expect((await qmp.execute("cont")).return).toEqual({});
      expect(qmp.events.map((e) => e.event)).toEqual(["STOP", "RESUME"]);
      await printed(dotsWhenPaused + 2);
      expect((await qmp.execute("query-status")).return.status).toBe("running");

      if (hasPython()) {
        const script = join(dir, "client.py");
        writeFileSync(script, PYTHON_CLIENT);
        const { stdout } = await promisify(execFile)("python3", [script, socketPath]);
        expect(JSON.parse(stdout)).toEqual({
          qemu: { micro: 0, minor: 0, major: 8 },
          caps: { return: {} },
          before: "running",
          stop: { return: {} },
          paused: "paused",
          cont: { return: {} },
          after: "running",
          unknown: "CommandNotFound",
          events: ["STOP", "RESUME"],
        });
        // Our client saw the Python client's changes announced too.
        while (qmp.events.length < 4) qmp.events.push(await qmp.next());
        expect(qmp.events.map((e) => e.event)).toEqual(["STOP", "RESUME", "STOP", "RESUME"]);
      } else {
        console.warn("python3 is not installed: the plain Python client was not tried");
      }

      expect((await qmp.execute("quit")).return).toEqual({});
      const result = await run;
      expect(result.stop).toBe("quit");
      control.close("the VM has ended");
      await listener.close(shutdownCause(result.stop));
      expect(await qmp.next()).toMatchObject({ event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" } });

      const reader = openSnapshot(snapshot);
      try {
        expect(reader.header.name).toBe("counter");
        expect(reader.header.memoryBytes).toBe(MEMORY);
        expect(reader.header.vmTimeNs).toBeGreaterThan(0);
        const page = new Uint8Array(4096);
        reader.readPage(0, page);
        // The counter had passed the dots printed by the save.
        expect(new DataView(page.buffer).getUint32(0x600, true)).toBeGreaterThanOrEqual(dotsWhenPaused * 0x10000);
      } finally {
        reader.close();
      }
      const resumable = openSavedVm(snapshot);
      expect(resumable.name).toBe("counter");
      resumable.reader.close();
    } finally {
      quit = true;
      await run;
      control.close("the test is over");
      await listener.close("host-error");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
