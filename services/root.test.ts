import { describe, expect, it } from "vitest";
import { Kernel, PtRights, SpaceKind, Status, crd, type Sys } from "../kernel/index.js";
import { FRAME_PIECE, ParentOp, VmEnd } from "./root-protocol.js";
import { BootDescriptionError, rootTask, type BootModule } from "./root.js";

function boot(modules: BootModule[]) {
  const kernel = new Kernel({ memoryMiB: 1, ioPorts: 16 });
  const ended: unknown[] = [];
  kernel.boot(rootTask(modules, { frames: kernel.memory.frames }, { vmEnded: (...args) => void ended.push(args) }));
  kernel.run({ maxSteps: 10_000 });
  return { kernel, ended };
}

describe("root task", () => {
  it("starts modules with exactly the capabilities their descriptions name, and routes published portals", () => {
    const seen: number[] = [];
    const echo: BootModule = { name: "echo", quota: 1 << 20, handlers: { main: () => (utcb, id) => void utcb.set(Status.SUCCESS, utcb.words[0] + 1, id) }, portals: { a: { handler: "main", id: 7 } } };
    const publisher: BootModule = {
      name: "pub",
      quota: 1 << 20,
      grants: [{ sel: 3, portal: "echo.a" }, { sel: 4, parent: true }],
      routes: { 5: { module: "sub", sel: 5 } },
      threads: [
        {
          priority: 10,
          quantumNs: 1000,
          entry: (sys: Sys) =>
            (function* () {
              sys.utcb.set(10);
              seen.push(sys.call(3), sys.utcb.words[1], sys.utcb.words[2]);
              seen.push(sys.call(6)); // nothing granted there
              // Publish a portal of its own: the root passes it on to "sub" at selector 5.
              sys.createLocalEc(20, 0, () => (utcb) => void utcb.set(Status.SUCCESS, 43));
              sys.createPt(21, 20);
              sys.utcb.set(ParentOp.PUBLISH, 5);
              sys.utcb.items.push({ kind: "delegate", crd: crd(SpaceKind.OBJECT, 21, 0, PtRights.CALL), offset: 5 });
              seen.push(sys.call(4));
              sys.utcb.set(ParentOp.VM_EXITED, 3, VmEnd.HALTED, 0x68, 0x69);
              seen.push(sys.call(4));
            })(),
        },
      ],
    };
    const subscriber: BootModule = {
      name: "sub",
      quota: 1 << 20,
      threads: [
        {
          priority: 5,
          quantumNs: 1000,
          entry: (sys: Sys) =>
            (function* () {
              seen.push(sys.call(5), sys.utcb.words[1]);
            })(),
        },
      ],
    };
    const { kernel, ended } = boot([echo, publisher, subscriber]);
    expect(kernel.faults).toEqual([]);
    expect(seen).toEqual([Status.SUCCESS, 11, 7, Status.BAD_CAPABILITY, Status.SUCCESS, Status.SUCCESS, Status.SUCCESS, 43]);
    expect(ended).toEqual([["pub", 3, VmEnd.HALTED, "hi"]]);
  });

  it("gives a module with `frames` the machine's frames a piece at a time when it asks, and no one else any", () => {
    // 3 MiB = 768 frames: a whole piece of FRAME_PIECE (512) and a short one.
    const kernel = new Kernel({ memoryMiB: 3, ioPorts: 16 });
    const frames = kernel.memory.frames;
    const answers: Record<string, number[]> = { mm: [], other: [] };
    const asker = (name: string): BootModule => ({
      name,
      quota: 1 << 20,
      frames: name === "mm",
      grants: [{ sel: 4, parent: true }],
      threads: [
        {
          priority: 10,
          quantumNs: 1000,
          entry: (sys: Sys) =>
            (function* () {
              const ask = (...words: number[]) => {
                sys.utcb.set(...words);
                answers[name].push(sys.call(4) === Status.SUCCESS ? sys.utcb.words[0] : -1);
              };
              const held = () => answers[name].push(...[0, FRAME_PIECE - 1, FRAME_PIECE, frames - 1, frames].map((p) => (sys.lookup(crd(SpaceKind.MEMORY, p, 0)) === Status.SUCCESS && sys.utcb.lookupResult !== null ? 1 : 0)));
              held(); // nothing at boot
              ask(ParentOp.FRAMES, FRAME_PIECE); // the second, short piece
              ask(ParentOp.FRAMES, FRAME_PIECE); // again: changes nothing
              ask(ParentOp.FRAMES, 1); // not a piece's start
              ask(ParentOp.FRAMES, frames); // past the end
              ask(ParentOp.FRAMES); // no word 1
              ask(ParentOp.FRAMES, 0);
              ask(ParentOp.FRAMES, 2 * FRAME_PIECE); // past the end too
              held();
            })(),
        },
      ],
    });
    kernel.boot(rootTask([asker("mm"), asker("other")], { frames }, { vmEnded: () => {} }));
    kernel.run({ maxSteps: 10_000 });
    expect(kernel.faults).toEqual([]);
    expect(frames).toBe(3 * 256);
    const { SUCCESS: OK, BAD_PARAMETER: BAD } = Status;
    expect(answers.mm).toEqual([0, 0, 0, 0, 0, OK, OK, BAD, BAD, BAD, OK, BAD, 1, 1, 1, 1, 0]);
    expect(answers.other).toEqual([0, 0, 0, 0, 0, BAD, BAD, BAD, BAD, BAD, BAD, BAD, 0, 0, 0, 0, 0]);
    // Every frame went to the memory manager exactly once.
    expect(kernel.root.memory.all().reduce((n, m) => n + (m.firstChild ? 1 : 0), 0)).toBe(frames);
  });

  it("refuses a description that names what does not exist, before anything runs", () => {
    const a: BootModule = { name: "a", quota: 1 << 20 };
    expect(() => rootTask([a, a], { frames: 0 }, { vmEnded: () => {} })).toThrow(BootDescriptionError);
    expect(() => rootTask([{ ...a, grants: [{ sel: 1, portal: "b.x" }] }], { frames: 0 }, { vmEnded: () => {} })).toThrow(/b\.x/);
    expect(() => rootTask([{ ...a, grants: [{ sel: 1, pd: "nobody", rights: 1 }] }], { frames: 0 }, { vmEnded: () => {} })).toThrow(/nobody/);
    expect(() => rootTask([{ ...a, portals: { p: { handler: "h", id: 0 } } }], { frames: 0 }, { vmEnded: () => {} })).toThrow(/no handler/);
    expect(() => rootTask([{ ...a, routes: { 1: { module: "z", sel: 1 } } }], { frames: 0 }, { vmEnded: () => {} })).toThrow(/'z'/);
  });

  it("gives a module no more scheduling than its description allows", () => {
    const got: Status[] = [];
    const body = (sys: Sys) =>
      (function* () {
        got.push(sys.createGlobalEc(40, 0, () => (function* () {})()));
        got.push(sys.createSc(41, 40, 20, 1000), sys.createSc(41, 40, 5, 2_000_000), sys.createSc(41, 40, 5, 1000));
      })();
    const { kernel } = boot([{ name: "m", quota: 1 << 20, maxPriority: 5, maxQuantumNs: 1_000_000, threads: [{ priority: 30, quantumNs: 1000, entry: body }] }]);
    expect(kernel.faults).toEqual([]);
    expect(got[0]).toBe(Status.SUCCESS);
    expect(got.slice(1, 3).every((s) => s !== Status.SUCCESS)).toBe(true);
    expect(got[3]).toBe(Status.SUCCESS);
  });
});
