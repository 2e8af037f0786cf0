// Hostile components against the kernel: each test attacks the way a report of the hostile-input
// issue did and checks that the attacker's mistake is a fault (or a status) of its own only.

import { describe, expect, it } from "vitest";
import { Space, Mapping, SpaceKind, crd, PtRights, type Crd } from "../../capabilities/index.js";
import { ExitReason, Kernel, MAX_CALL_DEPTH, MAX_QUANTUM_NS, Mtd, ReplyToken, Sel, Status, Sys, type GlobalEntry, type LocalEntry } from "../../kernel/index.js";
import { Ec, EcState } from "../../kernel/ec.js";
import { Pd } from "../../kernel/pd.js";
import { Pt } from "../../kernel/pt.js";
import { Sc } from "../../kernel/sc.js";
import { Sm } from "../../kernel/sm.js";
import { FrameStore } from "../../kernel/frames.js";
import { ScriptedEngine } from "../support/kernel.js";

// Root selectors of the scenarios below.
const SERVER_PD = 10, SERVER_EC = 11, SERVER_PT = 12;
const ATTACKER_PD = 20, ATTACKER_EC = 21, ATTACKER_SC = 22;
const VICTIM_PD = 30;
// Selectors in the attacker's and the victim's spaces.
const SERVER = 5;

/** The object behind root selector `sel`. */
function objectAt<T>(k: Kernel, sel: number): T {
  return k.root.objects.get(sel)!.cap.object as unknown as T;
}

/** Root sets up a server PD with one portal (root selector SERVER_PT) served by `handler`. */
function server(sys: Sys, handler: LocalEntry): void {
  must(sys.createPd(SERVER_PD, 1 << 20, { name: "server" }));
  must(sys.createLocalEc(SERVER_EC, SERVER_PD, handler));
  must(sys.createPt(SERVER_PT, SERVER_EC));
}

/** Root starts a component in a PD of its own, with the server's portal at SERVER, at priority 10. */
function component(sys: Sys, pd: number, name: string, main: GlobalEntry, options: { maxPriority?: number; maxQuantumNs?: number; quota?: number } = {}): void {
  must(sys.createPd(pd, options.quota ?? 1 << 20, { name, maxPriority: options.maxPriority, maxQuantumNs: options.maxQuantumNs }));
  if (sys.lookup(crd(SpaceKind.OBJECT, SERVER_PT)) === Status.SUCCESS && sys.utcb.lookupResult)
    must(sys.delegate(pd, crd(SpaceKind.OBJECT, SERVER_PT, 0, PtRights.CALL), SERVER));
  must(sys.createGlobalEc(pd + 1, pd, main));
  must(sys.createSc(pd + 2, pd + 1, 10, 1_000_000));
}

function must(s: Status): void {
  if (s !== Status.SUCCESS) throw new Error(`setup: ${Status[s]}`);
}

/** Every EC the root holds a capability for, directly or in the spaces of the PDs it holds. */
function allEcs(k: Kernel): Ec[] {
  const out = new Set<Ec>();
  const pds = [k.root, ...k.root.objects.all().map((m) => m.cap.object).filter((o): o is Pd => o instanceof Pd)];
  for (const pd of pds) for (const m of pd.objects.all()) if (m.cap.object instanceof Ec) out.add(m.cap.object);
  return [...out];
}

describe("1: typed items are copied once before they are checked", () => {
  /** The server opens the one-slot object window [100, 101) and records what arrived. */
  function windowServer(received: Array<readonly unknown[]>): LocalEntry {
    return (self) => {
      self.utcb.receiveWindow[SpaceKind.OBJECT] = crd(SpaceKind.OBJECT, 100, 0);
      return (utcb) => void received.push([...utcb.received]);
    };
  }

  it("an offset that answers differently on each read cannot move the capability out of the window", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const received: Array<readonly unknown[]> = [];
    let reads = 0;
    k.boot(function* (sys) {
      server(sys, windowServer(received));
      must(sys.createSm(40, 0));
      sys.utcb.items.push({
        kind: "delegate",
        crd: crd(SpaceKind.OBJECT, 40, 0),
        // 0 passes the window check; later reads would land at 100 + 2000.
        get offset() {
          return reads++ === 0 ? 0 : 2000;
        },
      });
      expect(sys.call(SERVER_PT)).toBe(Status.SUCCESS);
    });
    expect(k.run()).toBe("idle");
    const srv = objectAt<Pd>(k, SERVER_PD);
    expect(reads).toBe(1);
    expect(srv.objects.get(2100)).toBeUndefined();
    expect(srv.objects.get(100)?.cap.object).toBe(objectAt(k, 40));
    expect(received).toEqual([[{ kind: "delegated", crd: { kind: SpaceKind.OBJECT, base: 100, order: 0, rights: 0xff } }]]);
  });

  it("an order that grows after the check cannot put four capabilities into a one-slot window", () => {
    // Whichever read the check happens to be, the getter answers 0 up to it and 2 after it.
    for (let honestReads = 1; honestReads <= 8; honestReads++) {
      const k = new Kernel({ memoryMiB: 1 });
      let reads = 0;
      k.boot(function* (sys) {
        server(sys, windowServer([]));
        for (let i = 0; i < 4; i++) must(sys.createSm(40 + i, 0));
        const range = { kind: SpaceKind.OBJECT, base: 40, rights: 0xff, get order() {
          return reads++ < honestReads ? 0 : 2;
        } } as Crd;
        sys.utcb.items.push({ kind: "delegate", crd: range, offset: 0 });
        expect(sys.call(SERVER_PT)).toBe(Status.SUCCESS);
      });
      k.run();
      const srv = objectAt<Pd>(k, SERVER_PD);
      expect(reads).toBe(1);
      const inWindowOrBeyond = srv.objects.all().filter((m) => m.index >= 100);
      expect(inWindowOrBeyond.map((m) => m.index)).toEqual([100]);
    }
  });

  it("items and windows that are Proxies or throw are dropped; the call itself succeeds", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const received: Array<readonly unknown[]> = [];
    const trap = new Proxy({}, { get: () => { throw new Error("trap"); } });
    k.boot(function* (sys) {
      server(sys, (self) => {
        // The server's own windows are hostile too: that hurts no one but the server.
        self.utcb.translateWindow = trap as Crd;
        return (utcb) => void received.push([...utcb.received]);
      });
      must(sys.createSm(40, 0));
      sys.utcb.items.push(trap as never, { kind: "delegate", crd: trap as Crd, offset: 0 }, { kind: "translate", selector: 40 });
      sys.utcb.untyped = 1e9; // more words than a UTCB has
      expect(sys.call(SERVER_PT)).toBe(Status.SUCCESS);
      expect(sys.utcb.items.length).toBe(0);
    });
    expect(k.run()).toBe("idle");
    expect(received).toEqual([[{ kind: "translated", selector: -1 }]]);
    expect(k.faults).toEqual([]);
  });
});

describe("2: a chain of portals cannot disable a shared server", () => {
  it("calls nest at most MAX_CALL_DEPTH deep; every handler is released and the server serves others", () => {
    const k = new Kernel({ memoryMiB: 1 });
    // As long a chain as overflowed the host stack before there was a bound.
    const CHAIN = 9000;
    const depthStatus: Status[] = [];
    let serverCalls = 0;
    let victimGot: number[] = [];
    k.boot(function* (sys) {
      server(sys, () => (utcb) => {
        serverCalls++;
        utcb.set(utcb.words[0] + 1);
      });
      // The attacker's own chain: handler i calls portal i + 1, the last one the shared server.
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          for (let i = 0; i < CHAIN; i++) must(a.createLocalEc(1000 + 2 * i, Sel.SELF_PD, chainLink(a, i)));
          for (let i = 0; i < CHAIN; i++) must(a.createPt(1001 + 2 * i, 1000 + 2 * i));
          a.utcb.set(1);
          depthStatus.push(a.call(1001));
        })(),
        { quota: CHAIN * 5000 },
      );
      component(sys, VICTIM_PD, "victim", (v) =>
        (function* () {
          yield v.wait.sleep(1_000_000); // after the attack
          v.utcb.set(41);
          expect(v.call(SERVER)).toBe(Status.SUCCESS);
          victimGot = [v.utcb.words[0]];
        })(),
      );
    });

    function chainLink(a: Sys, i: number): LocalEntry {
      return () => (utcb) => {
        const s = a.call(i + 1 < CHAIN ? 1001 + 2 * (i + 1) : SERVER);
        depthStatus.push(s);
        utcb.set(s);
      };
    }

    expect(k.run()).toBe("idle");
    // Call i + 1 is made at depth i + 1: the one that would be nesting level MAX_CALL_DEPTH + 1 is refused.
    expect(depthStatus.filter((s) => s === Status.ABORTED).length).toBe(1);
    expect(depthStatus.length).toBe(MAX_CALL_DEPTH + 1);
    expect(serverCalls).toBe(1); // only the victim reached the server
    expect(victimGot).toEqual([42]);
    expect(allEcs(k).filter((ec) => ec.busy)).toEqual([]);
    expect(k.faults).toEqual([]);
    expect(k.callDepth).toBe(0);
  });

  it("a client that uses up the stack before calling does not make the server's handler a fault", () => {
    const k = new Kernel({ memoryMiB: 1 });
    let victimStatus: Status | undefined;
    const attackerGot = new Map<string, number>();
    k.boot(function* (sys) {
      // An honest server that needs some stack (a few thousand frames) for each request.
      server(sys, () => (utcb) => utcb.set(depth(2000) + utcb.words[0]));
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          // Recurse until the stack runs out, then call the server from every depth on the way back.
          const dive = (): void => {
            try {
              dive();
            } catch {
              // Too little stack left to do anything else.
            }
            let got: string;
            try {
              a.utcb.set(1);
              got = Status[a.call(SERVER)];
            } catch {
              got = "throw";
            }
            attackerGot.set(got, (attackerGot.get(got) ?? 0) + 1);
          };
          dive();
        })(),
      );
      component(sys, VICTIM_PD, "victim", (v) =>
        (function* () {
          yield v.wait.sleep(1_000_000);
          v.utcb.set(1);
          victimStatus = v.call(SERVER);
        })(),
      );
    });
    expect(() => k.run()).not.toThrow();
    // The attack did reach the server with too little stack left for it, and later calls got through.
    expect(attackerGot.get("ABORTED")).toBeGreaterThan(0);
    expect(attackerGot.get("SUCCESS")).toBeGreaterThan(0);
    expect(victimStatus).toBe(Status.SUCCESS);
    expect(objectAt<Ec>(k, SERVER_EC).state).toBe(EcState.READY);
    expect(k.faults).toEqual([]);
    expect(allEcs(k).filter((ec) => ec.busy)).toEqual([]);
    expect(k.current).toBeNull();
  });

  it("a handler that overflows the stack on its own, with plenty left, is still a fault of its own", () => {
    const k = new Kernel({ memoryMiB: 1 });
    let status: Status | undefined;
    k.boot(function* (sys) {
      server(sys, () => () => void depth(Infinity));
      status = sys.call(SERVER_PT);
    });
    k.run();
    expect(status).toBe(Status.ABORTED);
    expect(k.faults.map((f) => f.pd)).toEqual(["server"]);
    expect(objectAt<Ec>(k, SERVER_EC).busy).toBe(false);
  });
});

/** Some stack work: `n` nested calls (never returns for n = Infinity). */
function depth(n: number): number {
  return n <= 0 ? 0 : 1 + depth(n - 1);
}

describe("3: what a body yields is untrusted", () => {
  const throwing = { get op(): string { throw new Error("getter"); } };
  const proxy = new Proxy({}, { get: () => { throw new Error("trap"); }, has: () => { throw new Error("trap"); } });
  const flipping = (() => {
    let n = 0;
    return { get op() { return n++ === 0 ? "sleep" : "down"; }, ns: 5, sel: 99, timeoutNs: 0 };
  })();
  const shapes: Array<[string, unknown]> = [
    ["null", null],
    ["undefined", undefined],
    ["a number", 42],
    ["a string", "down"],
    ["a bogus kind", { op: "fly" }],
    ["a down without a selector", { op: "down" }],
    ["a sleep with a string", { op: "sleep", ns: "5" }],
    ["a Proxy", proxy],
    ["throwing getters", throwing],
    ["a function", () => ({ op: "yield" })],
  ];

  for (const [what, value] of shapes) {
    it(`${what} is a fault of that EC only`, () => {
      const k = new Kernel({ memoryMiB: 1 });
      let victimDone = false;
      k.boot(function* (sys) {
        component(sys, ATTACKER_PD, "attacker", () =>
          (function* () {
            yield value as never;
            throw new Error("must not run on");
          })(),
        );
        component(sys, VICTIM_PD, "victim", (v) =>
          (function* () {
            yield v.wait.sleep(10);
            victimDone = true;
          })(),
        );
      });
      expect(k.run()).toBe("idle");
      expect(k.current).toBeNull();
      expect(k.currentSc).toBeNull();
      expect(k.faults.map((f) => [f.pd, String(f.error)])).toEqual([["attacker", expect.stringContaining("not a wait")]]);
      expect(victimDone).toBe(true);
    });
  }

  it("a wait whose kind answers differently on each read is read once", () => {
    const k = new Kernel({ memoryMiB: 1 });
    let status: Status | undefined;
    k.boot(function* (sys) {
      component(sys, ATTACKER_PD, "attacker", () =>
        (function* () {
          status = yield flipping as never; // a sleep of 5 ns (it times out), whatever it says later
        })(),
      );
    });
    k.run();
    expect(status).toBe(Status.TIMEOUT); // read twice, it would have been a down on a selector it does not hold
    expect(k.faults).toEqual([]);
  });

  it("entries and bodies that are not what they claim are faults, and run() goes on", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const iterator = { next: () => new Proxy({}, { get: () => { throw new Error("done?"); } }) };
    let victimDone = false;
    k.boot(function* (sys) {
      component(sys, 40, "no-generator", (() => 5) as never);
      component(sys, 50, "throws", () => {
        throw new Error("entry");
      });
      component(sys, 60, "odd-iterator", (() => iterator) as never);
      component(sys, VICTIM_PD, "victim", (v) =>
        (function* () {
          yield v.wait.sleep(10);
          victimDone = true;
        })(),
      );
    });
    expect(k.run()).toBe("idle");
    expect(k.faults.map((f) => f.pd).sort()).toEqual(["no-generator", "odd-iterator", "throws"]);
    expect(victimDone).toBe(true);
    expect(k.current).toBeNull();
  });
});

describe("3 (vCPUs): a VMM's exit replies are untrusted", () => {
  const trap = new Proxy({}, { get: () => { throw new Error("trap"); } });
  const replies: Array<[string, unknown]> = [["null", null], ["a Proxy", trap], ["a record that is not vCPU state", { mtd: Mtd.ALL }]];

  for (const [what, bad] of replies) {
    it(`${what} as the reply stops that vCPU only, at a boundary exit and at a port read`, () => {
      for (const badAt of [ExitReason.STARTUP, ExitReason.PIO]) {
        const engine = new ScriptedEngine([{ op: "in", port: 0x60, size: 1 }, { op: "exit", reason: ExitReason.HLT }]);
        const k = new Kernel({ memoryMiB: 1, vcpuEngine: () => engine });
        let victimDone = false;
        k.boot(function* (sys) {
          must(sys.createPd(40, 1 << 20, { vm: true, name: "vm" }));
          for (const r of [ExitReason.STARTUP, ExitReason.PIO, ExitReason.HLT]) {
            must(sys.createLocalEc(200 + r, Sel.SELF_PD, (vmm) => (utcb) => {
              if (r === badAt) utcb.vcpu = bad as never;
              if (r === ExitReason.HLT) vmm.deferReply();
            }));
            must(sys.createPt(300 + r, 200 + r, Mtd.GPR_ACDB | Mtd.QUAL));
            must(sys.delegate(40, crd(SpaceKind.OBJECT, 300 + r, 0), 0x100 + r));
          }
          must(sys.createVcpu(41, 40, 0x100));
          must(sys.createSc(42, 41, 5, 1_000_000));
          component(sys, VICTIM_PD, "victim", (v) =>
            (function* () {
              yield v.wait.sleep(10_000);
              victimDone = true;
            })(),
          );
        });
        expect(() => k.run()).not.toThrow();
        expect(k.faults.map((f) => [f.ec, String(f.error)])).toEqual([["vcpu41", expect.stringContaining("malformed exit reply")]]);
        expect(engine.inputs).toEqual(badAt === ExitReason.PIO ? [0xff] : []);
        expect(victimDone).toBe(true);
        expect(k.current).toBeNull();
      }
    });
  }
});

describe("4: a PD's scheduling contexts stay under the ceiling its parent set", () => {
  it("priority and quantum above the ceiling, or not finite positive integers, are refused", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const got: Record<string, Status> = {};
    k.boot(function* (sys) {
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          must(a.createGlobalEc(100, Sel.SELF_PD, function* () {}));
          got.prio127 = a.createSc(101, 100, 127, 1000);
          got.quantum1e300 = a.createSc(101, 100, 10, 1e300);
          got.quantumInfinity = a.createSc(101, 100, 10, Infinity);
          got.quantumNaN = a.createSc(101, 100, 10, NaN);
          got.quantumZero = a.createSc(101, 100, 10, 0);
          got.quantumFraction = a.createSc(101, 100, 10, 0.5);
          got.aboveCeiling = a.createSc(101, 100, 10, 2_000_000);
          got.childAbove = a.createPd(102, 10_000, { maxPriority: 11 });
          got.childQuantumAbove = a.createPd(102, 10_000, { maxQuantumNs: 2_000_000 });
          got.atCeiling = a.createSc(101, 100, 10, 1_000_000);
        })(),
        { maxPriority: 10, maxQuantumNs: 1_000_000 },
      );
      must(sys.createGlobalEc(61, Sel.SELF_PD, function* () {}));
      got.rootAboveMax = sys.createSc(60, 61, 1, MAX_QUANTUM_NS + 1);
      got.rootAtMax = sys.createSc(60, 61, 1, MAX_QUANTUM_NS);
    });
    k.run();
    expect(got).toEqual({
      prio127: Status.BAD_PARAMETER,
      quantum1e300: Status.BAD_PARAMETER,
      quantumInfinity: Status.BAD_PARAMETER,
      quantumNaN: Status.BAD_PARAMETER,
      quantumZero: Status.BAD_PARAMETER,
      quantumFraction: Status.BAD_PARAMETER,
      aboveCeiling: Status.BAD_PARAMETER,
      childAbove: Status.BAD_PARAMETER,
      childQuantumAbove: Status.BAD_PARAMETER,
      atCeiling: Status.SUCCESS,
      rootAboveMax: Status.BAD_PARAMETER,
      rootAtMax: Status.SUCCESS,
    });
  });

  it("a child inherits its parent's ceiling, so a grandchild cannot climb either", () => {
    const k = new Kernel({ memoryMiB: 1 });
    let grandchild: Status | undefined;
    let atCeiling: Status | undefined;
    k.boot(function* (sys) {
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          must(a.createPd(100, 100_000, { name: "child" }));
          must(a.createGlobalEc(101, 100, function* () {}));
          grandchild = a.createSc(102, 101, 127, 1000, 100); // paid by the child, under its ceiling
          atCeiling = a.createSc(102, 101, 10, 1000, 100);
        })(),
        { maxPriority: 10 },
      );
    });
    k.run();
    expect(grandchild).toBe(Status.BAD_PARAMETER);
    expect(atCeiling).toBe(Status.SUCCESS);
  });

  it("a spinning attacker at its ceiling shares the CPU with a victim of the same priority", () => {
    const k = new Kernel({ memoryMiB: 1, stepNs: 1000 });
    let victimSteps = 0;
    let attackerSteps = 0;
    k.boot(function* (sys) {
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          must(a.createSm(100, 0));
          must(a.createGlobalEc(101, Sel.SELF_PD, (self) =>
            (function* () {
              // Never blocks (a bound, so that without a ceiling the run still ends, with the victim starved).
              for (let i = 0; i < 1_000_000; i++) {
                attackerSteps++;
                yield self.wait.down(100, 0);
              }
            })(),
          ));
          // The best it can get: its ceiling, not priority 127 and a quantum of 1e300.
          const s = a.createSc(102, 101, 127, 1e300);
          must(s === Status.BAD_PARAMETER ? a.createSc(102, 101, 10, 1_000_000) : s);
        })(),
        { maxPriority: 10, maxQuantumNs: 1_000_000 },
      );
      component(sys, VICTIM_PD, "victim", (v) =>
        (function* () {
          must(v.createSm(100, 0));
          for (;;) {
            victimSteps++;
            yield v.wait.down(100, 0);
          }
        })(),
      );
    });
    expect(k.run({ maxSteps: 200 })).toBe("steps");
    expect(victimSteps + attackerSteps).toBeGreaterThan(100_000);
    expect(victimSteps / (victimSteps + attackerSteps)).toBeGreaterThan(0.4);
  });
});


describe("5: a syscall handle reaches nothing of the kernel", () => {
  it("no property, prototype, getter or returned object of a handle leads to the kernel's objects", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const roots: Array<[string, unknown]> = [];
    k.boot(function* (sys) {
      server(sys, function (this: unknown, self) {
        roots.push(["local entry this", this], ["server sys", self]);
        return function (this: unknown, utcb, id) {
          roots.push(["handler this", this], ["handler utcb", utcb], ["portal id", id], ["reply token", self.deferReply()]);
        };
      });
      component(sys, ATTACKER_PD, "attacker", function (this: unknown, a) {
        roots.push(["entry this", this], ["sys", a], ["wait", a.wait.down(1)], ["memory", a.memory(0, 1)]);
        return (function* () {
          must(a.createSm(100, 1));
          must(a.lookup(crd(SpaceKind.OBJECT, 100)));
          roots.push(["utcb", a.utcb], ["lookup", a.utcb.lookupResult]);
          yield a.wait.call(SERVER); // the server defers; the token goes into the roots
        })();
      });
      must(sys.delegate(ATTACKER_PD, crd(SpaceKind.MEMORY, 0, 0), 0));
    });
    k.run();
    const reached = reachable(roots);
    expect(reached.size).toBeGreaterThan(20); // the walk did see something
    expect([...reached].some((o) => o instanceof Sys)).toBe(true);
    const forbidden = [...reached].filter(
      (o) =>
        o instanceof Kernel || o instanceof Pd || o instanceof Ec || o instanceof Sc || o instanceof Pt || o instanceof Sm ||
        o instanceof Space || o instanceof Mapping || o instanceof FrameStore || o === k.faults || o === k.runq || o === k.clock,
    );
    expect(forbidden).toEqual([]);
    for (const [, v] of roots) if (v instanceof Sys) expect(Object.getOwnPropertyNames(v)).toEqual(["wait"]);
  });

  it("a component cannot change the handles of others, nor forge a reply token", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const attempts: Record<string, string> = {};
    let victimStatus: Status | undefined;
    let forged: Status | undefined;
    k.boot(function* (sys) {
      server(sys, (self) => (utcb) => {
        const token = self.deferReply();
        utcb.set(token === null ? 1 : 0);
      });
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          const tryIt = (name: string, f: () => void) => {
            try {
              f();
              attempts[name] = "changed";
            } catch (e) {
              attempts[name] = (e as Error).constructor.name;
            }
          };
          const proto = Object.getPrototypeOf(a) as Record<string, unknown>;
          tryIt("prototype method", () => void (proto.call = () => Status.SUCCESS));
          tryIt("own property", () => void Object.defineProperty(a, "kernel", { value: 1 }));
          tryIt("wait", () => void ((a.wait as Record<string, unknown>).down = () => null));
          tryIt("utcb words", () => void ((a.utcb as unknown as Record<string, unknown>).words = new Uint32Array(1)));
          tryIt("utcb getter", () => void Object.defineProperty(a.utcb, "untyped", { get: () => 5 }));
          forged = a.reply(new ReplyToken());
        })(),
      );
      component(sys, VICTIM_PD, "victim", (v) =>
        (function* () {
          yield v.wait.sleep(100);
          v.utcb.set(7);
          victimStatus = v.call(SERVER);
        })(),
      );
    });
    k.run();
    expect(attempts).toEqual({ "prototype method": "TypeError", "own property": "TypeError", wait: "TypeError", "utcb words": "TypeError", "utcb getter": "TypeError" });
    expect(forged).toBe(Status.BAD_PARAMETER);
    expect(victimStatus).toBe(Status.SUCCESS);
  });
});

/**
 * Everything reachable from `roots` the way component code can walk: own properties (Reflect.ownKeys,
 * values and getters), for-in, prototypes, and the results of getters, stopping at the language's
 * own objects (whose reach is the same for every component).
 */
function reachable(roots: ReadonlyArray<[string, unknown]>): Set<object> {
  const builtins = new Set<unknown>([Object.prototype, Function.prototype, Array.prototype, Object.getPrototypeOf(Uint8Array.prototype), Uint8Array.prototype, Uint32Array.prototype, ArrayBuffer.prototype, Object.getPrototypeOf(function* () {}), Object.getPrototypeOf(function* () {}.prototype), Symbol.prototype, Error.prototype]);
  const seen = new Set<object>();
  const todo: unknown[] = roots.map(([, v]) => v);
  while (todo.length > 0) {
    const v = todo.pop();
    if (v === null || (typeof v !== "object" && typeof v !== "function") || seen.has(v) || builtins.has(v)) continue;
    seen.add(v);
    if (ArrayBuffer.isView(v)) {
      todo.push(v.buffer, Object.getPrototypeOf(v));
      continue;
    }
    todo.push(Object.getPrototypeOf(v));
    for (const key of Reflect.ownKeys(v)) {
      const d = Reflect.getOwnPropertyDescriptor(v, key)!;
      todo.push(d.value, d.get, d.set);
    }
    // Getters on the prototypes, read through the object itself (sys.utcb, sys.name...).
    for (let p = Object.getPrototypeOf(v); p && !builtins.has(p); p = Object.getPrototypeOf(p)) {
      for (const key of Reflect.ownKeys(p)) {
        const d = Reflect.getOwnPropertyDescriptor(p, key)!;
        if (d.get) {
          try {
            todo.push(Reflect.get(p, key, v));
          } catch {
            // Outside its EC the handle's utcb getter refuses.
          }
        }
      }
    }
    for (const key in v) todo.push((v as Record<string, unknown>)[key]);
  }
  return seen;
}


describe("6: capability descriptors and words are checked for shape and range first", () => {
  const trap = new Proxy({}, { get: () => { throw new Error("trap"); } });
  const throwing = { kind: SpaceKind.OBJECT, base: 0, order: 0, get rights(): number { throw new Error("getter"); } };

  it("a Proxy or a throwing getter as a descriptor is BAD_PARAMETER, not a throw", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const got: Status[] = [];
    k.boot(function* (sys) {
      component(sys, ATTACKER_PD, "attacker", (a) =>
        (function* () {
          for (const bad of [trap, throwing, null, 5, "crd"] as unknown as Crd[]) {
            got.push(a.revoke(bad), a.lookup(bad), a.delegate(Sel.SELF_PD, bad, 100));
          }
          got.push(a.createPd(100, 10_000, trap as never), a.createPd(100, 10_000, { get name(): string { throw new Error("name"); } }));
          got.push(a.setPortalId(trap as never, 1), a.call(trap as never), a.createSm(trap as never));
        })(),
      );
    });
    expect(k.run()).toBe("idle");
    expect(got.length).toBe(20);
    expect(got.every((s) => s === Status.BAD_PARAMETER)).toBe(true);
    expect(k.faults).toEqual([]);
  });

  it("a descriptor is read once: an order that grows after the check delegates no more", () => {
    const k = new Kernel({ memoryMiB: 1 });
    let reads = 0;
    let status: Status | undefined;
    k.boot(function* (sys) {
      must(sys.createPd(SERVER_PD, 100_000, { name: "target" }));
      for (let i = 0; i < 16; i++) must(sys.createSm(208 + i, 0));
      const range = { kind: SpaceKind.OBJECT, base: 208, rights: 0xff, get order() {
        return reads++ === 0 ? 0 : 4;
      } } as Crd;
      status = sys.delegate(SERVER_PD, range, 64);
    });
    k.run();
    expect(status).toBe(Status.SUCCESS);
    expect(reads).toBe(1);
    expect(objectAt<Pd>(k, SERVER_PD).objects.all().map((m) => m.index)).toEqual([0, 64]);
  });

  it("ids, counts and MTDs are 32-bit words; selectors beyond the space do not wrap around", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const got: Record<string, Status> = {};
    k.boot(function* (sys) {
      server(sys, () => (utcb) => utcb.set(1));
      got.id2e32 = sys.setPortalId(SERVER_PT, 2 ** 32);
      got.id2e40 = sys.setPortalId(SERVER_PT, 2 ** 40);
      got.idMax = sys.setPortalId(SERVER_PT, 0xffffffff);
      got.count = sys.createSm(40, 2 ** 32);
      got.mtd = sys.createPt(41, SERVER_EC, 2 ** 40);
      got.mtdBits = sys.createPt(41, SERVER_EC, 1 << 30);
      // 2^32 + n names no selector (not selector n), whatever the space's layout.
      got.callWrap = sys.call(2 ** 32 + SERVER_PT);
      got.callWrap40 = sys.call(2 ** 40 + SERVER_PT);
      got.downWrap = sys.tryDown(2 ** 32 + Sel.GSI_BASE);
      got.callFraction = sys.call(SERVER_PT + 0.5);
      got.call = sys.call(SERVER_PT);
    });
    k.run();
    expect(got).toEqual({
      id2e32: Status.BAD_PARAMETER,
      id2e40: Status.BAD_PARAMETER,
      idMax: Status.SUCCESS,
      count: Status.BAD_PARAMETER,
      mtd: Status.BAD_PARAMETER,
      mtdBits: Status.BAD_PARAMETER,
      callWrap: Status.BAD_CAPABILITY,
      callWrap40: Status.BAD_CAPABILITY,
      downWrap: Status.BAD_CAPABILITY,
      callFraction: Status.BAD_CAPABILITY,
      call: Status.SUCCESS,
    });
    expect(objectAt<Pt>(k, SERVER_PT).id).toBe(0xffffffff);
  });
});

describe("nested PDs", () => {
  it("a chain of PDs each created by the one before cannot make its parent's revoke throw", () => {
    const k = new Kernel({ memoryMiB: 1, stepNs: 1 });
    const LEVELS = 6000;
    let made = 0;
    let revoked: Status | undefined;
    const rootUsed = k.root.used;
    // Level i runs in PD i: it creates PD i + 1 at its selector 100 and a thread there that does the same.
    const level = (sys: Sys): Generator<never, void, Status> =>
      (function* () {
        made++;
        if (made >= LEVELS) return;
        must(sys.createPd(100, (LEVELS - made) * 7000, { name: `level${made}` }));
        must(sys.createGlobalEc(101, 100, level));
        must(sys.createSc(102, 101, 10, 1000));
      })();
    k.boot(function* (sys) {
      must(sys.createPd(ATTACKER_PD, LEVELS * 7000 + 100_000, { name: "level0" }));
      must(sys.createGlobalEc(ATTACKER_EC, ATTACKER_PD, level));
      must(sys.createSc(ATTACKER_SC, ATTACKER_EC, 10, 1000));
      yield sys.wait.sleep(1e9); // until the chain is built
      revoked = sys.revoke(crd(SpaceKind.OBJECT, ATTACKER_PD, 2)); // its PD, EC and SC
    }, 5);
    expect(k.run()).toBe("idle");
    expect(made).toBe(LEVELS);
    expect(k.faults).toEqual([]);
    expect(revoked).toBe(Status.SUCCESS);
    expect(k.root.objects.get(ATTACKER_PD)).toBeUndefined();
    expect(k.root.used).toBe(rootUsed);
  });
});
