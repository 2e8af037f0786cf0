import { describe, expect, it } from "vitest";
import { crd, SpaceKind } from "../capabilities/index.js";
import { Kernel, Sel } from "./kernel.js";
import { Status } from "./status.js";
import type { Sys } from "./sys.js";

/** Root starts `n` global ECs (selectors 10+2i, SCs 11+2i) with the given bodies and priorities. */
function spawn(k: Kernel, bodies: Array<{ prio: number; quantum?: number; body: (sys: Sys) => Generator<import("./ec.js").Wait, void, Status> }>): void {
  k.boot(function* (sys) {
    bodies.forEach((b, i) => {
      expect(sys.createGlobalEc(10 + 2 * i, 0, b.body)).toBe(Status.SUCCESS);
      expect(sys.createSc(11 + 2 * i, 10 + 2 * i, b.prio, b.quantum ?? 1_000_000)).toBe(Status.SUCCESS);
    });
  }, 127);
}

describe("scheduler", () => {
  it("runs higher priorities first and round-robins within a priority by quantum", () => {
    const k = new Kernel({ memoryMiB: 1, stepNs: 1000 });
    const log: string[] = [];
    // Each body sleeps 0 ns between steps: it goes to the back of its priority each time.
    const busy = (name: string, steps: number) =>
      function* (sys: Sys) {
        for (let i = 0; i < steps; i++) {
          log.push(name);
          yield sys.wait.sleep(0);
        }
      };
    spawn(k, [
      { prio: 5, quantum: 3000, body: busy("a", 4) },
      { prio: 5, quantum: 3000, body: busy("b", 4) },
      { prio: 9, quantum: 3000, body: busy("H", 2) },
    ]);
    k.run();
    expect(log.join("")).toBe("HHabababab");
  });

  it("a body that never blocks is preempted at the end of its quantum", () => {
    const k = new Kernel({ memoryMiB: 1, stepNs: 1000 });
    const log: string[] = [];
    const spin = (name: string) =>
      function* (sys: Sys) {
        for (let i = 0; i < 6; i++) {
          log.push(name);
          yield sys.wait.down(20, 0); // a zero-timeout down never blocks
        }
      };
    k.boot(function* (sys) {
      sys.createSm(20, 0);
      sys.createGlobalEc(10, 0, spin("a"));
      sys.createSc(11, 10, 5, 3000);
      sys.createGlobalEc(12, 0, spin("b"));
      sys.createSc(13, 12, 5, 3000);
    }, 127);
    k.run();
    expect(log.join("")).toBe("aaabbbaaabbb");
  });

  it("timeouts fire in deadline order and virtual time skips idle gaps", () => {
    const k = new Kernel({ memoryMiB: 1, stepNs: 0 });
    const woke: Array<[string, number]> = [];
    const sleeper = (name: string, ns: number) =>
      function* (sys: Sys) {
        yield sys.wait.sleep(ns);
        woke.push([name, sys.now()]);
      };
    spawn(k, [
      { prio: 1, body: sleeper("late", 3_000_000_000) },
      { prio: 1, body: sleeper("early", 20) },
      { prio: 1, body: sleeper("mid", 1_000_000) },
    ]);
    expect(k.run()).toBe("idle");
    expect(woke).toEqual([["early", 20], ["mid", 1_000_000], ["late", 3_000_000_000]]);
  });

  it("semaphore down blocks only its EC; up wakes waiters in FIFO order; a destroyed semaphore aborts them", () => {
    const k = new Kernel({ memoryMiB: 1, stepNs: 0 });
    const log: string[] = [];
    k.boot(function* (sys) {
      sys.createSm(30, 0);
      for (const [i, name] of ["w1", "w2", "w3"].entries()) {
        sys.createGlobalEc(40 + i, 0, (s) =>
          (function* () {
            const st: Status = yield s.wait.down(30);
            log.push(`${name}:${Status[st]}`);
          })(),
        );
        sys.createSc(50 + i, 40 + i, 3, 1000);
      }
      yield sys.wait.sleep(10);
      sys.up(30);
      sys.up(30);
      yield sys.wait.sleep(10);
      sys.revoke(crd(SpaceKind.OBJECT, 30, 0));
    }, 1);
    k.run();
    expect(log).toEqual(["w1:SUCCESS", "w2:SUCCESS", "w3:ABORTED"]);
  });

  it("interrupts wake the EC waiting on the GSI's semaphore", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const got: Status[] = [];
    k.boot(function* (sys) {
      expect(sys.assignGsi(Sel.GSI_BASE + 3)).toBe(Status.SUCCESS);
      for (let i = 0; i < 2; i++) got.push(yield sys.wait.down(Sel.GSI_BASE + 3, 1_000_000));
    });
    expect(k.run({ untilNs: 10_000 })).toBe("time");
    expect(k.raiseGsi(3)).toBe(true);
    k.run();
    expect(got).toEqual([Status.SUCCESS, Status.TIMEOUT]);
  });

  it("the same scenario replays identically", () => {
    const scenario = () => {
      const k = new Kernel({ memoryMiB: 1, seed: 7 });
      const log: string[] = [];
      const body = (name: string, ns: number) =>
        function* (sys: Sys) {
          for (let i = 0; i < 5; i++) {
            yield sys.wait.sleep(ns);
            log.push(`${name}@${sys.now()}`);
          }
        };
      spawn(k, [
        { prio: 2, body: body("x", 333) },
        { prio: 2, body: body("y", 500) },
        { prio: 3, body: body("z", 777) },
      ]);
      k.run();
      return log.join(",");
    };
    expect(scenario()).toBe(scenario());
  });
});
