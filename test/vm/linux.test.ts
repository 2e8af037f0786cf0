// The reference guest: Debian's i686 kernel and a busybox initramfs boot on the whole stack to a
// shell on the serial line; commands typed there run (reading and writing a virtio disk, x87
// arithmetic in awk), and `poweroff` ends the VM with status 0.
// The guest is fetched from Debian's archive on first use (cached), so this needs apt-get.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { ensureDefaultGuest } from "../../services/guest/index.js";
import { VmEnd } from "../../services/root-protocol.js";
import { exitVerdict, runVm } from "../../bin/vm-runner.js";
import { createX86Engine } from "../../vmm/x86/index.js";

function hasAptGet(): boolean {
  try {
    execFileSync("apt-get", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const canFetch = hasAptGet() && process.env.HV_SKIP_LINUX !== "1";
if (!canFetch) console.warn("test/vm/linux: no apt-get (or HV_SKIP_LINUX=1): the Linux boot test is skipped");

/** A script of (wait for this text, then type that) steps over the serial console. */
class Conversation {
  private step = 0;
  readonly reached: string[] = [];
  constructor(
    private readonly con: MemoryConsole,
    private readonly steps: ReadonlyArray<{ expect: RegExp; type: string }>,
    private readonly raise: () => void,
  ) {}

  /** Called on output: when the next awaited text appeared after the last step's mark, type. */
  poll(): void {
    while (this.step < this.steps.length) {
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

describe.skipIf(!canFetch)("the reference Linux guest", () => {
  it("boots to a busybox shell, runs commands typed on the serial line, uses a disk, and powers off", async () => {
    const guest = await ensureDefaultGuest({ quiet: true });
    const dir = mkdtempSync(join(tmpdir(), "hv-linux-"));
    const disk = join(dir, "disk.raw");
    const image = new Uint8Array(1 << 20);
    image.set(new TextEncoder().encode("hv-disk-signature-0123\n"));
    writeFileSync(disk, image);
    const con = new MemoryConsole();
    let conversation: Conversation | null = null;
    try {
      const result = await runVm({
        memoryBytes: 128 << 20,
        kernelImage: new Uint8Array(readFileSync(guest.kernel)),
        initrd: new Uint8Array(readFileSync(guest.initrd)),
        append: guest.append,
        console: con,
        engine: createX86Engine,
        drives: [{ path: disk, format: "raw" }],
        maxVirtualNs: 120e9,
        onStart: (_k, { input: raise }) => {
          conversation = new Conversation(
            con,
            [
              { expect: /hv-init: ready[\s\S]*# /, type: "echo hi; uname -a; cat /proc/cpuinfo; echo done-$((6*7))\n" },
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
          con.onOutput = () => conversation!.poll();
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
      // The disk: its size, what the host put there, and what the guest wrote back.
      expect(text).toMatch(/^sectors=2048\r?$/m);
      expect(text).toMatch(/^hv-disk-signature-0123\r?$/m);
      expect(new TextDecoder().decode(readFileSync(disk).subarray(0, 11))).toBe("hv-wrote-5\n");
      // Userland floating point on the x87 (busybox awk computes in doubles; its libm is not built in).
      expect(text).toMatch(/^q=3\.141593 e=2\.718281828\r?$/m);
      expect(text).toMatch(/reboot: (System halted|Power down)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60 * 60 * 1000);

  it("a guest panic ends the VM with a non-zero status and the panic text on the console", async () => {
    const guest = await ensureDefaultGuest({ quiet: true });
    const con = new MemoryConsole();
    const result = await runVm({
      memoryBytes: 128 << 20,
      kernelImage: new Uint8Array(readFileSync(guest.kernel)),
      initrd: new Uint8Array(readFileSync(guest.initrd)),
      // No init to run from the initramfs and no root device: the kernel panics ("Unable to mount
      // root fs"); panic=-1 then resets the machine.
      append: `${guest.append} rdinit=/hv-missing init=/hv-missing`,
      console: con,
      engine: createX86Engine,
      maxVirtualNs: 120e9,
    });
    expect(result.stop).toBe("ended");
    expect(con.text).toMatch(/Kernel panic - not syncing: /);
    expect(exitVerdict(result, con.text.slice(-4096))).toEqual({ status: 1, message: "the guest panicked" });
  }, 60 * 60 * 1000);
});
