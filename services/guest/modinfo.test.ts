// Tests of .modinfo parsing and module load ordering.
import { describe, expect, it } from "vitest";
import { GuestFetchError } from "./apt.js";
import { MissingModuleError, loadOrder, moduleName, parseModulesBuiltin, readModinfo, type ModuleInfo } from "./modinfo.js";
import { fakeModule } from "./test-fixtures.js";

const info = (name: string, depends: string[] = []): ModuleInfo => ({ name, depends, vermagic: "" });

describe("readModinfo", () => {
  it("reads name, depends and vermagic from an ELF32 module", () => {
    const m = readModinfo(fakeModule("virtio_net", ["net_failover", "virtio", "virtio-ring"], "6.1.0-9-686 SMP"));
    expect(m).toEqual({ name: "virtio_net", depends: ["net_failover", "virtio", "virtio_ring"], vermagic: "6.1.0-9-686 SMP" });
    expect(readModinfo(fakeModule("virtio", [])).depends).toEqual([]);
  });
  it("refuses non-ELF data and modules without .modinfo", () => {
    expect(() => readModinfo(new Uint8Array(64))).toThrow(GuestFetchError);
    const broken = fakeModule("x", []);
    broken.fill(0, 52, 60); // clobber the section name table reference target
    broken[0x20] = 0xff; // section table offset beyond the file
    expect(() => readModinfo(broken)).toThrow(GuestFetchError);
  });
});

describe("loadOrder", () => {
  const mods = new Map(
    [
      info("virtio"),
      info("virtio_ring"),
      info("virtio_pci", ["virtio_ring", "virtio", "virtio_pci_modern_dev"]),
      info("virtio_pci_modern_dev"),
      info("virtio_net", ["net_failover", "virtio"]),
      info("net_failover", ["failover"]),
      info("failover"),
    ].map((m) => [m.name, m]),
  );

  it("puts every module after its dependencies, each once", () => {
    const order = loadOrder(mods, ["virtio_net", "virtio_pci", "virtio"]);
    expect(new Set(order).size).toBe(order.length);
    for (const name of order) for (const dep of mods.get(name)!.depends) expect(order.indexOf(dep)).toBeLessThan(order.indexOf(name));
    expect(order).toEqual(["failover", "net_failover", "virtio", "virtio_net", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci"]);
  });

  it("skips built-in modules and reports missing ones and cycles", () => {
    expect(loadOrder(mods, ["virtio_net"], new Set(["failover", "net_failover"]))).toEqual(["virtio", "virtio_net"]);
    const e = (() => {
      try {
        loadOrder(mods, ["virtio_blk"]);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(MissingModuleError);
    expect((e as MissingModuleError).module).toBe("virtio_blk");
    const cyclic = new Map([info("a", ["b"]), info("b", ["a"])].map((m) => [m.name, m]));
    expect(() => loadOrder(cyclic, ["a"])).toThrow(/cycle/);
  });

  it("normalises names from paths and modules.builtin", () => {
    expect(moduleName("kernel/drivers/char/hw_random/virtio-rng.ko.xz")).toBe("virtio_rng");
    expect([...parseModulesBuiltin("kernel/a/b-c.ko\nkernel/d.ko\n")]).toEqual(["b_c", "d"]);
  });
});
