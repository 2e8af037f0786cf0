// Several VMs on one kernel: each has its own VMM, console and drive; one that ends (here by a
// triple fault) ends alone and the others run on; a fleet file is checked field by field.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { parseFleet } from "../../bin/fleet-command.js";
import { runFleet } from "../../bin/vm-runner.js";
import { VmEnd } from "../../services/root-protocol.js";
import { loadBios } from "../../vmm/boot/index.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { assemble, hasNasm, pitInterrupts, realModeRom } from "./nasm.js";
import { TIME_MIXING_ROM } from "./guests.js";
import { HV, ROOT } from "../hostile/img-harness.js";

/** Counts PIT ticks (~1 ms), printing `mark` each tick; after `ticks` ticks exits with `ticks`, or triple-faults when `fault`. */
function rom(mark: string, ticks: number, fault: boolean): string {
  return realModeRom(`
${pitInterrupts("irq0", 1193)}
  mov cx, 0
  sti
.idle:
  hlt
  cmp cx, ${ticks}
  jb .idle
  ${fault ? "lidt [cs:empty]\n  int 3" : `mov al, ${ticks}\n  out 0xf4, al\n  cli\n  hlt`}
irq0:
  inc cx
  mov al, '${mark}'
  mov dx, 0x3f8
  out dx, al
  mov al, 0x20
  out 0x20, al
  iret
empty: dw 0, 0, 0
`);
}

describe.skipIf(!hasNasm())("a fleet of VMs on one kernel", () => {
  it("runs each VM with its own console; one that ends ends alone", async () => {
    const consoles = [new MemoryConsole(), new MemoryConsole(), new MemoryConsole()];
    const vms = [
      { name: "a", bytes: assemble(rom("a", 20, false)) },
      { name: "b", bytes: assemble(rom("b", 5, true)) },
      { name: "c", bytes: assemble(rom("c", 40, false)) },
    ].map((v, i) => ({ name: v.name, memoryBytes: 2 << 20, plan: loadBios(v.bytes, { memSize: 2 << 20 }), console: consoles[i], debugExitPort: 0xf4 }));
    const result = await runFleet(vms, { engine: createX86Engine, maxVirtualNs: 5e9 });
    expect(result.stop).toBe("ended");
    expect(result.vms.map((v) => v.why)).toEqual([VmEnd.DEBUG_EXIT, VmEnd.TRIPLE_FAULT, VmEnd.DEBUG_EXIT]);
    expect(result.vms.map((v) => v.status)).toEqual([(20 << 1) | 1, 1, (40 << 1) | 1]);
    // Each console got its own VM's output only, as many ticks as it counted.
    expect(consoles.map((c) => c.text)).toEqual(["a".repeat(20), "b".repeat(5), "c".repeat(40)]);
  });

  it("a VM runs exactly as it would alone, however busy the other VMs of its fleet are", async () => {
    const timed = assemble(TIME_MIXING_ROM);
    // Busy neighbours: a tight loop with a port read every 16,384 rounds, for 2^24 rounds.
    const busy = assemble(realModeRom(`  mov dx, 0x3f8
.spin:
  inc dword [0x600]
  test word [0x600], 0x3fff
  jnz .spin
  in al, dx
  cmp dword [0x600], 0x1000000
  jb .spin
  mov al, 1
  out 0xf4, al
  cli
  hlt`));
    const vm = (name: string, bytes: Uint8Array, console: MemoryConsole) => ({ name, memoryBytes: 4 << 20, plan: loadBios(bytes, { memSize: 4 << 20 }), console, debugExitPort: 0xf4 });
    const alone = new MemoryConsole();
    const a = await runFleet([vm("timed", timed, alone)], { engine: createX86Engine, maxVirtualNs: 5e9 });
    const inFleet = new MemoryConsole();
    const b = await runFleet([vm("busy1", busy, new MemoryConsole()), vm("timed", timed, inFleet), vm("busy2", busy, new MemoryConsole())], { engine: createX86Engine, maxVirtualNs: 5e9 });
    expect(b.vms.map((v) => v.why)).toEqual([VmEnd.DEBUG_EXIT, VmEnd.DEBUG_EXIT, VmEnd.DEBUG_EXIT]);
    expect(a.vms[0].why).toBe(VmEnd.DEBUG_EXIT);
    expect(b.vms[1].why).toBe(VmEnd.DEBUG_EXIT);
    expect(b.vms[1].status).toBe(a.vms[0].status);
    expect(inFleet.text).toBe(alone.text);
    expect(alone.text.length).toBeGreaterThan(300);
  });

  it("refuses a fleet file that is wrong, naming the VM and the field", () => {
    const ok = { vms: [{ name: "a", bios: "x.rom" }] };
    const bad = (v: unknown) => () => parseFleet(JSON.stringify(v), "f.json");
    expect(parseFleet(JSON.stringify(ok), "f.json").vms[0]).toMatchObject({ name: "a", memoryBytes: 128 << 20, console: { kind: "file", path: "a.log" } });
    expect(() => parseFleet("{", "f.json")).toThrow(/f\.json: not JSON/);
    expect(bad({ vms: [] })).toThrow(/1 to 64 VMs/);
    expect(bad({ vms: [{ name: "a" }, { name: "a" }] })).toThrow(/vms\[1\]\.name: 'a' is taken/);
    expect(bad({ vms: [{ name: "a b" }] })).toThrow(/vms\[0\]\.name/);
    expect(bad({ vms: [{ name: "a", mem: "9T" }] })).toThrow(/vms\[0\]\.mem/);
    expect(bad({ vms: [{ name: "a", mem: "4G" }] })).toThrow(/vms\[0\]\.mem: must be between/);
    expect(bad({ vms: [{ name: "a", kernel: "k", bios: "b" }] })).toThrow(/one of kernel, bios, restore/);
    expect(bad({ vms: [{ name: "a", restore: "s", drives: ["file=d"] }] })).toThrow(/restore takes the VM from the file/);
    expect(bad({ vms: [{ name: "a", drives: [7] }] })).toThrow(/vms\[0\]\.drives/);
    expect(bad({ vms: [{ name: "a", console: "tcp:1" }] })).toThrow(/vms\[0\]\.console/);
    expect(bad({ vms: [{ name: "a", console: "file:x" }, { name: "b", console: "file:./x" }] })).toThrow(/console \.\/x is another VM's too/);
    expect(bad({ vms: [{ name: "a", colour: "red" }] })).toThrow(/unknown key 'colour'/);
    expect(bad({ vms: [{ name: "a", apic: "yes" }] })).toThrow(/vms\[0\]\.apic: must be true or false/);
    expect(bad({ vms: [{ name: "a", pv: 0 }] })).toThrow(/vms\[0\]\.pv: must be true or false/);
    expect(parseFleet(JSON.stringify(ok), "f.json").vms[0].pv).toBe(true); // KVM's interface unless hidden
    expect(parseFleet(JSON.stringify({ vms: [{ name: "a", pv: false }] }), "f.json").vms[0].pv).toBe(false);
    expect(bad({ vms: [{ name: "a" }], extra: 1 })).toThrow(/unknown key 'extra'/);
    expect(bad({ vms: [{ name: "a", acpi: 0 }] })).toThrow(/vms\[0\]\.acpi: must be true or false/);
    expect(parseFleet(JSON.stringify({ vms: [{ name: "a" }, { name: "b", acpi: false }] }), "f.json").vms.map((v) => v.acpi)).toEqual([true, false]);
    expect(parseFleet(JSON.stringify({ vms: [{ name: "a" }, { name: "b", smp: 4 }] }), "f.json").vms.map((v) => v.smp)).toEqual([1, 4]);
    expect(bad({ vms: [{ name: "a", smp: 9 }] })).toThrow(/vms\[0\]\.smp: '9': a VM has 1 to 8 vCPUs/);
    expect(bad({ vms: [{ name: "a", smp: "2" }] })).toThrow(/vms\[0\]\.smp: must be a number/);
    expect(bad({ vms: [{ name: "a", smp: 2, acpi: false }] })).toThrow(/vms\[0\]\.smp: several vCPUs need ACPI/);
    expect(bad({ vms: [{ name: "a", smp: 2, restore: "s" }] })).toThrow(/vms\[0\]\.smp: a restored VM/);
  });

  it("hv fleet runs the file's VMs with their consoles in log files", () => {
    const dir = mkdtempSync(join(tmpdir(), "hv-fleet-"));
    try {
      const at = (name: string) => join(dir, name);
      writeFileSync(at("a.rom"), assemble(rom("a", 3, false)));
      writeFileSync(at("b.rom"), assemble(rom("b", 6, false)));
      const vm = (name: string) => ({ name, bios: at(`${name}.rom`), mem: "2M", debugExit: true, console: `file:${at(`${name}.log`)}` });
      writeFileSync(at("fleet.json"), JSON.stringify({ vms: [vm("a"), vm("b")] }));
      const r = spawnSync(process.execPath, [...HV, "fleet", at("fleet.json"), "--timeout", "5"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      expect(r.stderr).toMatch(/hv: a: status 7\n/);
      expect(r.stderr).toMatch(/hv: b: status 13\n/);
      expect(r.status).toBe(7);
      expect(readFileSync(at("a.log"), "utf8")).toBe("aaa");
      expect(readFileSync(at("b.log"), "utf8")).toBe("bbbbbb");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
