// Live migration between two hv processes (pre-copy): the source sends guest RAM while the VM runs,
// then the pages written since, pass after pass, until few are left; then it stops the VM and sends
// the rest with the VM's state. The destination builds the VM from the hello's setup (ROMs, drives,
// platform) while the pages come, and at the END only loads the state (VMM op LOAD) and runs it;
// only when it says so (ACK) does the source let its VM go. Until then anything that goes wrong (the
// connection, a refused stream) leaves the source VM running as it was. Stream format:
// services/migration/stream.ts.

import { encode } from "@msgpack/msgpack";
import { closeSync, openSync, readSync } from "node:fs";
import type { Socket } from "node:net";
import { FrameReader, FrameType, MigrationError, isZeroPage, PAGES_PER_FRAME, MIGRATION_MAGIC, decodePages, encodeFrame, encodePages, type Frame, BLOCK_CHUNK_BYTES, decodeBlocks } from "../services/migration/stream.js";
import { PageStore } from "../services/migration/page-store.js";
import { POSTCOPY_FRAME_PAGES, PostcopyOutbox, RemotePages, decodeRemote, decodeRequest, encodeRemote } from "../services/migration/postcopy.js";
import { decodeMsgpack } from "../services/snapshot/msgpack-check.js";
import { MAX_MEMORY_BYTES, savedSetupInMemory, savedVmInMemory } from "../services/snapshot/file.js";
import { MAX_THROTTLE_PERCENT, type RamPages } from "../vmm/protocol.js";
import type { HostControl } from "./host-control.js";
import { driveRecord, checkSavedSetup, checkSavedVm, savedMetadata, savedSetup, warmSave, type CheckedSetup, type RestoredVm, type SavedPlatform, type SaveRequest } from "./snapshot.js";
import type { GuestRamSource } from "../vmm/demand-ram.js";
import type { DriveConfig, HostDrive } from "../drivers/block/component.js";
import { BlockTargets, allocatedChunks, announceBlocks, bitsSet, blockFrames, checkAnnouncements, type BlockSource } from "./block-migrate.js";

const PAGE = 4096;

export interface MigrationOptions {
  /** Pre-copy passes at most (the first sends all of RAM). */
  maxPasses?: number;
  /**
   * Stop and copy the rest once what a pass leaves fits `downtimeLimitMs` at the bandwidth measured
   * in that pass (QEMU's downtime-limit, default 300 ms); or, when given, once at most `stopPages`
   * are left.
   */
  downtimeLimitMs?: number;
  stopPages?: number;
  /** Bytes per second the stream may use at most (QEMU's max-bandwidth, a token bucket without burst; default: no limit). */
  maxBandwidth?: number;
  /**
   * QEMU's auto-converge: when a pass dirtied more than `triggerThreshold`% of the bytes it sent,
   * the second time (and every second time after), throttle the vCPU: `initial`%, then
   * `increment`% more each time, at most `max`%. Passes then go on past `maxPasses` while the
   * throttle can still rise. Absent: no throttle.
   */
  autoConverge?: ThrottleParameters;
  /** Host time in ms (the explicit host time source; default performance.now). */
  clock?: () => number;
  onProgress?: (p: MigrationProgress) => void;
  /**
   * The VM stopped and its state was taken: what is left is sending it and waiting for the ACK, so
   * the host need not run virtual time ahead any more. (Not before: the stop's round to the control
   * component takes some virtual time, which held to host time was 30 ms of downtime.)
   */
  onStopped?: () => void;
  /** Drives to block-migrate (qcow2 overlays over a shared backing file; QMP migrate's `inc`): their content goes in the stream. */
  blocks?: readonly BlockSource[];
  /**
   * Post-copy may be asked for (QEMU's postcopy-ram capability): once `requested()` says so (looked
   * at before each frame of a pass), the VM stops, its state goes with the list of pages not sent
   * yet or written since, and it runs at the destination, which asks for those pages on first touch
   * while the rest are pushed, each once. `onSwitched` runs once the destination runs it.
   */
  postcopy?: { requested: () => boolean; onSwitched?: () => void };
}

/**
 * The connection broke (or the stream was refused) after the post-copy switch: the VM runs, or
 * ran, at the destination without the pages this source still has, so it cannot come back here.
 */
export class PostcopyPausedError extends Error {
  override name = "PostcopyPausedError";
  constructor(
    why: string,
    /** Pages the source still had, not sent. */
    readonly remaining: number,
  ) {
    super(`post-copy migration broke after the switch (${why}); ${remaining} pages of the VM's RAM are still here, not sent`);
  }
}

export interface ThrottleParameters {
  triggerThreshold: number;
  initial: number;
  increment: number;
  max: number;
}

export interface MigrationProgress {
  pass: number;
  /** Pages sent in this pass, and in all. */
  pages: number;
  bytes: number;
  /** Pages written since the pass before (what the next pass sends). */
  dirty: number;
  /** What sending those would take at this pass's bandwidth, ms. */
  expectedDowntimeMs?: number;
  /** Pages the guest wrote per second of host time while this pass went (QEMU's dirty-pages-rate). */
  dirtyRate?: number;
  /** How much the vCPU is held back now (auto-converge), percent. */
  throttle: number;
  /** Non-zero pages when the migration started (what pass 1 sent). */
  nonZeroPages: number;
  /** Bytes this pass sends, and has sent so far (progress comes after each frame too). */
  passBytes: number;
  passSent: number;
  /** Block migration: chunks (BLOCK_CHUNK_BYTES) sent in all, and written since the pass before (the next pass sends them). */
  chunks: number;
  dirtyChunks: number;
  /** After the post-copy switch: pages remote at the switch, sent since, sent because the destination asked for them, asked for again (not sent twice). */
  postcopy?: { pages: number; sent: number; requested: number; refused: number };
}

export interface MigrationResult extends MigrationProgress {
  /** Host ms from stopping the VM to the destination's ACK. */
  downtimeMs: number;
  /**
   * Where the downtime went: each step's end, host ms since the stop (stop: paused, dirty log and
   * state collected; read N pages; state; send; ack), and this process's CPU ms since the stop (the
   * rest of the wall time waited: for the link, the destination, or a core).
   */
  stopSteps: Array<[string, number, number, number]>;
  /** When the VM stopped, ms since the epoch (to line up with the destination's timeline). */
  stoppedAtEpochMs: number;
  /** The last pass left what fits the downtime limit (else the pass limit stopped it). */
  converged: boolean;
  /** Post-copy: host ms from the stop until the destination had every page. */
  allArrivedMs?: number;
}

/**
 * Send VM `vm` over `socket` (connected to a destination). Resolves once the destination runs it
 * (the source's VM is then paused for good: the caller ends it); rejects when anything failed
 * before, and the source VM is running again, as it was.
 */
export async function migrateOut(control: HostControl, vm: number, request: Omit<SaveRequest, "path">, socket: Socket, options: MigrationOptions = {}): Promise<MigrationResult> {
  const maxPasses = options.maxPasses ?? 8;
  const downtimeLimitMs = options.downtimeLimitMs ?? 300;
  const rate = options.maxBandwidth ?? Infinity;
  const clock = options.clock ?? (() => performance.now());
  const converge = options.autoConverge;
  // Auto-converge's pass limit: enough passes for the throttle to reach its most, two for each step.
  const passLimit = converge ? maxPasses + 2 * (1 + Math.ceil(Math.max(0, converge.max - converge.initial) / Math.max(1, converge.increment))) : maxPasses;
  /** The token bucket (max-bandwidth, no burst): when the link is free again, clock ms. */
  let linkFreeAt = clock();
  /** The bucket held the stream back in this pass: the link took what max-bandwidth lets through. */
  let heldBack = false;
  // No Nagle: the small frames at the stop (the state, END) must not wait for the peer's delayed ACK of the pages before them (up to 40 ms on Linux).
  socket.setNoDelay(true);
  // The destination says one thing (ACK or ABORT), or the connection ends.
  const replies = new FrameInbox(socket, new FrameReader(false), () => new Error("the destination closed the connection"));
  const send = (bytes: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      if (replies.error) return reject(replies.error);
      socket.write(bytes, (error) => (error ? reject(error) : resolve()));
    });
  const progress: MigrationProgress = { pass: 0, pages: 0, bytes: 0, dirty: 0, throttle: 0, nonZeroPages: 0, passBytes: 0, passSent: 0, chunks: 0, dirtyChunks: 0 };
  const blocks = options.blocks ?? [];
  /** Each block-migrated drive's chunks the next pass sends (pass 1: what its overlay holds). */
  let wantedChunks: Uint8Array[] = [];
  /** BLOCKS frames of the chunks `wanted` marks, each read when it is taken (a pass does not hold a disk's worth in memory). */
  const blockFramesOf = function* (wanted: Uint8Array[]) {
    for (const [i, b] of blocks.entries()) yield* blockFrames(b, wanted[i], (n) => (progress.chunks += n));
  };
  const stopBlockLog = () => blocks.forEach((b) => b.drive.stopLog());
  /** Frames of the pages `wanted` says (all when null), read from `ram` now; counts the pages in `progress`. */
  /** The pages of each frame framesOf made last (a post-copy switch in the middle of a pass leaves the rest remote). */
  let framePages: number[][] = [];
  const framesOf = (ram: RamPages, wanted: Uint8Array | null): Uint8Array[] => {
    const frames: Uint8Array[] = [];
    framePages = [];
    let batch: Array<{ page: number; bytes: Uint8Array | null }> = [];
    for (let p = 0; p < ram.pages; p++) {
      if (wanted && !((wanted[p >> 3] >> (p & 7)) & 1)) {
        // Eight pages not wanted at a time: the stop's pass looks at every page, and wants few.
        if ((p & 7) === 0 && wanted[p >> 3] === 0) p += 7;
        continue;
      }
      const bytes = ram.read(p);
      // Pass 1 leaves zero pages out (the destination starts from zeros); later passes must say "now zero".
      const zero = bytes === null || isZeroPage(bytes);
      if (!wanted && zero) continue;
      batch.push({ page: p, bytes: zero ? null : bytes });
      progress.pages++;
      if (batch.length === PAGES_PER_FRAME) {
        frames.push(encodeFrame(FrameType.PAGES, encodePages(batch)));
        framePages.push(batch.map((b) => b.page));
        batch = [];
      }
    }
    if (batch.length > 0) {
      frames.push(encodeFrame(FrameType.PAGES, encodePages(batch)));
      framePages.push(batch.map((b) => b.page));
    }
    return frames;
  };
  /** Wait until the link had its time for what was given it (linkFreeAt). */
  const linkFree = async () => {
    // A few ms at a time: the clock may be the VM's virtual time, which the host loop moves meanwhile.
    for (let wait = linkFreeAt - clock(); wait > 0; wait = linkFreeAt - clock()) {
      heldBack = true;
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 2)));
    }
  };
  const counted = (bytes: number) => {
    progress.bytes += bytes;
    progress.passSent += bytes;
    options.onProgress?.({ ...progress });
  };
  const sendAll = async (frames: Iterable<Uint8Array>) => {
    for (const f of frames) {
      await send(f);
      counted(f.length);
      // Within max-bandwidth: the next frame waits until this one's bytes had their time on the link.
      if (rate === Infinity) continue;
      linkFreeAt = Math.max(linkFreeAt, clock()) + (f.length / rate) * 1000;
      await linkFree();
    }
  };
  /**
   * The stop's pages as one write, now; the link is busy with them from now on (linkFreeAt), and
   * what follows waits for that. Resolves once they are written (a failure rejects, and is the
   * connection's error as well: no one need wait for this promise for it to be seen).
   */
  const sendNow = (frames: Uint8Array[]): Promise<void> => {
    if (frames.length === 0) return Promise.resolve();
    const bytes = concat(frames);
    if (rate !== Infinity) linkFreeAt = Math.max(linkFreeAt, clock()) + (bytes.length / rate) * 1000;
    const sent = send(bytes).then(() => counted(bytes.length));
    sent.catch(() => {});
    return sent;
  };
  /**
   * The stop's last frames (the state, END) as one write, once the link had its time for them and
   * for the pages before them: END arrives when it would have frame by frame (each waiting for the
   * link time of the one before), but after one timer and one write instead of three of each,
   * which under load were several ms each of the downtime.
   */
  const sendTail = async (frames: readonly Uint8Array[]) => {
    const bytes = concat(frames);
    if (rate !== Infinity) {
      linkFreeAt = Math.max(linkFreeAt, clock()) + (bytes.length / rate) * 1000;
      await linkFree();
    }
    await send(bytes);
    counted(bytes.length);
  };
  /** Opened before the stop: the stop's steps only read it. */
  const threadClock = new ThreadClock();
  let logging = false;
  let throttled = false;
  /** The VM's drives were closed for the destination (shared storage): a resume here opens them again. */
  let handedOver = false;
  /** At the stop (pre-copy's, or post-copy's switch), once the state is taken: shared storage's images go to disk and are closed here (their write locks released), so that the destination can open them. */
  const handOverDrives = async (step: (name: string) => void) => {
    if (request.drives.length === 0) return;
    handedOver = true;
    await control.inactivateDrives(vm);
    step("drives closed");
  };
  let converged = false;
  /** Passes that dirtied more than the trigger threshold since the throttle last rose. */
  let highPasses = 0;
  /** Post-copy: the destination runs the VM (the switch's ACK came); from here on the VM cannot come back. */
  let switched = false;
  let outbox: PostcopyOutbox | null = null;
  /**
   * The post-copy switch: stop the VM, send its state and the pages that stay remote (`unsent`, those
   * `wanted` marks, and those written since the last look); once the destination runs it (ACK),
   * push those pages, each once, the ones it asks for first; END, and its ACK once all arrived.
   */
  async function postcopySwitch(unsent: number[], wanted: Uint8Array | null): Promise<MigrationResult> {
    const pages = request.memoryBytes / PAGE;
    const remote = new Uint8Array(Math.ceil(pages / 8));
    for (const p of unsent) remote[p >> 3] |= 1 << (p & 7);
    // Switched in pass 1: its pages not sent yet were not zero either.
    if (progress.pass === 1) progress.nonZeroPages = progress.pages + unsent.length;
    for (let i = 0; wanted && i < remote.length; i++) remote[i] |= wanted[i];
    const stoppedAt = performance.now();
    const stopSteps: Array<[string, number, number, number]> = [];
    const atStop = threadClock.now();
    const step = (name: string) => {
      const t = threadClock.now();
      stopSteps.push([name, performance.now() - stoppedAt, t.cpu - atStop.cpu, t.queued - atStop.queued]);
    };
    const tail = await control.stopAndCapture(vm, (last) => {
      for (let i = 0; last && i < remote.length; i++) remote[i] |= last[i];
    }, (state) => [encodeFrame(FrameType.META, encode({ vm: savedMetadata(request, state) })), encodeFrame(FrameType.POSTCOPY, encodeRemote(remote))], step);
    step("state");
    await handOverDrives(step);
    options.onStopped?.();
    await sendTail(tail);
    step("sent");
    // Until the destination says it runs the VM, a failure leaves it here, as in pre-copy.
    const reply = await replies.next().catch((error: Error) => error);
    if (reply instanceof Error || reply.type !== FrameType.ACK) {
      const why = reply instanceof Error ? reply.message : reply.type === FrameType.ABORT ? new TextDecoder().decode(reply.payload) : `a frame of type ${reply.type}`;
      throw new Error(`the destination did not take the VM: ${why}`);
    }
    step("ack");
    const downtimeMs = performance.now() - stoppedAt;
    switched = true;
    const box = (outbox = new PostcopyOutbox(remote, pages));
    const counts = () => (progress.postcopy = { pages: box.total, sent: box.sent, requested: box.requested, refused: box.refused });
    counts();
    options.postcopy?.onSwitched?.();
    await control.dirty(vm, "stop").catch(() => {});
    logging = false;
    let failure: Error | null = null;
    let allArrived = false;
    let endSent = false;
    let wake: (() => void) | null = null;
    const kick = () => {
      wake?.();
      wake = null;
    };
    // What the destination says after the switch: page requests, then the ACK that all arrived.
    void (async () => {
      for (;;) {
        const f = await replies.next();
        if (f.type === FrameType.REQUEST) box.request(decodeRequest(f.payload, pages));
        else if (f.type === FrameType.ACK && endSent) {
          allArrived = true;
          return kick();
        } else if (f.type === FrameType.ABORT) throw new Error(`the destination gave up: ${new TextDecoder().decode(f.payload).slice(0, 500)}`);
        else throw new MigrationError("frame", `a frame of type ${f.type} has no place after the post-copy switch`);
        counts();
        kick();
      }
    })().catch((error: Error) => {
      failure ??= error;
      kick();
    });
    const nap = (ms: number) => new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, ms);
    });
    // Held to max-bandwidth, a pushed frame takes about 5 ms of the link: a page asked for waits behind little.
    const pushPages = rate === Infinity ? POSTCOPY_FRAME_PAGES : Math.max(1, Math.min(POSTCOPY_FRAME_PAGES, Math.floor((rate * 0.005) / (PAGE + 5))));
    while (box.remaining > 0) {
      if (failure) throw failure;
      // Pages asked for go at once; the push waits for the link's time (max-bandwidth).
      if (!box.asking && rate !== Infinity && clock() < linkFreeAt) {
        await nap(Math.min(2, linkFreeAt - clock()));
        continue;
      }
      const batch = box.take(box.asking ? POSTCOPY_FRAME_PAGES : pushPages);
      const frame = await control.readRam(vm, (ram) => encodeFrame(FrameType.PAGES, encodePages(batch.map((page) => ({ page, bytes: ram.read(page) })))));
      counts();
      await send(frame);
      progress.pages += batch.length;
      counted(frame.length);
      if (rate !== Infinity) linkFreeAt = Math.max(linkFreeAt, clock()) + (frame.length / rate) * 1000;
    }
    if (failure) throw failure;
    endSent = true;
    await send(encodeFrame(FrameType.END));
    while (!allArrived) {
      if (failure) throw failure;
      await nap(1000);
    }
    step("all arrived");
    stopBlockLog();
    return { ...progress, downtimeMs, allArrivedMs: performance.now() - stoppedAt, stopSteps, stoppedAtEpochMs: epochMs(stoppedAt), converged: false };
  }
  try {
    if (options.postcopy && blocks.length > 0) throw new RangeError("post-copy does not go with block migration (inc)");
    // The drives first: one that is not an overlay refuses the migration before anything goes.
    const announced = announceBlocks(blocks);
    await send(MIGRATION_MAGIC);
    await send(encodeFrame(FrameType.META, encode({ hello: { memoryBytes: request.memoryBytes, name: request.name, setup: savedSetup(request), ...(blocks.length > 0 ? { blocks: announced } : {}) } })));
    await control.dirty(vm, "start");
    /** When the dirty log was last collected (or started): what it holds was written since. */
    let logSince = clock();
    logging = true;
    // Written from here on: sent again. The log starts before pass 1 reads what the overlays hold.
    for (const b of blocks) if (!b.drive.startLog(BLOCK_CHUNK_BYTES)) throw new RangeError(`block migration: drive ${b.index} is not attached to the VM`);
    wantedChunks = blocks.map((b) => allocatedChunks(b.drive.image()!));
    // The stop's save then runs warm code (cold, it was 10 to 20 ms of the downtime).
    warmSave(request);
    let wanted: Uint8Array | null = null;
    const postcopyAsked = () => options.postcopy?.requested() === true;
    /** Post-copy: the pages of this pass not sent when the switch came. */
    let unsent: number[] | null = null;
    for (progress.pass = 1; ; progress.pass++) {
      // Between passes: what the last one left (written since) stays remote.
      if (progress.pass > 1 && postcopyAsked()) {
        unsent = [];
        progress.pass--;
        break;
      }
      const frames = await control.readRam(vm, (ram) => framesOf(ram, wanted));
      const pagesOfFrames = framePages;
      const passStart = clock();
      heldBack = false;
      const bytesBefore = progress.bytes;
      // The disk's chunks count as whole ones (zeros go as a flag: the pass may send less).
      progress.passBytes = frames.reduce((n, f) => n + f.length, 0) + wantedChunks.reduce((n, w) => n + bitsSet(w), 0) * (BLOCK_CHUNK_BYTES + 5);
      progress.passSent = 0;
      if (options.postcopy) {
        // Frame by frame: the switch may come in the middle of the pass (QEMU's: once a pass started).
        for (let i = 0; i < frames.length && !unsent; i++) {
          if (postcopyAsked()) {
            unsent = pagesOfFrames.slice(i).flat();
            progress.pages -= unsent.length;
          } else await sendAll([frames[i]]);
        }
        if (unsent) {
          // What this pass would have sent next is in `unsent`; what was written since it began, in the stop's log.
          wanted = null;
          break;
        }
      } else await sendAll(frames);
      // Read as they go, between kernel slices: no disk request is half done.
      await sendAll(blockFramesOf(wantedChunks));
      // RAM's view is renewed with the log, while the VM runs: the stop's look (ATTACH) then takes
      // only the pages remapped since this, not all that the pass wrote. At 1 Gbit/s the bench
      // stops after pass 1, whose ~4,000 written pages made the stop's look a whole ATTACH of RAM.
      const [, log] = await Promise.all([control.readRam(vm, () => undefined), control.dirty(vm, "collect")]);
      const collected = clock();
      progress.dirtyRate = (log.pages * 1000) / Math.max(collected - logSince, 1e-3);
      logSince = collected;
      if (progress.pass === 1) progress.nonZeroPages = progress.pages;
      progress.dirty = log.pages;
      wantedChunks = blocks.map((b) => b.drive.collectLog()!);
      progress.dirtyChunks = wantedChunks.reduce((n, w) => n + bitsSet(w), 0);
      const sent = progress.bytes - bytesBefore;
      // Bytes per ms the link took in this pass: max-bandwidth if the bucket held the stream back (the
      // link was faster), else what it measured.
      const bandwidth = heldBack ? rate / 1000 : sent / Math.max(clock() - passStart, 1e-3);
      progress.expectedDowntimeMs = (log.pages * (PAGE + 5) + progress.dirtyChunks * (BLOCK_CHUNK_BYTES + 5)) / bandwidth;
      wanted = log.bitmap;
      converged = options.stopPages !== undefined ? log.pages <= options.stopPages : progress.expectedDowntimeMs <= downtimeLimitMs;
      // The guest writes faster than the link takes it: hold its vCPU back more (QEMU's rule).
      if (!converged && converge && log.pages * PAGE > (sent * converge.triggerThreshold) / 100 && ++highPasses >= 2) {
        highPasses = 0;
        const next = progress.throttle === 0 ? converge.initial : progress.throttle + converge.increment;
        progress.throttle = Math.min(next, converge.max, MAX_THROTTLE_PERCENT);
        throttled = true;
        await control.throttle(vm, progress.throttle);
      }
      options.onProgress?.({ ...progress });
      if (converged || progress.pass >= passLimit) break;
    }
    if (unsent) return await postcopySwitch(unsent, wanted);
    // Stop the VM; what was written since the last look, the state, and the end.
    const stoppedAt = performance.now();
    const threadTimes = () => threadClock.now();
    const atStop = threadTimes();
    const stopSteps: Array<[string, number, number, number]> = [];
    const step = (name: string) => {
      const t = threadTimes();
      stopSteps.push([name, performance.now() - stoppedAt, t.cpu - atStop.cpu, t.queued - atStop.queued]);
    };
    const pagesBefore = progress.pages;
    const bytesAtStop = progress.bytes;
    const [tail, pagesSent] = await control.stopAndCapture(vm, (last, ram) => {
      step("looked");
      const merged = wanted ?? new Uint8Array(0);
      for (let i = 0; i < merged.length && last; i++) merged[i] |= last[i];
      const frames = framesOf(ram, merged);
      step(`read ${progress.pages - pagesBefore} pages`);
      if (blocks.length > 0) {
        // The VM is stopped: its disk requests are done. What it wrote last, after the overlays went to disk.
        const chunksBefore = progress.chunks;
        for (const b of blocks) b.drive.image()?.flush();
        const last = blocks.map((b, i) => {
          const log = b.drive.collectLog()!;
          for (let k = 0; k < log.length; k++) log[k] |= wantedChunks[i][k];
          return log;
        });
        frames.push(...blockFramesOf(last));
        step(`read ${progress.chunks - chunksBefore} chunks`);
      }
      // They go now, before the VMM encodes the state: their time on the link runs while it does.
      return sendNow(frames);
    }, (state, pagesSent) => [[encodeFrame(FrameType.META, encode({ vm: savedMetadata(request, state) })), encodeFrame(FrameType.END)], pagesSent] as const, step);
    step(`state ${(tail[0].length / 1024).toFixed(0)} KiB`);
    await handOverDrives(step);
    options.onStopped?.();
    await sendTail(tail);
    await pagesSent;
    step(`sent ${((progress.bytes - bytesAtStop) / 1024).toFixed(0)} KiB`);
    // The source's VM stays paused until the destination says it runs the VM.
    const reply = await replies.next().catch((error: Error) => error);
    if (reply instanceof Error || reply.type !== FrameType.ACK) {
      const why = reply instanceof Error ? reply.message : reply.type === FrameType.ABORT ? new TextDecoder().decode(reply.payload) : `a frame of type ${reply.type}`;
      throw new Error(`the destination did not take the VM: ${why}`);
    }
    step("ack");
    stopBlockLog();
    return { ...progress, downtimeMs: performance.now() - stoppedAt, stopSteps, stoppedAtEpochMs: epochMs(stoppedAt), converged };
  } catch (error) {
    if (switched) {
      // The VM ran at the destination: it cannot run here again with what it wrote there. The source keeps its pages, paused.
      socket.destroy();
      if (error instanceof PostcopyPausedError) throw error;
      throw new PostcopyPausedError((error as Error).message, (outbox as PostcopyOutbox | null)?.remaining ?? 0);
    }
    // Anything short of an ACK: the source keeps the VM, running as before.
    if (logging) await control.dirty(vm, "stop").catch(() => {});
    stopBlockLog();
    if (throttled) await control.throttle(vm, 0).catch(() => {});
    socket.destroy();
    const resumed = await resumeAfterFailure(control, vm, handedOver);
    if (resumed !== null) throw new Error(`${error instanceof Error ? error.message : String(error)}; the VM stays paused here: ${resumed}`);
    throw error;
  } finally {
    threadClock.close();
  }
}

/** How long a failed migration's source waits for the destination to let go of the drives (it may still be ending), ms. */
const DRIVES_BACK_MS = 5000;

/**
 * Let the source's VM go on after a failed migration; null once it runs, else why it could not. A
 * VM whose drives were handed over opens them again as it resumes: while the destination still has
 * one (LOCKED: it may be ending), wait for it, up to DRIVES_BACK_MS; a destination that runs the VM
 * (the connection broke after its ACK left) keeps them, and this VM stays paused rather than write
 * the same disk.
 */
async function resumeAfterFailure(control: HostControl, vm: number, handedOver: boolean): Promise<string | null> {
  const deadline = performance.now() + DRIVES_BACK_MS;
  for (;;) {
    const why = await control.resume(vm).then(() => null, (error: unknown) => (error instanceof Error ? error.message : String(error)));
    if (why === null || !handedOver || !/LOCKED/.test(why) || performance.now() > deadline) return handedOver ? why : null;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `parts` one after the other in one array. */
function concat(parts: readonly Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((n, f) => n + f.length, 0));
  parts.reduce((at, f) => (bytes.set(f, at), at + f.length), 0);
  return bytes;
}

/** Frames as they arrive on a connection, and the first thing that went wrong with it. */
class FrameInbox {
  private readonly frames: Frame[] = [];
  private failure: Error | null = null;
  private readonly waiting: Array<() => void> = [];

  constructor(socket: MigrationSocket, reader: FrameReader, closed: () => Error) {
    socket.on("data", (chunk: Buffer) => {
      try {
        this.frames.push(...reader.push(new Uint8Array(chunk)));
      } catch (error) {
        this.failure ??= error as Error;
      }
      this.wake();
    });
    socket.on("error", (error: Error) => this.fail(error));
    socket.on("close", () => this.fail(closed()));
  }

  /** What ended the connection (a broken frame, a socket error, the close), or null. */
  get error(): Error | null {
    return this.failure;
  }

  /** The next frame; once none will come, rejects with what ended the connection. */
  async next(): Promise<Frame> {
    while (this.frames.length === 0 && !this.failure) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const f = this.frames.shift();
    if (!f) throw this.failure!;
    return f;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiting.splice(0)) w();
  }
}

/** What migrateIn needs of its connection (a net.Socket; tests give it a fake). */
export interface MigrationSocket {
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  on(event: "close", listener: () => void): unknown;
  end(bytes: Uint8Array): unknown;
}

/** What arrived: the VM, checked, its pages in memory (they come into guest RAM on first touch, as a snapshot's do). */
export interface IncomingVm {
  vm: RestoredVm;
  /** When the stream opened, the hello, the END and the check came (more are marked as the VM starts). */
  timeline: MigrationTimeline;
  /** Tell the source the VM runs here (it may end); call once the VM is about to run. */
  accept(): void;
  /** Write the block-migrated chunks still in memory into the overlays (attachBlocks); before the VM runs. MigrationError if one is not attached. */
  writeBlocks(): void;
  /** A post-copy migration: the pages still at the source, coming (null: all came). */
  postcopy: PostcopyLink | null;
}

/** The destination's end of a post-copy migration after the switch (bin/incoming-link.ts). */
export interface PostcopyLink {
  /** The pages that were remote at the switch, and which arrived. */
  table: RemotePages;
  /** Tell the source the VM runs here (ACK); the connection stays for requests and pages. */
  accept(): void;
  /** Remote page `page` into `into`, asking the source for it and waiting until it came; PostcopyPageError when it cannot come. */
  read(page: number, into: Uint8Array): void;
  /** Pages first, first + 1, ... (all remote) into `into`, asked for together. */
  readRun(first: number, into: readonly Uint8Array[]): void;
  /** Every remote page arrived (the source's END, and the ACK sent): how many, and how many the VM asked for; rejects when the connection broke first. */
  done: Promise<{ pages: number; requested: number }>;
}

/** An incoming migration as it comes: the VM's setup (from the hello), its pages so far, and the whole VM at the END. */
export interface IncomingStream {
  /** The VM's setup, checked (its drives as they are here), once the hello came; null when the hello had none (an older source). */
  setup: Promise<CheckedSetup | null>;
  /** The pages that came so far (a RAM source a VM built early reads once it has its state). */
  ram: GuestRamSource;
  /** The VM, once the END came and everything was checked (and found to match the setup). */
  vm: Promise<IncomingVm>;
  /** Refuse the migration for a reason found here (the source hears it: ABORT). */
  refuse(error: Error): void;
  /** When the stream opened, the hello, the END and the check came; the VM's start marks more. */
  timeline: MigrationTimeline;
  /** The VM's drives as its block driver has them: block-migrated chunks go straight into the overlays then (before, they wait in memory). */
  attachBlocks(drive: (index: number) => HostDrive | null): void;
  /** Whether drive `index` comes in the stream (a new overlay here), not from shared storage the source still writes until its stop. */
  blockMigrated(index: number): boolean;
}

/**
 * Receive a VM on `socket`. The stream is checked as it comes; whatever is wrong with it is a
 * MigrationError (or the snapshot checks' SnapshotError) and the source is told (ABORT).
 */
export function receiveMigration(socket: MigrationSocket, options: IncomingOptions = {}): IncomingStream {
  const reader = new FrameReader();
  const inbox = new FrameInbox(socket, reader, () => new MigrationError("stream", `the connection closed before the end (${reader.pending} bytes of a frame left)`));
  /** The pages so far; sized by the hello (until then none may come). */
  let ram = new PageStore(0);
  const timeline = new MigrationTimeline();
  timeline.mark("open");
  let refused: Error | null = null;
  let blocks: BlockTargets | null = null;
  /** The VM's drives, once the runner said where they are (attachBlocks): before or after the hello. */
  let attached: ((index: number) => HostDrive | null) | null = null;
  const refuse = (error: Error) => {
    if (refused) return;
    refused = error;
    // The overlays made here held only what the failed migration brought.
    blocks?.remove();
    socket.end(encodeFrame(FrameType.ABORT, new TextEncoder().encode(error.message.slice(0, 500))));
  };
  /** After a post-copy switch: the pages still at the source. */
  let remote: PostcopyLink | null = null;
  let setupFound: (setup: CheckedSetup | null) => void = () => {};
  const setup = new Promise<CheckedSetup | null>((resolve) => (setupFound = resolve));
  const receive = async (): Promise<IncomingVm> => {
    let memoryBytes = 0;
    let meta: Record<string, unknown> | null = null;
    let helloSetup: CheckedSetup | null = null;
    let ended = false;
    let pendingRemote: Uint8Array | null = null;
    while (!ended) {
      const f = await inbox.next();
      if (refused) throw refused;
      if (f.type === FrameType.META) {
        const value = decodeMsgpack(f.payload, "META") as Record<string, unknown>;
        const hello = value?.hello as Record<string, unknown> | undefined;
        if (hello) {
          if (memoryBytes !== 0) throw new MigrationError("META", "a second hello");
          const m = hello.memoryBytes;
          if (typeof m !== "number" || !Number.isInteger(m) || m <= 0 || m > MAX_MEMORY_BYTES || m % PAGE !== 0) throw new MigrationError("META", `memoryBytes ${String(m)} is not a RAM size`);
          memoryBytes = m;
          ram = new PageStore(m / PAGE);
          // Block-migrated drives: an overlay of our own over the same backing file stands in for the source's.
          const announced = checkAnnouncements(hello.blocks, Array.isArray((hello.setup as { drives?: unknown })?.drives) ? (hello.setup as { drives: unknown[] }).drives.length : 0);
          if (announced.length > 0) {
            const drives = (hello.setup as { drives: unknown[] }).drives;
            const sourcePaths = drives.map((d) => (typeof d === "object" && d !== null && typeof (d as { path?: unknown }).path === "string" ? (d as { path: string }).path : undefined));
            blocks = new BlockTargets(announced, sourcePaths, options.blockTargets ?? []);
            blocks.attach = attached;
            for (const [drive, path] of blocks.paths) drives[drive] = driveRecord({ path, format: "qcow2" });
          }
          // The setup (ROMs, drives, platform): the destination builds the VM while the pages come.
          // Shared drives change while the source runs (a file's size and times), and another host
          // names a file by other device numbers: they are taken as they are found, and the block
          // driver hands each over from the source's hv at the stop (its write lock).
          helloSetup = hello.setup === undefined ? null : checkSavedSetup(savedSetupInMemory(hello.setup, memoryBytes), { ignoreDriveChanges: true });
          timeline.mark("hello");
          setupFound(helloSetup);
        } else if (value?.vm && typeof value.vm === "object") {
          meta = value.vm as Record<string, unknown>;
          // The overlays here, as they are now (the source's are not on this machine, or not ours).
          if (blocks && Array.isArray(meta.drives)) for (const [drive, path] of blocks.paths) if (drive < meta.drives.length) meta.drives[drive] = driveRecord({ path, format: "qcow2" });
        }
        else throw new MigrationError("META", "neither hello nor vm");
      } else if (f.type === FrameType.PAGES) {
        if (memoryBytes === 0) throw new MigrationError("PAGES", "pages before the RAM size (hello)");
        decodePages(f.payload, memoryBytes / PAGE, ram);
      } else if (f.type === FrameType.BLOCKS) {
        if (!blocks) throw new MigrationError("BLOCKS", "block data, but the hello named no block-migrated drive");
        const { drive, chunks } = decodeBlocks(f.payload, blocks.sizes);
        blocks.take(drive, chunks);
      } else if (f.type === FrameType.END) {
        ended = true;
        timeline.mark("end");
      } else if (f.type === FrameType.POSTCOPY) {
        if (!meta) throw new MigrationError("POSTCOPY", "the post-copy switch came before the VM's state");
        if (blocks) throw new MigrationError("POSTCOPY", "post-copy does not go with block migration");
        if (!options.postcopy) throw new MigrationError("POSTCOPY", "this destination cannot take a post-copy migration (hv run --incoming takes one with --postcopy-ram)");
        // Checked as END's VM is, before the worker takes the connection.
        pendingRemote = decodeRemote(f.payload, memoryBytes / PAGE);
        ended = true;
        timeline.mark("end");
      } else throw new MigrationError("frame", `a frame of type ${f.type} has no place in a migration`);
    }
    if (!meta) throw new MigrationError("END", "the stream ended without the VM's state");
    // Checked as a snapshot file would be, and resumed from memory: no file between stop and start.
    const vm = checkSavedVm(savedVmInMemory(meta, memoryBytes, ram), { devicesCheckedByLoad: options.devicesCheckedByLoad, ignoreDriveChanges: true });
    timeline.mark("state checked");
    if (helloSetup) {
      const differs = setupDifference(helloSetup, vm);
      if (differs) {
        vm.reader.close();
        throw new MigrationError("META", `the VM's ${differs} at the end is not what the hello said`);
      }
    }
    timeline.mark("checked");
    // The VM is good: from here on the connection's frames are the worker's (the source sends nothing until the ACK).
    if (pendingRemote) remote = options.postcopy!(pendingRemote, memoryBytes / PAGE);
    const targets = blocks as BlockTargets | null;
    const writeBlocks = () => {
      if (!targets) return;
      targets.flush(true);
      timeline.mark("blocks written");
    };
    const link = remote as PostcopyLink | null;
    return { vm, timeline, accept: () => (link ? link.accept() : void socket.end(encodeFrame(FrameType.ACK))), writeBlocks, postcopy: link };
  };
  const vm = receive().catch((error: unknown) => {
    const e = error instanceof Error ? error : new Error(String(error));
    refuse(e);
    setupFound(null);
    throw refused ?? e;
  });
  return {
    setup,
    ram: incomingRam(() => ram, () => remote),
    vm,
    refuse,
    timeline,
    attachBlocks: (drive) => {
      attached = drive;
      if (blocks) blocks.attach = drive;
    },
    blockMigrated: (index) => (blocks as BlockTargets | null)?.paths.has(index) ?? false,
  };
}

/**
 * The incoming VM's RAM source: the pages the stream brought, and after a post-copy switch the
 * pages still at the source (asked for on first touch; a copy that came before the switch is stale).
 */
function incomingRam(store: () => PageStore, link: () => PostcopyLink | null): GuestRamSource {
  const remoteList = (l: PostcopyLink) => {
    const pages: number[] = [];
    for (let p = 0; p < l.table.pages; p++) if (l.table.isRemote(p)) pages.push(p);
    return pages;
  };
  return {
    hasPage: (n) => link()?.table.isRemote(n) === true || store().has(n),
    storedPages: () => {
      const l = link();
      const held = store().held();
      return l ? [...Array.from(held), ...remoteList(l)] : held;
    },
    // The pages that came since the last take (the VM notes them while the stream goes on); once
    // the switch came, the pages still at the source too (they come on first touch).
    takeStored: () => {
      const l = link();
      const fresh = store().takeFresh();
      return l ? [...Array.from(fresh), ...remoteList(l)] : fresh;
    },
    readPage: (n, into) => {
      const l = link();
      if (l?.table.isRemote(n)) return l.read(n, into);
      const ram = store();
      if (ram.has(n)) into.set(ram.get(n)!);
      else into.fill(0, 0, PAGE);
    },
    readPages: (first, into) => {
      const l = link();
      // A run of remote pages is asked for in one request; otherwise page by page.
      if (l && into.every((_, i) => l.table.isRemote(first + i))) return l.readRun(first, into);
      const ram = store();
      into.forEach((bytes, i) => {
        const n = first + i;
        if (l?.table.isRemote(n)) l.read(n, bytes);
        else if (ram.has(n)) bytes.set(ram.get(n)!);
        else bytes.fill(0, 0, PAGE);
      });
    },
  };
}

export interface IncomingOptions {
  /** `--drive file=PATH` on the incoming side: where the overlays of the block-migrated drives go, in their order (else the source's paths). */
  blockTargets?: readonly string[];
  /** This destination can take a post-copy switch: the connection's worker takes the pages from there on (bin/incoming-link.ts). Absent: a POSTCOPY frame is refused. */
  postcopy?: (remote: Uint8Array, pages: number) => PostcopyLink;
  /**
   * The VM, built from the hello, takes its state with LOAD, whose devices check their records as
   * they take them: they are not checked here as well (checkSavedVm's devicesCheckedByLoad).
   */
  devicesCheckedByLoad?: boolean;
}

/** The first part of the setup that `vm` has otherwise than `setup` (name, RAM, platform, ROMs, drives), or null. */
function setupDifference(setup: CheckedSetup, vm: RestoredVm): string | null {
  if (setup.name !== vm.name) return "name";
  if (setup.memoryBytes !== vm.memoryBytes) return "RAM size";
  const p = (x: SavedPlatform) => [x.apic, x.acpi, x.debugcon, x.debugExitPort, x.pv].join();
  if (p(setup.platform) !== p(vm.platform)) return "platform";
  const roms = vm.plan.roms;
  if (setup.roms.length !== roms.length || setup.roms.some((r, i) => r.gpa !== roms[i].gpa || r.bytes.length !== roms[i].bytes.length || Buffer.compare(r.bytes, roms[i].bytes) !== 0)) return "ROMs";
  const d = (x: DriveConfig) => [x.path, x.format ?? "", x.readOnly ?? false].join("\0");
  if (setup.drives.length !== vm.drives.length || setup.drives.some((x, i) => d(x) !== d(vm.drives[i]))) return "drives";
  return null;
}

/** Receive a whole VM on `socket` (receiveMigration, waiting for the END). */
export async function migrateIn(socket: MigrationSocket): Promise<IncomingVm> {
  return receiveMigration(socket).vm;
}

/** A finished migration in a line: "migrated in 3 passes: 41.2 MiB sent for 38.0 MiB of non-zero RAM (ratio 1.08), downtime 12.3 ms, throttle 0%". */
export function migrationSummary(r: MigrationResult): string {
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  const ratio = r.nonZeroPages > 0 ? (r.bytes / (r.nonZeroPages * PAGE)).toFixed(3) : "-";
  const post = r.postcopy ? `; post-copy: ${r.postcopy.pages} pages after the switch, ${r.postcopy.requested} of them asked for first, each sent once (${r.postcopy.refused} requests for pages already sent), all there ${r.allArrivedMs!.toFixed(1)} ms after the stop` : "";
  return `migrated in ${r.pass} passes: ${mib(r.bytes)} MiB sent for ${mib(r.nonZeroPages * PAGE)} MiB of non-zero RAM (ratio ${ratio}), downtime ${r.downtimeMs.toFixed(1)} ms, throttle ${r.throttle}%${r.postcopy ? post : r.converged ? "" : " (not converged: stopped at the pass limit)"}`;
}

/** Where a finished migration's downtime went: "pause 9.1, collect 4.0, ... ack 160.2 ms after the stop (at 1765100000000.0 ms since the epoch); CPU 0.8, 3.5, ... ms". */
export function downtimeSteps(r: MigrationResult): string {
  return `${r.stopSteps.map(([name, ms]) => `${name} ${ms.toFixed(1)}`).join(", ")} ms after the stop (at ${r.stoppedAtEpochMs.toFixed(1)} ms since the epoch); CPU ${r.stopSteps.map(([, , cpu]) => cpu.toFixed(1)).join(", ")} ms; waited for a core ${r.stopSteps.map(([, , , queued]) => queued.toFixed(1)).join(", ")} ms`;
}

/**
 * The main thread's CPU time, and its time waiting for a core (ready to run, on a run queue), ms
 * since it started: Linux's schedstat of the thread, read through a file kept open (opening it for
 * each look cost 0.1 to 0.3 ms, in the downtime it measures). Elsewhere the process's CPU time
 * (its GC and compiler threads too) and no wait.
 */
export class ThreadClock {
  private fd: number | null = null;
  private readonly buffer = Buffer.alloc(96);

  constructor() {
    try {
      this.fd = openSync(`/proc/self/task/${process.pid}/schedstat`, "r");
    } catch {
      // Not Linux.
    }
  }

  now(): { cpu: number; queued: number } {
    if (this.fd !== null) {
      try {
        const n = readSync(this.fd, this.buffer, 0, this.buffer.length, 0);
        const [cpu, queued] = this.buffer.toString("latin1", 0, n).split(" ").map(Number);
        if (Number.isFinite(cpu) && Number.isFinite(queued)) return { cpu: cpu / 1e6, queued: queued / 1e6 };
      } catch {
        // Gone: the process's time.
      }
    }
    const u = process.cpuUsage();
    return { cpu: (u.user + u.system) / 1000, queued: 0 };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * Host time `at` (performance.now()) as ms since the epoch, lined up with the system clock once,
 * when this module loads: two processes' times then compare to about a ms (performance.timeOrigin
 * of two processes was seen to differ by more than that).
 */
function epochMs(at: number): number {
  return EPOCH_ANCHOR.date + (at - EPOCH_ANCHOR.perf);
}
const EPOCH_ANCHOR = { date: Date.now(), perf: performance.now() };

/** Named moments of an incoming migration, host ms since the epoch (so that they line up with the source's). */
export class MigrationTimeline {
  /** Each mark's name, time, and the main thread's CPU time and time waiting for a core then (ms, threadTimes). */
  readonly marks: Array<[string, number, number, number]> = [];
  private clock: ThreadClock | null = null;
  /** The main thread's times now (ThreadClock, kept open until close()). */
  threadTimes(): { cpu: number; queued: number } {
    return (this.clock ??= new ThreadClock()).now();
  }
  /** No more marks: the file the thread's times are read from is closed. */
  close(): void {
    this.clock?.close();
  }
  mark(name: string): void {
    const t = this.threadTimes();
    this.marks.push([name, epochMs(performance.now()), t.cpu, t.queued]);
  }
  /** "end 0.0, ... resumed 7.1 CPU ms after end; waited for a core 0.0, ... 3.2 ms": the main thread's CPU and wait from mark `from` to each mark after it. */
  describeCpu(from: string): string {
    const at = this.marks.findIndex(([n]) => n === from);
    if (at < 0) return "";
    const [, , cpu, queued] = this.marks[at];
    const after = this.marks.slice(at);
    return `${after.map(([name, , c]) => `${name} ${(c - cpu).toFixed(1)}`).join(", ")} CPU ms after ${from}; waited for a core ${after.map(([, , , q]) => (q - queued).toFixed(1)).join(", ")} ms`;
  }
  /** "end 0.0, checked 21.3, ... ms after END (at 1765100000000.0 ms since the epoch)", from `from`. */
  describe(from: string): string {
    const base = this.marks.find(([n]) => n === from)?.[1] ?? this.marks[0]?.[1] ?? 0;
    return `${this.marks.map(([name, t]) => `${name} ${(t - base).toFixed(1)}`).join(", ")} ms after ${from} (at ${base.toFixed(1)} ms since the epoch)`;
  }
}

/** `tcp:HOST:PORT` (QEMU's spelling) as host and port; throws RangeError naming what is wrong. */
export function parseTcpUri(uri: string): { host: string; port: number } {
  const m = /^tcp:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(uri);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new RangeError(`'${uri}' is not tcp:HOST:PORT (a port from 1 to 65535)`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port };
}

export type MigrationParameter = "max-bandwidth" | "downtime-limit" | "throttle-trigger-threshold" | "cpu-throttle-initial" | "cpu-throttle-increment" | "max-cpu-throttle";

/** QEMU's defaults: no bandwidth limit (0), 300 ms downtime; throttle at 50% dirtied of sent, from 20%, by 10%, up to 99%. */
const DEFAULT_PARAMETERS: Record<MigrationParameter, number> = {
  "max-bandwidth": 0,
  "downtime-limit": 300,
  "throttle-trigger-threshold": 50,
  "cpu-throttle-initial": 20,
  "cpu-throttle-increment": 10,
  "max-cpu-throttle": 99,
};

/** Each parameter's range, as QEMU has it (bytes/s up to 2^40, ms up to 2,000,000, percentages). */
const PARAMETER_RANGES: Record<MigrationParameter, readonly [number, number]> = {
  "max-bandwidth": [0, 2 ** 40],
  "downtime-limit": [0, 2_000_000],
  "throttle-trigger-threshold": [1, 100],
  "cpu-throttle-initial": [1, MAX_THROTTLE_PERCENT],
  "cpu-throttle-increment": [1, MAX_THROTTLE_PERCENT],
  "max-cpu-throttle": [1, MAX_THROTTLE_PERCENT],
};

/** The source side as QMP sees it: one migration at a time, its status, and the end of hv when it is done. */
export class OutgoingMigration {
  /** QEMU's: after the post-copy switch "postcopy-active", and "postcopy-paused" when that broke (the VM cannot come back: see PostcopyPausedError). */
  status: "none" | "active" | "postcopy-active" | "postcopy-paused" | "completed" | "failed" | "cancelled" = "none";
  /** QEMU's migration parameters: bytes per second (0: no limit), ms, and auto-converge's percentages. */
  readonly parameters: Record<MigrationParameter, number> = { ...DEFAULT_PARAMETERS };
  /** QEMU's migration capabilities that hv has. */
  readonly capabilities = { "auto-converge": false, "postcopy-ram": false };
  /** migrate-start-postcopy came: switch at the next frame of the running migration. */
  private postcopyRequested = false;
  /** Post-copy may be turned on (hv run; a fleet's VMs not yet). */
  postcopyAllowed = true;
  /** The post-copy switch broke (postcopy-paused): what to tell the user. */
  onPostcopyPaused: (error: PostcopyPausedError) => void = () => {};
  private socket: Socket | null = null;
  private progress: MigrationProgress | null = null;
  private result: MigrationResult | null = null;
  private error = "";
  private started = 0;
  private memoryBytes = 0;
  /** The pre-copy is over, the VM stopped and its state taken: the end is on its way. */
  private stopping = false;

  constructor(
    private readonly control: HostControl,
    private readonly request: (vm: number) => Omit<SaveRequest, "path">,
    private readonly connect: (host: string, port: number) => Socket,
    /** The VM runs at the destination: the source hv ends (status 0). */
    private readonly done: (result: MigrationResult) => void,
    /** The status changed (QMP's MIGRATION event): what query() says now. */
    private readonly onStatus: (info: Record<string, unknown>) => void = () => {},
  ) {}

  /**
   * VM `vm`'s writable drives as the host reaches them (block migration), each null when it cannot
   * (a block driver in a worker); absent: this hv cannot block-migrate.
   */
  blockDrives: ((vm: number) => Array<HostDrive | null>) | null = null;

  /**
   * Start migrating VM `vm` to `uri`; with `inc`, its writable drives (qcow2 overlays) go too, their
   * backing files being shared (QEMU's incremental block migration). Throws RangeError for a bad
   * URI, one already running, or drives that cannot go.
   */
  start(vm: number, uri: string, inc = false): void {
    const { host, port } = parseTcpUri(uri);
    if (this.running) throw new RangeError("a migration is running already");
    if (this.status === "postcopy-paused") throw new RangeError("a post-copy migration broke after its switch: this hv's VM cannot run or move again");
    if (inc && this.capabilities["postcopy-ram"]) throw new RangeError("inc: block migration does not go with postcopy-ram");
    const blocks = inc ? this.blockSources(vm) : [];
    announceBlocks(blocks);
    this.status = "active";
    this.started = performance.now();
    this.progress = null;
    this.result = null;
    this.stopping = false;
    this.postcopyRequested = false;
    this.onStatus(this.query());
    const socket = (this.socket = this.connect(host, port));
    const request = this.request(vm);
    this.memoryBytes = request.memoryBytes;
    const p = this.parameters;
    const autoConverge = this.capabilities["auto-converge"]
      ? { triggerThreshold: p["throttle-trigger-threshold"], initial: p["cpu-throttle-initial"], increment: p["cpu-throttle-increment"], max: p["max-cpu-throttle"] }
      : undefined;
    const postcopy = this.capabilities["postcopy-ram"]
      ? {
          requested: () => this.postcopyRequested,
          onSwitched: () => {
            this.status = "postcopy-active";
            this.onStatus(this.query());
          },
        }
      : undefined;
    const options = { blocks, postcopy, downtimeLimitMs: p["downtime-limit"], maxBandwidth: p["max-bandwidth"] > 0 ? p["max-bandwidth"] : undefined, autoConverge, onProgress: (q: MigrationProgress) => (this.progress = q), onStopped: () => (this.stopping = true) };
    migrateOut(this.control, vm, request, socket, options).then(
      (r) => {
        this.result = r;
        this.status = "completed";
        this.onStatus(this.query());
        this.done(r);
      },
      (error: Error) => {
        this.error = error.message;
        if (error instanceof PostcopyPausedError) {
          this.status = "postcopy-paused";
          this.onStatus(this.query());
          this.onPostcopyPaused(error);
          return;
        }
        if (this.status !== "active") return;
        this.status = "failed";
        this.onStatus(this.query());
      },
    );
  }

  /** The drives `inc` migrates: every writable one, each an overlay the host can reach (announceBlocks checks them further when the migration starts). */
  private blockSources(vm: number): BlockSource[] {
    const drives = this.blockDrives?.(vm) ?? [];
    const writable = this.request(vm).drives.flatMap((d, index) => (d.readOnly ? [] : [index]));
    if (writable.length === 0) throw new RangeError("inc: the VM has no writable drive to block-migrate");
    return writable.map((index) => {
      const drive = drives[index] ?? null;
      if (!drive) throw new RangeError(`inc: drive ${index} cannot be block-migrated from here (the block driver runs in a worker: --isolate)`);
      return { index, drive };
    });
  }

  /** QMP `migrate-set-parameters`: each a whole number within PARAMETER_RANGES; RangeError naming the first that is not (and nothing changes). */
  setParameters(values: Partial<Record<MigrationParameter, number>>): void {
    for (const [name, v] of Object.entries(values) as Array<[MigrationParameter, number | undefined]>) {
      const [min, max] = PARAMETER_RANGES[name];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < min || v > max)) throw new RangeError(`Parameter '${name}' expects a whole number from ${min} to ${max}`);
    }
    for (const [name, v] of Object.entries(values) as Array<[MigrationParameter, number | undefined]>) if (v !== undefined) this.parameters[name] = v;
  }

  /** QMP `migrate-set-capabilities`: auto-converge and postcopy-ram; RangeError for another (and nothing changes), or while a migration runs. */
  setCapabilities(values: ReadonlyArray<{ capability: string; state: boolean }>): void {
    if (this.running) throw new RangeError("There's a migration process in progress");
    const known = Object.keys(this.capabilities);
    for (const v of values) if (!known.includes(v.capability)) throw new RangeError(`Capability '${v.capability}' is not one hv has (${known.join(", ")})`);
    if (!this.postcopyAllowed && values.some((v) => v.capability === "postcopy-ram" && v.state)) throw new RangeError("Capability 'postcopy-ram': post-copy is for hv run's VM, not yet a fleet's");
    for (const v of values) this.capabilities[v.capability as keyof typeof this.capabilities] = v.state;
  }

  /**
   * QMP `migrate-start-postcopy`: switch the running migration to post-copy at its next frame (it
   * needs postcopy-ram, set before `migrate`); after the end of one, nothing (as QEMU).
   */
  startPostcopy(): void {
    if (!this.capabilities["postcopy-ram"] && this.status !== "postcopy-active") throw new RangeError("Enable postcopy with migrate-set-capabilities (postcopy-ram) before the start of migration");
    if (this.status === "none" || this.status === "postcopy-paused") throw new RangeError("there is no migration to switch to post-copy (start one with migrate)");
    if (this.status === "active" && this.stopping && !this.postcopyRequested) throw new RangeError("the migration has stopped the VM for its end already: too late for post-copy");
    this.postcopyRequested = true;
  }

  /** A migration runs: before the switch or after it (post-copy). */
  get running(): boolean {
    return this.status === "active" || this.status === "postcopy-active";
  }

  /**
   * The host loop should hold virtual time to host time: the migration holds the VM's vCPU back
   * (auto-converge), so the held-back time must cost host time too; or the VM is stopped for the
   * end, and virtual time running ahead would only run the host's timers (the memory scanner) at
   * seconds per second, a busy loop beside the destination while it takes the VM.
   */
  get holdsTime(): boolean {
    return (this.running && (this.stopping || (this.progress?.throttle ?? 0) > 0)) || this.status === "postcopy-paused";
  }

  /** The VM stopped and its state was taken: the source only waits for the destination's answer. */
  get waitsForDestination(): boolean {
    return (this.running && this.stopping) || this.status === "postcopy-paused";
  }

  /**
   * QMP `migrate_cancel`: drop the connection; the source VM goes on as before (nothing if none
   * runs). Not after the post-copy switch: the VM runs at the destination, and only the pages it
   * still needs are here; nothing to go back to.
   */
  cancel(): void {
    if (this.status !== "active" || (this.stopping && this.postcopyRequested)) return;
    this.status = "cancelled";
    this.error = "cancelled";
    this.socket?.destroy();
    this.onStatus(this.query());
  }

  /** QEMU's MigrationInfo, in part. */
  query(): Record<string, unknown> {
    if (this.status === "none") return {};
    const p = this.result ?? this.progress;
    const info: Record<string, unknown> = { status: this.status, "total-time": Math.round(performance.now() - this.started) };
    // Remaining: what this pass has still to send, or once it is sent, what the next one will (the pages written since).
    // After the post-copy switch: the pages still at the source (QEMU's postcopy-requests: those the destination asked for).
    const remaining = p?.postcopy ? (p.postcopy.pages - p.postcopy.sent) * 4096 : p ? (p.passSent < p.passBytes ? p.passBytes - p.passSent : p.dirty * 4096) : 0;
    if (p) info.ram = { transferred: p.bytes, "dirty-sync-count": p.pass, remaining, normal: p.pages, total: this.memoryBytes, ...(p.dirtyRate !== undefined ? { "dirty-pages-rate": Math.round(p.dirtyRate) } : {}), ...(p.postcopy ? { "postcopy-requests": p.postcopy.requested } : {}) };
    if (p && p.throttle > 0) info["cpu-throttle-percentage"] = p.throttle;
    // Block migration (inc): QEMU's `disk` part of MigrationInfo, in bytes of chunks.
    if (p && p.chunks > 0) info.disk = { transferred: p.chunks * BLOCK_CHUNK_BYTES, remaining: p.dirtyChunks * BLOCK_CHUNK_BYTES };
    if (this.result) info.downtime = Math.round(this.result.downtimeMs);
    else if (p?.expectedDowntimeMs !== undefined) info["expected-downtime"] = Math.round(p.expectedDowntimeMs);
    if (this.status === "failed" || this.status === "postcopy-paused") info["error-desc"] = this.error;
    return info;
  }
}
