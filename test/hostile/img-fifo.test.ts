// Hostile input for `hv img`: FIFOs (and other non-files) given as images or backing files must be refused, not opened.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createImage } from "../../drivers/block/ops/create.js";
import { openImage } from "../../drivers/block/open.js";
import { scratchDir } from "../../drivers/block/test-util.js";
import { fifoGuard, hv, mkfifo } from "./img-harness.js";

let dir: string;
let fifo: string;
let guard: { stop: () => void };
beforeEach(() => {
  dir = scratchDir("hv-hostile-fifo-");
  fifo = path.join(dir, "pipe");
  mkfifo(fifo);
  guard = fifoGuard(fifo);
});
afterEach(() => {
  guard.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const p = (name: string): string => path.join(dir, name);

/** A refusal that names the FIFO, and a FIFO that is still there, untouched. */
function expectRefused(r: { code: number; err: string }, exitCode = 1): void {
  expect(r.err).toMatch(/pipe: is a FIFO \(named pipe\), not a regular file \[NOT_REGULAR_FILE\]/);
  expect(r.code).toBe(exitCode);
  expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
}

describe("a FIFO as the image", () => {
  it("info, check, convert (source) and compare (either side) refuse it without opening it", async () => {
    await hv("create", "-f", "qcow2", p("a.qcow2"), "1M");
    expectRefused(await hv("info", fifo));
    expectRefused(await hv("info", "-f", "raw", fifo));
    expectRefused(await hv("check", fifo));
    expectRefused(await hv("convert", "-O", "raw", fifo, p("out.raw")));
    expect(fs.readdirSync(dir).sort()).toEqual(["a.qcow2", "pipe"]);
    expectRefused(await hv("compare", fifo, p("a.qcow2")), 2);
    expectRefused(await hv("compare", p("a.qcow2"), fifo), 2);
  });

  it("rebase refuses a FIFO as the image and as the new backing file (-b), and leaves the image as it was", async () => {
    await hv("create", "-f", "qcow2", p("a.qcow2"), "1M");
    const before = fs.readFileSync(p("a.qcow2"));
    expectRefused(await hv("rebase", "-b", "", fifo));
    expectRefused(await hv("rebase", "-b", "pipe", p("a.qcow2")));
    expectRefused(await hv("rebase", "-u", "-b", "pipe", p("a.qcow2")));
    expect(Buffer.compare(fs.readFileSync(p("a.qcow2")), before)).toBe(0);
  });

  it("a FIFO named as a backing file (qcow2 backing, VMDK extent) is refused when the chain is opened", async () => {
    // Made over a regular file (create refuses a FIFO backing too), then the FIFO takes its place.
    fs.renameSync(fifo, p("parked"));
    fs.writeFileSync(fifo, new Uint8Array(1 << 20));
    createImage(p("top.qcow2"), "qcow2", undefined, { backing: { file: "pipe", format: "raw" } });
    fs.renameSync(p("parked"), fifo);
    expectRefused(await hv("info", p("top.qcow2")));
    expectRefused(await hv("check", p("top.qcow2")));
    expectRefused(await hv("convert", "-O", "raw", p("top.qcow2"), p("out.raw")));
    expectRefused(await hv("compare", p("top.qcow2"), p("top.qcow2")), 2);
    fs.writeFileSync(p("d.vmdk"), '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "pipe" 0\n');
    expectRefused(await hv("info", p("d.vmdk")));
  });

  it("a character device as an image is refused without being opened (opening one can act: a tape rewinds, a watchdog arms)", () => {
    // /dev/null is safe to name; the point is the typed refusal before any open.
    let caught: unknown;
    try {
      openImage("/dev/null").close();
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: "NOT_REGULAR_FILE", message: "/dev/null: is a character device, not a regular file" });
  });
});
