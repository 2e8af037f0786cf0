// Synthetic inputs for the guest tests: ELF kernel modules with a .modinfo section and .deb
// packages built with our ar/tar writers. Used only by *.test.ts files.
import { gzipSync } from "node:zlib";
import { writeAr } from "./ar.js";
import { writeTar, type TarInput } from "./tar.js";

/** A minimal ELF32 relocatable file whose only content is a `.modinfo` section. */
export function fakeModule(name: string, depends: string[], vermagic = "6.1.0-9-686 SMP"): Uint8Array {
  const modinfo = Buffer.from(`license=GPL\0depends=${depends.join(",")}\0name=${name}\0vermagic=${vermagic}\0`, "latin1");
  const shstrtab = Buffer.from("\0.modinfo\0.shstrtab\0", "latin1");
  const modinfoOff = 52;
  const shstrOff = modinfoOff + modinfo.length;
  const shoff = Math.ceil((shstrOff + shstrtab.length) / 4) * 4;
  const out = new Uint8Array(shoff + 3 * 40);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  v.setUint16(16, 1, true); // ET_REL
  v.setUint16(18, 3, true); // EM_386
  v.setUint32(32, shoff, true);
  v.setUint16(46, 40, true);
  v.setUint16(48, 3, true);
  v.setUint16(50, 2, true);
  out.set(modinfo, modinfoOff);
  out.set(shstrtab, shstrOff);
  const section = (i: number, nameOff: number, type: number, off: number, size: number) => {
    const b = shoff + i * 40;
    v.setUint32(b, nameOff, true);
    v.setUint32(b + 4, type, true);
    v.setUint32(b + 16, off, true);
    v.setUint32(b + 20, size, true);
  };
  section(1, 1, 1, modinfoOff, modinfo.length);
  section(2, 10, 3, shstrOff, shstrtab.length);
  return out;
}

/** A .deb (ar: debian-binary, control.tar.gz, data.tar.gz) holding `files`. */
export function fakeDeb(files: TarInput[]): Uint8Array {
  const control = gzipSync(writeTar([{ path: "./control", data: new Uint8Array(Buffer.from("Package: fake\n")) }]));
  const data = gzipSync(writeTar([{ path: "./", type: "dir" }, ...files]));
  return writeAr([
    { name: "debian-binary", data: new Uint8Array(Buffer.from("2.0\n")) },
    { name: "control.tar.gz", data: new Uint8Array(control) },
    { name: "data.tar.gz", data: new Uint8Array(data) },
  ]);
}

/** A kernel package like Debian's: boot/vmlinuz-<release> and virtio modules under lib/modules. */
export function fakeKernelDeb(release: string, vmlinuz: Uint8Array): Uint8Array {
  const mod = (path: string, name: string, deps: string[]): TarInput => ({ path: `./lib/modules/${release}/kernel/${path}`, data: fakeModule(name, deps, release) });
  return fakeDeb([
    { path: `./boot/vmlinuz-${release}`, data: vmlinuz },
    { path: `./boot/config-${release}`, data: new Uint8Array(Buffer.from("CONFIG_VIRTIO=m\n")) },
    { path: `./lib/modules/${release}/modules.builtin`, data: new Uint8Array(Buffer.from("kernel/drivers/tty/serial/8250/8250.ko\n")) },
    mod("drivers/virtio/virtio.ko", "virtio", []),
    mod("drivers/virtio/virtio_ring.ko", "virtio_ring", ["virtio"]),
    mod("drivers/virtio/virtio_pci.ko", "virtio_pci", ["virtio_ring", "virtio", "virtio_pci_modern_dev"]),
    mod("drivers/virtio/virtio_pci_modern_dev.ko", "virtio_pci_modern_dev", []),
    mod("drivers/virtio/virtio_balloon.ko", "virtio_balloon", ["virtio", "virtio_ring"]),
    mod("drivers/block/virtio_blk.ko", "virtio_blk", ["virtio", "virtio_ring"]),
    mod("drivers/char/virtio_console.ko", "virtio_console", ["virtio", "virtio_ring"]),
    mod("drivers/net/virtio_net.ko", "virtio_net", ["net_failover", "virtio", "virtio_ring"]),
    mod("drivers/net/net_failover.ko", "net_failover", ["failover"]),
    mod("net/core/failover.ko", "failover", ["core_helper"]),
    // Not a virtio-ish name: found only by a second extraction pass.
    mod("net/core/core-helper.ko", "core_helper", []),
    mod("drivers/net/dummy.ko", "dummy", []),
  ]);
}
