// Virtio basics shared by every transport and device type: status bits, feature bits, device ids,
// and the contract between a transport (virtio-pci) and a device type (virtio-blk, later others).

import type { Virtqueue } from "./virtqueue.js";

/** device_status bits (virtio 1.0 section 2.1). Writing 0 resets the device. */
export const VirtioStatus = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** Transport feature bits (bit numbers). Device-type bits are 0-23. */
export const VirtioFeature = {
  RING_INDIRECT_DESC: 28,
  RING_EVENT_IDX: 29,
  VERSION_1: 32,
} as const;

/** Virtio device ids. */
export const VirtioDeviceId = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
} as const;

/** ISR status bits: a used buffer was returned; the configuration changed (or the device broke). */
export const VirtioIsr = { QUEUE: 1, CONFIG: 2 } as const;

/** A 64-bit feature set as two 32-bit words (no bigint on the access path). */
export type FeatureWords = readonly [lo: number, hi: number];

export function hasFeature(f: ArrayLike<number>, bit: number): boolean {
  return bit < 32 ? ((f[0] >>> bit) & 1) === 1 : ((f[1] >>> (bit - 32)) & 1) === 1;
}

/** Feature words with the given bits set. */
export function featureWords(...bits: number[]): [number, number] {
  const w: [number, number] = [0, 0];
  for (const b of bits) {
    if (b < 32) w[0] = (w[0] | (1 << b)) >>> 0;
    else w[1] = (w[1] | (1 << (b - 32))) >>> 0;
  }
  return w;
}

/**
 * The device-type half of a virtio device. The transport owns feature negotiation, status,
 * queues and interrupts; the device type says what it offers and serves its queues.
 */
export interface VirtioDeviceModel {
  readonly name: string;
  /** Virtio device id (2 = block). */
  readonly deviceId: number;
  /** PCI class code 0xCCSSPP the function shows. */
  readonly pciClass: number;
  /** Device-type feature bits offered (transport bits are added by the transport). */
  readonly features: FeatureWords;
  /** Maximum size of each queue (powers of two); the length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** Device configuration space as the driver reads it (little-endian fields). */
  readonly config: Uint8Array;
  /** A driver write into the configuration space (most fields are read-only and ignore it). */
  configWrite(offset: number, size: number, value: number): void;
  /** The driver accepted `features` (FEATURES_OK, or DRIVER_OK for a legacy driver). */
  negotiated(features: FeatureWords): void;
  /** Serve what the driver made available on `queue`; malformed rings throw VirtqueueError. */
  process(queue: Virtqueue): void;
  /** Device reset (status written 0, or the PCI function reset). */
  reset(): void;
  saveState(): object;
  /** Check a record made by saveState() completely; return a function that applies it. */
  readState(state: unknown, path: string): () => void;
}
