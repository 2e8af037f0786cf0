// newc ("070701") cpio archives, the format the Linux kernel unpacks as an initramfs. Our own
// writer (not the host cpio): inode numbers, owners and times are fixed, so the same entries
// always give the same bytes. The reader is for tests and inspection.

/** Entry kinds the writer knows. Paths are relative ("bin/busybox"); a leading "/" is dropped. */
export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; data: Uint8Array; mode?: number }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "char" | "block"; path: string; major: number; minor: number; mode?: number };

/** File type bits of st_mode. */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

export interface CpioOptions {
  /** Modification time of every entry, seconds since the epoch (default 0). */
  mtime?: number;
  uid?: number;
  gid?: number;
}

/** Invalid entry list (duplicate or malformed path, value out of range). */
export class CpioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CpioError";
  }
}

const MAGIC = "070701";
const TRAILER = "TRAILER!!!";

function hex8(v: number, what: string): string {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CpioError(`${what} out of range: ${v}`);
  return v.toString(16).toUpperCase().padStart(8, "0");
}

function normalisePath(path: string): string {
  const p = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (p === "" || p.split("/").some((c) => c === "" || c === "." || c === "..")) throw new CpioError(`bad path "${path}"`);
  return p;
}

/** Writes `entries` (in the given order; parents must come before children) plus the trailer. */
export function writeCpio(entries: CpioEntry[], opts: CpioOptions = {}): Uint8Array {
  const mtime = opts.mtime ?? 0;
  const uid = opts.uid ?? 0;
  const gid = opts.gid ?? 0;
  const seen = new Set<string>();
  const parts: Uint8Array[] = [];
  let offset = 0;
  const push = (bytes: Uint8Array) => {
    parts.push(bytes);
    offset += bytes.length;
  };
  const pad = () => {
    if (offset % 4 !== 0) push(new Uint8Array(4 - (offset % 4)));
  };
  const record = (ino: number, name: string, mode: number, nlink: number, data: Uint8Array, rdevMajor: number, rdevMinor: number) => {
    const nameBytes = Buffer.from(`${name}\0`, "utf8");
    const fields = [ino, mode, uid, gid, nlink, mtime, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    const labels = ["ino", "mode", "uid", "gid", "nlink", "mtime", "size", "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"];
    push(Buffer.from(MAGIC + fields.map((v, i) => hex8(v, `${name}: ${labels[i]}`)).join(""), "latin1"));
    push(nameBytes);
    pad();
    if (data.length > 0) {
      push(data);
      pad();
    }
  };
  let ino = 0;
  for (const entry of entries) {
    const path = normalisePath(entry.path);
    if (seen.has(path)) throw new CpioError(`duplicate path "${path}"`);
    const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : null;
    if (parent !== null && !seen.has(parent)) throw new CpioError(`"${path}" comes before its directory "${parent}"`);
    seen.add(path);
    ino++;
    const perm = (m: number | undefined, fallback: number) => (m ?? fallback) & 0o7777;
    switch (entry.kind) {
      case "dir":
        record(ino, path, S_IFDIR | perm(entry.mode, 0o755), 2, new Uint8Array(0), 0, 0);
        break;
      case "file":
        record(ino, path, S_IFREG | perm(entry.mode, 0o644), 1, entry.data, 0, 0);
        break;
      case "symlink":
        if (entry.target === "") throw new CpioError(`symlink "${path}" has an empty target`);
        record(ino, path, S_IFLNK | 0o777, 1, Buffer.from(entry.target, "utf8"), 0, 0);
        break;
      case "char":
      case "block":
        record(ino, path, (entry.kind === "char" ? S_IFCHR : S_IFBLK) | perm(entry.mode, 0o600), 1, new Uint8Array(0), entry.major, entry.minor);
        break;
    }
  }
  record(0, TRAILER, 0, 1, new Uint8Array(0), 0, 0);
  return new Uint8Array(Buffer.concat(parts));
}

/** One record as read back. */
export interface CpioRecord {
  path: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Uint8Array;
}

/** Reads a newc archive up to its trailer. Malformed input is a CpioError. */
export function readCpio(bytes: Uint8Array): CpioRecord[] {
  const out: CpioRecord[] = [];
  let pos = 0;
  const align = (v: number) => (v + 3) & ~3;
  for (;;) {
    if (pos + 110 > bytes.length) throw new CpioError(`truncated header at ${pos}`);
    const header = Buffer.from(bytes.subarray(pos, pos + 110)).toString("latin1");
    if (!header.startsWith(MAGIC)) throw new CpioError(`bad magic at ${pos}`);
    const f = (i: number) => {
      const text = header.slice(6 + i * 8, 14 + i * 8);
      if (!/^[0-9A-Fa-f]{8}$/.test(text)) throw new CpioError(`bad header field at ${pos}`);
      return Number.parseInt(text, 16);
    };
    const nameSize = f(11);
    const size = f(6);
    const nameStart = pos + 110;
    if (nameSize < 1 || nameStart + nameSize > bytes.length) throw new CpioError(`truncated name at ${pos}`);
    const path = Buffer.from(bytes.subarray(nameStart, nameStart + nameSize - 1)).toString("utf8");
    const dataStart = align(nameStart + nameSize);
    if (dataStart + size > bytes.length) throw new CpioError(`truncated data of "${path}"`);
    if (path === TRAILER) return out;
    out.push({
      path,
      ino: f(0),
      mode: f(1),
      uid: f(2),
      gid: f(3),
      nlink: f(4),
      mtime: f(5),
      rdevMajor: f(9),
      rdevMinor: f(10),
      data: bytes.subarray(dataStart, dataStart + size),
    });
    pos = align(dataStart + size);
  }
}
