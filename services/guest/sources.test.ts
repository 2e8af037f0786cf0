// Tests of host apt source parsing and the private sources.list derived from it.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderSourcesList } from "./apt.js";
import { debianSources, isDebianArchiveUri, parseDeb822Sources, parseOneLineSources, readHostSources } from "./sources.js";

describe("parseOneLineSources", () => {
  it("reads type, options, URI, suite and components, skipping comments", () => {
    const text = `# comment
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main contrib
deb-src http://deb.debian.org/debian bookworm main
deb [ trusted=yes ] http://mirror.example/debian-security bookworm-security main # trailing
`;
    const s = parseOneLineSources(text, "x");
    expect(s).toHaveLength(3);
    expect(s[0]).toMatchObject({ types: ["deb"], uris: ["http://deb.debian.org/debian"], suites: ["bookworm"], components: ["main", "contrib"] });
    expect(s[0]!.signedBy).toBe("/usr/share/keyrings/debian-archive-keyring.gpg");
    expect(s[1]!.types).toEqual(["deb-src"]);
    expect(s[2]).toMatchObject({ uris: ["http://mirror.example/debian-security"], suites: ["bookworm-security"], components: ["main"] });
  });
});

describe("parseDeb822Sources", () => {
  it("reads stanzas, multi-value fields, embedded keys and Enabled: no", () => {
    const text = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: https://other.example/debian
Suites: trixie
Components: main
Enabled: no

Types: deb
URIs: http://ftp.example.org/debian-security
Suites: bookworm-security
Components: main non-free
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----
`;
    const s = parseDeb822Sources(text, "x");
    expect(s).toHaveLength(2);
    expect(s[0]).toMatchObject({ suites: ["bookworm", "bookworm-updates"], signedBy: "/usr/share/keyrings/debian-archive-keyring.gpg" });
    expect(s[1]!.signedBy).toBe("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----");
  });
});

describe("debianSources", () => {
  it("keeps Debian archive entries of type deb with main, reduced to main", () => {
    const all = [
      ...parseOneLineSources("deb http://deb.debian.org/debian bookworm main contrib\ndeb-src http://deb.debian.org/debian bookworm main\n", "a"),
      ...parseOneLineSources("deb https://deb.nodesource.com/node_20.x nodistro main\ndeb http://security.debian.org/debian-security bookworm-security main\n", "b"),
      ...parseOneLineSources("deb http://deb.debian.org/debian bookworm contrib\n", "c"),
    ];
    const s = debianSources(all);
    expect(s.map((x) => [x.uris[0], x.suites.join(","), x.components.join(",")])).toEqual([
      ["http://deb.debian.org/debian", "bookworm", "main"],
      ["http://security.debian.org/debian-security", "bookworm-security", "main"],
    ]);
    expect(isDebianArchiveUri("http://deb.debian.org/debian/")).toBe(true);
    expect(isDebianArchiveUri("file:/srv/debian")).toBe(false);
    expect(isDebianArchiveUri("http://archive.ubuntu.com/ubuntu")).toBe(false);
  });
});

describe("readHostSources", () => {
  it("reads sources.list and sources.list.d/*.list|*.sources only", () => {
    const dir = mkdtempSync(join(tmpdir(), "hv-apt-"));
    writeFileSync(join(dir, "sources.list"), "deb http://a.example/debian bookworm main\n");
    mkdirSync(join(dir, "sources.list.d"));
    writeFileSync(join(dir, "sources.list.d", "b.list"), "deb http://b.example/debian bookworm main\n");
    writeFileSync(join(dir, "sources.list.d", "c.sources"), "Types: deb\nURIs: http://c.example/debian\nSuites: bookworm\nComponents: main\n");
    writeFileSync(join(dir, "sources.list.d", "d.list.disabled"), "deb http://d.example/debian bookworm main\n");
    expect(readHostSources(dir).map((s) => s.uris[0])).toEqual(["http://a.example/debian", "http://b.example/debian", "http://c.example/debian"]);
  });
});

describe("renderSourcesList", () => {
  it("writes one i386 line per URI and suite, embedded keys to files", () => {
    const dir = mkdtempSync(join(tmpdir(), "hv-keys-"));
    const text = renderSourcesList(
      [
        { types: ["deb"], uris: ["http://deb.debian.org/debian"], suites: ["bookworm", "bookworm-updates"], components: ["main"], signedBy: "/k.gpg", origin: "" },
        { types: ["deb"], uris: ["http://x/debian-security"], suites: ["bookworm-security"], components: ["main"], signedBy: "-----BEGIN PGP PUBLIC KEY BLOCK-----\nx", origin: "" },
      ],
      dir,
    );
    const lines = text.split("\n").filter((l) => l.startsWith("deb "));
    expect(lines).toEqual([
      "deb [arch=i386 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main",
      "deb [arch=i386 signed-by=/k.gpg] http://deb.debian.org/debian bookworm-updates main",
      `deb [arch=i386 signed-by=${join(dir, "source-1.asc")}] http://x/debian-security bookworm-security main`,
    ]);
  });
});
