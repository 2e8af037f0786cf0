// Tests of the boot benchmark protocol: job parsing, report finding, the BOOT-OK line watcher.
import { describe, expect, it } from "vitest";
import { VmEnd } from "../../../services/root-protocol.js";
import { BadBootJobError, endName, findReport, parseBootJob, RESULT_PREFIX, SerialWatcher } from "./protocol.js";

const job = { kernel: "/k", initrd: "/i", append: "console=ttyS0", memoryBytes: 128 << 20, timeoutSeconds: 600 };

describe("parseBootJob", () => {
  it("reads a job and defaults echoSerial to false", () => {
    expect(parseBootJob(JSON.stringify(job))).toEqual({ ...job, echoSerial: false, cpus: 1 });
    expect(parseBootJob(JSON.stringify({ ...job, cpus: 2 })).cpus).toBe(2);
    expect(parseBootJob(JSON.stringify({ ...job, echoSerial: true })).echoSerial).toBe(true);
  });

  it("names what is wrong", () => {
    expect(() => parseBootJob(undefined)).toThrow(BadBootJobError);
    expect(() => parseBootJob("{")).toThrow(/not JSON/);
    expect(() => parseBootJob("3")).toThrow(/not an object/);
    expect(() => parseBootJob(JSON.stringify({ ...job, initrd: 5 }))).toThrow(/'initrd'/);
    expect(() => parseBootJob(JSON.stringify({ ...job, memoryBytes: -1 }))).toThrow(/'memoryBytes'/);
    expect(() => parseBootJob(JSON.stringify({ ...job, timeoutSeconds: "9" }))).toThrow(/'timeoutSeconds'/);
  });
});

describe("findReport", () => {
  it("takes the last result line and ignores other output", () => {
    const out = `noise\n${RESULT_PREFIX}{"runner":"a"}\nmore\n${RESULT_PREFIX}{"runner":"b","booted":true}\n`;
    expect(findReport(out)).toMatchObject({ runner: "b", booted: true });
  });

  it("is null without a result line or with a broken one", () => {
    expect(findReport("just text\n")).toBeNull();
    expect(findReport(`${RESULT_PREFIX}{broken\n`)).toBeNull();
  });
});

describe("SerialWatcher", () => {
  it("reports BOOT-OK once, on a whole line, with the uptime", () => {
    const seen: number[] = [];
    const w = new SerialWatcher((u) => seen.push(u));
    w.text("[    1.0] Kernel command line: hv.bootok=1\r\n");
    w.text("BOOT-O");
    expect(seen).toEqual([]);
    w.text("K 24.47\r\nBOOT-OK 30.00\n");
    expect(seen).toEqual([24.47]);
    expect(w.bootOkUptime).toBe(24.47);
  });

  it("does not take BOOT-OK inside another line", () => {
    const seen: number[] = [];
    const w = new SerialWatcher((u) => seen.push(u));
    w.text("echo BOOT-OK 1.0\nBOOT-OK\nBOOT-OK x\n");
    expect(seen).toEqual([]);
  });

  it("reports the kernel's banner once, not the setup code's lines before it nor a banner quoted later", () => {
    let banners = 0;
    const w = new SerialWatcher(() => undefined, 30, () => banners++);
    w.text("Probing EDD (edd=off to disable)... ok\r\n");
    w.text("[    0.000000] Linux versio");
    expect(banners).toBe(0);
    w.text("n 6.1.0-57-686 (debian-kernel@lists.debian.org) #1 SMP\r\n");
    expect(banners).toBe(1);
    w.text("Linux version 6.1.0 again\n# cat /proc/version: Linux version 6.1.0\n");
    expect(banners).toBe(1);
    const plain = new SerialWatcher(() => undefined, 30, () => banners++);
    plain.text("echo Linux version 1\nLinux version 6.1.0-57-686 (gcc)\n");
    expect(banners).toBe(2);
  });

  it("keeps the last lines, escape sequences and CRs removed, the unfinished one last", () => {
    const w = new SerialWatcher(() => undefined, 3);
    w.text("a\nb\r\n\x1b[1;32mc\x1b[0m\nd\npartial");
    expect(w.lastLines()).toEqual(["c", "d", "partial"]);
    expect(w.lastLines(2)).toEqual(["d", "partial"]);
  });
});

describe("endName", () => {
  it("names the VM's end", () => {
    expect(endName({ stop: "ended", why: VmEnd.TRIPLE_FAULT })).toMatch(/triple fault/);
    expect(endName({ stop: "ended", why: VmEnd.RESET })).toMatch(/reset/);
    expect(endName({ stop: "ended", why: VmEnd.HALTED })).toMatch(/halted/);
    expect(endName({ stop: "timeout", why: 0 })).toBe("timeout");
    expect(endName({ stop: "idle", why: 0 })).toBe("idle");
  });
});
