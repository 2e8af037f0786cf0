// Unpacks selected files from a Debian package: the ar container is read here, the data.tar
// member is decompressed and its tar stream parsed here too (tar.ts).
//
// Decompression: gzip with node:zlib. Node 20 has no xz or zstd, so data.tar.xz goes through the
// host `xz -dc` (and .zst through `zstd -dc`) when that binary is on PATH; otherwise through
// `dpkg-deb --fsys-tarfile`, which every Debian host has and which emits the plain tar stream
// whatever the compression.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createGunzip, gunzipSync } from "node:zlib";
import { GuestFetchError } from "./apt.js";
import { readAr } from "./ar.js";
import { TarReader, type TarEntry } from "./tar.js";

export type Decompressor = "zlib" | "xz" | "zstd" | "dpkg-deb" | "none";

/** Whether a program can be run (`prog --version` exits 0). */
export function hasProgram(name: string): boolean {
  const r = spawnSync(name, ["--version"], { stdio: "ignore" });
  return r.error === undefined && r.status === 0;
}

/** Chooses how to decompress a data member, by its name's suffix and the host's tools. */
export function chooseDecompressor(member: string, has: (prog: string) => boolean = hasProgram): Decompressor {
  if (member.endsWith(".tar")) return "none";
  if (member.endsWith(".tar.gz")) return "zlib";
  if (member.endsWith(".tar.xz")) return has("xz") ? "xz" : "dpkg-deb";
  if (member.endsWith(".tar.zst")) return has("zstd") ? "zstd" : "dpkg-deb";
  return "dpkg-deb";
}

export interface ExtractedFile {
  entry: TarEntry;
  bytes: Uint8Array;
}

/**
 * Extracts the regular files for which `want` is true from the .deb at `debPath`.
 * Returns them by normalised path ("boot/vmlinuz-...", "lib/modules/...").
 */
export async function extractDeb(
  debPath: string,
  want: (entry: TarEntry) => boolean,
  opts: { decompressor?: Decompressor } = {},
): Promise<Map<string, ExtractedFile>> {
  const deb = new Uint8Array(readFileSync(debPath));
  const members = readAr(deb, debPath);
  if (members[0]?.name !== "debian-binary") throw new GuestFetchError("BAD_PACKAGE", `${debPath}: not a Debian package (no debian-binary member)`);
  const data = members.find((m) => m.name.startsWith("data.tar"));
  if (data === undefined) throw new GuestFetchError("BAD_PACKAGE", `${debPath}: no data.tar member`);
  const out = new Map<string, ExtractedFile>();
  const reader = new TarReader(want, (entry, bytes) => out.set(entry.path, { entry, bytes }), `${debPath} ${data.name}`);
  const method = opts.decompressor ?? chooseDecompressor(data.name);
  switch (method) {
    case "none":
      reader.push(data.data);
      break;
    case "zlib":
      await pipeThrough(createGunzip(), data.data, reader, debPath);
      break;
    case "xz":
      await pipeProgram("xz", ["-dc"], data.data, reader, debPath);
      break;
    case "zstd":
      await pipeProgram("zstd", ["-dc"], data.data, reader, debPath);
      break;
    case "dpkg-deb":
      await pipeProgram("dpkg-deb", ["--fsys-tarfile", debPath], null, reader, debPath);
      break;
  }
  reader.end();
  return out;
}

function pipeThrough(stream: NodeJS.ReadWriteStream, input: Uint8Array, reader: TarReader, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        reject(err);
      }
    });
    stream.on("error", (err) => reject(new GuestFetchError("BAD_PACKAGE", `${what}: ${err.message}`)));
    stream.on("end", resolve);
    stream.end(input);
  });
}

function pipeProgram(prog: string, args: string[], input: Uint8Array | null, reader: TarReader, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(prog, args, { stdio: [input === null ? "ignore" : "pipe", "pipe", "pipe"] });
    let failed: unknown = null;
    let stderr = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      if (failed !== null) return;
      try {
        reader.push(chunk);
      } catch (err) {
        failed = err;
        child.kill();
      }
    });
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (err) => reject(new GuestFetchError("BAD_PACKAGE", `${what}: cannot run ${prog}: ${err.message}`)));
    child.on("close", (code) => {
      if (failed !== null) reject(failed);
      else if (code !== 0) reject(new GuestFetchError("BAD_PACKAGE", `${what}: ${prog} failed (status ${code}): ${stderr.trim()}`));
      else resolve();
    });
    if (input !== null) {
      child.stdin!.on("error", () => {}); // EPIPE when the program dies early; reported via close
      child.stdin!.end(input);
    }
  });
}

/** Decompresses a single compressed file (a `.ko.xz`/`.ko.zst`/`.ko.gz` module) synchronously. */
export function decompressFile(name: string, bytes: Uint8Array): Uint8Array {
  if (name.endsWith(".gz")) return new Uint8Array(gunzipSync(bytes));
  const prog = name.endsWith(".xz") ? "xz" : name.endsWith(".zst") ? "zstd" : null;
  if (prog === null) return bytes;
  const r = spawnSync(prog, ["-dc"], { input: bytes, maxBuffer: 256 << 20 });
  if (r.error !== undefined || r.status !== 0) {
    throw new GuestFetchError("BAD_PACKAGE", `${name}: ${prog} -dc failed: ${r.error?.message ?? r.stderr.toString().trim()}`);
  }
  return new Uint8Array(r.stdout);
}
