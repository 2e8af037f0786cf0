// Hostile input for `hv run`: inputs that are not files or never end, memory sizes beyond what
// works, exit statuses that hide what happened, time limits that do not limit, outputs that cannot
// be written, and one image attached twice. Each test attacks as the issue's report did.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchDir } from "../../drivers/block/test-util.js";
import { MemoryConsole } from "../../drivers/console/host.js";
import { runVm } from "../../bin/vm-runner.js";
import { VmEnd } from "../../services/root-protocol.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { hasNasm } from "../vm/nasm.js";
import { fifoGuard, mkfifo } from "./img-harness.js";
import { hvRun, multiboot, put, type RunResult } from "./run-harness.js";

const nasm = hasNasm();
if (!nasm) console.warn("test/hostile/run: nasm is not installed; the hv run tests are skipped");

/** Ends at once through isa-debug-exit with 0x21: status (0x21 << 1) | 1 = 67. */
const EXIT = `
  mov al, 0x21
  out 0xf4, al
  hlt`;

/** An IDT of limit 0: INT3 finds no gate (#GP), nor does the #GP (#DF), nor the #DF: triple fault at 0x100040. */
const TRIPLE = `
  lidt [idt]
  jmp fault
idt: dw 0
  dd 0
times 0x40 - ($ - $$) db 0x90
fault:
  int3
  hlt`;

/** Jumps to 1 GiB, where a VM of 16 MiB has neither RAM nor ROM. */
const OUTSIDE_RAM = `
  mov eax, 0x40000000
  jmp eax`;

/** Asks the keyboard controller for a reset (pulse the reset line), then writes port 0xe9 forever. */
const RESET = `
  mov al, 0xfe
  out 0x64, al
.spin:
  out 0xe9, al
  jmp .spin`;

/** Runs forever on slow instructions: x87 transcendentals and reads of unclaimed MMIO. */
const SLOW_FOREVER = `
  fninit
.spin:
  fld1
  fsin
  fstp st0
  mov eax, [0xf0000000]
  jmp .spin`;

let dir: string;
const p = (name: string): string => path.join(dir, name);
let exitKernel: string;

beforeAll(() => {
  dir = scratchDir("hv-hostile-run-");
  if (nasm) exitKernel = put(dir, "exit.bin", multiboot(EXIT));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A refusal before anything ran: status 2, the message, no stack trace, not killed by the test's timeout. */
function expectRefused(r: RunResult, message: RegExp): void {
  expect(r.signal).toBeNull();
  expect(r.err).toMatch(message);
  expect(r.err).not.toMatch(/\n\s+at /);
  expect(r.code).toBe(2);
}

describe.skipIf(!nasm)("hv run: inputs that are not regular files, or larger than the VM", () => {
  it("refuses /dev/zero as --kernel, --initrd and --bios without reading it", () => {
    // Reading /dev/zero is harmless; the bug read it until memory ran out.
    expectRefused(hvRun(["--kernel", "/dev/zero"]), /--kernel '\/dev\/zero': is a character device, not a regular file/);
    expectRefused(hvRun(["--kernel", exitKernel, "--initrd", "/dev/zero"]), /--initrd '\/dev\/zero': is a character device, not a regular file/);
    expectRefused(hvRun(["--bios", "/dev/zero"]), /--bios '\/dev\/zero': is a character device, not a regular file/);
  });

  it("refuses a FIFO as --kernel, --initrd and --bios without opening it (the bug hung in the read)", () => {
    const fifo = p("pipe");
    mkfifo(fifo);
    const guard = fifoGuard(fifo, 20_000);
    try {
      expectRefused(hvRun(["--kernel", fifo]), /--kernel '.*pipe': is a FIFO \(named pipe\), not a regular file/);
      expectRefused(hvRun(["--kernel", exitKernel, "--initrd", fifo]), /--initrd '.*pipe': is a FIFO \(named pipe\), not a regular file/);
      expectRefused(hvRun(["--bios", fifo]), /--bios '.*pipe': is a FIFO \(named pipe\), not a regular file/);
      expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    } finally {
      guard.stop();
      fs.rmSync(fifo);
    }
  });

  it("refuses a regular file larger than --mem can hold, and a directory, naming the option", () => {
    const big = p("big.bin");
    fs.writeFileSync(big, "");
    fs.truncateSync(big, 3 << 20); // sparse: nothing is written
    expectRefused(hvRun(["--kernel", big, "--mem", "2M"]), /--kernel '.*big\.bin': 3145728 bytes, more than the 2097152 bytes that --mem 2M can hold/);
    expectRefused(hvRun(["--kernel", exitKernel, "--initrd", big, "--mem", "2M"]), /--initrd '.*big\.bin': 3145728 bytes, more than the 2097152/);
    expectRefused(hvRun(["--kernel", dir]), /--kernel '.*': is a directory, not a regular file/);
    expectRefused(hvRun(["--kernel", p("missing.bin")]), /--kernel '.*missing\.bin': no such file or directory/);
  });
});

describe.skipIf(!nasm)("hv run --mem: the whole documented range works, above it a clean refusal", () => {
  it("refuses 2049M and 3G with a message, no component fault and no stack trace", () => {
    for (const mem of ["2049M", "3G", "2032M"]) {
      const r = hvRun(["--kernel", exitKernel, "--debug-exit", "--mem", mem]);
      expectRefused(r, /--mem \d+M is outside 2M to 2031M/);
      expect(r.err).not.toMatch(/component fault/);
    }
  });

  it("boots at the top of the range, with the largest ROM too, and at the bottom", () => {
    expect(hvRun(["--kernel", exitKernel, "--debug-exit", "--mem", "2031M"]).code).toBe(67);
    expect(hvRun(["--kernel", exitKernel, "--debug-exit", "--mem", "2M"]).code).toBe(67);
    // A 16 MiB ROM (the flash window's size) whose reset vector exits: 2031M leaves room for it.
    const rom = new Uint8Array(16 << 20).fill(0xff);
    rom.set([0xb0, 0x21, 0xe6, 0xf4, 0xf4], rom.length - 16); // mov al, 0x21; out 0xf4, al; hlt
    const r = hvRun(["--bios", put(dir, "rom16.bin", rom), "--debug-exit", "--mem", "2031M"]);
    fs.rmSync(p("rom16.bin"));
    expect(r.err).toBe("");
    expect(r.code).toBe(67);
  });

  it("says the true range in --help", () => {
    expect(hvRun(["--help"]).out.replace(/\s+/g, " ")).toMatch(/--mem <size> guest RAM, 2M to 2031M/);
  });

  it("runs a VM of more than 1G with as many drives as a smaller one (drives use bounce regions, not windows of RAM)", () => {
    const drives = ["a", "b", "c"].flatMap((n) => {
      fs.writeFileSync(p(`${n}.img`), new Uint8Array(4096));
      return ["--drive", `file=${p(`${n}.img`)},format=raw`];
    });
    expect(hvRun(["--kernel", exitKernel, "--debug-exit", "--mem", "2031M", ...drives]).code).toBe(67);
    expect(hvRun(["--kernel", exitKernel, "--debug-exit", "--mem", "1024M", ...drives]).code).toBe(67);
  });
});

describe.skipIf(!nasm)("hv run's exit status says how the VM ended", () => {
  it("a triple fault is status 4 with CS:EIP, not 0 like a power-off", () => {
    const r = hvRun(["--kernel", put(dir, "triple.bin", multiboot(TRIPLE))]);
    expect(r.err).toMatch(/hv: triple fault at 0010:00100040/);
    expect(r.code).toBe(4);
  });

  it("a hot loop ends the same with the WebAssembly tier and without it (--no-wasm)", () => {
    // Two million rounds: hot enough for the tiers; the exit status is the low bits of its sum.
    const loop = put(dir, "loop.bin", multiboot(`
  mov ecx, 2000000
  xor eax, eax
.l:
  add eax, ecx
  rol eax, 3
  dec ecx
  jnz .l
  and al, 0x3f
  out 0xf4, al
  hlt`));
    let sum = 0;
    for (let n = 2000000; n > 0; n--) sum = ((((sum + n) | 0) << 3) | (((sum + n) | 0) >>> 29)) | 0;
    const status = ((sum & 0x3f) << 1) | 1;
    expect(hvRun(["--kernel", loop, "--debug-exit"]).code).toBe(status);
    expect(hvRun(["--kernel", loop, "--debug-exit", "--no-wasm"]).code).toBe(status);
  });

  it("code fetched outside RAM says so, with the address", () => {
    const r = hvRun(["--kernel", put(dir, "outside.bin", multiboot(OUTSIDE_RAM)), "--mem", "16M"]);
    expect(r.err).toMatch(/hv: the vCPU stopped at 0010:40000000: code fetched outside RAM and ROM, at linear address 0x40000000/);
    expect(r.code).toBe(4);
  });

  it("a reset request ends the VM with status 0 and says where it came from (there is no reboot)", () => {
    const r = hvRun(["--kernel", put(dir, "reset.bin", multiboot(RESET)), "--debugcon", `file:${p("reset.out")}`]);
    expect(r.err).toMatch(/hv: the guest asked for a reset \(the keyboard controller\); hv does not reboot, so the VM ended/);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(p("reset.out")).length).toBe(0);
  });

  it("a --trace that cannot be written is reported and leaves the guest's status", () => {
    // A file size limit of 512 bytes makes the trace's write fail (EFBIG). tsx gets a cache of its own,
    // so that the shared one is not written under the limit.
    const cache = p("tsx-cache");
    fs.mkdirSync(cache);
    const r = hvRun(["--kernel", exitKernel, "--debug-exit", "--trace", p("trace.json")], { shellPrefix: "ulimit -f 1", env: { TMPDIR: cache } });
    expect(r.err).toMatch(/hv: --trace '.*trace\.json': writing failed \(EFBIG\)/);
    expect(r.code).toBe(67);
    const ok = hvRun(["--kernel", exitKernel, "--debug-exit", "--trace", p("trace.json")]);
    expect(ok.code).toBe(67);
    expect(JSON.parse(fs.readFileSync(p("trace.json"), "utf8")).traceEvents.length).toBeGreaterThan(0);
  });
});

describe.skipIf(!nasm)("the VM ends at the instruction that ended it", () => {
  /** Marks a counter in RAM, ends the VM with `end`, then counts (and writes port 0xe9) forever. */
  const counting = (end: string) =>
    multiboot(`
  mov dword [0x8000], 0x21444e45   ; "END!": where the counter is, for the test to find
  mov dword [0x8004], 0
  ${end}
.count:
  inc dword [0x8004]
  out 0xe9, al
  jmp .count`);

  /** The counter after the VM ended, read from the kernel's frames. */
  function counterAfter(result: Awaited<ReturnType<typeof runVm>>): number {
    for (const view of result.kernel.memory.views)
      for (let at = 0; at + 8 <= view.byteLength; at += 4096) if (view.getUint32(at, true) === 0x21444e45) return view.getUint32(at + 4, true);
    throw new Error("the guest's counter is not in RAM");
  }

  it.each([
    ["an isa-debug-exit write", "mov al, 0x21\n  out 0xf4, al", VmEnd.DEBUG_EXIT, 67],
    ["a reset request at port 0xcf9", "mov dx, 0xcf9\n  mov al, 6\n  out dx, al", VmEnd.RESET, 0],
  ])("%s: not one more instruction runs", async (_what, end, why, status) => {
    const con = new MemoryConsole();
    const result = await runVm({ memoryBytes: 16 << 20, kernelImage: counting(end), console: con, engine: createX86Engine, debugExitPort: 0xf4, debugcon: true, maxVirtualNs: 1e9 });
    expect(result.stop).toBe("ended");
    expect(result.why).toBe(why);
    expect(result.status).toBe(status);
    expect(counterAfter(result)).toBe(0);
    expect(con.debugcon).toEqual([]);
  });
});

describe.skipIf(!nasm)("hv run's time limits", () => {
  it("--wall-timeout stops a guest that loops on slow x87 and MMIO instructions (status 124)", () => {
    const r = hvRun(["--kernel", put(dir, "slow.bin", multiboot(SLOW_FOREVER)), "--wall-timeout", "1"]);
    expect(r.signal).toBeNull();
    expect(r.err).toMatch(/hv: stopped at the wall-clock limit \(--wall-timeout\)/);
    expect(r.code).toBe(124);
    // Generous: the limit is 1 s; start-up and the last slice come on top.
    expect(r.ms).toBeLessThan(60_000);
  });

  it("refuses limits that are no limits: infinite, not a number, negative, zero, absurdly long", () => {
    for (const option of ["--timeout", "--wall-timeout"]) {
      for (const [value, message] of [
        ["1e400", /'1e400' is not a finite number of seconds/],
        ["NaN", /'NaN' is not a number of seconds/],
        ["Infinity", /'Infinity' is not a number of seconds/],
        ["0x10", /'0x10' is not a number of seconds/],
        ["-1", /'-1': the limit must be more than 0 seconds/],
        ["0", /'0': the limit must be more than 0 seconds/],
        ["1e7", /'1e7': the limit can be at most 1000000 seconds/],
      ] as const) {
        const r = hvRun(["--kernel", exitKernel, "--debug-exit", option, value]);
        expect(r.err).toMatch(message);
        expect(r.code).toBe(2);
      }
    }
  });
});

describe.skipIf(!nasm)("hv run --smp", () => {
  it("refuses counts that are not 1 to 8, and combinations that cannot have several vCPUs", () => {
    for (const [value, message] of [
      ["0", /'0': a VM has 1 to 8 vCPUs/],
      ["9", /'9': a VM has 1 to 8 vCPUs/],
      ["1.5", /'1.5' is not a whole number of vCPUs/],
      ["two", /'two' is not a whole number of vCPUs/],
    ] as const) expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--smp", value]), message);
    expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--smp", "2", "--no-acpi"]), /--smp 2 needs ACPI/);
    expectRefused(hvRun(["--restore", p("none.hvsnap"), "--smp", "2"]), /--smp 2: a resumed or migrated VM has the vCPUs it was saved with/);
  });

  it("boots a kernel on 8 vCPUs (the application processors wait for a SIPI that never comes)", () => {
    expect(hvRun(["--kernel", exitKernel, "--debug-exit", "--smp", "8"]).code).toBe(67);
  });
});

describe.skipIf(!nasm)("hv run's outputs are opened before the VM starts", () => {
  it("a --debugcon file: that cannot be opened is an error at start, not silence", () => {
    expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--debugcon", `file:${p("no-such-dir/out")}`]), /--debugcon '.*no-such-dir\/out': cannot be opened for writing \(no such file or directory\)/);
    expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--debugcon", `file:${dir}`]), /--debugcon '.*': is a directory; hv writes only to regular files and terminals/);
    const fifo = p("out-pipe");
    mkfifo(fifo);
    try {
      expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--debugcon", `file:${fifo}`]), /--debugcon '.*out-pipe': is a FIFO \(named pipe\); hv writes only to regular files and terminals/);
      expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--trace", fifo]), /--trace '.*out-pipe': is a FIFO/);
    } finally {
      fs.rmSync(fifo);
    }
  });

  it("an output that is one of the run's inputs is refused before it is emptied", () => {
    const image = p("keep.img");
    fs.writeFileSync(image, new Uint8Array(4096).fill(7));
    expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--drive", `file=${image},format=raw`, "--trace", image]), /--trace '.*keep\.img': is the same file as drive 0; it would be overwritten/);
    expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--trace", exitKernel]), /is the same file as the kernel/);
    expect(fs.readFileSync(image)).toEqual(Buffer.alloc(4096, 7));
  });
});

describe.skipIf(!nasm)("hv run: one image attached twice", () => {
  it("refuses a file attached read-write and read-only, also by a symbolic or hard link; two readers are fine", () => {
    const image = p("disk.img");
    fs.writeFileSync(image, new Uint8Array(65536).fill(1));
    fs.symlinkSync(image, p("disk-link.img"));
    fs.linkSync(image, p("disk-hard.img"));
    const run = (...drives: string[]) => hvRun(["--kernel", exitKernel, "--debug-exit", ...drives.flatMap((d) => ["--drive", `${d},format=raw`])]);
    const twice = /drive 1 is the same file as drive 0.*a file can be attached twice only read-only \(readonly=on\)/;
    expectRefused(run(`file=${image}`, `file=${image},readonly=on`), twice);
    expectRefused(run(`file=${image},readonly=on`, `file=${image}`), twice);
    expectRefused(run(`file=${image}`, `file=${p("disk-link.img")},readonly=on`), twice);
    expectRefused(run(`file=${image},readonly=on`, `file=${p("disk-hard.img")}`), twice);
    expectRefused(run(`file=${image}`, `file=${p("disk-hard.img")}`), twice);
    expect(run(`file=${image},readonly=on`, `file=${p("disk-link.img")},readonly=on`).code).toBe(67);
    expect(fs.readFileSync(image)).toEqual(Buffer.alloc(65536, 1));
  });

  it("refuses a drive that is not a regular file before the VM starts", () => {
    const fifo = p("drive-pipe");
    mkfifo(fifo);
    try {
      expectRefused(hvRun(["--kernel", exitKernel, "--debug-exit", "--drive", `file=${fifo}`]), /--drive file=.*drive-pipe: is a FIFO \(named pipe\), not a regular file/);
    } finally {
      fs.rmSync(fifo);
    }
  });
});
