// `hv snapshot info` through commander: text and JSON output, --verify, and errors as `hv: ...` with exit 1.
import fs from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeSnapshot } from "../services/snapshot/file.js";
import type { SnapshotInfo } from "../services/snapshot/info.js";
import { sampleContents, scratchDir, splitSnapshot } from "../services/snapshot/test-util.js";
import { registerSnapshotCommand } from "./snapshot-command.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir();
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

async function hv(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  let code = 0;
  const program = new Command().exitOverride().configureOutput({ writeOut: (t) => (out += t), writeErr: (t) => (err += t) });
  registerSnapshotCommand(program, { stdout: (t) => (out += t), stderr: (t) => (err += t), setExitCode: (c) => (code = c) });
  try {
    await program.parseAsync(["node", "hv", "snapshot", ...args]);
  } catch (e) {
    code = (e as { exitCode?: number }).exitCode ?? 1;
  }
  return { code, out, err };
}

describe("hv snapshot info", () => {
  it("prints the header, sections, RAM, ROMs, devices and drives; --json prints the same", async () => {
    const file = path.join(dir, "vm.snap");
    const contents = sampleContents();
    writeSnapshot(file, contents, { compress: true });
    const text = await hv("info", file);
    expect(text.code).toBe(0);
    for (const line of [
      "name: sample",
      "vCPUs: 2",
      "boot: kernel=vmlinuz cmdline=console=ttyS0 smp=2 apic=true",
      "RAM: 180 KiB (45 pages); 30 stored (120 KiB, ",
      "ROMs (2):",
      "0xfffe0000-0xfffe1fff  8 KiB",
      "devices (3):",
      "drives (2):",
      "[0] /images/root.qcow2  qcow2  1 GiB  read-write",
      "overlay=/images/root.snap-overlay.qcow2",
      "[1] /images/data.raw  raw  64 KiB  read-only",
    ]) expect(text.out).toContain(line);
    for (const section of ["header", "vcpus", "devices", "memoryMap", "drives", "ram", "ramIndex"]) expect(text.out).toMatch(new RegExp(`^  ${section} +\\d+`, "m"));

    const json = JSON.parse((await hv("info", "--json", file)).out) as SnapshotInfo;
    expect(json.header).toEqual(contents.header);
    expect(json.ram).toMatchObject({ memoryBytes: 45 * 4096, pages: 45, storedPages: 30, storedBytes: 30 * 4096, compressed: true, chunks: 2 });
    expect(json.sections.map((s) => s.name)).toEqual(["header", "vcpus", "devices", "memoryMap", "drives", "ram", "ramIndex"]);
    expect(json.devices.map((d) => d.name)).toEqual(["pic", "uart0", "pit"]);
    expect(json.devices.every((d) => d.recordBytes > 0)).toBe(true);
    expect(json.roms).toEqual([{ gpa: 0xfffe0000, bytes: 8192 }, { gpa: 0xc0000, bytes: 100 }]);
    expect(json.drives).toEqual(contents.drives);
    expect(json.fileBytes).toBe(fs.statSync(file).size);
    expect(json.verified).toBeUndefined();
  });

  it("escapes control characters from the file", async () => {
    const contents = sampleContents(8);
    contents.header.name = "evil\u001b[2Jname";
    contents.devices = { "dev\u0007": {} };
    writeSnapshot(path.join(dir, "vm.snap"), contents);
    const { out } = await hv("info", path.join(dir, "vm.snap"));
    expect(out).not.toMatch(/[\u0007\u001b]/);
    expect(out).toContain('name: "evil\\u001b[2Jname"');
  });

  it("--verify reads every chunk: a corrupt page is an error naming the ram section", async () => {
    const file = path.join(dir, "vm.snap");
    writeSnapshot(file, sampleContents());
    expect((await hv("info", "--verify", file)).out).toContain("RAM checked");
    const bytes = new Uint8Array(fs.readFileSync(file));
    bytes[splitSnapshot(bytes).entries.find((e) => e.name === "ram")!.offset + 5]! ^= 1;
    fs.writeFileSync(file, bytes);
    expect((await hv("info", file)).code).toBe(0); // info alone does not read the pages
    const bad = await hv("info", "--verify", file);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^hv: snapshot .*vm\.snap: ram section, chunk 0: the page data is corrupt/);
  });

  it("a missing or bad file is `hv: <message>` and exit 1", async () => {
    const missing = await hv("info", path.join(dir, "nope.snap"));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^hv: snapshot .*nope\.snap: file section, path: cannot be opened/);
    fs.writeFileSync(path.join(dir, "junk.snap"), "junk");
    const junk = await hv("info", path.join(dir, "junk.snap"));
    expect(junk.code).toBe(1);
    expect(junk.err).toContain("file section, magic: this is not an hv snapshot file");
    expect(junk.out).toBe("");
  });
});
