// Tests of the fw_cfg device: the port interface, the file directory and DMA, with hostile records.
import { describe, expect, it } from "vitest";
import { IoBus } from "./bus.js";
import { FW_CFG_DATA_PORT, FW_CFG_DMA_PORT, FW_CFG_SELECTOR_PORT, FwCfg, FwCfgDma, FwCfgError, FwCfgKey } from "./fw-cfg.js";
import { DeviceStateError } from "./state.js";
import { throughMsgpack } from "./test-support.js";
import { FlatGuestRam } from "./virtio/guest-ram.js";

const RAM = 64 * 1024;

function setup(cmdline?: string) {
  const io = new IoBus();
  const fw = new FwCfg({ memoryBytes: 128 << 20, cpus: 3, maxCpus: 8, cmdline });
  const bytes = new Uint8Array(RAM);
  fw.attachRam(new FlatGuestRam(bytes));
  fw.attach(io);
  const readItem = (key: number, n: number) => {
    io.write(FW_CFG_SELECTOR_PORT, 2, key);
    return Uint8Array.from({ length: n }, () => io.read(FW_CFG_DATA_PORT, 1));
  };
  const bswap = (v: number) => (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
  /** Write a DMA record at `at` and start it the way a guest does: two big-endian halves. */
  const dma = (at: number, control: number, length: number, address: number | bigint, recordAddress: bigint = BigInt(at)) => {
    const v = new DataView(bytes.buffer);
    if (at + 16 <= RAM) {
      v.setUint32(at, control, false);
      v.setUint32(at + 4, length, false);
      v.setBigUint64(at + 8, BigInt(address), false);
    }
    io.write(FW_CFG_DMA_PORT, 4, bswap(Number(recordAddress >> 32n)));
    io.write(FW_CFG_DMA_PORT + 4, 4, bswap(Number(recordAddress & 0xffffffffn)));
    return at + 16 <= RAM ? v.getUint32(at, false) : -1;
  };
  return { io, fw, bytes, readItem, dma };
}

const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const le = (b: Uint8Array) => b.reduceRight((v, x) => v * 256 + x, 0);

describe("fw_cfg port interface", () => {
  it("answers the standard keys: signature, ID with DMA, RAM size, CPU counts", () => {
    const { readItem } = setup();
    expect(text(readItem(FwCfgKey.SIGNATURE, 4))).toBe("QEMU");
    expect(le(readItem(FwCfgKey.ID, 4))).toBe(3);
    expect(le(readItem(FwCfgKey.RAM_SIZE, 8))).toBe(128 << 20);
    expect(le(readItem(FwCfgKey.NB_CPUS, 2))).toBe(3);
    expect(le(readItem(FwCfgKey.MAX_CPUS, 2))).toBe(8);
    expect(le(readItem(FwCfgKey.NOGRAPHIC, 2))).toBe(1);
    expect(readItem(FwCfgKey.UUID, 16)).toEqual(new Uint8Array(16));
  });

  it("restarts at offset 0 on every select, reads 0 past the end and for unknown keys", () => {
    const { io, readItem } = setup();
    expect(text(readItem(FwCfgKey.SIGNATURE, 2))).toBe("QE");
    expect(text(readItem(FwCfgKey.SIGNATURE, 6))).toBe("QEMU\0\0");
    expect(readItem(0x1234, 4)).toEqual(new Uint8Array(4));
    io.write(FW_CFG_SELECTOR_PORT, 2, FwCfgKey.SIGNATURE);
    expect(io.read(FW_CFG_DATA_PORT, 1)).toBe(0x51);
    expect(io.read(FW_CFG_DATA_PORT, 1)).toBe(0x45);
  });

  it("reads 'QEMU CFG' at the DMA port", () => {
    const { io } = setup();
    const bytes = [0, 4].flatMap((o) => {
      const v = io.read(FW_CFG_DMA_PORT + o, 4);
      return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
    });
    expect(String.fromCharCode(...bytes)).toBe("QEMU CFG");
  });

  it("lists files in a big-endian directory, numbered from 0x20", () => {
    const { fw, readItem } = setup();
    fw.addFile("etc/acpi/tables", new Uint8Array(300).fill(7));
    fw.addFile("etc/acpi/rsdp", new Uint8Array(20).fill(9));
    const dir = readItem(FwCfgKey.FILE_DIR, 4 + 2 * 64);
    const v = new DataView(dir.buffer);
    expect(v.getUint32(0, false)).toBe(2);
    expect(v.getUint32(4, false)).toBe(300);
    expect(v.getUint16(8, false)).toBe(0x20);
    expect(text(dir.subarray(12, 12 + 15))).toBe("etc/acpi/tables");
    expect(dir[12 + 15]).toBe(0);
    expect(v.getUint32(68, false)).toBe(20);
    expect(v.getUint16(72, false)).toBe(0x21);
    expect(text(dir.subarray(76, 76 + 13))).toBe("etc/acpi/rsdp");
    expect(readItem(0x21, 20)).toEqual(new Uint8Array(20).fill(9));
    expect(() => fw.addFile("etc/acpi/rsdp", new Uint8Array(1))).toThrow(FwCfgError);
    expect(() => fw.addFile("x".repeat(56), new Uint8Array(1))).toThrow(FwCfgError);
  });

  it("has the command line when one was given", () => {
    const { readItem } = setup("console=ttyS0");
    expect(le(readItem(FwCfgKey.CMDLINE_SIZE, 4))).toBe(14);
    expect(text(readItem(FwCfgKey.CMDLINE_DATA, 14))).toBe("console=ttyS0\0");
  });
});

describe("fw_cfg DMA", () => {
  it("selects and reads into guest RAM, clears the control word, and skips", () => {
    const { bytes, dma, fw } = setup();
    expect(dma(0x100, (FwCfgKey.SIGNATURE << 16) | FwCfgDma.SELECT | FwCfgDma.READ, 4, 0x200)).toBe(0);
    expect(text(bytes.subarray(0x200, 0x204))).toBe("QEMU");
    // Longer than the item: the rest is zeroed.
    bytes.fill(0xaa, 0x300, 0x310);
    expect(dma(0x100, (FwCfgKey.NB_CPUS << 16) | FwCfgDma.SELECT | FwCfgDma.READ, 16, 0x300)).toBe(0);
    expect(Array.from(bytes.subarray(0x300, 0x304))).toEqual([3, 0, 0, 0]);
    expect(bytes.subarray(0x304, 0x310)).toEqual(new Uint8Array(12));
    // Skip 2, then read on from offset 2 without selecting.
    expect(dma(0x100, (FwCfgKey.SIGNATURE << 16) | FwCfgDma.SELECT | FwCfgDma.SKIP, 2, 0)).toBe(0);
    expect(dma(0x100, FwCfgDma.READ, 2, 0x400)).toBe(0);
    expect(text(bytes.subarray(0x400, 0x402))).toBe("MU");
    expect(fw.dmaErrors).toBe(0);
  });

  it("sets ERROR for a target outside RAM, a length past RAM's end, or a write, and changes nothing else", () => {
    const { bytes, dma, fw } = setup();
    const before = bytes.slice();
    const sig = (FwCfgKey.SIGNATURE << 16) | FwCfgDma.SELECT | FwCfgDma.READ;
    expect(dma(0x100, sig, 4, 2n ** 63n)).toBe(FwCfgDma.ERROR);
    expect(dma(0x100, sig, 4, 0xfffffffen)).toBe(FwCfgDma.ERROR);
    expect(dma(0x100, sig, 0xffffffff, 0x1000)).toBe(FwCfgDma.ERROR);
    expect(dma(0x100, sig, 8, RAM - 4)).toBe(FwCfgDma.ERROR);
    expect(dma(0x100, (FwCfgKey.SIGNATURE << 16) | FwCfgDma.SELECT | FwCfgDma.WRITE, 4, 0x200)).toBe(FwCfgDma.ERROR);
    expect(fw.dmaErrors).toBe(5);
    // Only the record's control word changed.
    before.set(bytes.subarray(0x100, 0x110), 0x100);
    expect(bytes).toEqual(before);
  });

  it("ignores a record outside RAM or straddling its end (nowhere to report), without a host exception", () => {
    const { bytes, dma, fw } = setup();
    const before = bytes.slice();
    dma(RAM, FwCfgDma.READ, 4, 0, BigInt(RAM - 8));
    dma(RAM, FwCfgDma.READ, 4, 0, 0xffff_ffff_ffff_fff0n);
    dma(RAM, FwCfgDma.READ, 4, 0, 0x1_0000_0000n);
    expect(fw.dmaErrors).toBe(3);
    expect(bytes).toEqual(before);
  });

  it("fails every transfer before RAM is attached", () => {
    const io = new IoBus();
    const fw = new FwCfg({ memoryBytes: 1 << 20, cpus: 1 });
    fw.attach(io);
    io.write(FW_CFG_DMA_PORT + 4, 4, 0x00100000);
    expect(fw.dmaErrors).toBe(1);
  });
});

describe("fw_cfg state", () => {
  it("saves selector, offset and a half-written DMA address; refuses bad records unchanged", () => {
    const { io, readItem, fw } = setup();
    readItem(FwCfgKey.SIGNATURE, 2);
    io.write(FW_CFG_DMA_PORT, 4, 0x01000000);
    const saved = throughMsgpack(fw.saveState());
    expect(saved).toEqual({ selector: 0, offset: 2, dmaHigh: 1 });
    const other = setup().fw;
    other.loadState(saved);
    expect(other.saveState()).toEqual(saved);
    expect(() => other.loadState({ selector: 0x10000, offset: 0, dmaHigh: 0 })).toThrow(DeviceStateError);
    expect(() => other.loadState({ selector: 1, offset: -1, dmaHigh: 0 })).toThrow(DeviceStateError);
    expect(other.saveState()).toEqual(saved);
    other.reset();
    expect(other.saveState()).toEqual({ selector: 0, offset: 0, dmaHigh: 0 });
  });
});
