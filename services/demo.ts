// The demo system: a root task starts a name-less "clock" server and a few client components,
// each in its own PD, which talk only through portals. It shows IPC with portal ids, donation
// (servers run on their clients' time), semaphores and deterministic virtual time.

import { Kernel, Sel, Status, SpaceKind, crd, PtRights, SmRights, type Sys, type TraceSink } from "../kernel/index.js";

export interface DemoOptions {
  clients: number;
  calls: number;
  trace?: TraceSink | null;
  log: (line: string) => void;
}

export interface DemoResult {
  /** Virtual time at the end, ns. */
  virtualNs: number;
  calls: number;
  faults: number;
}

// Root selectors.
const CLOCK_PD = 10;
const CLOCK_EC = 11;
const CLOCK_PT_BASE = 100; // one portal per client: its id tells the server who calls
const DONE_SM = 12;
const CLIENT_BASE = 200; // per client: PD, EC, SC
// Selectors in a client's space.
const CLIENT_CLOCK = 1;
const CLIENT_DONE = 2;

export function runDemo(options: DemoOptions): DemoResult {
  const kernel = new Kernel({ memoryMiB: 4, hypercallNs: 50, trace: options.trace ?? null });
  const { clients, calls, log } = options;
  let served = 0;
  kernel.boot(function* root(sys: Sys) {
    log(`root: starting the clock server and ${clients} clients`);
    must(sys.createPd(CLOCK_PD, 1 << 20, { name: "clock" }), "create the clock PD");
    must(
      sys.createLocalEc(CLOCK_EC, CLOCK_PD, (clock) => {
        const ticks = new Map<number, number>();
        return (utcb, client) => {
          // Each client has its own portal: the id says who it is. Time comes from the kernel.
          const n = (ticks.get(client) ?? 0) + 1;
          ticks.set(client, n);
          served++;
          utcb.set(n, Math.floor(clock.now() / 1000));
        };
      }),
      "create the clock EC",
    );
    must(sys.createSm(DONE_SM, 0), "create the done semaphore");
    for (let c = 0; c < clients; c++) {
      const pt = CLOCK_PT_BASE + c;
      must(sys.createPt(pt, CLOCK_EC), "create a clock portal");
      must(sys.setPortalId(pt, c + 1), "name the portal");
      const pd = CLIENT_BASE + 3 * c;
      must(sys.createPd(pd, 1 << 20, { name: `client${c + 1}` }), "create a client PD");
      // Exactly what a client needs: call its clock portal, signal completion. Nothing else.
      must(sys.delegate(pd, crd(SpaceKind.OBJECT, pt, 0, PtRights.CALL), CLIENT_CLOCK), "grant the clock");
      must(sys.delegate(pd, crd(SpaceKind.OBJECT, DONE_SM, 0, SmRights.UP), CLIENT_DONE), "grant done");
      must(sys.createGlobalEc(pd + 1, pd, (me) => client(me, c + 1, calls, log)), "create a client EC");
      must(sys.createSc(pd + 2, pd + 1, 10 + (c % 3), 200_000), "create a client SC");
    }
    for (let c = 0; c < clients; c++) {
      const s: Status = yield sys.wait.down(DONE_SM, 1_000_000_000);
      if (s !== Status.SUCCESS) log(`root: a client did not finish (${Status[s]})`);
    }
    sys.scCtrl(Sel.ROOT_SC);
    log(`root: all clients done; ${served} calls served at virtual t=${(sys.now() / 1000).toFixed(1)} µs`);
  }, 20);
  kernel.run();
  for (const f of kernel.faults) log(`fault in ${f.pd}/${f.ec}: ${String(f.error)}`);
  return { virtualNs: kernel.clock.now, calls: served, faults: kernel.faults.length };
}

function* client(sys: Sys, id: number, calls: number, log: (line: string) => void) {
  let last = 0;
  for (let i = 0; i < calls; i++) {
    const s = sys.call(CLIENT_CLOCK);
    if (s !== Status.SUCCESS) throw new Error(`clock call failed: ${Status[s]}`);
    last = sys.utcb.words[0];
    yield sys.wait.sleep(1000 * id);
  }
  log(`client${id}: ${last} ticks, last at ${sys.utcb.words[1]} µs`);
  // Trying a capability it was never given fails cleanly.
  const denied = sys.call(7);
  if (denied !== Status.BAD_CAPABILITY) throw new Error("isolation broken");
  sys.up(CLIENT_DONE);
}

function must(s: Status, what: string): void {
  if (s !== Status.SUCCESS) throw new Error(`demo: could not ${what}: ${Status[s]}`);
}
