// Hostile guests and fleet files against our own paravirtual ABI: a VM reaches another only where
// the fleet connected them (every other peer, grant or port is refused with an error code), a
// fleet file naming channels wrongly is refused before anything runs, and random hypercalls of
// the ABI's range (numbers, peers, ports, guest addresses) end as error codes, never in the host.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryConsole } from "../../drivers/console/host.js";
import { VmEnd } from "../../services/root-protocol.js";
import { bootPlanFor, runFleet, type FleetVm } from "../../bin/vm-runner.js";
import { peersOf } from "../../bin/compose.js";
import { parseFleet } from "../../bin/fleet-command.js";
import { createX86Engine } from "../../vmm/x86/index.js";
import { GrantEntry, GrantFlag, HV_GNTMAP_BASE, HV_HYPERCALL_BASE, HV_OP_COUNT, HV_PEER_SELF, HvError, HvOp } from "../../vmm/paravirt/hv-abi.js";
import { HvParavirt } from "../../vmm/paravirt/hv-pv.js";
import { PeerOp } from "../../vmm/paravirt/peer-protocol.js";
import { FlatGuestRam } from "../../vmm/devices/virtio/index.js";
import { assemble, hasNasm } from "../vm/nasm.js";

const nasm = hasNasm();
type Call = [number, number?, number?, number?, number?, number?];
const dd = (values: readonly number[]) => values.map((v) => `dd 0x${(v >>> 0).toString(16)}`).join("\n");

/** A guest that makes each call (EAX, EBX, ECX, EDX, ESI, EDI), prints EAX on 0xE9, then exits 0. */
function callsGuest(calls: readonly Call[]): Uint8Array {
  return assemble(`
bits 32
org 0x100000
header: dd 0x1BADB002, 0x10000, -(0x1BADB002 + 0x10000), header, header, end, end, start
start:
  mov esp, 0x90000
  mov ebp, calls
  mov dword [left], ${calls.length}
.call:
  mov eax, [ebp]
  mov ebx, [ebp + 4]
  mov ecx, [ebp + 8]
  mov edx, [ebp + 12]
  mov esi, [ebp + 16]
  mov edi, [ebp + 20]
  vmcall
  mov ecx, 4
.byte:
  out 0xe9, al
  shr eax, 8
  loop .byte
  add ebp, 24
  dec dword [left]
  jnz .call
  mov al, 0
  out 0xf4, al
  hlt
left: dd 0
calls:
${dd(calls.flatMap((c) => [c[0], c[1] ?? 0, c[2] ?? 0, c[3] ?? 0, c[4] ?? 0, c[5] ?? 0]))}
end:
`);
}

const op = (o: number) => HV_HYPERCALL_BASE + o;
const results = (con: MemoryConsole) => {
  const b = Uint8Array.from(con.debugcon);
  return Array.from({ length: b.length >> 2 }, (_, i) => new DataView(b.buffer).getInt32(4 * i, true));
};

async function fleet(guests: Record<string, Uint8Array>, channels: Array<[string, string]>) {
  const cons: Record<string, MemoryConsole> = {};
  const vms: FleetVm[] = Object.entries(guests).map(([name, image]) => {
    cons[name] = new MemoryConsole();
    return { name, memoryBytes: 8 << 20, plan: bootPlanFor({ memoryBytes: 8 << 20, kernelImage: image }), console: cons[name], debugExitPort: 0xf4, debugcon: true };
  });
  const result = await runFleet(vms, { engine: createX86Engine, maxVirtualNs: 2e9, channels });
  return { result, cons };
}

describe.skipIf(!nasm)("hv PV channels exist only where the fleet grants them", () => {
  it("a VM without a channel reaches nobody; a connected VM reaches only its peer, and only what it granted", async () => {
    const BUF = 0x200000;
    const { result, cons } = await fleet(
      {
        a: callsGuest([
          [op(HvOp.PEERS)],
          [op(HvOp.EVTCHN_ALLOC_UNBOUND), 1],
          [op(HvOp.EVTCHN_BIND_INTERDOMAIN), 1, 1],
          [op(HvOp.EVTCHN_BIND_INTERDOMAIN), 0, 1], // b's port 1 is for b itself, or not there yet
          [op(HvOp.GRANT_COPY), 0, 0, 0, BUF, 16], // b granted nothing
          [op(HvOp.GRANT_COPY), 1, 0, 0, BUF, 16],
          [op(HvOp.GRANT_COPY), HV_PEER_SELF, 0, 0, BUF, 16], // a has no table either
          [op(HvOp.GNTTAB_MAP), 0, 0, HV_GNTMAP_BASE, 0], // nor can it map what b did not grant
          [op(HvOp.GNTTAB_MAP), 1, 0, HV_GNTMAP_BASE, 0],
          [op(HvOp.GNTTAB_UNMAP), HV_GNTMAP_BASE],
        ]),
        b: callsGuest([[op(HvOp.EVTCHN_ALLOC_UNBOUND), HV_PEER_SELF], [op(HvOp.PEERS)]]),
        c: callsGuest([
          [op(HvOp.PEERS)],
          [op(HvOp.EVTCHN_ALLOC_UNBOUND), 0],
          [op(HvOp.EVTCHN_BIND_INTERDOMAIN), 0, 1],
          [op(HvOp.EVTCHN_BIND_INTERDOMAIN), 1, 1],
          [op(HvOp.GRANT_COPY), 0, 0, 0, BUF, 16],
          [op(HvOp.GRANT_COPY), 1, 0, 0, BUF, 16 | 0x80000000],
          [op(HvOp.EVTCHN_SEND), 1],
          [op(HvOp.GNTTAB_MAP), 0, 0, HV_GNTMAP_BASE, 0],
        ]),
      },
      [["a", "b"]],
    );
    expect(result.stop).toBe("ended");
    for (const vm of result.vms) expect(vm.why, vm.message).toBe(VmEnd.DEBUG_EXIT);
    expect(results(cons.a)).toEqual([1, -HvError.ESRCH, -HvError.ESRCH, -HvError.EINVAL, -HvError.EACCES, -HvError.ESRCH, -HvError.EACCES, -HvError.EACCES, -HvError.ESRCH, -HvError.EINVAL]);
    expect(results(cons.b)).toEqual([1, 1]);
    expect(results(cons.c)).toEqual([0, -HvError.ESRCH, -HvError.ESRCH, -HvError.ESRCH, -HvError.ESRCH, -HvError.ESRCH, -HvError.EINVAL, -HvError.ESRCH]);
  });

  it("channels that name no VM, a VM itself, a pair twice or too many are refused before anything runs", () => {
    const vms = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"].map((name) => ({ name }));
    expect(() => peersOf(vms, [["a", "x"]])).toThrow(/'x' is not a VM/);
    expect(() => peersOf(vms, [["a", "a"]])).toThrow(/itself/);
    expect(() => peersOf(vms, [["a", "b"], ["b", "a"]])).toThrow(/twice/);
    expect(() => peersOf(vms, vms.slice(1).map((v) => ["a", v.name] as [string, string]))).toThrow(/at most 8/);
    expect(peersOf(vms, [["a", "b"], ["c", "a"]]).get("a")).toEqual(["b", "c"]);
    const file = (channels: unknown) => JSON.stringify({ vms: [{ name: "a", console: "file:/tmp/hv-a.log" }, { name: "b", console: "file:/tmp/hv-b.log" }], channels });
    expect(parseFleet(file([["a", "b"]]), "f").channels).toEqual([["a", "b"]]);
    expect(() => parseFleet(file([["a", "c"]]), "f")).toThrow(/'c' is not a VM/);
    expect(() => parseFleet(file("a-b"), "f")).toThrow(/pairs of VM names/);
    expect(() => parseFleet(file([["a", 1]]), "f")).toThrow(/pairs of VM names/);
  });
});

const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Guest-physical addresses the random calls may name: anywhere but the guest's own code (1 MiB + a few KiB) and stack. */
const arg = fc.oneof(fc.constantFrom(0, 1, 2, 3, 31, 32, 1023, 1024, HV_PEER_SELF, 0x7fffffff, 0x80000010, 0x200000, 0x7ff000, 0x800000 - 8), u32, fc.integer({ min: 0, max: 64 })).filter((v) => !(v >= 0x80000 && v < 0x110000));
const call = fc.tuple(fc.oneof(fc.integer({ min: 0, max: HV_OP_COUNT + 2 }).filter((o) => o !== HvOp.UPCALL_VECTOR), fc.constant(0xff)), arg, arg, arg, arg, arg);

describe.skipIf(!nasm)("hostile hv PV hypercalls", () => {
  it("random calls of the ABI's range (with a peer that answers) end as results or error codes", async () => {
    const calls = fc.sample(call, { numRuns: 400, seed: 0x5eed15 }).map(([o, ...a]) => [op(o), ...a] as Call);
    const errors = new Set(Object.values(HvError).map((e) => -e));
    const { result, cons } = await fleet(
      {
        fuzz: callsGuest(calls),
        peer: callsGuest([[op(HvOp.SHARED_INFO), 0x300000], [op(HvOp.EVTCHN_ALLOC_UNBOUND), 0], [op(HvOp.EVTCHN_ALLOC_UNBOUND), 0], [op(HvOp.GNTTAB_SETUP), 0x301000, 8]]),
      },
      [["fuzz", "peer"]],
    );
    expect(result.vms[0].message).toBe("");
    expect([result.vms[0].why, result.vms[1].why]).toEqual([VmEnd.DEBUG_EXIT, VmEnd.DEBUG_EXIT]);
    const out = results(cons.fuzz);
    expect(out.length).toBe(calls.length);
    out.forEach((r, i) => expect(r >= 0 || errors.has(r), `call ${i}: ${calls[i].map((x) => (x! >>> 0).toString(16))} gave ${r}`).toBe(true));
    // Something was refused for each reason a random guest meets, and something succeeded.
    for (const e of [HvError.EINVAL, HvError.ENOSYS, HvError.ESRCH]) expect(out).toContain(-e);
    expect(out.some((r) => r > 0)).toBe(true);
  });
});

describe("hostile peer requests", () => {
  it("random messages of a peer's VMM (MAP and UNMAP among them) get a status, and a page only with success", () => {
    const ram = new FlatGuestRam(new Uint8Array(1 << 20));
    const nop = () => {};
    let offered = 0;
    const hv = new HvParavirt({
      ram,
      peers: 2,
      raiseUpcall: nop,
      vmNow: () => 0,
      setTimer: nop,
      peerCall: () => null,
      exports: { export: (_ref, page) => page < 256, has: () => true, offer: () => void offered++, lend: () => (offered++, true), revoke: nop },
      imports: { fetch: () => null, map: nop, unmap: nop, access: () => false },
    });
    // A table of 4 grants to peer 1: writable, read-only, not permitted, past RAM.
    const TABLE = 0x10000;
    hv.hypercall({ eax: HV_HYPERCALL_BASE + HvOp.GNTTAB_SETUP, ebx: TABLE, ecx: 4, edx: 0, esi: 0, edi: 0 }, 0);
    [[GrantFlag.PERMIT_ACCESS, 0x20], [GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY, 0x21], [0, 0x22], [GrantFlag.PERMIT_ACCESS, 0xfffff]].forEach(([flags, frame], ref) => {
      ram.setU16(TABLE + ref * GrantEntry.BYTES + GrantEntry.FLAGS, flags);
      ram.setU16(TABLE + ref * GrantEntry.BYTES + GrantEntry.PEER, 1);
      ram.setU32(TABLE + ref * GrantEntry.BYTES + GrantEntry.FRAME, frame);
    });
    const word = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 255, 256, 0xffffffff), u32);
    const small = (max: number) => fc.integer({ min: 0, max });
    const message = fc.oneof(
      fc.tuple(fc.constantFrom(...Object.values(PeerOp), 0, 99), fc.array(word, { maxLength: 6 }), small(3)),
      // Near misses of MAP and UNMAP: refs around the table, slots around the area, a bad direction.
      fc.tuple(fc.constantFrom(PeerOp.MAP, PeerOp.UNMAP), fc.tuple(small(5), small(300), small(2)), small(3)),
    );
    fc.assert(
      fc.property(message, ([opcode, rest, peer]) => {
        const words = new Uint32Array(16);
        words.set([opcode, ...rest]);
        const before = offered;
        const reply = hv.servePeer(peer, words, 1 + rest.length);
        expect(reply.length).toBeGreaterThan(0);
        expect(Number.isInteger(reply[0]) && reply[0] >= 0 && reply[0] <= 0xffff).toBe(true);
        if (offered !== before) expect([opcode, reply[0]]).toEqual([PeerOp.MAP, 0]);
      }),
      { numRuns: 3000, seed: 0x9ee2 },
    );
    // Only peer 1 was ever given a page, and only of the two grants that stand.
    expect(offered).toBeGreaterThan(0);
  });
});
