// Cross-check of the bzImage loader against a real CPU model: QEMU (when installed) runs the
// cached Debian kernel + initramfs from our boot plan only. A tiny ROM puts the CPU in the plan's
// register state; QEMU's `loader` devices copy the plan's writes. Skipped without QEMU or guest.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VcpuState } from "../../kernel/vcpu.js";
import { loadLinux } from "./linux.js";
import { MIB } from "./plan.js";

/**
 * A 64 KiB ROM whose reset code loads the plan's GDT, enters protected mode and sets the plan's
 * selectors and ESI/ESP/EBP/EDI/EBX before jumping to its EIP. QEMU's CPU has a local APIC whose
 * LINT0 is masked at reset, so the ROM also sets virtual-wire mode as a PC BIOS would.
 */
function shimRom(s: VcpuState): Uint8Array {
  const rom = new Uint8Array(0x10000).fill(0xff);
  const v = new DataView(rom.buffer);
  let at = 0xff00;
  const put = (...b: number[]) => {
    rom.set(b, at);
    at += b.length;
  };
  const u32 = (x: number) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24];
  put(0xfa); // cli
  put(0x2e, 0x66, 0x0f, 0x01, 0x16, 0x18, 0xff); // o32 lgdt [cs:0xff18]
  put(0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0); // mov eax,cr0; or al,1; mov cr0,eax
  put(0x66, 0xea, ...u32(0xffffff1e), s.cs.selector & 0xff, s.cs.selector >> 8); // jmp dword cs:pm32
  v.setUint16(0xff18, s.gdtrLimit, true);
  v.setUint32(0xff1a, s.gdtrBase, true);
  at = 0xff1e;
  put(0x66, 0xb8, s.ds.selector & 0xff, s.ds.selector >> 8); // mov ax, ds selector
  put(0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8); // mov ds/es/ss/fs/gs, ax
  put(0xc7, 0x05, ...u32(0xfee000f0), ...u32(0x1ff)); // APIC SVR: enable
  put(0xc7, 0x05, ...u32(0xfee00350), ...u32(0x700)); // LINT0: ExtINT
  put(0xc7, 0x05, ...u32(0xfee00360), ...u32(0x400)); // LINT1: NMI
  put(0xbe, ...u32(s.esi), 0xbc, ...u32(s.esp), 0xbd, ...u32(s.ebp), 0xbf, ...u32(s.edi), 0xbb, ...u32(s.ebx));
  put(0xb8, ...u32(s.eip), 0xff, 0xe0); // mov eax, eip; jmp eax
  rom.set([0xe9, 0x0d, 0xff], 0xfff0); // reset vector: jmp 0xff00
  return rom;
}

function cachedGuest(): { kernel: string; initrd: string } | null {
  const cache = process.env["HV_CACHE_DIR"] || join(homedir(), ".cache", "hv", "guest");
  if (!existsSync(join(cache, "extract"))) return null;
  const kernel = readdirSync(join(cache, "extract")).map((d) => join(cache, "extract", d, "vmlinuz")).find(existsSync);
  const initrd = readdirSync(cache).filter((f) => /^initramfs-.*\.cpio\.gz$/.test(f)).map((f) => join(cache, f))[0];
  return kernel !== undefined && initrd !== undefined ? { kernel, initrd } : null;
}

const qemu = spawnSync("qemu-system-i386", ["--version"], { stdio: "ignore" }).status === 0;
const guest = cachedGuest();

describe("loadLinux under QEMU", () => {
  it.skipIf(!qemu || guest === null)("boots the Debian kernel to the initramfs's BOOT-OK line", async () => {
    const plan = loadLinux(new Uint8Array(readFileSync(guest!.kernel)), {
      memSize: 128 * MIB,
      cmdline: "console=ttyS0 acpi=off noapic nolapic pci=conf1 i8042.noaux panic=-1 hv.bootok=1",
      initrd: new Uint8Array(readFileSync(guest!.initrd)),
    });
    const dir = mkdtempSync(join(tmpdir(), "hv-qemu-"));
    writeFileSync(join(dir, "rom.bin"), shimRom(plan.state));
    const args = ["-M", "pc", "-m", "128M", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-bios", join(dir, "rom.bin")];
    plan.writes.forEach((w, i) => {
      writeFileSync(join(dir, `w${i}.bin`), w.bytes);
      args.push("-device", `loader,file=${join(dir, `w${i}.bin`)},addr=0x${w.gpa.toString(16)},force-raw=on`);
    });
    const output = await new Promise<string>((resolve) => {
      const child = spawn("qemu-system-i386", args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      const timer = setTimeout(() => child.kill(), 90_000);
      const onData = (chunk: Buffer) => {
        out += chunk.toString("latin1");
        if (/System halted|Power down|Kernel panic/.test(out)) child.kill();
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.on("close", () => {
        clearTimeout(timer);
        resolve(out);
      });
    });
    expect(output).toContain("BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable");
    expect(output).toMatch(/RAMDISK: \[mem 0x0[0-9a-f]+-0x0*7ffffff\]/);
    expect(output).toMatch(/BOOT-OK \d+\.\d+/);
  }, 120_000);
  if (!qemu || guest === null) console.info("linux.qemu.test: needs qemu-system-i386 and the cached default guest; skipped");
});
