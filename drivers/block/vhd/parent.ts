// Parent locators of differencing VHDs: writing them for a parent, and finding the parent they name.
import fs from "node:fs";
import path from "node:path";
import { alignUp } from "../bytes.js";
import { ImageBackingError } from "../errors.js";
import type { HostFile } from "../host-file.js";
import type { BackingRef } from "../image.js";
import type { DynamicHeader } from "./footer.js";

/** Locator records and their UTF-16LE path data for a parent named `file` from `childPath`. */
export function parentLocators(file: string, childPath: string, dataStart: number): {
  locators: DynamicHeader["locators"];
  data: { offset: number; bytes: Uint8Array }[];
} {
  const absolute = path.resolve(path.dirname(childPath), file);
  const relative = path.isAbsolute(file) ? path.relative(path.dirname(path.resolve(childPath)), absolute) : file;
  const entries: [string, string][] = [
    ["W2ru", (relative.startsWith(".") ? relative : `./${relative}`).replace(/\//g, "\\")],
    ["W2ku", absolute.replace(/\//g, "\\")],
  ];
  const locators: DynamicHeader["locators"] = [];
  const data: { offset: number; bytes: Uint8Array }[] = [];
  let at = dataStart;
  for (const [code, name] of entries) {
    const bytes = new Uint8Array(Buffer.from(name, "utf16le"));
    const space = alignUp(Math.max(bytes.length, 1), 512);
    locators.push({ code, dataSpace: space, dataLength: bytes.length, dataOffset: at });
    data.push({ offset: at, bytes });
    at += space;
  }
  return { locators, data };
}

/** The parent named by the locators: relative Windows path first, then absolute, then Mac URL, then the name. */
export function parentFromLocators(file: HostFile, dyn: DynamicHeader): BackingRef {
  const candidates: string[] = [];
  const order = ["W2ru", "W2ku", "MacX"];
  for (const code of order) {
    for (const loc of dyn.locators.filter((l) => l.code === code)) {
      const len = Math.min(loc.dataLength, 65536);
      if (len === 0 || loc.dataOffset + len > file.size) continue;
      const bytes = file.readBytes(loc.dataOffset, len);
      let name = code === "MacX" ? new TextDecoder().decode(bytes).replace(/^file:\/\//, "") : Buffer.from(bytes).toString("utf16le");
      name = name.replace(/\0+$/, "");
      if (code !== "MacX") name = name.replace(/^\.\\/, "").replace(/\\/g, "/");
      if (name) candidates.push(name);
    }
  }
  if (dyn.parentName) candidates.push(dyn.parentName);
  if (candidates.length === 0) throw new ImageBackingError("BACKING_NOT_FOUND", "differencing VHD names no parent", file.path);
  const dir = path.dirname(file.path);
  const found = candidates.find((c) => fs.existsSync(path.resolve(dir, c)));
  return { file: found ?? candidates[0]!, format: "vpc" };
}
