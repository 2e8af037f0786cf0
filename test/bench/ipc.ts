// IPC benchmark: portal call + reply between two in-process components, against a direct JS call of
// the same handler in the same run; and delegate + recursive revoke of a 1,000-node derivation tree.
import { Worker } from "node:worker_threads";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kernel, MemRights, Sel, Status, SpaceKind, WorkerLink, crd, newMailbox, type LocalEntry, type PortalHandler, type Sys, type Utcb } from "../../kernel/index.js";
import { Testbed } from "../../services/testbed.js";
import { BlockDriver } from "../../drivers/block/component.js";
import { createImage } from "../../drivers/block/ops/create.js";
import { BlockOp, BlockReply } from "../../drivers/block/protocol.js";
import { IsolatedBlockDriver } from "../../bin/isolate.js";

const ROUNDS = 5;
const CALLS = 2_000_000;

/** The server's handler: adds the two words of the request. */
const makeHandler = () => (utcb: Utcb, id: number) => {
  utcb.words[0] = utcb.words[0] + utcb.words[1] + id;
  utcb.untyped = 1;
};

/** Calls per round through a worker (each is two thread switches). */
const WORKER_CALLS = 100_000;

/**
 * The same server in a worker thread (as `--isolate` runs the block driver): its EC's handler puts
 * each message into the worker's mailbox, msgpack-encoded, and waits for the reply.
 */
function workerHandler(): { handler: () => PortalHandler; stop: () => void } {
  const mailbox = newMailbox();
  const worker = new Worker(new URL("../../bin/tsx-worker.mjs", import.meta.url), {
    workerData: { mailbox, entry: fileURLToPath(new URL("./ipc-worker.ts", import.meta.url)) },
  });
  const link = new WorkerLink(mailbox);
  if (!link.waitReady(60_000)) throw new Error("the benchmark's worker did not start");
  const handler = () => (utcb: Utcb, id: number) => {
    const out = link.call<number>([utcb.words[0], utcb.words[1], id], () => null, 60_000);
    if (out.kind !== "reply") throw new Error(`the worker failed: ${out.kind}`);
    utcb.words[0] = out.reply;
    utcb.untyped = 1;
  };
  return { handler, stop: () => void worker.terminate() };
}

function benchIpc(serverEntry: () => PortalHandler = makeHandler, calls = CALLS): { ipcNs: number; directNs: number } {
  let ipcNs = Infinity;
  let directNs = Infinity;
  const CALLS = calls;
  const k = new Kernel({ memoryMiB: 1 });
  k.boot(function* (root: Sys) {
    must(root.createPd(10, 1 << 20, { name: "server" }));
    must(root.createLocalEc(11, 10, serverEntry));
    must(root.createPt(12, 11));
    must(root.createPd(20, 1 << 20, { name: "client" }));
    must(root.delegate(20, crd(SpaceKind.OBJECT, 12, 0), 5));
    must(root.createGlobalEc(21, 20, (client) =>
      (function* () {
        const utcb = client.utcb;
        for (let r = 0; r < ROUNDS; r++) {
          let check = 0;
          const t0 = performance.now();
          for (let i = 0; i < CALLS; i++) {
            utcb.words[0] = i;
            utcb.words[1] = 1;
            utcb.untyped = 2;
            client.call(5);
            check += utcb.words[0];
          }
          const t1 = performance.now();
          if (check !== (CALLS * (CALLS - 1)) / 2 + CALLS) throw new Error("wrong replies");
          ipcNs = Math.min(ipcNs, ((t1 - t0) * 1e6) / CALLS);
          // The baseline: the same handler, called directly with a message buffer.
          const handler = makeHandler();
          const direct = utcb;
          check = 0;
          const t2 = performance.now();
          for (let i = 0; i < CALLS; i++) {
            direct.words[0] = i;
            direct.words[1] = 1;
            direct.untyped = 2;
            handler(direct, 0);
            check += direct.words[0];
          }
          const t3 = performance.now();
          if (check !== (CALLS * (CALLS - 1)) / 2 + CALLS) throw new Error("wrong direct results");
          directNs = Math.min(directNs, ((t3 - t2) * 1e6) / CALLS);
          yield client.wait.yield();
        }
      })(),
    ));
    must(root.createSc(22, 21, 10, 1e9));
  });
  k.run();
  if (k.faults.length) throw k.faults[0].error;
  return { ipcNs, directNs };
}

/** Build a 1,000-node derivation tree over 8 PDs (random parents), then revoke it from the root. */
function benchRevoke(): { delegateUs: number; revokeUs: number; nodes: number } {
  const k = new Kernel({ memoryMiB: 1, ioPorts: 16 });
  let best = { delegateUs: Infinity, revokeUs: Infinity, nodes: 0 };
  k.boot(function* (root: Sys) {
    const pds = 8;
    for (let p = 0; p < pds; p++) must(root.createPd(100 + p, 1 << 22, { name: `p${p}` }));
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let round = 0; round < 20; round++) {
      must(root.createSm(50, 0));
      // Nodes live in root's space (slot 50) and in PD spaces at slots 1000+: parents chosen at random.
      const holders: Array<{ pd: number; sel: number }> = [{ pd: -1, sel: 50 }];
      const t0 = performance.now();
      while (holders.length < 1000) {
        const parent = holders[Math.floor(rnd() * holders.length)];
        const target = Math.floor(rnd() * pds);
        const sel = 1000 + holders.length;
        // Root delegates from its own slot; deeper nodes are delegated by copying from their holder.
        const status = parent.pd < 0
          ? root.delegate(100 + target, crd(SpaceKind.OBJECT, 50, 0), sel)
          : delegateFrom(k, parent.pd, parent.sel, target, sel);
        must(status);
        holders.push({ pd: target, sel });
      }
      const t1 = performance.now();
      must(root.revoke(crd(SpaceKind.OBJECT, 50, 0)));
      const t2 = performance.now();
      best = { delegateUs: Math.min(best.delegateUs, (t1 - t0) * 1000), revokeUs: Math.min(best.revokeUs, (t2 - t1) * 1000), nodes: holders.length };
      yield root.wait.yield();
    }
  });
  k.run();
  if (k.faults.length) throw k.faults[0].error;
  return best;
}

/** PD `from` (index) delegates its slot `sel` to PD `to` at `dst`, using the kernel API as that PD. */
function delegateFrom(k: Kernel, from: number, sel: number, to: number, dst: number): Status {
  const fromPd = k.root.objects.get(100 + from)!.cap.object as import("../../kernel/pd.js").Pd;
  const toCap = fromPd.objects.get(200 + to);
  if (!toCap) {
    // Give the PD a capability for the target PD once (root acts: it holds all PDs).
    const rootSys = k.sysFor(k.root);
    must(rootSys.delegate(100 + from, crd(SpaceKind.OBJECT, 100 + to, 0), 200 + to));
  }
  const sys = k.sysFor(fromPd);
  const prev = k.current;
  k.current = ecOf(k, fromPd);
  try {
    return sys.delegate(200 + to, crd(SpaceKind.OBJECT, sel, 0), dst);
  } finally {
    k.current = prev;
  }
}

const ecs = new Map<unknown, import("../../kernel/ec.js").Ec>();
function ecOf(k: Kernel, pd: import("../../kernel/pd.js").Pd): import("../../kernel/ec.js").Ec {
  let ec = ecs.get(pd);
  if (!ec) {
    const rootSys = k.sysFor(k.root);
    const sel = 3000 + ecs.size;
    must(rootSys.createGlobalEc(sel, findSel(k, pd), function* () {}));
    ec = k.root.objects.get(sel)!.cap.object as import("../../kernel/ec.js").Ec;
    ecs.set(pd, ec);
  }
  return ec;
}

function findSel(k: Kernel, pd: unknown): number {
  for (const m of k.root.objects.all()) if (m.cap.object === pd) return m.index;
  throw new Error("PD not held by root");
}

function must(s: Status): void {
  if (s !== Status.SUCCESS) throw new Error(`benchmark setup failed: ${Status[s]}`);
}

/** Block requests of 64 KiB (WRITE then READ back) per round, through the block driver component. */
const BLOCK_REQUESTS = 2000;

/** Microseconds per 64 KiB request to the block driver on a raw image (page cache): in-process, or in a worker. */
function benchBlock(isolated: boolean): number {
  const dir = mkdtempSync(join(tmpdir(), "hv-bench-ipc-"));
  const file = join(dir, "disk.raw");
  createImage(file, "raw", 16 << 20);
  const driver = isolated ? new IsolatedBlockDriver(new Map([[1, { path: file }]]), 4) : new BlockDriver(new Map([[1, { path: file }]]), { windowOrder: 4 });
  const entry: LocalEntry = driver.entry(1);
  const bed = new Testbed();
  bed.asRoot((sys) => {
    must(sys.createPd(100, 1 << 20, { name: "block" }));
    must(sys.createLocalEc(103, 100, entry));
    must(sys.createPt(104, 103));
    must(sys.setPortalId(104, 1));
  });
  let best = Infinity;
  bed.start("client", (sys) => (function* () {
    sys.utcb.set(BlockOp.ATTACH, 16);
    sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.MEMORY, 64, 4, MemRights.R | MemRights.W), offset: 0 });
    if (sys.call(7) !== Status.SUCCESS || sys.utcb.words[0] !== BlockReply.OK) throw new Error("ATTACH failed");
    sys.memory(64, 16)!.bytes.fill(0x5a);
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      for (let i = 0; i < BLOCK_REQUESTS; i++) {
        const sector = (i % 256) * 128;
        for (const op of [BlockOp.WRITE, BlockOp.READ]) {
          sys.utcb.set(op, sector, 0, 128, 0);
          if (sys.call(7) !== Status.SUCCESS || sys.utcb.words[0] !== BlockReply.OK) throw new Error("request failed");
        }
      }
      best = Math.min(best, ((performance.now() - t0) * 1000) / (2 * BLOCK_REQUESTS));
    }
  })(), { grants: [{ from: 104, to: 7 }, { from: crd(SpaceKind.MEMORY, 256, 4, MemRights.ALL), to: 64 }] });
  bed.run();
  if (bed.faults.length) throw bed.faults[0].error;
  driver.close();
  rmSync(dir, { recursive: true, force: true });
  return best;
}

const ipc = benchIpc();
const blockIn = benchBlock(false);
const blockWorker = benchBlock(true);
const remote = workerHandler();
const crossWorker = benchIpc(remote.handler, WORKER_CALLS);
remote.stop();
const tree = benchRevoke();
const rows: Array<[string, string]> = [
  ["portal call + reply", `${ipc.ipcNs.toFixed(1)} ns`],
  ["direct call of the handler", `${ipc.directNs.toFixed(1)} ns`],
  ["portal call into a worker", `${(crossWorker.ipcNs / 1000).toFixed(2)} µs`],
  ["block 64 KiB request, in-process", `${blockIn.toFixed(1)} µs`],
  ["block 64 KiB request, in a worker", `${blockWorker.toFixed(1)} µs`],
  [`delegate ${tree.nodes}-node tree`, `${tree.delegateUs.toFixed(0)} µs`],
  [`revoke ${tree.nodes}-node tree`, `${tree.revokeUs.toFixed(0)} µs`],
];
for (const [name, value] of rows) console.log(`${name.padEnd(32)} ${value.padStart(12)}`);
console.log(
  `ipc_roundtrips_per_s=${Math.round(1e9 / ipc.ipcNs)} ratio_vs_direct_call=${(ipc.ipcNs / ipc.directNs).toFixed(2)} ` +
    `worker_roundtrips_per_s=${Math.round(1e9 / crossWorker.ipcNs)} worker_ratio_vs_in_process=${(crossWorker.ipcNs / ipc.ipcNs).toFixed(1)} ` +
    `block_request_worker_ratio=${(blockWorker / blockIn).toFixed(2)}`,
);
void Sel;
