import { describe, expect, it } from "vitest";
import { crd, SpaceKind } from "../capabilities/index.js";
import type { Ec } from "./ec.js";
import { Kernel } from "./kernel.js";
import type { ReplyToken } from "./portal.js";
import { ScriptedEngine, type ScriptStep } from "../test/support/kernel.js";
import { ExitReason, Mtd, VcpuState } from "./vcpu.js";
import type { Sys } from "./sys.js";
import type { Utcb } from "./utcb.js";
import { Status } from "./status.js";

const EVENT_BASE = 0x100;

type ExitHandlers = Partial<Record<ExitReason, (utcb: Utcb, vmm: Sys) => void>>;

/**
 * Root plays the VMM: a VM PD with one vCPU whose exit portals (MTDs given per reason) are local
 * ECs of the root, delegated into the VM PD at the event base.
 */
function vm(script: ScriptStep[], handlers: ExitHandlers, mtds: Partial<Record<ExitReason, number>>, opts: { nsPerInstruction?: number } = {}) {
  const engine = new ScriptedEngine(script);
  const k = new Kernel({ memoryMiB: 1, vcpuEngine: () => engine, nsPerInstruction: opts.nsPerInstruction ?? 1 });
  k.boot(function* (sys) {
    expect(sys.createPd(10, 1 << 20, { vm: true, name: "vm" })).toBe(Status.SUCCESS);
    for (const [reason, handler] of Object.entries(handlers)) {
      const r = Number(reason) as ExitReason;
      expect(sys.createLocalEc(200 + r, 0, (vmm) => (utcb) => handler!(utcb, vmm))).toBe(Status.SUCCESS);
      expect(sys.createPt(300 + r, 200 + r, mtds[r] ?? 0)).toBe(Status.SUCCESS);
      expect(sys.delegate(10, crd(SpaceKind.OBJECT, 300 + r, 0), EVENT_BASE + r)).toBe(Status.SUCCESS);
    }
    expect(sys.createVcpu(11, 10, EVENT_BASE)).toBe(Status.SUCCESS);
    expect(sys.createSc(12, 11, 5, 1_000_000)).toBe(Status.SUCCESS);
  });
  return { k, engine };
}

describe("VM exits", () => {
  it("transfer exactly the state the portal's MTD selects, both ways", () => {
    const seen: Array<{ eax: number; eip: number; port: number }> = [];
    const { k, engine } = vm(
      [{ op: "in", port: 0x71, size: 1 }, { op: "exit", reason: ExitReason.HLT }],
      {
        [ExitReason.STARTUP]: (u) => {
          u.vcpu!.eip = 0x7c00;
          u.vcpu!.eax = 0xaaaa_0000;
        },
        [ExitReason.PIO]: (u) => {
          seen.push({ eax: u.vcpu!.eax, eip: u.vcpu!.eip, port: u.vcpu!.qual.address });
          u.vcpu!.qual.data = 0x5a;
          u.vcpu!.eip = 0xdead; // not in the MTD: must not reach the engine
        },
        [ExitReason.HLT]: (_u, vmm) => void vmm.deferReply(),
      },
      { [ExitReason.STARTUP]: Mtd.EIP_LEN | Mtd.GPR_ACDB, [ExitReason.PIO]: Mtd.GPR_ACDB | Mtd.QUAL, [ExitReason.HLT]: Mtd.EIP_LEN },
    );
    expect(k.run()).toBe("idle");
    // (Transfers of the TSC alone are the kernel keeping the guest's TSC on virtual time.)
    const exits = (mtds: number[]) => mtds.filter((m) => m !== Mtd.TSC);
    expect(exits(engine.saved)).toEqual([Mtd.EIP_LEN | Mtd.GPR_ACDB, Mtd.GPR_ACDB, Mtd.EIP_LEN]);
    expect(exits(engine.loaded)).toEqual([Mtd.EIP_LEN | Mtd.GPR_ACDB, Mtd.GPR_ACDB]); // the HLT reply is still pending
    expect(seen).toEqual([{ eax: 0xaaaa_0000, eip: 0, port: 0x71 }]);
    expect(engine.inputs).toEqual([0x5a]);
    expect(engine.regs.eax).toBe(0xaaaa_005a);
    expect(engine.regs.eip).toBe(0x7c00 + 2);
  });

  it("a synchronous exit without a portal reads as all ones; a boundary exit without one stops the vCPU", () => {
    const { k, engine } = vm([{ op: "in", port: 0x60, size: 2 }, { op: "exit", reason: ExitReason.INTR_WINDOW }], { [ExitReason.STARTUP]: () => {} }, {});
    k.run();
    expect(engine.inputs).toEqual([0xffff]);
    expect(k.faults.map((f) => String(f.error))).toEqual([expect.stringContaining("no portal for exit INTR_WINDOW")]);
  });

  it("HLT with a deferred reply blocks only the vCPU until the VMM answers", () => {
    let token: ReplyToken | null = null;
    const { k, engine } = vm(
      [{ op: "spin", instructions: 1000 }, { op: "exit", reason: ExitReason.HLT }, { op: "out", port: 0xe9, size: 1, value: 1 }],
      {
        [ExitReason.STARTUP]: () => {},
        [ExitReason.HLT]: (_u, vmm) => {
          token = vmm.deferReply();
        },
        [ExitReason.PIO]: (u) => {
          outAt.push(k.now());
          expect(u.vcpu!.qual.data).toBe(1);
        },
      },
      { [ExitReason.PIO]: Mtd.QUAL },
    );
    const outAt: number[] = [];
    // A timer thread of the VMM wakes the vCPU after 50 µs.
    k.boot(function* (sys) {
      yield sys.wait.sleep(50_000);
      sys.utcb.vcpu = null;
      expect(sys.reply(token!)).toBe(Status.SUCCESS);
    }, 10);
    expect(k.run()).toBe("idle");
    expect(engine.retired).toBe(1002);
    expect(outAt.length).toBe(1);
    expect(outAt[0]).toBeGreaterThanOrEqual(50_000);
  });

  it("recall makes the vCPU exit with RECALL before it runs on", () => {
    const order: string[] = [];
    const { k } = vm(
      [{ op: "out", port: 0x80, size: 1, value: 1 }, { op: "out", port: 0x80, size: 1, value: 2 }, { op: "exit", reason: ExitReason.HLT }],
      {
        [ExitReason.STARTUP]: () => {},
        [ExitReason.PIO]: (u, vmm) => {
          order.push(`out ${u.vcpu!.qual.data}`);
          if (u.vcpu!.qual.data === 1) expect(vmm.recall(11)).toBe(Status.SUCCESS);
        },
        [ExitReason.RECALL]: () => order.push("recall"),
        [ExitReason.HLT]: (_u, vmm) => {
          order.push("hlt");
          vmm.deferReply();
        },
      },
      { [ExitReason.PIO]: Mtd.QUAL },
    );
    k.run();
    // The recall ends the run after the instruction that made the exit, before the next one.
    expect(order).toEqual(["out 1", "recall", "out 2", "hlt"]);
  });

  it("the TSC runs on virtual time: time spent halted is added before the vCPU runs on", () => {
    let token: ReplyToken | null = null;
    const { k, engine } = vm(
      [{ op: "spin", instructions: 500 }, { op: "exit", reason: ExitReason.HLT }, { op: "spin", instructions: 10 }, { op: "exit", reason: ExitReason.HLT }],
      {
        [ExitReason.STARTUP]: () => {},
        [ExitReason.HLT]: (_u, vmm) => {
          token = vmm.deferReply();
        },
      },
      {},
    );
    k.boot(function* (sys) {
      yield sys.wait.sleep(1_000_000);
      sys.utcb.vcpu = null;
      sys.reply(token!);
    }, 10);
    k.run();
    // The scripted engine counts TSC loads: after the wake-up, the kernel moved it forward by the halt.
    const tscLoads = engine.loaded.filter((m) => m === Mtd.TSC).length;
    expect(tscLoads).toBeGreaterThan(0);
    expect(engine.tsc).toBeGreaterThanOrEqual(1_000_000n);
  });

  it("guest time is retired instructions times the configured ns; budgets bound each run", () => {
    const { k, engine } = vm(
      [{ op: "spin", instructions: 5_000_000 }, { op: "exit", reason: ExitReason.HLT }],
      { [ExitReason.STARTUP]: () => {}, [ExitReason.HLT]: (_u, vmm) => void vmm.deferReply() },
      {},
      { nsPerInstruction: 2 },
    );
    // The root body runs first (one step, 1000 ns), then the STARTUP exit (100 ns), then guest code.
    expect(k.run({ untilNs: 4_000_000 })).toBe("time");
    expect(engine.retired).toBe((4_000_000 - 1000 - 100) / 2);
    expect(k.run()).toBe("idle");
    expect(engine.retired).toBe(5_000_001);
    expect(k.clock.now).toBe(1000 + 2 * 5_000_001 + 2 * 100);
  });


  it("a slow access (accessNs in the reply) stalls the vCPU: its time, TSC and budget move on", () => {
    const seenNs: number[] = [];
    const replies = [3001, 0, Number.NaN, -5, 1e12];
    const { k, engine } = vm(
      [...replies.map(() => ({ op: "in" as const, port: 0x61, size: 1 as const })), { op: "exit", reason: ExitReason.HLT }],
      {
        [ExitReason.STARTUP]: () => {},
        [ExitReason.PIO]: (u, vmm) => {
          seenNs.push(vmm.vmTime(11)!);
          u.vcpu!.qual.accessNs = replies[seenNs.length - 1];
        },
        [ExitReason.HLT]: (_u, vmm) => void vmm.deferReply(),
      },
      { [ExitReason.PIO]: Mtd.QUAL },
      { nsPerInstruction: 2 },
    );
    expect(k.run()).toBe("idle");
    // 3001 ns are 1501 instruction times; a reply of nothing, NaN or less costs none; at most 1 ms.
    const steps = seenNs.slice(1).map((t, i) => t - seenNs[i]);
    expect(steps).toEqual([2 + 3002, 2, 2, 2]);
    expect(engine.retired).toBe(replies.length + 1 + 1501 + 500_000);
    expect(k.clock.now).toBe(1000 + 2 * engine.retired + 2 * 100);
  });

  it("an access time stays with its reply: the next exit, whose handler says none, stalls nothing", () => {
    const seenNs: number[] = [];
    const { k } = vm(
      [1, 2, 3].map(() => ({ op: "in" as const, port: 0x61, size: 1 as const })).concat([{ op: "exit", reason: ExitReason.HLT }] as never[]),
      {
        [ExitReason.STARTUP]: () => {},
        [ExitReason.PIO]: (u, vmm) => {
          seenNs.push(vmm.vmTime(11)!);
          // Only the first reply names a time; the handler leaves the field as it finds it.
          if (seenNs.length === 1) u.vcpu!.qual.accessNs = 1000;
        },
        [ExitReason.HLT]: (_u, vmm) => void vmm.deferReply(),
      },
      { [ExitReason.PIO]: Mtd.QUAL },
    );
    expect(k.run()).toBe("idle");
    expect(seenNs.slice(1).map((t, i) => t - seenNs[i])).toEqual([1 + 1000, 1]);
  });
  it("a VMM reads the groups a halt did not move from its stopped vCPU; not while it runs, nor groups that do not exist", () => {
    let token: ReplyToken | null = null;
    const got: Array<{ status: Status; eax?: number; eip?: number; mtd?: number }> = [];
    const { k, engine } = vm(
      [{ op: "out", port: 0x80, size: 1, value: 1 }, { op: "exit", reason: ExitReason.HLT }],
      {
        [ExitReason.STARTUP]: (u) => {
          u.vcpu!.eip = 0x1000;
          u.vcpu!.eax = 0x1234_5678;
        },
        [ExitReason.PIO]: (u, vmm) => {
          // In the middle of an instruction (a synchronous exit): its state is not whole.
          const inExit = u.vcpu;
          u.vcpu = new VcpuState();
          got.push({ status: vmm.vcpuState(11, Mtd.GPR_ACDB) });
          u.vcpu = inExit;
        },
        [ExitReason.HLT]: (u, vmm) => {
          expect(u.vcpu!.mtd).toBe(Mtd.EFLAGS);
          token = vmm.deferReply();
        },
      },
      { [ExitReason.STARTUP]: Mtd.EIP_LEN | Mtd.GPR_ACDB, [ExitReason.PIO]: Mtd.QUAL, [ExitReason.HLT]: Mtd.EFLAGS },
    );
    k.boot(function* (sys) {
      yield sys.wait.sleep(10_000);
      const v = (sys.utcb.vcpu = new VcpuState());
      const s = sys.vcpuState(11, Mtd.GPR_ACDB | Mtd.EIP_LEN);
      got.push({ status: s, eax: v.eax, eip: v.eip, mtd: v.mtd });
      got.push({ status: sys.vcpuState(11, 1 << 30) }); // no such group
      got.push({ status: sys.vcpuState(12, Mtd.GPR_ACDB) }); // an SC, not a vCPU
      sys.utcb.vcpu = null;
      got.push({ status: sys.vcpuState(11, Mtd.GPR_ACDB) }); // nowhere to put it
      expect(sys.reply(token!)).toBe(Status.SUCCESS);
    }, 10);
    k.run();
    expect(got).toEqual([
      { status: Status.BAD_PARAMETER },
      { status: Status.SUCCESS, eax: 0x1234_5678, eip: engine.regs.eip, mtd: Mtd.GPR_ACDB | Mtd.EIP_LEN },
      { status: Status.BAD_PARAMETER },
      { status: Status.BAD_CAPABILITY },
      { status: Status.BAD_PARAMETER },
    ]);
    expect(engine.regs.eip).toBe(0x1000 + 2); // the OUT and the HLT
  });

  it("a stopped VM's time can be hidden from its TSC; recalls cost no time; a TSC in a reply is as of now", () => {
    let token: ReplyToken | null = null;
    const seen: bigint[] = [];
    const times: number[] = [];
    const { k, engine } = vm(
      [{ op: "spin", instructions: 500 }, { op: "exit", reason: ExitReason.HLT }, { op: "spin", instructions: 10 }, { op: "exit", reason: ExitReason.HLT }],
      {
        [ExitReason.STARTUP]: (u) => {
          u.vcpu!.tsc = 7n;
          u.vcpu!.mtd = Mtd.TSC;
        },
        [ExitReason.HLT]: (u, vmm) => {
          seen.push(u.vcpu!.tsc);
          times.push(vmm.now());
          token = vmm.deferReply();
        },
      },
      { [ExitReason.HLT]: Mtd.TSC },
    );
    k.boot(function* (sys) {
      yield sys.wait.sleep(1_000_000);
      times.push(sys.now());
      // Halted for a while, then stopped for 400,000 ns of that: only the rest counts.
      expect(sys.hideTime(11, 400_000)).toBe(Status.SUCCESS);
      expect(sys.utcb.result).toBe(400_000);
      expect(sys.hideTime(11, -1)).toBe(Status.BAD_PARAMETER);
      sys.utcb.vcpu = null;
      sys.reply(token!);
    }, 10);
    k.run();
    // STARTUP loaded TSC 7 as of its reply; 500 instructions and the HLT, then the exit (delivered as of the handler: +100 ns).
    expect(seen[0]).toBe(7n + 501n + 100n);
    // 400,000 ns of the time halted were hidden; then 10 instructions, the HLT and its exit.
    const [haltedAt, wokenAt] = times;
    expect(seen[1]).toBe(seen[0] + BigInt(wokenAt - haltedAt - 400_000) + 11n + 100n);
    expect(engine.tsc + BigInt(engine.retired)).toBe(seen[1]);
  });

  it("a VM's time passes while its vCPU runs or waits in HLT, not while others run", () => {
    let token: ReplyToken | null = null;
    const { k } = vm(
      [{ op: "spin", instructions: 500 }, { op: "exit", reason: ExitReason.HLT }, { op: "spin", instructions: 10 }, { op: "exit", reason: ExitReason.HLT }],
      { [ExitReason.STARTUP]: () => {}, [ExitReason.HLT]: (_u, vmm) => void (token = vmm.deferReply()) },
      {},
    );
    const seen: { vm: number; kernel: number }[] = [];
    k.boot(function* (sys) {
      const look = () => seen.push({ vm: sys.vmTime(11)!, kernel: sys.now() });
      yield sys.wait.sleep(1_000_000);
      look(); // halted: the VM's time ran with the kernel's
      yield sys.wait.sleep(5000);
      look();
      sys.utcb.vcpu = null;
      sys.reply(token!);
      look(); // woken, but this (higher-priority) body runs on: the VM's time stands still
      for (let i = 0; i < 3; i++) yield sys.wait.yield();
      look();
      expect(sys.vmTime(12)).toBeNull(); // an SC, not a vCPU
    }, 10);
    k.run();
    expect(seen[1].vm - seen[0].vm).toBe(seen[1].kernel - seen[0].kernel);
    expect(seen[3].kernel - seen[2].kernel).toBeGreaterThanOrEqual(3000);
    expect(seen[3].vm).toBe(seen[2].vm);
  });
});

describe("a multiprocessor's time", () => {
  /** A VM PD with `count` vCPUs of one priority, each spinning `spin` instructions, then halting for good. */
  function machine(count: number, spin: number) {
    const engines: ScriptedEngine[] = [];
    const k = new Kernel({ memoryMiB: 1, vcpuEngine: () => engines[engines.push(new ScriptedEngine([{ op: "spin", instructions: spin }, { op: "exit", reason: ExitReason.HLT }])) - 1] });
    const vcpus: number[] = [];
    k.boot(function* (sys) {
      expect(sys.createPd(10, 1 << 20, { vm: true, name: "vm" })).toBe(Status.SUCCESS);
      expect(sys.createLocalEc(200, 0, (vmm) => (_utcb, reason) => void (reason === ExitReason.HLT && vmm.deferReply()))).toBe(Status.SUCCESS);
      for (let i = 0; i < count; i++) {
        for (const r of [ExitReason.STARTUP, ExitReason.HLT]) {
          expect(sys.createPt(300 + 16 * i + r, 200, 0)).toBe(Status.SUCCESS);
          expect(sys.setPortalId(300 + 16 * i + r, r)).toBe(Status.SUCCESS);
          expect(sys.delegate(10, crd(SpaceKind.OBJECT, 300 + 16 * i + r, 0), EVENT_BASE + 16 * i + r)).toBe(Status.SUCCESS);
        }
        expect(sys.createVcpu(20 + i, 10, EVENT_BASE + 16 * i)).toBe(Status.SUCCESS);
        expect(sys.createSc(40 + i, 20 + i, 5, 1_000_000)).toBe(Status.SUCCESS);
        vcpus.push(20 + i);
      }
    });
    return { k, engines, vmNs: () => vcpus.map((sel) => (k.root.objects.get(sel)!.cap.object as Ec).vmNs) };
  }

  it("passes for every vCPU while its siblings run (their TSCs agree); a lone vCPU's only while it runs", () => {
    const pair = machine(2, 5_000_000);
    expect(pair.k.run({ untilNs: 20e6 })).not.toBe("steps");
    expect(pair.engines.map((e) => e.retired)).toEqual([5_000_001, 5_000_001]);
    const [a, b] = pair.vmNs();
    // Both ran in 1 ms turns; each one's VM time covers both of their runs.
    expect(a).toBeGreaterThan(9_900_000);
    expect(Math.abs(a - b)).toBeLessThan(1_000_000);
    const lone = machine(1, 5_000_000);
    lone.k.run({ untilNs: 20e6 });
    const [only] = lone.vmNs();
    expect(only).toBeGreaterThanOrEqual(5_000_000);
    expect(only).toBeLessThan(5_100_000);
  });
});
