// Virtio memory balloon (virtio 1.1 section 5.5): the guest's driver gives pages back to the host.
//
// The host sets a target (`num_pages`: 4 KiB pages the balloon should hold); the driver inflates
// toward it by sending page frame numbers on the inflate queue, and deflates by sending them on the
// deflate queue. Pages sent on the inflate queue, and the free page ranges the driver reports on
// the reporting queue (free page reporting: no target needed), go back to the host through
// `release`: their frames are freed, and a guest that touches them later gets fresh zero pages, so a
// driver that lies about what it gave up hurts nobody but itself. The stats queue carries the
// guest's memory statistics: the device keeps the driver's buffer and hands it back to ask again.

import { StateReader } from "../state.js";
import { featureWords, type FeatureWords, type VirtioDeviceModel } from "./virtio.js";
import type { DescriptorChain, Virtqueue } from "./virtqueue.js";

/** Device-type feature bits (virtio 1.1 5.5.3). */
export const BalloonFeature = {
  MUST_TELL_HOST: 0,
  STATS_VQ: 1,
  DEFLATE_ON_OOM: 2,
  FREE_PAGE_HINT: 3,
  PAGE_POISON: 4,
  PAGE_REPORTING: 5,
} as const;

/** Queues in the order the driver finds them (no free page hint queue is offered). */
export const BalloonQueue = { INFLATE: 0, DEFLATE: 1, STATS: 2, REPORTING: 3 } as const;

/** Configuration space: le32 num_pages (the host's target), le32 actual (what the driver holds). */
const CONFIG_NUM_PAGES = 0;
const CONFIG_ACTUAL = 4;
const CONFIG_BYTES = 16;

/** Statistics tags (virtio 1.1 5.5.6.3), by name as QEMU's guest-stats show them. */
export const BALLOON_STAT_NAMES = ["swap-in", "swap-out", "major-faults", "minor-faults", "free-memory", "total-memory", "available-memory", "disk-caches", "hugetlb-allocations", "hugetlb-failures"];
const STAT_BYTES = 10;

const PAGE = 4096;
const QUEUE_SIZE = 128;

export interface BalloonHost {
  /** Guest pages [first, first+count) went back to the host. Returns the pages that held memory. */
  release(first: number, count: number): number;
  /** The driver changed `actual` (pages the balloon holds now). */
  onActual?(pages: number): void;
}

export class VirtioBalloon implements VirtioDeviceModel {
  readonly name = "virtio-balloon";
  readonly deviceId = 5;
  /** Misc memory controller. */
  readonly pciClass = 0x058000;
  readonly features: FeatureWords = featureWords(BalloonFeature.STATS_VQ, BalloonFeature.DEFLATE_ON_OOM, BalloonFeature.PAGE_REPORTING);
  readonly queueSizes = [QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE];
  readonly config = new Uint8Array(CONFIG_BYTES);
  private readonly view = new DataView(this.config.buffer);
  /** The latest statistics the guest sent, by tag name. */
  stats: Record<string, number> = {};
  /** Pages the guest gave back through the inflate and reporting queues (totals). */
  readonly counts = { inflated: 0, deflated: 0, reported: 0, released: 0 };
  /** The stats buffer the driver last sent (its head), held until the device asks again. */
  private statsHead: number | null = null;
  private statsQueue: Virtqueue | null = null;

  constructor(private readonly host: BalloonHost) {}

  /** The host's target: pages the balloon should hold. */
  get target(): number {
    return this.view.getUint32(CONFIG_NUM_PAGES, true);
  }

  set target(pages: number) {
    this.view.setUint32(CONFIG_NUM_PAGES, pages >>> 0, true);
  }

  /** Pages the driver says the balloon holds. */
  get actual(): number {
    return this.view.getUint32(CONFIG_ACTUAL, true);
  }

  configWrite(offset: number, size: number, value: number): void {
    // Only `actual` is the driver's to write.
    if (offset !== CONFIG_ACTUAL || size !== 4) return;
    this.view.setUint32(CONFIG_ACTUAL, value >>> 0, true);
    this.host.onActual?.(value >>> 0);
  }

  negotiated(): void {}

  reset(): void {
    this.view.setUint32(CONFIG_ACTUAL, 0, true);
    this.statsHead = null;
    this.statsQueue = null;
  }

  process(queue: Virtqueue): void {
    if (queue.index === BalloonQueue.STATS) return this.takeStats(queue);
    // Page numbers are read from the buffers; reported ranges are only addresses (no page is touched).
    const views = queue.index !== BalloonQueue.REPORTING;
    for (let chain = queue.pop(views); chain !== null; chain = queue.pop(views)) {
      if (queue.index === BalloonQueue.INFLATE) this.inflate(chain);
      else if (queue.index === BalloonQueue.DEFLATE) this.counts.deflated += pfnCount(chain);
      else this.report(chain);
      queue.push(chain.head, 0);
    }
  }

  /** Ask the guest for fresh statistics: give its stats buffer back (the transport signals it). Returns false when it has none here. */
  requestStats(): boolean {
    if (this.statsHead === null || !this.statsQueue) return false;
    this.statsQueue.push(this.statsHead, 0);
    this.statsHead = null;
    return true;
  }

  private inflate(chain: DescriptorChain): void {
    for (const seg of chain.readable) {
      const v = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
      for (let at = 0; at + 4 <= seg.length; at += 4) {
        this.counts.released += this.host.release(v.getUint32(at, true), 1);
        this.counts.inflated++;
      }
    }
  }

  /** A free page report: each buffer is a range of free guest memory, whole pages. */
  private report(chain: DescriptorChain): void {
    for (const r of chain.ranges) {
      const first = Math.ceil(r.gpa / PAGE);
      const end = Math.floor((r.gpa + r.length) / PAGE);
      if (end <= first) continue;
      this.counts.released += this.host.release(first, end - first);
      this.counts.reported += end - first;
    }
  }

  private takeStats(queue: Virtqueue): void {
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) {
      // The driver has at most one stats buffer out; an earlier one held here goes back first.
      if (this.statsHead !== null) queue.push(this.statsHead, 0);
      const stats: Record<string, number> = {};
      for (const seg of chain.readable) {
        const v = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
        for (let at = 0; at + STAT_BYTES <= seg.length; at += STAT_BYTES) {
          const tag = v.getUint16(at, true);
          const value = v.getUint32(at + 2, true) + v.getUint32(at + 6, true) * 2 ** 32;
          if (tag < BALLOON_STAT_NAMES.length) stats[BALLOON_STAT_NAMES[tag]] = value;
        }
      }
      this.stats = stats;
      this.statsHead = chain.head;
      this.statsQueue = queue;
    }
  }

  saveState(): object {
    return { target: this.target, actual: this.actual, statsHead: this.statsHead ?? -1 };
  }

  readState(state: unknown, path: string): () => void {
    const r = new StateReader(state, path);
    const target = r.int("target", 0, 0xffffffff);
    const actual = r.int("actual", 0, 0xffffffff);
    const statsHead = r.int("statsHead", -1, QUEUE_SIZE - 1);
    return () => {
      this.target = target;
      this.view.setUint32(CONFIG_ACTUAL, actual, true);
      // A held stats buffer stays the driver's: it is handed back on the next request (queue found then).
      this.statsHead = statsHead < 0 ? null : statsHead;
    };
  }
}

/** PFNs in an inflate or deflate buffer. */
function pfnCount(chain: DescriptorChain): number {
  return Math.floor(chain.readableBytes / 4);
}

