// A saved VM held in memory, as a live migration's destination has it when the stream ended: the
// snapshot sections but RAM, checked with the reader's own parsers, and the pages that came. It
// answers like an open snapshot file, so a VM resumes from it the same way, without a file.

import { refuse } from "./errors.js";
import type { SnapshotReader } from "./reader.js";
import { PAGE_SIZE, fields, parseDevices, parseDrives, parseHeader, parseMemoryMap, parseVcpus } from "./schema.js";

/** What resuming a saved VM reads of it: its records, and its pages on first touch. */
export type SavedVmSource = Pick<SnapshotReader, "header" | "vcpus" | "devices" | "memoryMap" | "drives" | "hasPage" | "readPage" | "close">;

/** A VM's setup (its snapshot sections but the state and RAM), as a migration's hello brings it, before the state exists. */
export type SavedSetupSource = Pick<SnapshotReader, "header" | "memoryMap" | "drives">;

/**
 * Check `sections` ({header, memoryMap, drives}, decoded from untrusted input) like a snapshot
 * file's, for RAM of `memoryBytes`; throws SnapshotError naming the field.
 */
export function savedSetupInMemory(sections: unknown, memoryBytes: number): SavedSetupSource {
  const s = fields(sections, "setup", "", ["header", "memoryMap", "drives"]);
  const header = parseHeader(s.header);
  if (header.memoryBytes !== memoryBytes) refuse("header", "memoryBytes", `is ${header.memoryBytes}, but the RAM that comes has ${memoryBytes} bytes`);
  return { header, memoryMap: parseMemoryMap(s.memoryMap, header), drives: parseDrives(s.drives) };
}

/**
 * Check `sections` ({header, vcpus, devices, memoryMap, drives}, as decoded from untrusted input)
 * like a snapshot file's, for RAM of `memoryBytes` whose non-zero pages are `pages` (taken, not
 * copied); throws SnapshotError naming the field.
 */
export function savedVmInMemory(sections: unknown, memoryBytes: number, pages: Pick<Map<number, Uint8Array>, "has" | "get" | "clear">): SavedVmSource {
  const s = fields(sections, "vm", "", ["header", "vcpus", "devices", "memoryMap", "drives"]);
  const header = parseHeader(s.header);
  if (header.memoryBytes !== memoryBytes) refuse("header", "memoryBytes", `is ${header.memoryBytes}, but the RAM that came has ${memoryBytes} bytes`);
  const vcpus = parseVcpus(s.vcpus, header);
  const devices = parseDevices(s.devices);
  const memoryMap = parseMemoryMap(s.memoryMap, header);
  const drives = parseDrives(s.drives);
  const ramPages = memoryBytes / PAGE_SIZE;
  const check = (n: number) => {
    if (!Number.isInteger(n) || n < 0 || n >= ramPages) throw new RangeError(`page ${n} is outside the ${ramPages} pages of RAM`);
  };
  return {
    header,
    vcpus,
    devices,
    memoryMap,
    drives,
    hasPage: (n) => (check(n), pages.has(n)),
    readPage: (n, into) => {
      check(n);
      const page = pages.get(n);
      if (page) into.set(page);
      else into.fill(0, 0, PAGE_SIZE);
    },
    close: () => pages.clear(),
  };
}
