// Reader of Unix `ar` archives (the container of a .deb): a magic line and 60-byte member headers.
import { GuestFetchError } from "./apt.js";

export interface ArMember {
  name: string;
  /** A view into the archive bytes, not a copy. */
  data: Uint8Array;
}

const MAGIC = "!<arch>\n";
const HEADER_SIZE = 60;

/** Lists the members of an ar archive; a malformed archive is a GuestFetchError("BAD_PACKAGE"). */
export function readAr(bytes: Uint8Array, what = "archive"): ArMember[] {
  const text = (start: number, length: number) => Buffer.from(bytes.buffer, bytes.byteOffset + start, length).toString("latin1");
  if (bytes.length < MAGIC.length || text(0, MAGIC.length) !== MAGIC) {
    throw new GuestFetchError("BAD_PACKAGE", `${what}: not an ar archive (no "!<arch>" magic)`);
  }
  const members: ArMember[] = [];
  let pos = MAGIC.length;
  while (pos < bytes.length) {
    if (bytes[pos] === 0x0a && pos + 1 === bytes.length) break; // trailing pad byte
    if (pos + HEADER_SIZE > bytes.length) throw new GuestFetchError("BAD_PACKAGE", `${what}: truncated member header at ${pos}`);
    if (text(pos + 58, 2) !== "`\n") throw new GuestFetchError("BAD_PACKAGE", `${what}: bad member header magic at ${pos}`);
    // GNU ar ends names with "/"; BSD long names ("#1/len") put the name before the data.
    let name = text(pos, 16).trimEnd();
    const size = Number.parseInt(text(pos + 48, 10).trim(), 10);
    if (!Number.isFinite(size) || size < 0) throw new GuestFetchError("BAD_PACKAGE", `${what}: bad member size at ${pos}`);
    let start = pos + HEADER_SIZE;
    let length = size;
    const bsd = /^#1\/(\d+)$/.exec(name);
    if (bsd) {
      const nameLength = Number(bsd[1]);
      name = text(start, nameLength).replace(/\0+$/, "");
      start += nameLength;
      length -= nameLength;
    } else if (name.endsWith("/") && name !== "/" && name !== "//") {
      name = name.slice(0, -1);
    }
    if (start + length > bytes.length || length < 0) throw new GuestFetchError("BAD_PACKAGE", `${what}: member "${name}" is truncated`);
    members.push({ name, data: bytes.subarray(start, start + length) });
    pos = pos + HEADER_SIZE + size + (size & 1);
  }
  return members;
}

/** Builds an ar archive (tests use it to make synthetic .deb files). */
export function writeAr(members: ArMember[]): Uint8Array {
  const parts: Buffer[] = [Buffer.from(MAGIC, "latin1")];
  for (const m of members) {
    const header =
      `${m.name}/`.padEnd(16) + "0".padEnd(12) + "0".padEnd(6) + "0".padEnd(6) + "100644".padEnd(8) + String(m.data.length).padEnd(10) + "`\n";
    parts.push(Buffer.from(header, "latin1"), Buffer.from(m.data));
    if (m.data.length & 1) parts.push(Buffer.from("\n"));
  }
  return new Uint8Array(Buffer.concat(parts));
}
