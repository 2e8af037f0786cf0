// Guest RAM on demand, seen from a guest: pages only read cost no frame, written ones one each,
// copy-on-write of the zero page keeps every other zero page zero, and a VM that would pass the
// host's memory limit pauses (saying so) instead of taking the host down.

import { ChromeTrace } from "../../services/chrome-trace.js";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { Status } from "../../kernel/index.js";
import { runFleet, runVm } from "../../bin/vm-runner.js";
import type { ControlCommand, ControlHost, ControlResult } from "../../services/vm-control.js";
import { copyRam } from "../support/ram.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { multiboot } from "../hostile/run-harness.js";
import { hasNasm } from "./nasm.js";
import { loadKernel } from "../../vmm/boot/index.js";

/** The boot plan of a Multiboot kernel for a VM of MEMORY bytes. */
const planFor = (kernel: Uint8Array) => loadKernel(kernel, { memSize: MEMORY });

const MEMORY = 64 << 20;
const READ_PAGES = 256;
const COW_PAGES = 16;

/**
 * Reads READ_PAGES pages at 16 MiB, writes `writes` pages at 32 MiB (each its own number), writes
 * the first COW_PAGES of the read pages, then checks everything: the written pages hold what was
 * written, the other read pages are still zero. Prints D (or F on a wrong byte), then spins.
 */
function guest(writes: number): Uint8Array {
  return multiboot(`
    mov esi, 0x1000000
    mov ecx, ${READ_PAGES}
read: mov eax, [esi]
    add esi, 4096
    loop read
    mov edi, 0x2000000
    mov ecx, ${writes}
write: mov [edi], ecx
    add edi, 4096
    loop write
    mov edi, 0x1000000
    mov ecx, ${COW_PAGES}
cow: mov dword [edi], 0xabcd1234
    add edi, 4096
    loop cow
    mov edi, 0x2000000
    mov ecx, ${writes}
check: cmp [edi], ecx
    jne fail
    add edi, 4096
    loop check
    mov esi, 0x1000000 + ${COW_PAGES} * 4096
    mov ecx, ${READ_PAGES - COW_PAGES}
zero: cmp dword [esi], 0
    jne fail
    add esi, 4096
    loop zero
    mov al, 'D'
    jmp out
fail: mov al, 'F'
out: mov dx, 0x3f8
    out dx, al
    jmp $
`);
}

class Control implements ControlHost {
  readonly queue: ControlCommand[] = [];
  readonly results: ControlResult[] = [];
  take(): ControlCommand | null {
    return this.queue.shift() ?? null;
  }
  done(_command: ControlCommand, result: ControlResult): void {
    this.results.push(result);
  }
}

/** Run the guest, pause it at VM time `atNs`, query it, and stop. */
async function runAndQuery(kernelImage: Uint8Array, hostMemoryBytes?: number) {
  const con = new MemoryConsole();
  const control = new Control();
  control.queue.push({ vm: 0, op: "pause", atVmTimeNs: 20e6 }, { vm: 0, op: "query" });
  const result = await runVm({
    memoryBytes: MEMORY,
    kernelImage,
    console: con,
    engine: createX86Engine,
    control,
    hostMemoryBytes,
    maxVirtualNs: 5e9,
    onStart: (_k, raise) => raise.control(),
    stopRequested: () => control.results.length >= 2,
  });
  const query = control.results[1];
  if (!query || !("memory" in query) || !query.memory) throw new Error(`no query result: ${JSON.stringify(control.results)}`);
  return { result, serial: new TextDecoder().decode(Uint8Array.from(con.serial)), query };
}

describe.skipIf(!hasNasm())("guest RAM on demand", () => {
  it("a page read costs no frame, a page written one; copy-on-write keeps the other zero pages zero", async () => {
    const few = await runAndQuery(guest(128));
    const many = await runAndQuery(guest(384));
    for (const run of [few, many]) {
      expect(run.serial).toBe("D");
      expect(run.query.status).toBe(Status.SUCCESS);
      expect(run.query.running).toBe(false);
      // The read pages that were not written stay on the shared zero frame.
      expect(run.query.memory!.zero).toBeGreaterThanOrEqual(READ_PAGES - COW_PAGES);
    }
    // 256 more pages written: 256 more frames, and no more than a fault-around batch beyond that.
    const more = many.query.memory!.private - few.query.memory!.private;
    expect(more).toBeGreaterThanOrEqual(256);
    expect(more).toBeLessThanOrEqual(256 + 15);
    // The whole VM holds far less than its 64 MiB: what it wrote, its loaded kernel, and fixed regions.
    expect(few.query.memory!.private * 4096).toBeLessThan(2 << 20);
    expect(few.query.memory!.limit).toBeGreaterThanOrEqual(MEMORY / 4096);
  });

  it("at the host memory limit the VM pauses and says why; the host goes on", async () => {
    const run = await runAndQuery(guest(2048), 4 << 20);
    expect(run.serial).not.toContain("D");
    expect(run.serial).toContain("[hv] VM paused: the host memory limit is reached");
    expect(run.query.running).toBe(false);
    expect(run.query.pausedFor).toBe("memory");
    expect(run.query.memory!.hostTotal).toBe(1024);
    expect(run.result.stop).toBe("quit");
    expect(run.result.ended).toBe(false);
  });

  it("resumed with no memory freed, it pauses again until its reserve is gone, then ends with an error; the host goes on", async () => {
    const con = new MemoryConsole();
    const control = new Control();
    let raise = () => {};
    let resumes = 0;
    let asked = 0;
    const result = await runVm({
      memoryBytes: MEMORY,
      kernelImage: guest(2048),
      console: con,
      engine: createX86Engine,
      control,
      hostMemoryBytes: 4 << 20,
      maxVirtualNs: 5e9,
      onStart: (_k, r) => void (raise = r.control),
      onSlice: () => {
        // Ask once the last answer came; a VM paused for memory is resumed at once (as an impatient user would).
        if (control.results.length < asked) return;
        const last = control.results.at(-1);
        if (last && "pausedFor" in last && last.running === false && last.pausedFor === "memory") {
          control.queue.push({ vm: 0, op: "resume" });
          resumes++;
        }
        control.queue.push({ vm: 0, op: "query" });
        asked = control.results.length + (control.queue.length);
        raise();
      },
    });
    expect(result.ended).toBe(true);
    expect(result.status).toBe(1);
    expect(result.message).toMatch(/no host memory for guest page 0x[0-9a-f]+: the memory manager answered NO_MEMORY/);
    expect(resumes).toBeGreaterThanOrEqual(1);
    expect(new TextDecoder().decode(Uint8Array.from(con.serial))).toContain("[hv] VM paused: the host memory limit is reached");
  });

  it("three VMs write equal pages, the scanner merges them, writes copy them: each guest always reads what it wrote (sharing on and off)", async () => {
    // 48 pages at 16 MiB: page i holds (i << 16 | version) in every dword, the same in every VM; 16
    // pages at 20 MiB are written with zeros. Every 300 ms (PIT interrupts, HLT) the guest checks
    // every page against its table of versions and rewrites one page. D: all rounds right; F: a wrong word.
    const kernel = multiboot(`
    mov esp, 0x90000
    mov eax, handler
    mov [idt + 64], ax
    mov word [idt + 66], 0x10
    mov word [idt + 68], 0x8e00
    shr eax, 16
    mov [idt + 70], ax
    lidt [idtr]
    mov al, 0x11
    out 0x20, al
    mov al, 8
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov ax, 11932
    out 0x40, al
    mov al, ah
    out 0x40, al
    xor ebx, ebx
fill: call write_page
    inc ebx
    cmp ebx, 48
    jne fill
    mov edi, 0x1400000
    mov ecx, 16 * 1024
    xor eax, eax
    rep stosd
    sti
    mov dword [rounds], 12
round: mov ecx, 30
idle: hlt
    loop idle
    xor ebx, ebx
verify: mov esi, ebx
    shl esi, 12
    add esi, 0x1000000
    mov eax, ebx
    shl eax, 16
    or eax, [versions + ebx * 4]
    mov ecx, 1024
check: cmp [esi], eax
    jne fail
    add esi, 4
    loop check
    inc ebx
    cmp ebx, 48
    jne verify
    mov ebx, [rounds]
    imul ebx, 7
    and ebx, 31
    inc dword [versions + ebx * 4]
    call write_page
    dec dword [rounds]
    jnz round
    mov al, 'D'
    jmp report
fail: mov al, 'F'
report: mov dx, 0x3f8
    out dx, al
    cli
    hlt
; page ebx := (ebx << 16 | versions[ebx]) in every dword
write_page: mov edi, ebx
    shl edi, 12
    add edi, 0x1000000
    mov eax, ebx
    shl eax, 16
    or eax, [versions + ebx * 4]
    mov ecx, 1024
    rep stosd
    ret
handler: push eax
    mov al, 0x20
    out 0x20, al
    pop eax
    iret
align 8
idt: times 9 dq 0
idtr: dw 9 * 8 - 1
    dd idt
rounds: dd 0
versions: times 48 dd 0
`);
    const run = async (scanRate: number) => {
      const consoles = [0, 1, 2].map(() => new MemoryConsole());
      const trace = new ChromeTrace();
      const control = new Control();
      let done = false;
      const result = await runFleet(
        consoles.map((console, i) => ({ name: `vm${i}`, memoryBytes: MEMORY, plan: planFor(kernel), console })),
        {
          engine: createX86Engine,
          control,
          scanRate,
          trace,
          maxVirtualNs: 30e9,
          stopRequested: () => done,
          onStart: (_k, raise) => {
            control.queue.push({ vm: 0, op: "query" });
            raise.control();
          },
          onSlice: () => void (done = consoles.every((c) => c.serial.length > 0)),
        },
      );
      // The trace shows the memory counters: faults in each VMM, the scanner's merges and breaks.
      const counters = new Set(trace.toJSON().traceEvents.filter((e) => e.name === "counters").flatMap((e) => Object.keys(e.args ?? {})));
      return { result, serial: consoles.map((c) => String.fromCharCode(...c.serial)), counters };
    };
    const shared = await run(500_000);
    expect(shared.serial).toEqual(["D", "D", "D"]);
    // Pages were merged across the VMs and given back as zero pages, and writes copied shared ones.
    expect(shared.result.scanner.merged).toBeGreaterThan(48);
    expect(shared.result.scanner.zeroed).toBeGreaterThanOrEqual(3 * 16);
    expect(shared.result.scanner.broken).toBeGreaterThan(0);
    for (const name of ["private faults", "read faults", "copies", "taken away", "merged", "zeroed", "broken", "shared frames"]) expect(shared.counters).toContain(name);
    const alone = await run(0);
    expect(alone.serial).toEqual(["D", "D", "D"]);
    expect(alone.result.scanner.merged).toBe(0);
  });

  it("dirty logging on the real vCPU: every page that changed between two saves is in the log collected between them", async () => {
    // The guest writes pseudo-random words into 256 pages at 16 MiB, forever (an LCG picks page and offset).
    const kernel = multiboot(`
    mov eax, 12345
again: imul eax, eax, 1103515245
    add eax, 12345
    mov ebx, eax
    shr ebx, 16
    and ebx, 255
    shl ebx, 12
    mov ecx, eax
    and ecx, 0xffc
    add ebx, ecx
    mov [0x1000000 + ebx], eax
    jmp again
`);
    const con = new MemoryConsole();
    const saves: Uint8Array[] = [];
    const logs: Uint8Array[] = [];
    const control: ControlHost & { queue: ControlCommand[] } = {
      queue: [{ vm: 0, op: "dirty", action: "start" }],
      take() {
        return this.queue.shift() ?? null;
      },
      done(command, result) {
        if (command.op === "save" && "state" in result) saves.push(copyRam(result.ram));
        if (command.op === "dirty" && "dirty" in result) logs.push(result.dirty.slice());
      },
    };
    // Three times: stop at a VM time, take the log, save, go on (the first log is from before the first save: not checked). The VM is well past its start when
    // the control component first runs, so the stops are later than that.
    for (const at of [30e6, 45e6, 60e6]) control.queue.push({ vm: 0, op: "pause", atVmTimeNs: at }, { vm: 0, op: "dirty", action: "collect" }, { vm: 0, op: "save" }, { vm: 0, op: "resume" });
    await runVm({
      memoryBytes: MEMORY,
      kernelImage: kernel,
      console: con,
      engine: createX86Engine,
      control,
      scanRate: 0,
      maxVirtualNs: 1e9,
      onStart: (_k, raise) => raise.control(),
      stopRequested: () => saves.length === 3,
    });
    expect(saves).toHaveLength(3);
    expect(logs).toHaveLength(3);
    for (const i of [1, 2]) {
      let changed = 0;
      for (let p = 0; p < MEMORY / 4096; p++) {
        const a = saves[i - 1].subarray(p * 4096, (p + 1) * 4096);
        const b = saves[i].subarray(p * 4096, (p + 1) * 4096);
        if (Buffer.compare(a, b) === 0) continue;
        changed++;
        expect((logs[i][p >> 3] >> (p & 7)) & 1, `page 0x${p.toString(16)} changed between saves ${i - 1} and ${i}`).toBe(1);
      }
      // The guest really wrote many pages in between (the test would pass vacuously otherwise).
      expect(changed).toBeGreaterThan(100);
    }
  });
});
