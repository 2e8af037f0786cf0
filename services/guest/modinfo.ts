// Kernel module metadata: the `.modinfo` section of a .ko (ELF) and a dependency load order.
// Debian's kernel package ships no modules.dep (depmod makes it at install time), so /init's
// insmod order is computed here from each module's own `depends=` field.
import { GuestFetchError } from "./apt.js";

export interface ModuleInfo {
  /** Module name as the kernel knows it (underscores). */
  name: string;
  depends: string[];
  vermagic: string;
}

/** Canonical module name: the kernel treats '-' and '_' alike. */
export function moduleName(fileOrName: string): string {
  const base = fileOrName.slice(fileOrName.lastIndexOf("/") + 1).replace(/\.ko(\.(xz|zst|gz))?$/, "");
  return base.replace(/-/g, "_");
}

/** Reads name/depends/vermagic from the `.modinfo` section of an ELF32 or ELF64 module. */
export function readModinfo(elf: Uint8Array, what = "module"): ModuleInfo {
  const bad = (why: string) => new GuestFetchError("BAD_PACKAGE", `${what}: ${why}`);
  if (elf.length < 52 || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) throw bad("not an ELF file");
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const is64 = elf[4] === 2;
  const le = elf[5] === 1;
  const u16 = (o: number) => view.getUint16(o, le);
  const u32 = (o: number) => view.getUint32(o, le);
  const word = (o: number) => (is64 ? Number(view.getBigUint64(o, le)) : u32(o));
  const shoff = word(is64 ? 0x28 : 0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  const shnum = u16(is64 ? 0x3c : 0x30);
  const shstrndx = u16(is64 ? 0x3e : 0x32);
  if (shoff + shnum * shentsize > elf.length || shstrndx >= shnum) throw bad("section table out of range");
  const section = (i: number) => {
    const base = shoff + i * shentsize;
    return { name: u32(base), offset: word(base + (is64 ? 0x18 : 0x10)), size: word(base + (is64 ? 0x20 : 0x14)) };
  };
  const strtab = section(shstrndx);
  const cstr = (at: number) => {
    let end = at;
    while (end < elf.length && elf[end] !== 0) end++;
    return Buffer.from(elf.subarray(at, end)).toString("latin1");
  };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (cstr(strtab.offset + s.name) !== ".modinfo") continue;
    if (s.offset + s.size > elf.length) throw bad(".modinfo out of range");
    const fields = new Map<string, string>();
    for (const item of Buffer.from(elf.subarray(s.offset, s.offset + s.size)).toString("latin1").split("\0")) {
      const eq = item.indexOf("=");
      if (eq > 0 && !fields.has(item.slice(0, eq))) fields.set(item.slice(0, eq), item.slice(eq + 1));
    }
    const name = fields.get("name");
    if (name === undefined) throw bad(".modinfo has no name=");
    const depends = (fields.get("depends") ?? "").split(",").filter((d) => d !== "").map(moduleName);
    return { name: moduleName(name), depends, vermagic: fields.get("vermagic") ?? "" };
  }
  throw bad("no .modinfo section");
}

/**
 * Orders `roots` and everything they depend on so that each module comes after its dependencies.
 * `builtin` names need no loading. Throws on a dependency that is neither known nor built in
 * (the caller extracts it and asks again) or on a cycle.
 */
export function loadOrder(modules: Map<string, ModuleInfo>, roots: string[], builtin: Set<string> = new Set()): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const active = new Set<string>();
  const visit = (name: string, from: string) => {
    if (done.has(name) || builtin.has(name)) return;
    if (active.has(name)) throw new GuestFetchError("BAD_PACKAGE", `module dependency cycle through ${name}`);
    const info = modules.get(name);
    if (info === undefined) throw new MissingModuleError(name, from);
    active.add(name);
    for (const dep of info.depends) visit(dep, name);
    active.delete(name);
    done.add(name);
    order.push(name);
  };
  for (const root of roots) visit(moduleName(root), "(wanted)");
  return order;
}

/** A module needed by the load order that is not among the extracted ones. */
export class MissingModuleError extends Error {
  constructor(
    readonly module: string,
    readonly neededBy: string,
  ) {
    super(`module ${module} (needed by ${neededBy}) not found`);
    this.name = "MissingModuleError";
  }
}

/** Names listed in `modules.builtin` (paths like "kernel/drivers/.../x.ko"). */
export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(text.split("\n").filter((l) => l.trim() !== "").map(moduleName));
}
