import { describe, expect, it } from "vitest";
import { crd, SpaceKind, PtRights, SmRights } from "../capabilities/index.js";
import { Kernel, Sel } from "./kernel.js";
import type { ReplyToken } from "./portal.js";
import { Status } from "./status.js";
import { bootedKernel } from "../test/support/kernel.js";
import type { Sys } from "./sys.js";
import type { Pd } from "./pd.js";

/** Root creates a server PD with one portal (at root selector 12) served by `handler`. */
function withServer(sys: Sys, handler: (server: Sys) => (utcb: import("./utcb.js").Utcb, id: number) => void): void {
  expect(sys.createPd(10, 1 << 20, { name: "server" })).toBe(Status.SUCCESS);
  expect(sys.createLocalEc(11, 10, handler)).toBe(Status.SUCCESS);
  expect(sys.createPt(12, 11)).toBe(Status.SUCCESS);
}

describe("call and reply", () => {
  it("moves untyped words both ways and passes the portal id", () => {
    const { asRoot } = bootedKernel();
    asRoot((sys) => {
      withServer(sys, () => (utcb, id) => {
        let sum = 0;
        for (let i = 0; i < utcb.untyped; i++) sum += utcb.words[i];
        utcb.set(sum, id, utcb.untyped);
      });
      sys.setPortalId(12, 77);
      const words = Array.from({ length: 40 }, (_, i) => i + 1);
      sys.utcb.set(...words);
      expect(sys.call(12)).toBe(Status.SUCCESS);
      expect(sys.utcb.untyped).toBe(3);
      expect(Array.from(sys.utcb.words.subarray(0, 3))).toEqual([820, 77, 40]);
    });
  });

  it("refuses calls without the CALL right, and to non-portals", () => {
    const { asRoot } = bootedKernel();
    asRoot((sys) => {
      withServer(sys, () => () => {});
      sys.delegate(0, crd(SpaceKind.OBJECT, 12, 0, PtRights.CONTROL), 13);
      expect(sys.call(13)).toBe(Status.BAD_CAPABILITY);
      expect(sys.call(11)).toBe(Status.BAD_CAPABILITY);
      expect(sys.call(999)).toBe(Status.BAD_CAPABILITY);
    });
  });

  it("a handler that throws aborts the call and is recorded as a fault of its PD", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => {
      withServer(sys, () => () => {
        throw new Error("boom");
      });
      expect(sys.call(12)).toBe(Status.ABORTED);
    });
    expect(k.faults[0].pd).toBe("server");
    expect(String(k.faults[0].error)).toContain("boom");
  });

  it("a call back into a handler that is on the stack aborts instead of deadlocking", () => {
    const { asRoot } = bootedKernel();
    let inner: Status | undefined;
    asRoot((sys) => {
      withServer(sys, (server) => (utcb) => {
        inner = server.call(5);
        utcb.set(1);
      });
      sys.delegate(10, crd(SpaceKind.OBJECT, 12, 0), 5); // the server may call its own portal
      expect(sys.call(12)).toBe(Status.SUCCESS);
    });
    expect(inner).toBe(Status.ABORTED);
  });

  it("nested calls run on the first caller's SC (donation)", () => {
    const k = new Kernel({ hypercallNs: 100, memoryMiB: 1 });
    let consumedAfter = -1;
    k.boot(function* (sys) {
      withServer(sys, (server) => (utcb) => {
        server.call(5); // a second server
        utcb.set(1);
      });
      sys.createPd(20, 1 << 20, { name: "inner" });
      sys.createLocalEc(21, 20, () => (utcb) => utcb.set(2));
      sys.createPt(22, 21);
      sys.delegate(10, crd(SpaceKind.OBJECT, 22, 0), 5);
      yield sys.wait.yield();
      sys.scCtrl(Sel.ROOT_SC);
      const before = sys.utcb.result;
      for (let i = 0; i < 10; i++) sys.call(12);
      sys.scCtrl(Sel.ROOT_SC);
      consumedAfter = sys.utcb.result - before;
    });
    k.run();
    expect(consumedAfter).toBe(10 * 2 * 100 + 100); // 20 calls (10 nested) and the second sc_ctrl
  });
});

describe("typed items", () => {
  it("delegate items land in the receiver's window with rights ANDed; translate finds the receiver's name", () => {
    const { k, asRoot } = bootedKernel();
    let received: unknown;
    let translated = -2;
    asRoot((sys) => {
      withServer(sys, (server) => (utcb) => {
        received = [...utcb.received];
        server.utcb.receiveWindow[SpaceKind.OBJECT] = crd(SpaceKind.OBJECT, 64, 4);
        utcb.set(0);
      });
      sys.createSm(30, 0);
      // Open the server's receive window: the first call only sets it up.
      sys.call(12);
      sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.OBJECT, 30, 0, SmRights.UP), offset: 3 });
      sys.utcb.untyped = 0;
      expect(sys.call(12)).toBe(Status.SUCCESS);
    });
    expect(received).toEqual([{ kind: "delegated", crd: { kind: SpaceKind.OBJECT, base: 67, order: 0, rights: SmRights.UP } }]);
    const server = k.root.objects.get(10)!.cap.object as Pd;
    expect(server.objects.get(67)!.cap.rights).toBe(SmRights.UP);
    // Now the root asks the server which selector it uses for the same semaphore.
    asRoot((sys) => {
      withServerTranslate(sys, (t) => (translated = t));
      sys.utcb.items.push({ kind: "translate", selector: 30 });
      sys.call(12);
    });
    expect(translated).toBe(67);

    function withServerTranslate(sys: Sys, see: (t: number) => void): void {
      sys.revoke(crd(SpaceKind.OBJECT, 12, 0));
      sys.createLocalEc(13, 10, (server) => (utcb) => {
        server.utcb.translateWindow = crd(SpaceKind.OBJECT, 64, 4);
        const r = utcb.received[0];
        if (r && r.kind === "translated") see(r.selector);
      });
      sys.createPt(12, 13);
      sys.call(12); // sets the window
    }
  });

  it("drops delegations that do not fit the window or land on occupied slots", () => {
    const { asRoot } = bootedKernel();
    let got: unknown[] = [];
    asRoot((sys) => {
      withServer(sys, (server) => (utcb) => {
        got = [...utcb.received];
        server.utcb.receiveWindow[SpaceKind.OBJECT] = crd(SpaceKind.OBJECT, 64, 1);
      });
      sys.call(12);
      sys.createSm(30, 0);
      sys.createSm(32, 0);
      sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.OBJECT, 32, 2), offset: 0 }); // too big
      sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.OBJECT, 30, 0), offset: 1 });
      sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.OBJECT, 32, 0), offset: 1 }); // occupied now
      sys.call(12);
    });
    expect(got).toEqual([{ kind: "delegated", crd: { kind: SpaceKind.OBJECT, base: 65, order: 0, rights: 0xff } }]);
  });
});

describe("deferred replies", () => {
  it("a body's call blocks until the server replies later; a plain call cannot be deferred", () => {
    const k = new Kernel({ memoryMiB: 1 });
    const order: string[] = [];
    let token: ReplyToken | null = null;
    k.boot(function* (sys) {
      withServer(sys, (server) => (utcb) => {
        token = server.deferReply();
        order.push(token ? "deferred" : "immediate");
        utcb.set(5);
      });
      // A helper EC of the server answers after 1 ms of virtual time.
      sys.createGlobalEc(20, 10, (server) =>
        (function* () {
          yield server.wait.sleep(1_000_000);
          server.utcb.set(42);
          order.push(`reply ${server.reply(token!)}`);
          order.push(`again ${server.reply(token!)}`);
        })(),
      );
      sys.createSc(21, 20, 10, 1_000_000);
      expect(sys.call(12)).toBe(Status.SUCCESS); // plain call: the handler may not defer
      const t0 = sys.now();
      const s: Status = yield sys.wait.call(12);
      order.push(`woke ${Status[s]} ${sys.utcb.words[0]} after ${sys.now() - t0 >= 1_000_000}`);
    });
    expect(k.run()).toBe("idle");
    expect(order).toEqual(["immediate", "deferred", "reply 0", `again ${Status.BAD_PARAMETER}`, "woke SUCCESS 42 after true"]);
  });

  it("the caller is released with ABORTED when the server PD is destroyed", () => {
    const k = new Kernel({ memoryMiB: 1 });
    let result: Status | undefined;
    k.boot(function* (sys) {
      withServer(sys, (server) => () => void server.deferReply());
      sys.createGlobalEc(20, 0, (s2) =>
        (function* () {
          yield s2.wait.sleep(500);
          s2.revoke(crd(SpaceKind.OBJECT, 10, 0)); // destroy the server
        })(),
      );
      sys.createSc(21, 20, 10, 1_000_000);
      result = yield sys.wait.call(12);
    });
    k.run();
    expect(result).toBe(Status.ABORTED);
  });
});
