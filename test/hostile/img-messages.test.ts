// Hostile chains and bytes for `hv img`: a too deep chain says so (not "loop"), bytes from an image are escaped.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createImage } from "../../drivers/block/ops/create.js";
import { MAX_CHAIN, openImage } from "../../drivers/block/open.js";
import { Qcow2Image } from "../../drivers/block/qcow2/image.js";
import { scratchDir } from "../../drivers/block/test-util.js";
import { hv } from "./img-harness.js";

let dir: string;
beforeEach(() => {
  dir = scratchDir("hv-hostile-msg-");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const p = (name: string): string => path.join(dir, name);

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("backing chains", () => {
  /** base.qcow2 <- c1 <- ... <- c{n-1}: `n` images in all; returns the top. */
  function chain(n: number): string {
    createImage(p("c0.qcow2"), "qcow2", 1 << 20);
    for (let i = 1; i < n; i++) createImage(p(`c${i}.qcow2`), "qcow2", undefined, { backing: { file: `c${i - 1}.qcow2`, format: "qcow2" } });
    return p(`c${n - 1}.qcow2`);
  }

  it(`a chain of ${MAX_CHAIN} images opens; one more is BACKING_TOO_DEEP, naming the limit, not a loop`, async () => {
    const top = chain(MAX_CHAIN);
    const img = openImage(top);
    img.close();
    createImage(p("over.qcow2"), "qcow2", undefined, { backing: { file: path.basename(top), format: "qcow2" } });
    expect(codeOf(() => openImage(p("over.qcow2")).close())).toBe("BACKING_TOO_DEEP");
    const r = await hv("info", p("over.qcow2"));
    expect(r.err).toContain(`backing chain deeper than ${MAX_CHAIN} images (the limit)`);
    expect(r.err).toContain("[BACKING_TOO_DEEP]");
    expect(r.err).not.toContain("loop");
  });

  it("a real loop is still BACKING_LOOP", () => {
    createImage(p("a.qcow2"), "qcow2", 1 << 20);
    createImage(p("b.qcow2"), "qcow2", undefined, { backing: { file: "a.qcow2", format: "qcow2" } });
    const a = openImage(p("a.qcow2"), { writable: true }) as Qcow2Image;
    a.setBackingRef({ file: "b.qcow2", format: "qcow2" });
    a.close();
    expect(codeOf(() => openImage(p("b.qcow2")).close())).toBe("BACKING_LOOP");
  });
});

describe("bytes from an image never reach the terminal raw", () => {
  const ESC = "\x1b]0;pwned\x07\x1b[2J\x1b[31m";

  it("an unreadable VMDK descriptor line is quoted with its control bytes escaped", async () => {
    fs.writeFileSync(p("evil.vmdk"), `# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n${ESC}evil\u202e\x9b6n\n`);
    const r = await hv("info", "-f", "vmdk", p("evil.vmdk"));
    expect(r.code).toBe(1);
    expect(r.err).toContain("unreadable descriptor line: \\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mevil\\u202e\\x9b6n");
    expect(r.err).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
  });

  it("a backing file name with control bytes: text info escapes it, JSON info keeps it exactly", async () => {
    const name = `base${ESC}.qcow2`;
    fs.writeFileSync(p(name), new Uint8Array(1 << 20));
    createImage(p("top.qcow2"), "qcow2", undefined, { backing: { file: name, format: "raw" } });
    const text = await hv("info", p("top.qcow2"));
    expect(text.code).toBe(0);
    expect(text.out).toContain("backing file: base\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31m.qcow2");
    expect(text.out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    const json = JSON.parse((await hv("info", "--json", p("top.qcow2"))).out) as { "backing-filename"?: string }[];
    expect(json[0]!["backing-filename"]).toBe(name);
  });
});
