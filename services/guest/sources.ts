// Host apt sources: find the configured Debian mirror(s) and suite(s) to reuse in the private
// i386 apt configuration of the default guest. Reads only; the host's apt setup is never changed.
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";

/** One apt source entry, in the deb822 shape (a one-line entry becomes one record). */
export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  /** Path of a keyring, or an embedded ASCII-armoured key block (deb822 only). */
  signedBy?: string;
  /** Where it came from, for messages. */
  origin: string;
}

/** Parses the one-line format (`deb [opt=val ...] uri suite [component...]`). */
export function parseOneLineSources(text: string, origin: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const options = new Map<string, string>();
    let rest = line;
    const bracket = /^(\S+)\s+\[([^\]]*)\]\s*(.*)$/.exec(line);
    let type: string;
    if (bracket) {
      type = bracket[1]!;
      for (const opt of bracket[2]!.trim().split(/\s+/)) {
        const eq = opt.indexOf("=");
        if (eq > 0) options.set(opt.slice(0, eq).toLowerCase(), opt.slice(eq + 1));
      }
      rest = bracket[3]!;
    } else {
      const sp = line.search(/\s/);
      if (sp < 0) continue;
      type = line.slice(0, sp);
      rest = line.slice(sp + 1);
    }
    const words = rest.trim().split(/\s+/);
    if (words.length < 2) continue;
    const entry: AptSource = {
      types: [type],
      uris: [words[0]!],
      suites: [words[1]!],
      components: words.slice(2),
      origin,
    };
    const signedBy = options.get("signed-by");
    if (signedBy !== undefined) entry.signedBy = signedBy;
    out.push(entry);
  }
  return out;
}

/** Parses the deb822 format of `*.sources` files (stanzas of `Field: value`, continuation lines). */
export function parseDeb822Sources(text: string, origin: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    let current: string | null = null;
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      if (/^[ \t]/.test(line)) {
        if (current !== null) {
          // A lone "." stands for an empty line inside a multi-line value (embedded keys).
          const cont = line.trim() === "." ? "" : line.trim();
          fields.set(current, `${fields.get(current)}\n${cont}`);
        }
        continue;
      }
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      current = line.slice(0, colon).trim().toLowerCase();
      fields.set(current, line.slice(colon + 1).trim());
    }
    if (!fields.has("types") || !fields.has("uris")) continue;
    if ((fields.get("enabled") ?? "yes").toLowerCase() === "no") continue;
    const words = (key: string) => (fields.get(key) ?? "").split(/\s+/).filter((w) => w !== "");
    const entry: AptSource = {
      types: words("types"),
      uris: words("uris"),
      suites: words("suites"),
      components: words("components"),
      origin,
    };
    const signedBy = fields.get("signed-by");
    if (signedBy !== undefined && signedBy.trim() !== "") entry.signedBy = signedBy.trim();
    out.push(entry);
  }
  return out;
}

/** Reads `sources.list` and `sources.list.d/*.list|*.sources` under `etcApt` (files apt itself would read). */
export function readHostSources(etcApt = "/etc/apt"): AptSource[] {
  const out: AptSource[] = [];
  const main = join(etcApt, "sources.list");
  if (existsSync(main)) out.push(...parseOneLineSources(readFileSync(main, "utf8"), main));
  const dir = join(etcApt, "sources.list.d");
  if (existsSync(dir)) {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (name.endsWith(".list")) out.push(...parseOneLineSources(readFileSync(path, "utf8"), path));
      else if (name.endsWith(".sources")) out.push(...parseDeb822Sources(readFileSync(path, "utf8"), path));
    }
  }
  return out;
}

/** True for an archive URI of Debian itself (debian, debian-security, a mirror of either). */
export function isDebianArchiveUri(uri: string): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  return /\/debian(-security)?\/?$/.test(url.pathname);
}

/** Debian binary sources of the host reduced to component `main`, one entry per URI. */
export function debianSources(all: AptSource[]): AptSource[] {
  const out: AptSource[] = [];
  for (const source of all) {
    if (!source.types.includes("deb") || !source.components.includes("main")) continue;
    for (const uri of source.uris.filter(isDebianArchiveUri)) {
      const entry: AptSource = { types: ["deb"], uris: [uri], suites: [...source.suites], components: ["main"], origin: source.origin };
      if (source.signedBy !== undefined) entry.signedBy = source.signedBy;
      out.push(entry);
    }
  }
  return out;
}
