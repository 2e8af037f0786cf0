// QEMU's firmware configuration device (fw_cfg), the x86 I/O port flavour.
//
// Selector port 0x510 (16-bit write: which item), data port 0x511 (8-bit reads walk the item from
// offset 0; reads past its end give 0), and the DMA interface at 0x514: the guest writes the
// guest-physical address of an FWCfgDmaAccess record (big-endian: u32 control, u32 length, u64
// address) as two big-endian 32-bit halves, high at 0x514, low at 0x518; the low write runs the
// transfer. Control bits: ERROR, READ, SKIP, SELECT (item in bits 16-31), WRITE. The transfer is
// synchronous; afterwards the record's control word is 0, or ERROR when any part of it was outside
// RAM or asked for a write (no item is writable). Reading the DMA port gives "QEMU CFG".
//
// Items are configuration (built from the VM's options), not state: a snapshot keeps only the
// selector, the data offset and a half-written DMA address.

import type { AccessSize, Device, IoBus } from "./bus.js";
import { StateReader } from "./state.js";
import type { GuestRam } from "./virtio/guest-ram.js";

/** I/O ports. */
export const FW_CFG_SELECTOR_PORT = 0x510;
export const FW_CFG_DATA_PORT = 0x511;
export const FW_CFG_DMA_PORT = 0x514;

/** Standard item keys (docs/specs/fw_cfg.rst). Numbers are little-endian unless noted. */
export const FwCfgKey = {
  SIGNATURE: 0x00,
  ID: 0x01,
  UUID: 0x02,
  RAM_SIZE: 0x03,
  NOGRAPHIC: 0x04,
  NB_CPUS: 0x05,
  MAX_CPUS: 0x0f,
  CMDLINE_SIZE: 0x14,
  CMDLINE_DATA: 0x15,
  /** The file directory (big-endian count and entries). */
  FILE_DIR: 0x19,
  /** Files are numbered from here, in directory order. */
  FILE_FIRST: 0x20,
} as const;

/** ID bits: the traditional port interface, and DMA. */
export const FW_CFG_ID_TRADITIONAL = 1 << 0;
export const FW_CFG_ID_DMA = 1 << 1;

/** FWCfgDmaAccess control bits. */
export const FwCfgDma = {
  ERROR: 0x01,
  READ: 0x02,
  SKIP: 0x04,
  SELECT: 0x08,
  WRITE: 0x10,
} as const;

/** Size of an FWCfgDmaAccess record, bytes. */
export const FW_CFG_DMA_RECORD = 16;
/** A file directory entry: u32 size, u16 select, u16 reserved (big-endian), 56-byte name. */
export const FW_CFG_FILE_ENTRY = 64;
export const FW_CFG_MAX_FILE_PATH = 56;
/** "QEMU CFG" as the DMA port reads it, byte by byte. */
const DMA_SIGNATURE = new TextEncoder().encode("QEMU CFG");

/** A file name that does not fit the directory, or a second file of one name. */
export class FwCfgError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FwCfgError";
  }
}

export interface FwCfgOptions {
  /** Guest RAM in bytes (RAM_SIZE). */
  memoryBytes: number;
  /** vCPUs at boot (NB_CPUS) and at most (MAX_CPUS). */
  cpus: number;
  maxCpus?: number;
  /** 16 bytes; default all zero (no UUID given, as QEMU without -uuid). */
  uuid?: Uint8Array;
  /** The kernel command line, when the VMM loaded a kernel (CMDLINE_SIZE/CMDLINE_DATA). */
  cmdline?: string;
}

const u16le = (v: number) => Uint8Array.of(v & 0xff, (v >>> 8) & 0xff);
const u32le = (v: number) => Uint8Array.of(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
function u64le(v: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(v), true);
  return out;
}

export class FwCfg implements Device {
  readonly name = "fw-cfg";
  /** Items by key; a missing key reads as an empty item. */
  private readonly items = new Map<number, Uint8Array>();
  private readonly files: { name: string; key: number }[] = [];
  /** Guest RAM for DMA; until attached, every DMA transfer fails (nothing is written). */
  private ram: GuestRam | null = null;
  /** Current item key (the selector as written, 16 bits). */
  private selector = 0;
  /** Next byte of the current item the data port or a DMA transfer reads. */
  private offset = 0;
  /** The DMA address's high half, written at 0x514 and used by the write at 0x518. */
  private dmaHigh = 0;
  /** DMA transfers run and those that ended with the ERROR bit (for tests and traces). */
  dmaTransfers = 0;
  dmaErrors = 0;

  constructor(options: FwCfgOptions) {
    this.items.set(FwCfgKey.SIGNATURE, new TextEncoder().encode("QEMU"));
    this.items.set(FwCfgKey.ID, u32le(FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA));
    this.items.set(FwCfgKey.UUID, options.uuid ? new Uint8Array(options.uuid.subarray(0, 16)) : new Uint8Array(16));
    this.items.set(FwCfgKey.RAM_SIZE, u64le(options.memoryBytes));
    this.items.set(FwCfgKey.NOGRAPHIC, u16le(1));
    this.items.set(FwCfgKey.NB_CPUS, u16le(options.cpus));
    this.items.set(FwCfgKey.MAX_CPUS, u16le(options.maxCpus ?? options.cpus));
    if (options.cmdline !== undefined) {
      const text = new TextEncoder().encode(`${options.cmdline}\0`);
      this.items.set(FwCfgKey.CMDLINE_SIZE, u32le(text.length));
      this.items.set(FwCfgKey.CMDLINE_DATA, text);
    }
    this.items.set(FwCfgKey.FILE_DIR, this.directory());
  }

  /** Add a named file (e.g. "etc/acpi/tables"); its key is the next after FILE_FIRST. */
  addFile(name: string, bytes: Uint8Array): number {
    const encoded = new TextEncoder().encode(name);
    if (encoded.length === 0 || encoded.length >= FW_CFG_MAX_FILE_PATH) throw new FwCfgError(`fw_cfg file name '${name}' must be 1 to ${FW_CFG_MAX_FILE_PATH - 1} bytes`);
    if (this.files.some((f) => f.name === name)) throw new FwCfgError(`fw_cfg file '${name}' exists already`);
    const key = FwCfgKey.FILE_FIRST + this.files.length;
    this.files.push({ name, key });
    this.items.set(key, bytes);
    this.items.set(FwCfgKey.FILE_DIR, this.directory());
    return key;
  }

  /** Give the device guest RAM for DMA (the VMM has it only after the platform exists). */
  attachRam(ram: GuestRam): void {
    this.ram = ram;
  }

  private directory(): Uint8Array {
    const out = new Uint8Array(4 + this.files.length * FW_CFG_FILE_ENTRY);
    const v = new DataView(out.buffer);
    v.setUint32(0, this.files.length, false);
    this.files.forEach((f, i) => {
      const at = 4 + i * FW_CFG_FILE_ENTRY;
      v.setUint32(at, this.items.get(f.key)!.length, false);
      v.setUint16(at + 4, f.key, false);
      out.set(new TextEncoder().encode(f.name), at + 8);
    });
    return out;
  }

  attach(io: IoBus): void {
    io.register({
      name: "fw-cfg",
      base: FW_CFG_SELECTOR_PORT,
      length: 2,
      sizes: 1 | 2 | 4,
      handler: {
        read: (port, size) => (port === FW_CFG_DATA_PORT ? this.readData(size) : 0),
        write: (port, size, value) => {
          // A 16-bit write at 0x510 selects; the data port takes no writes (QEMU dropped them in 2.4).
          if (port === FW_CFG_SELECTOR_PORT && size >= 2) this.select(value & 0xffff);
        },
      },
    });
    io.register({
      name: "fw-cfg-dma",
      base: FW_CFG_DMA_PORT,
      length: 8,
      sizes: 1 | 2 | 4,
      handler: {
        read: (port, size) => {
          let value = 0;
          for (let i = size - 1; i >= 0; i--) value = value * 256 + (DMA_SIGNATURE[port - FW_CFG_DMA_PORT + i] ?? 0xff);
          return value >>> 0;
        },
        write: (port, size, value) => {
          // Only 32-bit halves do anything, as in QEMU; the value is big-endian in the register.
          if (size !== 4) return;
          const be = ((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) | (value >>> 24);
          if (port === FW_CFG_DMA_PORT) this.dmaHigh = be >>> 0;
          else if (port === FW_CFG_DMA_PORT + 4) {
            const high = this.dmaHigh;
            this.dmaHigh = 0;
            this.dma(high * 2 ** 32 + (be >>> 0));
          }
        },
      },
    });
  }

  private select(key: number): void {
    this.selector = key;
    this.offset = 0;
  }

  private item(): Uint8Array | undefined {
    return this.items.get(this.selector);
  }

  /** Little-endian bytes of the current item from the offset on (0 past its end); the offset moves. */
  private readData(size: AccessSize): number {
    const item = this.item();
    let value = 0;
    for (let i = 0; i < size; i++) {
      const b = item !== undefined && this.offset < item.length ? item[this.offset] : 0;
      if (item !== undefined && this.offset < item.length) this.offset++;
      value |= b << (8 * i);
    }
    return value >>> 0;
  }

  /**
   * Run the FWCfgDmaAccess record at `recordGpa`. A record outside RAM is not touched at all (there
   * is nowhere to report the error); otherwise its control word becomes 0 or ERROR.
   */
  private dma(recordGpa: number): void {
    const ram = this.ram;
    const record = ram?.view(recordGpa, FW_CFG_DMA_RECORD) ?? null;
    this.dmaTransfers++;
    if (!ram || !record) {
      this.dmaErrors++;
      return;
    }
    const rv = new DataView(record.buffer, record.byteOffset, FW_CFG_DMA_RECORD);
    const control = rv.getUint32(0, false);
    const length = rv.getUint32(4, false);
    const address = rv.getUint32(8, false) * 2 ** 32 + rv.getUint32(12, false);
    let error = false;
    if (control & FwCfgDma.SELECT) this.select(control >>> 16);
    if (control & FwCfgDma.WRITE) error = true; // no item is writable
    else if (control & FwCfgDma.READ) {
      const target = ram.view(address, length);
      if (!target) error = true;
      else {
        const item = this.item();
        const available = item === undefined ? 0 : Math.max(0, Math.min(length, item.length - this.offset));
        if (available > 0) target.set(item!.subarray(this.offset, this.offset + available));
        target.fill(0, available);
        this.offset += available;
      }
    } else if (control & FwCfgDma.SKIP) {
      const item = this.item();
      this.offset = Math.min(this.offset + length, item?.length ?? 0);
    }
    if (error) this.dmaErrors++;
    rv.setUint32(0, error ? FwCfgDma.ERROR : 0, false);
  }

  reset(): void {
    this.selector = 0;
    this.offset = 0;
    this.dmaHigh = 0;
  }

  saveState(): object {
    return { selector: this.selector, offset: this.offset, dmaHigh: this.dmaHigh };
  }

  loadState(state: unknown): void {
    const r = new StateReader(state, this.name);
    const selector = r.int("selector", 0, 0xffff);
    const offset = r.int("offset", 0, 0xffffffff);
    const dmaHigh = r.int("dmaHigh", 0, 0xffffffff);
    this.selector = selector;
    this.offset = offset;
    this.dmaHigh = dmaHigh;
  }
}
