// The reference guest: Debian's i686 kernel and a busybox initramfs boot on the whole stack to a
// shell on the serial line; commands typed there run (reading and writing a virtio disk, x87
// arithmetic in awk), and `poweroff` ends the VM with status 0. It boots once: at its prompt it is
// saved to a snapshot file, and the other tests resume that snapshot instead of booting again.
// The guest is fetched from Debian's archive on first use (cached), so this needs apt-get.
import { copyRam } from "../support/ram.js";
import { decode } from "@msgpack/msgpack";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { VmEnd } from "../../services/root-protocol.js";
import { exitVerdict, runFleet, runVm } from "../../bin/vm-runner.js";
import { openImage } from "../../drivers/block/open.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { loadKernel } from "../../vmm/boot/index.js";
import type { Kernel } from "../../kernel/index.js";
import type { BalloonInfo, ControlCommand, ControlHost, ControlResult } from "../../services/vm-control.js";
import type { VmState } from "../../vmm/protocol.js";
import { openSavedVm, saveSnapshot } from "../../bin/snapshot.js";
import { canFetchGuest } from "../support/guest.js";
import { hostHas } from "../support/host-tools.js";
import { spawnSync } from "node:child_process";

const canFetch = canFetchGuest("test/vm/linux");

/** A script of (wait for this text, then type that) steps over the serial console. */
class Conversation {
  private step = 0;
  readonly reached: string[] = [];
  constructor(
    private readonly con: MemoryConsole,
    private readonly steps: ReadonlyArray<{ expect: RegExp; type: string }>,
    private readonly raise: () => void,
  ) {}

  /** While held, nothing is typed. */
  held = false;

  start(): void {
    this.held = false;
    this.poll();
  }

  /** Called on output: when the next awaited text appeared after the last step's mark, type. */
  poll(): void {
    while (!this.held && this.step < this.steps.length) {
      const s = this.steps[this.step];
      const text = this.con.text;
      const from = this.marks[this.step] ?? 0;
      if (!s.expect.test(text.slice(from))) return;
      this.reached.push(s.expect.source);
      this.marks[this.step + 1] = text.length;
      this.con.type(s.type);
      this.raise();
      this.step++;
    }
  }

  private readonly marks: number[] = [0];
}

/** The control of a test: commands queued, results handed to a callback. */
class TestControl implements ControlHost {
  readonly queue: ControlCommand[] = [];
  constructor(private readonly onDone: (command: ControlCommand, result: ControlResult) => void) {}
  take(): ControlCommand | null {
    return this.queue.shift() ?? null;
  }
  done(command: ControlCommand, result: ControlResult): void {
    this.onDone(command, result);
  }
}

/** How long the saved guest idles at its prompt before it is saved a second time (VM ns). */
const IDLE_NS = 300e6;

describe.skipIf(!canFetch)("the reference Linux guest", () => {
  const dir = mkdtempSync(join(tmpdir(), "hv-linux-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** The snapshot taken at the prompt, and the whole state IDLE_NS later. */
  let saved: { file: string; later: { at: number; state: unknown; ram: Uint8Array } | null } | null = null;

  it("boots to a busybox shell, is saved at its prompt, runs commands typed on the serial line, uses a disk, and powers off", async () => {
    const guest = await ensureDefaultGuest({ quiet: true });
    const disk = join(dir, "disk.raw");
    const image = new Uint8Array(1 << 20);
    image.set(new TextEncoder().encode("hv-disk-signature-0123\n"));
    writeFileSync(disk, image);
    const con = new MemoryConsole();
    let conversation: Conversation | null = null;
    let raiseControl = () => {};
    let laterAt = 0;
    const file = join(dir, "prompt.hvsnap");
    const kernelImage = new Uint8Array(readFileSync(guest.kernel));
    const initrd = new Uint8Array(readFileSync(guest.initrd));
    const plan = loadKernel(kernelImage, { memSize: 128 << 20, cmdline: guest.append, initrd });
    // At the prompt: save (with a copy of the disk as it is then), save again IDLE_NS later, then talk.
    const control = new TestControl((command, result) => {
      if (command.op !== "save" || !("state" in result)) throw new Error(`control: ${command.op} failed with ${result.status}`);
      if (command.atVmTimeNs === undefined) {
        const diskThen = join(dir, "disk-at-prompt.raw");
        copyFileSync(disk, diskThen);
        const platform = { apic: false, acpi: true, debugcon: false, debugExitPort: -1, pv: true };
        saveSnapshot({ path: file, name: "linux", memoryBytes: 128 << 20, platform, roms: plan.roms, drives: [{ path: diskThen, format: "raw" }] }, result.state, result.ram);
        saved = { file, later: null };
        control.queue.push({ vm: 0, op: "save", atVmTimeNs: (decode(result.state) as VmState).vmTimeNs + IDLE_NS });
        laterAt = (decode(result.state) as VmState).vmTimeNs + IDLE_NS;
        raiseControl();
      } else {
        saved!.later = { at: laterAt, state: decode(result.state), ram: copyRam(result.ram) };
        conversation!.start();
      }
    });
    {
      const result = await runVm({
        memoryBytes: 128 << 20,
        plan,
        console: con,
        engine: createX86Engine,
        drives: [{ path: disk, format: "raw" }],
        maxVirtualNs: 120e9,
        control,
        onStart: (_k, { input: raise, control: raiseCtl }) => {
          raiseControl = raiseCtl;
          conversation = new Conversation(
            con,
            [
              {
                expect: /hv-init: ready[\s\S]*# /,
                type:
                  "echo hi; uname -a; cat /proc/cpuinfo; dmesg | grep -E 'Hypervisor detected|kvm-clock' | head -3; " +
                  "echo clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); echo epoch=$(date +%s); echo done-$((6*7))\n",
              },
              {
                expect: /done-42/,
                type:
                  "echo sectors=$(cat /sys/block/vda/size); head -c 22 /dev/vda; echo; echo hv-wrote-$((2+3)) > /dev/vda; sync; " +
                  "awk 'BEGIN { x = 1; s = 1; for (i = 1; i < 15; i++) { x /= i; s += x }; printf \"q=%.6f e=%.9f\\n\", 355 / 113, s }'; " +
                  "echo done-$((7*8))\n",
              },
              { expect: /done-56/, type: "poweroff\n" },
            ],
            raise,
          );
          conversation.held = true; // until the VM was saved twice
          let asked = false;
          con.onOutput = () => {
            if (!asked && /hv-init: ready[\s\S]*# /.test(con.text)) {
              asked = true;
              control.queue.push({ vm: 0, op: "save" });
              raiseCtl();
            }
            conversation!.poll();
          };
        },
      });
      const text = con.text;
      if (result.why !== VmEnd.HALTED) console.error(text.slice(-3000));
      expect(result.stop).toBe("ended");
      expect(result.why).toBe(VmEnd.HALTED);
      expect(result.status).toBe(0);
      expect(text).toMatch(/^hi\r?$/m);
      expect(text).toMatch(/Linux \S+ 6\.1\.0-\d+-686 #1 SMP .* i686 GNU\/Linux/);
      expect(text).toMatch(/vendor_id\s*: GenuineIntel/);
      expect(text).toMatch(/cpu family\s*: 6/);
      expect(text).toMatch(/fpu\s*: yes/);
      expect(text).toMatch(/flags\s*:.*\bcmov\b/);
      // KVM's paravirtual interface: detected, and kvm-clock is the clocksource (no TSC or PIT calibration).
      expect(text).toMatch(/flags\s*:.*\bhypervisor\b/);
      expect(text).toMatch(/Hypervisor detected: KVM/);
      expect(text).toMatch(/kvm-clock: Using msrs 4b564d01 and 4b564d00/);
      expect(text).toMatch(/^clocksource=kvm-clock\r?$/m);
      // Its wall clock: hv's RTC starts at 1,700,000,000 (Unix seconds) and the guest ran seconds.
      const epoch = Number(/^epoch=(\d+)\r?$/m.exec(text)?.[1]);
      expect(epoch).toBeGreaterThanOrEqual(1_700_000_000);
      expect(epoch).toBeLessThan(1_700_000_000 + 120);
      // The disk: its size, what the host put there, and what the guest wrote back.
      expect(text).toMatch(/^sectors=2048\r?$/m);
      expect(text).toMatch(/^hv-disk-signature-0123\r?$/m);
      expect(new TextDecoder().decode(readFileSync(disk).subarray(0, 11))).toBe("hv-wrote-5\n");
      // Userland floating point on the x87 (busybox awk computes in doubles; its libm is not built in).
      expect(text).toMatch(/^q=3\.141593 e=2\.718281828\r?$/m);
      expect(text).toMatch(/reboot: (System halted|Power down)/);
    }
  }, 60 * 60 * 1000);

  /**
   * Resume the snapshot taken at the prompt, with `commands` queued for the control first. The run
   * ends when the VM does, or when `onDone` says it has seen enough.
   */
  async function resumeSaved(commands: ControlCommand[], onDone: (command: ControlCommand, result: ControlResult) => boolean, type?: string) {
    expect(saved).not.toBeNull();
    const vm = openSavedVm(saved!.file);
    const con = new MemoryConsole();
    let enough = false;
    const control = new TestControl((command, result) => void (enough = onDone(command, result)));
    control.queue.push(...commands);
    try {
      const result = await runVm({
        memoryBytes: vm.memoryBytes,
        resume: { plan: vm.plan, state: vm.state, ram: vm.reader },
        drives: vm.drives,
        console: con,
        engine: createX86Engine,
        maxVirtualNs: 60e9,
        control,
        stopRequested: () => enough,
        onStart: (_k, raise) => {
          raise.control();
          if (type) {
            con.type(type);
            raise.input();
          }
        },
      });
      return { result, con };
    } finally {
      vm.reader.close();
    }
  }

  it("resumed from its snapshot, runs on exactly as the saved guest did: the whole state later is the same", async () => {
    expect(saved?.later).toBeTruthy();
    const expected = saved!.later!;
    let later: { state: unknown; ram: Uint8Array } | null = null;
    const { result } = await resumeSaved([{ vm: 0, op: "resume" }, { vm: 0, op: "save", atVmTimeNs: expected.at }], (command, r) => {
      if (command.op !== "save") return false;
      if ("state" in r) later = { state: decode(r.state), ram: copyRam(r.ram) };
      return true;
    });
    expect(result.stop).toBe("quit");
    expect(later).not.toBeNull();
    expect(later!.state).toEqual(expected.state);
    expect(Buffer.compare(later!.ram, expected.ram)).toBe(0);
  }, 60 * 60 * 1000);

  it("linked clones of the snapshot run side by side: each writes its own overlay; the template's disk and file stay as they were", async () => {
    expect(saved).not.toBeNull();
    const fileBefore = readFileSync(saved!.file);
    const clones = ["c1", "c2"].map((name) => openSavedVm(saved!.file, { clone: { dir, name } }));
    const base = clones[0].drives.length === 1 ? join(dir, "disk-at-prompt.raw") : "";
    const baseBefore = readFileSync(base);
    const consoles = clones.map(() => new MemoryConsole());
    const control = new TestControl(() => undefined);
    control.queue.push({ vm: 0, op: "resume" }, { vm: 1, op: "resume" });
    try {
      const result = await runFleet(
        clones.map((c, i) => ({ name: c.name, memoryBytes: c.memoryBytes, plan: c.plan, console: consoles[i], drives: c.drives, resume: { state: c.state, ram: c.reader, share: c.clone } })),
        {
          engine: createX86Engine,
          control,
          maxVirtualNs: 60e9,
          scanRate: 0, // what they share, they share by reading the template (MemoryOp.SHARE), not by the scanner
          onStart: (_k, raise) => {
            raise.control();
            clones.forEach((c, i) => {
              consoles[i].type(`echo ${c.name}-wrote-$((2+${i})) > /dev/vda; sync; head -c 12 /dev/vda; echo; poweroff\n`);
              raise.input(i);
            });
          },
        },
      );
      expect(result.vms.map((v) => v.why)).toEqual([VmEnd.HALTED, VmEnd.HALTED]);
      // The template's pages they read are shared between them (and copied where one wrote).
      expect(result.scanner.sharedFrames).toBeGreaterThan(100);
      expect(result.scanner.merged).toBeGreaterThan(100);
    } finally {
      for (const c of clones) c.reader.close();
    }
    expect(consoles[0].text).toMatch(/^c1-wrote-2\r?$/m);
    expect(consoles[1].text).toMatch(/^c2-wrote-3\r?$/m);
    const first = (path: string) => {
      const image = openImage(path);
      try {
        const sector = new Uint8Array(12);
        image.read(0, sector);
        return new TextDecoder().decode(sector);
      } finally {
        image.close();
      }
    };
    expect(first(join(dir, "c1-vda.qcow2"))).toBe("c1-wrote-2\nn");
    expect(first(join(dir, "c2-vda.qcow2"))).toBe("c2-wrote-3\nn");
    expect(Buffer.compare(readFileSync(base), baseBefore)).toBe(0);
    expect(Buffer.compare(readFileSync(saved!.file), fileBefore)).toBe(0);
  }, 60 * 60 * 1000);

  it("the block driver in a worker (--isolate), killed in the middle of a write loop on /dev/vda: restarted, the guest's data and the image intact", async () => {
    expect(saved).not.toBeNull();
    // A linked clone: its writes go to a qcow2 overlay, whose metadata a crash could hurt.
    const vm = openSavedVm(saved!.file, { clone: { dir, name: "iso" } });
    const con = new MemoryConsole();
    const control = new TestControl(() => undefined);
    control.queue.push({ vm: 0, op: "resume" });
    const BLOCKS = 48;
    let killed = -1;
    let kill = (): boolean => false;
    try {
      const result = await runVm({
        memoryBytes: vm.memoryBytes,
        resume: { plan: vm.plan, state: vm.state, ram: vm.reader },
        drives: vm.drives,
        console: con,
        engine: createX86Engine,
        maxVirtualNs: 120e9,
        control,
        // The watchdog is generous: a restart must come from the kill, not from a slow machine.
        isolate: { watchdogMs: 120_000 },
        stopRequested: () => con.text.includes("done-42"),
        onStart: (_k, raise, components) => {
          kill = () => components.kill("block");
          raise.control();
          con.type(
            `i=0; while [ $i -lt ${BLOCKS} ]; do i=$((i+1)); printf 'hv-block-%04d' $i | dd of=/dev/vda bs=512 seek=$((i*8)) conv=notrunc 2>/dev/null; sync; echo w$i; done; ` +
              "echo 3 > /proc/sys/vm/drop_caches; for i in 1 24 25 48; do dd if=/dev/vda bs=512 skip=$((i*8)) count=1 2>/dev/null | head -c 13; echo; done; echo done-$((40+2))\n",
          );
          raise.input();
        },
        onSlice: () => {
          // Halfway through the loop, between two of the driver's requests (the host loop runs between slices).
          if (killed < 0 && /\bw24\b/.test(con.text)) {
            expect(kill()).toBe(true);
            killed = con.text.length;
          }
        },
      });
      expect(result.ended).toBe(false);
    } finally {
      vm.reader.close();
    }
    expect(killed).toBeGreaterThan(0);
    // Writes after the kill were served (by the new worker), and the guest reads back what it wrote.
    expect(con.text.slice(killed)).toMatch(/\bw48\b/);
    for (const i of [1, 24, 25, 48]) expect(con.text).toMatch(new RegExp(`^hv-block-${String(i).padStart(4, "0")}\\r?$`, "m"));
    const overlay = join(dir, "iso-vda.qcow2");
    const image = openImage(overlay);
    try {
      for (let i = 1; i <= BLOCKS; i++) {
        const sector = new Uint8Array(13);
        image.read(i * 8 * 512, sector);
        expect(new TextDecoder().decode(sector)).toBe(`hv-block-${String(i).padStart(4, "0")}`);
      }
    } finally {
      image.close();
    }
    if (hostHas("qemu-img")) {
      const check = spawnSync("qemu-img", ["check", overlay], { encoding: "utf8" });
      expect(check.status, check.stdout + check.stderr).toBe(0);
    }
  }, 60 * 60 * 1000);

  it("a balloon target takes memory from the guest: the balloon fills, frames go back to the host, and the guest goes on", async () => {
    expect(saved).not.toBeNull();
    const vm = openSavedVm(saved!.file);
    const con = new MemoryConsole();
    let balloon: BalloonInfo | null = null;
    const held: number[] = [];
    // The kernel's frame storage at each query: it follows what the VM holds.
    const storage: number[] = [];
    const ballooned: number[] = [];
    let kernel: Kernel | null = null;
    let asked = false;
    let phase: "fill" | "balloon" | "check" | "done" = "fill";
    let raise = () => {};
    let raiseInput = () => {};
    const control = new TestControl((_command, result) => {
      if ("balloon" in result) balloon = result.balloon;
      if ("memory" in result && result.memory) {
        held.push(result.memory.private);
        ballooned.push(result.memory.ballooned);
        storage.push(kernel!.memory.residentBytes);
      }
      asked = false;
    });
    control.queue.push({ vm: 0, op: "resume" });
    // The guest writes 24 MiB into a tmpfs file (its RAM) and deletes it, so the balloon has memory
    // to take that the VM holds frames for (a page freed last is one Linux hands out first).
    const target = 96 << 20;
    try {
      const result = await runVm({
        memoryBytes: vm.memoryBytes,
        resume: { plan: vm.plan, state: vm.state, ram: vm.reader },
        drives: vm.drives,
        console: con,
        engine: createX86Engine,
        maxVirtualNs: 120e9,
        control,
        stopRequested: () => phase === "done",
        onStart: (k, r) => {
          kernel = k;
          raise = r.control;
          raiseInput = r.input;
          raise();
          con.type("dd if=/dev/zero of=/tmp/f bs=1M count=24 2>/dev/null; rm /tmp/f; echo filled-$((1+1))\n");
          raiseInput();
        },
        onSlice: () => {
          if (asked) return;
          const b = balloon as BalloonInfo | null;
          if (phase === "fill" && con.text.includes("filled-2")) {
            phase = "balloon";
            control.queue.push({ vm: 0, op: "query" }, { vm: 0, op: "balloon", guestPages: target / 4096 });
          } else if (phase === "balloon") {
            if (b && b.actual * 4096 <= target) {
              phase = "check";
              control.queue.push({ vm: 0, op: "query" });
              con.type("echo alive-$((2+3))\n");
              raiseInput();
            } else control.queue.push({ vm: 0, op: "balloon" });
          } else if (phase === "check" && con.text.includes("alive-5")) phase = "done";
          else return;
          asked = true;
          raise();
        },
      });
      expect(result.ended).toBe(false);
      expect(phase).toBe("done");
      const b = balloon as BalloonInfo | null;
      expect(b).not.toBeNull();
      expect(b!.target * 4096).toBe(target);
      expect(b!.actual * 4096).toBeLessThanOrEqual(target);
      // Pages the balloon took that held memory went back to the host: the VM holds fewer frames.
      expect(b!.released).toBeGreaterThan(0);
      expect(held).toHaveLength(2);
      expect(held[1]).toBeLessThan(held[0]);
      // ... and the host's storage for frames went down with them, and still covers what it holds.
      expect(storage[0] - storage[1]).toBeGreaterThanOrEqual(8 << 20);
      expect(storage[1]).toBeGreaterThanOrEqual(held[1] * 4096);
      // The VM's memory counts show the balloon: before the target none, after it what the target left.
      expect(ballooned).toEqual([0, (128 << 20) / 4096 - b!.actual]);
    } finally {
      vm.reader.close();
    }
  }, 60 * 60 * 1000);

  it("a guest panic ends the VM with a non-zero status and the panic text on the console", async () => {
    // The kernel's own crash through the magic SysRq file, typed into the resumed guest's shell;
    // panic=-1 then resets the machine.
    const { result, con } = await resumeSaved([{ vm: 0, op: "resume" }], () => false, "echo c > /proc/sysrq-trigger\n");
    expect(result.stop).toBe("ended");
    expect(con.text).toMatch(/Kernel panic - not syncing: /);
    expect(exitVerdict(result, con.text.slice(-4096))).toEqual({ status: 4, message: "the guest panicked" });
  }, 60 * 60 * 1000);
});
