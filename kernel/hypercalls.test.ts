import { describe, expect, it } from "vitest";
import { crd, SpaceKind, PdRights, PtRights, SmRights, EcRights } from "../capabilities/index.js";
import { Hypercall, hypercall } from "./hypercalls.js";
import { KernelMemoryCost } from "./object.js";
import type { Pd } from "./pd.js";
import { Status } from "./status.js";
import { bootedKernel, runAs } from "../test/support/kernel.js";
import { Sel } from "./kernel.js";
import { ExitReason, Mtd } from "./vcpu.js";
import type { Ec } from "./ec.js";

const noop = () => () => {};
const idle = function* () {};

describe("hypercall dispatch", () => {
  it("answers unknown numbers and non-numeric arguments with a status, not a throw", () => {
    const { k, asRoot } = bootedKernel();
    const ec = k.rootEc!;
    for (const nr of [-1, 15, 99, 1.5, NaN]) expect(hypercall(k, ec, nr, {})).toBe(Status.BAD_HYPERCALL);
    expect(hypercall(k, ec, Hypercall.CREATE_SM, NaN)).toBe(Status.BAD_PARAMETER);
    expect(hypercall(k, ec, Hypercall.CREATE_SM, { dst: "7", pd: 0, initial: 0 })).toBe(Status.BAD_PARAMETER);
    expect(hypercall(k, ec, Hypercall.CREATE_SM, { dst: 7, pd: 0 })).toBe(Status.BAD_PARAMETER); // no initial count
    expect(hypercall(k, ec, Hypercall.CREATE_SM, { dst: 7, pd: 0, initial: 0 })).toBe(Status.SUCCESS);
    expect(asRoot((sys) => sys.createSm(-1))).toBe(Status.BAD_PARAMETER);
    expect(asRoot((sys) => sys.createSm(2 ** 18))).toBe(Status.BAD_PARAMETER);
  });

  it("refuses a syscall handle used outside an EC of its PD", () => {
    const { k } = bootedKernel();
    expect(k.sysFor(k.root).createSm(10)).toBe(Status.BAD_FEATURE);
  });
});

describe("create_pd", () => {
  it("creates a child with its own self capability and charges the quota to the parent", () => {
    const { k, asRoot } = bootedKernel();
    const before = k.root.used;
    expect(asRoot((sys) => sys.createPd(10, 100_000, { name: "child" }))).toBe(Status.SUCCESS);
    const child = k.root.objects.get(10)!.cap.object as Pd;
    expect(child.name).toBe("child");
    expect(k.root.used - before).toBe(KernelMemoryCost.PD + 100_000 + KernelMemoryCost.MAPPING);
    expect(child.objects.get(0)!.cap.object).toBe(child);
    expect(child.used).toBe(KernelMemoryCost.MAPPING);
  });

  it("fails with the right status for each mistake", () => {
    const { asRoot } = bootedKernel();
    asRoot((sys) => {
      expect(sys.createPd(10, 1000)).toBe(Status.SUCCESS);
      expect(sys.createPd(10, 1000)).toBe(Status.BAD_CAPABILITY); // occupied
      expect(sys.createPd(11, 10)).toBe(Status.BAD_PARAMETER); // quota below one mapping
      expect(sys.createPd(11, 1.5)).toBe(Status.BAD_PARAMETER);
      expect(sys.createPd(11, 1000, { parent: 99 })).toBe(Status.BAD_CAPABILITY);
      expect(sys.createPd(11, 2 ** 40)).toBe(Status.OUT_OF_QUOTA);
      expect(sys.delegate(0, crd(SpaceKind.OBJECT, 10, 0, PdRights.CREATE_EC), 12)).toBe(Status.SUCCESS);
      expect(sys.createPd(13, 1000, { parent: 12 })).toBe(Status.BAD_CAPABILITY); // no CREATE_PD right
    });
  });

  it("a refused create_pd changes nothing, whichever check refuses it", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => sys.createPd(10, 20_000, { name: "small", maxPriority: 20 }));
    const small = k.root.objects.get(10)!.cap.object as Pd;
    asRoot((sys) => sys.createGlobalEc(11, 10, idle));
    const ec = k.root.objects.get(11)!.cap.object as Ec;
    const before = () => [k.root.used, k.root.objects.size, small.used, small.objects.size];
    const snapshot = before();
    const refused = runAs(k, ec, () => {
      const sys = k.sysFor(small);
      return [
        sys.createPd(20, 10), // quota below its self capability
        sys.createPd(20, 100_000), // more than the creator has
        sys.createPd(20, 500, { maxPriority: 21 }), // above the creator's ceiling
        sys.createPd(20, 500, { maxQuantumNs: 0 }),
        sys.createPd(0, 500), // occupied
        sys.createPd(20, 500, { parent: 5 }), // no such PD
      ];
    });
    expect(refused).toEqual([Status.BAD_PARAMETER, Status.OUT_OF_QUOTA, Status.BAD_PARAMETER, Status.BAD_PARAMETER, Status.BAD_CAPABILITY, Status.BAD_CAPABILITY]);
    expect(before()).toEqual(snapshot);
    expect(runAs(k, ec, () => k.sysFor(small).createPd(20, 500))).toBe(Status.SUCCESS);
    const child = small.objects.get(20)!.cap.object as Pd;
    expect(child.ceiling.maxPriority).toBe(20); // inherited
    expect(child.objects.get(Sel.SELF_PD)!.parent).toBe(small.objects.get(20));
  });

  it("a child cannot spend more than its quota, whatever it creates", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => sys.createPd(10, 10_000, { name: "small" }));
    const child = k.root.objects.get(10)!.cap.object as Pd;
    asRoot((sys) => sys.createGlobalEc(11, 10, idle));
    const ec = k.root.objects.get(11)!.cap.object as Ec;
    const csys = k.sysFor(child);
    const statuses = runAs(k, ec, () => Array.from({ length: 60 }, (_, i) => csys.createSm(100 + i)));
    const ecCost = KernelMemoryCost.EC + KernelMemoryCost.UTCB;
    const smCost = KernelMemoryCost.SM + KernelMemoryCost.MAPPING;
    expect(statuses.filter((s) => s === Status.SUCCESS).length).toBe(Math.floor((10_000 - KernelMemoryCost.MAPPING - ecCost) / smCost));
    expect(statuses.at(-1)).toBe(Status.OUT_OF_QUOTA);
    expect(child.used).toBeLessThanOrEqual(child.limit);
  });
});

describe("create_ec / create_sc / create_pt / create_sm", () => {
  it("check their capabilities and parameters", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => {
      expect(sys.createLocalEc(10, 0, noop)).toBe(Status.SUCCESS);
      expect(sys.createLocalEc(11, 0, 42 as unknown as () => () => void)).toBe(Status.BAD_PARAMETER);
      expect(sys.createLocalEc(11, 5, noop)).toBe(Status.BAD_CAPABILITY);
      expect(sys.createVcpu(11, 0, 100)).toBe(Status.BAD_PARAMETER); // root is not a VM
      expect(sys.createPd(20, 100_000, { vm: true })).toBe(Status.SUCCESS);
      expect(sys.createVcpu(11, 20, 100)).toBe(Status.BAD_FEATURE); // no engine configured
      expect(sys.createPt(12, 10, 0)).toBe(Status.SUCCESS);
      expect(sys.createPt(13, 12, 0)).toBe(Status.BAD_CAPABILITY); // not an EC
      expect(sys.createPt(13, 10, -1)).toBe(Status.BAD_PARAMETER);
      expect(sys.createSc(14, 10, 1, 1000)).toBe(Status.BAD_PARAMETER); // local ECs have no SC
      expect(sys.createGlobalEc(15, 0, idle)).toBe(Status.SUCCESS);
      expect(sys.createSc(16, 15, 128, 1000)).toBe(Status.BAD_PARAMETER);
      expect(sys.createSc(16, 15, 1, 0)).toBe(Status.BAD_PARAMETER);
      expect(sys.createSc(16, 15, 1, 1000)).toBe(Status.SUCCESS);
      expect(sys.createSc(17, 15, 1, 1000)).toBe(Status.BAD_PARAMETER); // already has one
      expect(sys.createSm(18, -1)).toBe(Status.BAD_PARAMETER);
      expect(sys.createSm(18, 3)).toBe(Status.SUCCESS);
      expect(sys.delegate(0, crd(SpaceKind.OBJECT, 15, 0, EcRights.CONTROL), 19)).toBe(Status.SUCCESS);
      expect(sys.createPt(21, 19, 0)).toBe(Status.BAD_CAPABILITY); // EC cap without CREATE_PT
    });
    expect(k.runq.isEmpty).toBe(false);
  });
});

describe("revoke and lookup", () => {
  it("revoke destroys objects whose creating capability goes, refunding the quota", () => {
    const { k, asRoot } = bootedKernel();
    const used = k.root.used;
    asRoot((sys) => {
      expect(sys.createPd(10, 50_000)).toBe(Status.SUCCESS);
      expect(sys.createSm(11, 0, 10)).toBe(Status.SUCCESS); // paid by the child
    });
    const child = k.root.objects.get(10)!.cap.object as Pd;
    expect(child.used).toBe(KernelMemoryCost.MAPPING + KernelMemoryCost.SM);
    asRoot((sys) => {
      expect(sys.revoke(crd(SpaceKind.OBJECT, 11, 0))).toBe(Status.SUCCESS);
      expect(sys.lookup(crd(SpaceKind.OBJECT, 11))).toBe(Status.SUCCESS);
      expect(sys.utcb.lookupResult).toBeNull();
    });
    expect(child.used).toBe(KernelMemoryCost.MAPPING);
    asRoot((sys) => sys.revoke(crd(SpaceKind.OBJECT, 10, 0)));
    expect(child.alive).toBe(false);
    expect(k.root.used).toBe(used);
  });

  it("lookup reports type and rights; bad descriptors are BAD_PARAMETER", () => {
    const { asRoot } = bootedKernel();
    asRoot((sys) => {
      sys.createSm(10, 0);
      expect(sys.lookup(crd(SpaceKind.OBJECT, 10))).toBe(Status.SUCCESS);
      expect(sys.utcb.lookupResult).toEqual({ crd: { kind: SpaceKind.OBJECT, base: 10, order: 0, rights: SmRights.UP | SmRights.DOWN }, type: 5 });
      expect(sys.lookup(crd(SpaceKind.OBJECT, 3, 1))).toBe(Status.BAD_PARAMETER);
      expect(sys.lookup({ kind: 7, base: 0, order: 0, rights: 0 } as never)).toBe(Status.BAD_PARAMETER);
      expect(sys.revoke(crd(SpaceKind.MEMORY, 1, 4))).toBe(Status.BAD_PARAMETER);
      expect(sys.revoke(null as never)).toBe(Status.BAD_PARAMETER);
    });
  });

  it("a PD cannot revoke its own name for itself", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => sys.revoke(crd(SpaceKind.OBJECT, 0, 4)));
    expect(k.root.objects.get(Sel.SELF_PD)).toBeDefined();
    expect(k.root.alive).toBe(true);
  });
});

describe("ec_ctrl, sc_ctrl, pt_ctrl, sm_ctrl, assign_gsi", () => {
  it("check types and rights", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => {
      sys.createLocalEc(10, 0, noop);
      sys.createPt(11, 10);
      sys.createSm(12, 1);
      expect(sys.recall(10)).toBe(Status.BAD_PARAMETER); // not a vCPU
      expect(sys.recall(11)).toBe(Status.BAD_CAPABILITY);
      expect(sys.scCtrl(Sel.ROOT_SC)).toBe(Status.SUCCESS);
      expect(sys.scCtrl(12)).toBe(Status.BAD_CAPABILITY);
      expect(sys.setPortalId(11, 7)).toBe(Status.SUCCESS);
      expect(sys.setPortalId(11, -7)).toBe(Status.BAD_PARAMETER);
      expect(sys.delegate(0, crd(SpaceKind.OBJECT, 11, 0, PtRights.CALL), 13)).toBe(Status.SUCCESS);
      expect(sys.setPortalId(13, 8)).toBe(Status.BAD_CAPABILITY);
      expect(sys.tryDown(12)).toBe(Status.SUCCESS);
      expect(sys.tryDown(12)).toBe(Status.TIMEOUT);
      expect(sys.up(12)).toBe(Status.SUCCESS);
      expect(sys.delegate(0, crd(SpaceKind.OBJECT, 12, 0, SmRights.UP), 14)).toBe(Status.SUCCESS);
      expect(sys.tryDown(14)).toBe(Status.BAD_CAPABILITY);
      expect(sys.assignGsi(12)).toBe(Status.BAD_CAPABILITY); // only interrupt semaphores carry ASSIGN
      expect(sys.assignGsi(Sel.GSI_BASE + 4)).toBe(Status.SUCCESS);
    });
    expect(k.raiseGsi(4)).toBe(true);
    expect(k.raiseGsi(5)).toBe(false); // not assigned
    expect(asRoot((sys) => sys.tryDown(Sel.GSI_BASE + 4))).toBe(Status.SUCCESS);
  });
});

describe("pd_ctrl delegation", () => {
  it("needs the DELEGATE right on the target and charges the target", () => {
    const { k, asRoot } = bootedKernel();
    asRoot((sys) => {
      sys.createPd(10, 10_000);
      sys.createSm(11, 0);
      expect(sys.delegate(10, crd(SpaceKind.OBJECT, 11, 0), 5)).toBe(Status.SUCCESS);
      expect(sys.delegate(10, crd(SpaceKind.OBJECT, 11, 0), 5)).toBe(Status.BAD_PARAMETER); // occupied
      expect(sys.delegate(11, crd(SpaceKind.OBJECT, 11, 0), 6)).toBe(Status.BAD_CAPABILITY);
      expect(sys.delegate(10, crd(SpaceKind.MEMORY, 0, 8), 0)).toBe(Status.OUT_OF_QUOTA); // 256 pages > quota
      expect(sys.delegate(10, crd(SpaceKind.MEMORY, 0, 4), 0)).toBe(Status.SUCCESS);
    });
    const child = k.root.objects.get(10)!.cap.object as Pd;
    expect(child.memory.size).toBe(16);
    expect(child.used).toBe(18 * KernelMemoryCost.MAPPING);
  });
});

describe("vCPU creation", () => {
  it("builds an engine over the VM's guest memory", () => {
    let seen: unknown = null;
    const engine = { retired: 0, run: () => ExitReason.HLT, stall: () => {}, saveState: () => {}, loadState: () => {} };
    const { k, asRoot } = bootedKernel({ vcpuEngine: (mem) => ((seen = mem), engine) });
    asRoot((sys) => {
      sys.createPd(10, 100_000, { vm: true });
      expect(sys.createVcpu(11, 10, 2 ** 18 - 5)).toBe(Status.BAD_PARAMETER);
      expect(sys.createVcpu(11, 10, 0x100)).toBe(Status.SUCCESS);
    });
    const vm = k.root.objects.get(10)!.cap.object as Pd;
    expect(seen).toBe(vm.guestMemory);
    expect(Mtd.ALL).toBe((1 << 22) - 1);
  });
});
