// Streaming reader of tar archives (ustar, GNU long names, pax headers): the payload of a .deb.
// Chunks go in as they come out of a decompressor; only the entries a caller asks for are kept.
import { GuestFetchError } from "./apt.js";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "other";

export interface TarEntry {
  /** Path without a leading "./" or "/". */
  path: string;
  type: TarEntryType;
  mode: number;
  size: number;
  linkTarget: string;
}

const BLOCK = 512;

function field(block: Uint8Array, start: number, length: number): string {
  const end = block.subarray(start, start + length).indexOf(0);
  return Buffer.from(block.buffer, block.byteOffset + start, end < 0 ? length : end).toString("utf8");
}

function numberField(block: Uint8Array, start: number, length: number): number {
  if (block[start]! & 0x80) {
    // GNU base-256 encoding for big values.
    let v = block[start]! & 0x7f;
    for (let i = 1; i < length; i++) v = v * 256 + block[start + i]!;
    return v;
  }
  const text = field(block, start, length).trim();
  return text === "" ? 0 : Number.parseInt(text, 8);
}

function normalise(path: string): string {
  return path.replace(/^(\.\/|\/)+/, "").replace(/\/$/, "");
}

/** Parses pax extended header records (`<len> key=value\n`). */
function parsePax(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const text = Buffer.from(data).toString("utf8");
  let pos = 0;
  while (pos < text.length) {
    const space = text.indexOf(" ", pos);
    if (space < 0) break;
    const length = Number.parseInt(text.slice(pos, space), 10);
    if (!(length > 0)) break;
    const record = text.slice(space + 1, pos + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return out;
}

/**
 * Push-driven tar parser. `want(entry)` decides per entry whether its bytes are collected;
 * collected entries are handed to `take(entry, bytes)`.
 */
export class TarReader {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private state: "header" | "data" | "end" = "header";
  private entry: TarEntry | null = null;
  private dataLeft = 0;
  private padLeft = 0;
  private collect: Uint8Array | null = null;
  private collected = 0;
  /** Meta entries (GNU long name, pax) are collected internally for the next header. */
  private meta: "longname" | "longlink" | "pax" | null = null;
  private longName: string | null = null;
  private longLink: string | null = null;
  private pax: Map<string, string> | null = null;

  constructor(
    private readonly want: (entry: TarEntry) => boolean,
    private readonly take: (entry: TarEntry, bytes: Uint8Array) => void,
    private readonly what = "tar archive",
  ) {}

  push(chunk: Uint8Array): void {
    let pos = 0;
    while (pos < chunk.length && this.state !== "end") {
      if (this.state === "data") {
        const n = Math.min(this.dataLeft, chunk.length - pos);
        if (this.collect !== null) this.collect.set(chunk.subarray(pos, pos + n), this.collected);
        this.collected += n;
        this.dataLeft -= n;
        pos += n;
        if (this.dataLeft === 0) {
          const pad = Math.min(this.padLeft, chunk.length - pos);
          this.padLeft -= pad;
          pos += pad;
          if (this.padLeft === 0) this.finishEntry();
        }
        continue;
      }
      if (this.state === "header" && this.padLeft > 0) {
        // Padding after an entry that ended exactly at a chunk boundary.
        const pad = Math.min(this.padLeft, chunk.length - pos);
        this.padLeft -= pad;
        pos += pad;
        if (this.padLeft === 0) this.finishEntry();
        continue;
      }
      const need = BLOCK - this.pendingBytes;
      const n = Math.min(need, chunk.length - pos);
      this.pending.push(chunk.subarray(pos, pos + n));
      this.pendingBytes += n;
      pos += n;
      if (this.pendingBytes === BLOCK) {
        const block = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
        this.pending = [];
        this.pendingBytes = 0;
        this.header(block);
      }
    }
  }

  /** Call after the last chunk; a stream cut inside an entry is an error. */
  end(): void {
    if (this.state === "data" || this.pendingBytes !== 0 || this.padLeft !== 0) {
      throw new GuestFetchError("BAD_PACKAGE", `${this.what}: truncated`);
    }
  }

  private header(block: Uint8Array): void {
    if (block.every((b) => b === 0)) {
      this.state = "end";
      return;
    }
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (sum !== numberField(block, 148, 8)) throw new GuestFetchError("BAD_PACKAGE", `${this.what}: header checksum mismatch`);
    const flag = String.fromCharCode(block[156]!);
    const size = numberField(block, 124, 12);
    let name = field(block, 0, 100);
    if (field(block, 257, 5) === "ustar") {
      const prefix = field(block, 345, 155);
      if (prefix !== "") name = `${prefix}/${name}`;
    }
    const meta = flag === "L" ? "longname" : flag === "K" ? "longlink" : flag === "x" ? "pax" : null;
    if (meta !== null || flag === "g") {
      this.meta = meta;
      this.begin(null, size, meta !== null);
      return;
    }
    const type: TarEntryType =
      flag === "0" || flag === "\0" || flag === "7" ? "file" : flag === "5" ? "dir" : flag === "2" ? "symlink" : flag === "1" ? "hardlink" : "other";
    const entry: TarEntry = {
      path: normalise(this.pax?.get("path") ?? this.longName ?? name),
      type,
      mode: numberField(block, 100, 8),
      size: this.pax?.has("size") ? Number(this.pax.get("size")) : size,
      linkTarget: this.pax?.get("linkpath") ?? this.longLink ?? field(block, 157, 100),
    };
    this.longName = this.longLink = null;
    this.pax = null;
    const dataSize = type === "file" ? entry.size : type === "other" ? entry.size : 0;
    this.begin(entry, dataSize, type === "file" && this.want(entry));
  }

  private begin(entry: TarEntry | null, size: number, keep: boolean): void {
    this.entry = entry;
    this.dataLeft = size;
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    this.collect = keep ? new Uint8Array(size) : null;
    this.collected = 0;
    this.state = "data";
    if (size === 0) this.finishEntry();
  }

  private finishEntry(): void {
    this.state = "header";
    const bytes = this.collect;
    this.collect = null;
    if (this.entry === null) {
      if (bytes !== null && this.meta !== null) {
        const text = Buffer.from(bytes).toString("utf8").replace(/\0+$/, "");
        if (this.meta === "longname") this.longName = text;
        else if (this.meta === "longlink") this.longLink = text;
        else this.pax = parsePax(bytes);
      }
      this.meta = null;
      return;
    }
    if (bytes !== null) this.take(this.entry, bytes);
    this.entry = null;
  }
}

/** One entry for `writeTar` (tests build synthetic packages with it). */
export interface TarInput {
  path: string;
  type?: "file" | "dir" | "symlink";
  data?: Uint8Array;
  linkTarget?: string;
  mode?: number;
}

/** Writes a ustar archive; paths longer than 100 bytes get a GNU long-name entry. */
export function writeTar(entries: TarInput[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = (name: string, flag: string, size: number, mode: number, link = "") => {
    const block = new Uint8Array(BLOCK);
    const put = (s: string, at: number, len: number) => block.set(Buffer.from(s, "utf8").subarray(0, len), at);
    put(name, 0, 100);
    put(`${mode.toString(8).padStart(7, "0")}\0`, 100, 8);
    put("0000000\0", 108, 8);
    put("0000000\0", 116, 8);
    put(`${size.toString(8).padStart(11, "0")}\0`, 124, 12);
    put("00000000000\0", 136, 12);
    put(flag, 156, 1);
    put(link, 157, 100);
    put("ustar  \0", 257, 8);
    block.fill(0x20, 148, 156);
    const sum = block.reduce((a, b) => a + b, 0);
    put(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8);
    return block;
  };
  const padded = (data: Uint8Array) => {
    const out = new Uint8Array(Math.ceil(data.length / BLOCK) * BLOCK);
    out.set(data);
    return out;
  };
  for (const e of entries) {
    const type = e.type ?? "file";
    const data = type === "file" ? (e.data ?? new Uint8Array(0)) : new Uint8Array(0);
    let name = type === "dir" && !e.path.endsWith("/") ? `${e.path}/` : e.path;
    if (Buffer.byteLength(name) > 100) {
      const long = Buffer.from(`${name}\0`, "utf8");
      parts.push(header("././@LongLink", "L", long.length, 0o644), padded(long));
      name = name.slice(0, 100);
    }
    const flag = type === "file" ? "0" : type === "dir" ? "5" : "2";
    parts.push(header(name, flag, data.length, e.mode ?? (type === "dir" ? 0o755 : 0o644), e.linkTarget ?? ""), padded(data));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return new Uint8Array(Buffer.concat(parts));
}
