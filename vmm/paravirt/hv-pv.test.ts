import { decode, encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { DeviceStateError } from "../devices/state.js";
import { FlatGuestRam } from "../devices/virtio/index.js";
import { VcpuState } from "../../kernel/index.js";
import { HvParavirt } from "./hv-pv.js";
import {
  GRANT_COPY_TO_PEER,
  GrantEntry,
  GrantFlag,
  GNTMAP_READONLY,
  HV_CPUID_BASE,
  HV_CPUID_GRANT_MAP,
  HV_CPUID_INFO,
  HV_GNTMAP_BASE,
  HV_GNTMAP_PAGES,
  HV_HYPERCALL_BASE,
  HV_PEER_SELF,
  HV_SIGNATURE,
  HvError,
  HvOp,
  HvPortState,
  HvVirq,
  MULTICALL_STOP_ON_ERROR,
  MulticallEntry,
  SharedInfo,
} from "./hv-abi.js";

const SHARED = 0x10000, CALLS = 0x11000, TABLE = 0x12000, DATA = 0x13000;

/**
 * A VM's ABI on flat RAM; its peers are wired up afterwards (`link`). Grant pages are modelled:
 * an export is a (RAM, page) pair the serving VM offers with its reply; an import is the page the
 * caller received, read and written by `access` (the VM's own accesses are not modelled).
 */
function vm(peers = 0) {
  const ram = new FlatGuestRam(new Uint8Array(1 << 20));
  const state = {
    upcalls: 0,
    timer: null as number | null,
    now: 0,
    links: [] as { hv: HvParavirt; state: { offered: GrantPage | null; exports: Map<number, number> }; ram: FlatGuestRam }[],
    self: 0,
    /** Export slots: ref -> guest page. */
    exports: new Map<number, number>(),
    /** Exports that lost their write right (the VMM's dirty logging write-protects the page). */
    readOnlyExports: new Set<number>(),
    /** What the last MAP served offered. */
    offered: null as GrantPage | null,
    /** Map slots: what is mapped there, or revoked (the export it came from went). */
    imports: new Map<number, GrantPage>(),
    revoked: 0,
  };
  const serve = (peer: number, fill: (words: Uint32Array) => number) => {
    const other = state.links[peer];
    if (!other) return null;
    const words = new Uint32Array(1008);
    const n = fill(words);
    other.state.offered = null;
    // The other VMM knows the caller by the portal called: its own index for us.
    return { other, reply: Uint32Array.from(other.hv.servePeer(state.self, words, n)) };
  };
  const hv: HvParavirt = new HvParavirt({
    ram,
    peers,
    raiseUpcall: () => void state.upcalls++,
    vmNow: () => state.now,
    setTimer: (at) => void (state.timer = at),
    peerCall: (peer, fill) => serve(peer, fill)?.reply ?? null,
    exports: {
      export: (ref, page) => (page * 4096 < ram.size ? (state.exports.set(ref, page), state.readOnlyExports.delete(ref), true) : false),
      has: (ref, writable) => state.exports.has(ref) && !(writable && state.readOnlyExports.has(ref)),
      offer: (ref, writable) => void (state.offered = { ram, page: state.exports.get(ref)!, writable, ref, exports: state.exports }),
      lend: (ref, slot, writable) => {
        if (state.imports.has(slot)) return false;
        state.imports.set(slot, { ram, page: state.exports.get(ref)!, writable, ref, exports: state.exports });
        return true;
      },
      revoke: (ref) => void (state.exports.delete(ref), state.revoked++),
    },
    imports: {
      fetch: (peer, slot, fill) => {
        const r = serve(peer, fill);
        if (!r) return null;
        if (r.reply[0] !== 0 || slot < 0) return r.reply[0];
        if (!r.other.state.offered) return HvError.EFAULT;
        state.imports.set(slot, r.other.state.offered);
        return 0;
      },
      map: () => {},
      unmap: (slot) => void state.imports.delete(slot),
      access: (slot, q) => {
        const p = state.imports.get(slot);
        // Revoked: the export it came from is gone (or names another page now).
        if (!p || p.exports.get(p.ref) !== p.page || (q.write && !p.writable)) return false;
        if (q.write) p.ram.setU32(p.page * 4096 + (q.address % 4096), q.data);
        else q.data = p.ram.u32(p.page * 4096 + (q.address % 4096));
        return true;
      },
    },
  });
  const call = (op: number, ...a: number[]) => hv.hypercall({ eax: HV_HYPERCALL_BASE + op, ebx: a[0] ?? 0, ecx: a[1] ?? 0, edx: a[2] ?? 0, esi: a[3] ?? 0, edi: a[4] ?? 0 }, 0);
  const bit = (base: number, port: number) => (ram.u32(base + 4 * (port >>> 5)) >>> (port & 31)) & 1;
  return { ram, hv, state, call, bit };
}

interface GrantPage {
  ram: FlatGuestRam;
  page: number;
  writable: boolean;
  ref: number;
  exports: Map<number, number>;
}

/** Two VMs, each the other's peer 0. */
function pair() {
  const a = vm(1), b = vm(1);
  a.state.links = [b];
  b.state.links = [a];
  return { a, b };
}

function entry(ram: FlatGuestRam, i: number, op: number, args: number[]) {
  const at = CALLS + i * MulticallEntry.BYTES;
  ram.setU32(at + MulticallEntry.OP, HV_HYPERCALL_BASE + op);
  args.forEach((v, k) => ram.setU32(at + MulticallEntry.ARGS + 4 * k, v));
  ram.setU32(at + MulticallEntry.RESULT, 0xdeadbeef);
}
const result = (ram: FlatGuestRam, i: number) => ram.u32(CALLS + i * MulticallEntry.BYTES + MulticallEntry.RESULT) | 0;

describe("hv PV ABI: discovery and calls", () => {
  it("answers its own leaves with the signature, the version and the hypercall base", () => {
    const { hv } = vm();
    const q = new VcpuState().qual;
    q.address = HV_CPUID_BASE;
    hv.cpuid(q);
    expect([q.data, q.ebx, q.ecx, q.edx]).toEqual([HV_CPUID_GRANT_MAP, ...HV_SIGNATURE]);
    const text = new TextDecoder().decode(new Uint8Array(new Uint32Array([q.ebx, q.ecx, q.edx]).buffer));
    expect(text).toBe("novatsPVABI\0");
    q.address = HV_CPUID_INFO;
    hv.cpuid(q);
    expect(q.data).toBe(1);
    expect(q.ebx).toBe(HV_HYPERCALL_BASE);
    expect(HvParavirt.ownsLeaf(0x40000000)).toBe(false);
    expect(HvParavirt.ownsLeaf(0x40000101)).toBe(true);
  });

  it("routes by number range: KVM's numbers are not ours; unknown ops and user mode are refused", () => {
    const { hv, call } = vm();
    expect(HvParavirt.owns(1)).toBe(false);
    expect(HvParavirt.owns(HV_HYPERCALL_BASE)).toBe(true);
    expect(call(HvOp.VERSION)).toBe(1);
    expect(call(0xff)).toBe(-HvError.ENOSYS);
    expect(hv.hypercall({ eax: HV_HYPERCALL_BASE, ebx: 0, ecx: 0, edx: 0, esi: 0, edi: 0 }, 3)).toBe(-HvError.EPERM);
  });
});

describe("multicall", () => {
  it("runs every entry and stores each result back", () => {
    const { ram, call } = vm();
    entry(ram, 0, HvOp.VERSION, []);
    entry(ram, 1, HvOp.EVTCHN_ALLOC_UNBOUND, [HV_PEER_SELF]);
    entry(ram, 2, HvOp.EVTCHN_ALLOC_UNBOUND, [HV_PEER_SELF]);
    entry(ram, 3, HvOp.EVTCHN_STATUS, [2]);
    expect(call(HvOp.MULTICALL, CALLS, 4, 0)).toBe(4);
    expect([0, 1, 2, 3].map((i) => result(ram, i))).toEqual([1, 1, 2, HvPortState.UNBOUND]);
  });

  it("stops at the first failure only when asked", () => {
    const { ram, call } = vm();
    const fill = () => {
      entry(ram, 0, HvOp.VERSION, []);
      entry(ram, 1, HvOp.EVTCHN_SEND, [999]); // no such port
      entry(ram, 2, HvOp.EVTCHN_ALLOC_UNBOUND, [HV_PEER_SELF]);
    };
    fill();
    expect(call(HvOp.MULTICALL, CALLS, 3, MULTICALL_STOP_ON_ERROR)).toBe(2);
    expect([result(ram, 0), result(ram, 1), ram.u32(CALLS + 2 * 32 + MulticallEntry.RESULT)]).toEqual([1, -HvError.EINVAL, 0xdeadbeef]);
    fill();
    expect(call(HvOp.MULTICALL, CALLS, 3, 0)).toBe(3);
    expect([result(ram, 0), result(ram, 1), result(ram, 2)]).toEqual([1, -HvError.EINVAL, 1]);
  });

  it("refuses a nested multicall, a misaligned or out-of-RAM array (running nothing), unknown flags", () => {
    const { ram, call } = vm();
    entry(ram, 0, HvOp.MULTICALL, [CALLS, 1, 0]);
    expect(call(HvOp.MULTICALL, CALLS, 1, 0)).toBe(1);
    expect(result(ram, 0)).toBe(-HvError.EINVAL);
    expect(call(HvOp.MULTICALL, CALLS + 4, 1, 0)).toBe(-HvError.EINVAL);
    expect(call(HvOp.MULTICALL, CALLS, 1, 2)).toBe(-HvError.EINVAL);
    entry(ram, 0, HvOp.EVTCHN_ALLOC_UNBOUND, [HV_PEER_SELF]);
    expect(call(HvOp.MULTICALL, (1 << 20) - 64, 4, 0)).toBe(-HvError.EFAULT);
    expect(call(HvOp.EVTCHN_STATUS, 1)).toBe(HvPortState.CLOSED);
  });
});

describe("event channels", () => {
  it("a loopback channel: pending bit, selector word and one upcall, then none until cleared", () => {
    const { ram, call, bit, state } = vm();
    expect(call(HvOp.SHARED_INFO, SHARED + 8)).toBe(-HvError.EINVAL);
    expect(call(HvOp.SHARED_INFO, SHARED)).toBe(0);
    const p1 = call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF);
    const p2 = call(HvOp.EVTCHN_BIND_INTERDOMAIN, HV_PEER_SELF, p1);
    expect([p1, p2]).toEqual([1, 2]);
    expect(call(HvOp.EVTCHN_SEND, p2)).toBe(0);
    expect(bit(SHARED + SharedInfo.PENDING, p1)).toBe(1);
    expect(bit(SHARED + SharedInfo.PENDING, p2)).toBe(0);
    expect(ram.u32(SHARED + SharedInfo.PENDING_SEL)).toBe(1);
    expect(ram.bytes[SHARED + SharedInfo.UPCALL_PENDING]).toBe(1);
    expect(state.upcalls).toBe(1);
    call(HvOp.EVTCHN_SEND, p1);
    expect(bit(SHARED + SharedInfo.PENDING, p2)).toBe(1);
    expect(state.upcalls).toBe(1); // upcall_pending still set: the guest has not looked yet
    ram.bytes[SHARED + SharedInfo.UPCALL_PENDING] = 0;
    ram.setU32(SHARED + SharedInfo.PENDING, 0);
    call(HvOp.EVTCHN_SEND, p2);
    expect(state.upcalls).toBe(2);
  });

  it("a masked port stays quiet until unmasked", () => {
    const { ram, call, bit, state } = vm();
    call(HvOp.SHARED_INFO, SHARED);
    const p1 = call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF);
    const p2 = call(HvOp.EVTCHN_BIND_INTERDOMAIN, HV_PEER_SELF, p1);
    ram.setU32(SHARED + SharedInfo.MASK, 1 << p1);
    call(HvOp.EVTCHN_SEND, p2);
    expect(bit(SHARED + SharedInfo.PENDING, p1)).toBe(1);
    expect([ram.u32(SHARED + SharedInfo.PENDING_SEL), state.upcalls]).toEqual([0, 0]);
    expect(call(HvOp.EVTCHN_UNMASK, p1)).toBe(0);
    expect(bit(SHARED + SharedInfo.MASK, p1)).toBe(0);
    expect([ram.u32(SHARED + SharedInfo.PENDING_SEL), state.upcalls]).toEqual([1, 1]);
  });

  it("VIRQ ports: one per VIRQ, fired by the VMM; the timer is armed through the host", () => {
    const { hv, call, bit, state } = vm();
    call(HvOp.SHARED_INFO, SHARED);
    const t = call(HvOp.EVTCHN_BIND_VIRQ, HvVirq.TIMER);
    expect(call(HvOp.EVTCHN_BIND_VIRQ, HvVirq.TIMER)).toBe(-HvError.EBUSY);
    expect(call(HvOp.EVTCHN_BIND_VIRQ, 77)).toBe(-HvError.EINVAL);
    expect(call(HvOp.EVTCHN_SEND, t)).toBe(-HvError.EINVAL);
    state.now = 500;
    expect(call(HvOp.SET_TIMER, 100, 0)).toBe(0);
    expect(state.timer).toBe(500); // already past: at once
    call(HvOp.SET_TIMER, 0, 1);
    expect(state.timer).toBe(2 ** 32);
    call(HvOp.SET_TIMER, 0, 0);
    expect(state.timer).toBe(null);
    expect(bit(SHARED + SharedInfo.PENDING, t)).toBe(0);
    const c = call(HvOp.EVTCHN_BIND_VIRQ, HvVirq.CONSOLE);
    expect(bit(SHARED + SharedInfo.PENDING, c)).toBe(0);
    hv.fireVirq(HvVirq.TIMER);
    expect(bit(SHARED + SharedInfo.PENDING, t)).toBe(1);
    expect(bit(SHARED + SharedInfo.PENDING, c)).toBe(0);
    expect(call(HvOp.EVTCHN_CLOSE, t)).toBe(0);
    expect(call(HvOp.EVTCHN_BIND_VIRQ, HvVirq.TIMER)).toBe(t);
  });

  it("between two VMs: bind to the peer's unbound port, send both ways, close back to unbound", () => {
    const { a, b } = pair();
    a.call(HvOp.SHARED_INFO, SHARED);
    b.call(HvOp.SHARED_INFO, SHARED);
    const pb = b.call(HvOp.EVTCHN_ALLOC_UNBOUND, 0);
    const pa = a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, 0, pb);
    expect(pa).toBeGreaterThan(0);
    expect(b.call(HvOp.EVTCHN_STATUS, pb)).toBe(HvPortState.INTERDOMAIN);
    expect(a.call(HvOp.EVTCHN_SEND, pa)).toBe(0);
    expect(b.bit(SHARED + SharedInfo.PENDING, pb)).toBe(1);
    expect(b.state.upcalls).toBe(1);
    expect(b.call(HvOp.EVTCHN_SEND, pb)).toBe(0);
    expect(a.bit(SHARED + SharedInfo.PENDING, pa)).toBe(1);
    expect(a.state.upcalls).toBe(1);
    // A second bind to the same port is refused: it is no longer unbound.
    expect(a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, 0, pb)).toBe(-HvError.EINVAL);
    expect(a.call(HvOp.EVTCHN_CLOSE, pa)).toBe(0);
    expect(b.call(HvOp.EVTCHN_STATUS, pb)).toBe(HvPortState.UNBOUND);
    expect(b.call(HvOp.EVTCHN_SEND, pb)).toBe(0); // dropped: nobody is bound
  });

  it("refuses peers the VM has no channel to, ports allocated for someone else, bad ports", () => {
    const { a, b } = pair();
    expect(a.call(HvOp.EVTCHN_ALLOC_UNBOUND, 1)).toBe(-HvError.ESRCH);
    expect(a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, 5, 1)).toBe(-HvError.ESRCH);
    const self = b.call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF);
    expect(a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, 0, self)).toBe(-HvError.EINVAL);
    expect(a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, 0, 0)).toBe(-HvError.EINVAL);
    expect(a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, 0, 5000)).toBe(-HvError.EINVAL);
    // A forged peer message naming a port that is not connected to the caller.
    expect(b.hv.servePeer(0, Uint32Array.from([2, self, 1]), 3)).toEqual([HvError.EINVAL]);
    expect(b.hv.servePeer(0, Uint32Array.from([99]), 1)).toEqual([HvError.ENOSYS]);
    for (const p of [0, -1, 1024, 0xffffffff]) expect(a.call(HvOp.EVTCHN_SEND, p)).toBe(-HvError.EINVAL);
  });

  it("runs out of ports with ENOSPC", () => {
    const { call } = vm();
    for (let i = 1; i < 1024; i++) expect(call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF)).toBe(i);
    expect(call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF)).toBe(-HvError.ENOSPC);
  });
});

function granted() {
  const { a, b } = pair();
  expect(a.call(HvOp.GNTTAB_SETUP, TABLE, 16)).toBe(0);
  const grant = (ref: number, flags: number, peer: number, frame: number) => {
    const at = TABLE + ref * GrantEntry.BYTES;
    a.ram.setU16(at + GrantEntry.FLAGS, flags);
    a.ram.setU16(at + GrantEntry.PEER, peer);
    a.ram.setU32(at + GrantEntry.FRAME, frame);
  };
  for (let i = 0; i < 4096; i++) a.ram.bytes[DATA + i] = (i * 7) & 0xff;
  return { a, b, grant };
}

describe("grant copy", () => {
  it("the peer reads a granted page and writes it only when the grant is writable", () => {
    const { a, b, grant } = granted();
    grant(3, GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY, 0, DATA / 4096);
    expect(b.call(HvOp.GRANT_COPY, 0, 3, 0, DATA, 4096)).toBe(0);
    expect(b.ram.bytes.subarray(DATA, DATA + 4096)).toEqual(a.ram.bytes.subarray(DATA, DATA + 4096));
    expect(b.call(HvOp.GRANT_COPY, 0, 3, 100, 0x20000 + 5, 10)).toBe(0);
    expect(Array.from(b.ram.bytes.subarray(0x20005, 0x2000f))).toEqual(Array.from(a.ram.bytes.subarray(DATA + 100, DATA + 110)));
    b.ram.bytes.fill(0xee, 0x30000, 0x30010);
    expect(b.call(HvOp.GRANT_COPY, 0, 3, 8, 0x30000, 16 | GRANT_COPY_TO_PEER)).toBe(-HvError.EACCES);
    grant(3, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GRANT_COPY, 0, 3, 8, 0x30000, 16 | GRANT_COPY_TO_PEER)).toBe(0);
    expect(Array.from(a.ram.bytes.subarray(DATA + 8, DATA + 24))).toEqual(new Array(16).fill(0xee));
    expect(a.ram.bytes[DATA + 24]).toBe((24 * 7) & 0xff);
  });

  it("refuses what was not granted: no entry, revoked, another peer, past the page, bad local RAM", () => {
    const { a, b, grant } = granted();
    grant(1, 0, 0, DATA / 4096);
    grant(2, GrantFlag.PERMIT_ACCESS, 1, DATA / 4096);
    grant(4, GrantFlag.PERMIT_ACCESS, 0, 0xfffff);
    grant(5, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GRANT_COPY, 0, 1, 0, DATA, 16)).toBe(-HvError.EACCES);
    expect(b.call(HvOp.GRANT_COPY, 0, 2, 0, DATA, 16)).toBe(-HvError.EACCES);
    expect(b.call(HvOp.GRANT_COPY, 0, 16, 0, DATA, 16)).toBe(-HvError.EACCES);
    expect(b.call(HvOp.GRANT_COPY, 0, 4, 0, DATA, 16)).toBe(-HvError.EFAULT);
    expect(b.call(HvOp.GRANT_COPY, 0, 5, 4090, DATA, 16)).toBe(-HvError.EINVAL);
    expect(b.call(HvOp.GRANT_COPY, 0, 5, 0, (1 << 20) - 8, 16)).toBe(-HvError.EFAULT);
    expect(b.call(HvOp.GRANT_COPY, 1, 5, 0, DATA, 16)).toBe(-HvError.ESRCH);
    expect(b.call(HvOp.GRANT_COPY, 0, 5, 0, DATA, 16 | 0x4000)).toBe(-HvError.EINVAL);
    expect(b.call(HvOp.GRANT_COPY, 0, 5, 0, DATA, 16)).toBe(0);
    // The table must be RAM and fit one page.
    expect(a.call(HvOp.GNTTAB_SETUP, TABLE, 513)).toBe(-HvError.EINVAL);
    expect(a.call(HvOp.GNTTAB_SETUP, (1 << 20) - 8, 2)).toBe(-HvError.EFAULT);
  });

  it("copies within one VM through its own grants (HV_PEER_SELF)", () => {
    const { a } = granted();
    a.ram.setU16(TABLE + 8 + GrantEntry.FLAGS, GrantFlag.PERMIT_ACCESS);
    a.ram.setU16(TABLE + 8 + GrantEntry.PEER, HV_PEER_SELF);
    a.ram.setU32(TABLE + 8 + GrantEntry.FRAME, DATA / 4096);
    expect(a.call(HvOp.GRANT_COPY, HV_PEER_SELF, 1, 16, 0x40000, 32)).toBe(0);
    expect(Array.from(a.ram.bytes.subarray(0x40000, 0x40020))).toEqual(Array.from(a.ram.bytes.subarray(DATA + 16, DATA + 48)));
  });
});

describe("grant map", () => {
  const AREA = HV_GNTMAP_BASE;
  /** Entry `ref`'s flags in a's table. */
  const flagsOf = (a: ReturnType<typeof vm>, ref: number) => a.ram.u16(TABLE + ref * GrantEntry.BYTES + GrantEntry.FLAGS);
  /** b's guest reads or writes a word at gpa (an access that exited: the page is fetched again if need be). */
  const read = (b: ReturnType<typeof vm>, gpa: number) => {
    const q = new VcpuState().qual;
    Object.assign(q, { address: gpa, size: 4, write: false, data: 0 });
    return b.hv.refault(q) ? q.data : null;
  };
  const write = (b: ReturnType<typeof vm>, gpa: number, value: number) => {
    const q = new VcpuState().qual;
    Object.assign(q, { address: gpa, size: 4, write: true, data: value });
    return b.hv.refault(q);
  };

  it("the leaf 0x40000102 names the area; a writable grant maps writable and the granter's entry shows READING | WRITING", () => {
    const q = new VcpuState().qual;
    const { a, b, grant } = granted();
    q.address = HV_CPUID_GRANT_MAP;
    b.hv.cpuid(q);
    expect([q.data, q.ebx]).toEqual([HV_GNTMAP_BASE, HV_GNTMAP_PAGES]);
    grant(2, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 2, AREA + 4096, 0)).toBe(0);
    expect(flagsOf(a, 2)).toBe(GrantFlag.PERMIT_ACCESS | GrantFlag.READING | GrantFlag.WRITING);
    expect(read(b, AREA + 4096 + 8)).toBe(a.ram.u32(DATA + 8));
    expect(write(b, AREA + 4096 + 12, 0xcafef00d)).toBe(true);
    expect(a.ram.u32(DATA + 12)).toBe(0xcafef00d);
    // Unmapped: the slot is free again and the entry no longer in use.
    expect(b.call(HvOp.GNTTAB_UNMAP, AREA + 4096)).toBe(0);
    expect(flagsOf(a, 2)).toBe(GrantFlag.PERMIT_ACCESS);
    expect(read(b, AREA + 4096)).toBeNull();
    expect(b.call(HvOp.GNTTAB_UNMAP, AREA + 4096)).toBe(-HvError.EINVAL);
  });

  it("a writable mapping of an export that lost its write right (dirty logging) exports the page anew", () => {
    const { a, b, grant } = granted();
    grant(1, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 1, AREA, GNTMAP_READONLY)).toBe(0);
    expect(a.state.revoked).toBe(0);
    // The VMM's write protection took the write right from the export: a read-only mapping still uses it...
    a.state.readOnlyExports.add(1);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 1, AREA + 4096, GNTMAP_READONLY)).toBe(0);
    expect(a.state.revoked).toBe(0);
    // ...a writable one gets a new export (the old one, and the mappings made from it, go).
    expect(b.call(HvOp.GNTTAB_MAP, 0, 1, AREA + 8192, 0)).toBe(0);
    expect(a.state.revoked).toBe(1);
    expect(write(b, AREA + 8192, 0xfeed)).toBe(true);
    expect(a.ram.u32(DATA)).toBe(0xfeed);
  });

  it("a VM maps its own grants (HV_PEER_SELF): its own table answers, and only for entries naming it", () => {
    const { a, grant } = granted();
    grant(1, GrantFlag.PERMIT_ACCESS, HV_PEER_SELF, DATA / 4096);
    grant(2, GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY, HV_PEER_SELF, DATA / 4096);
    grant(3, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096); // granted to peer 0, not to itself
    a.ram.setU32(DATA, 0x600df00d);
    expect(a.call(HvOp.GNTTAB_MAP, HV_PEER_SELF, 3, AREA, 0)).toBe(-HvError.EACCES);
    expect(a.call(HvOp.GNTTAB_MAP, HV_PEER_SELF, 2, AREA, 0)).toBe(-HvError.EACCES);
    expect(a.call(HvOp.GNTTAB_MAP, HV_PEER_SELF, 1, AREA, 0)).toBe(0);
    expect(a.call(HvOp.GNTTAB_MAP, HV_PEER_SELF, 2, AREA + 4096, GNTMAP_READONLY)).toBe(0);
    expect(flagsOf(a, 1)).toBe(GrantFlag.PERMIT_ACCESS | GrantFlag.READING | GrantFlag.WRITING);
    expect(flagsOf(a, 2)).toBe(GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY | GrantFlag.READING);
    // Both mappings are its own page: a write through the writable one is in its RAM; the read-only one takes none.
    expect(read(a, AREA + 4096)).toBe(0x600df00d);
    expect(write(a, AREA, 0x12345678)).toBe(true);
    expect(a.ram.u32(DATA)).toBe(0x12345678);
    expect(write(a, AREA + 4096, 1)).toBe(false);
    expect(a.ram.u32(DATA)).toBe(0x12345678);
    // Unmapping tells its own table (no peer call); ending the grant revokes the other mapping.
    expect(a.call(HvOp.GNTTAB_UNMAP, AREA)).toBe(0);
    expect(flagsOf(a, 1)).toBe(GrantFlag.PERMIT_ACCESS);
    expect(a.call(HvOp.GNTTAB_END, 2)).toBe(0);
    expect(read(a, AREA + 4096)).toBeNull();
    // A snapshot keeps a mapping of its own grant like any other.
    expect(a.call(HvOp.GNTTAB_MAP, HV_PEER_SELF, 1, AREA + 8192, 0)).toBe(0);
    const saved = a.hv.saveState(false);
    const b = vm(1);
    b.hv.loadState(saved);
    expect(b.hv.saveState(false)).toEqual(saved);
  });

  it("a read-only mapping of a read-only grant reads but never writes; a writable mapping of it is refused", () => {
    const { a, b, grant } = granted();
    grant(3, GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 3, AREA, 0)).toBe(-HvError.EACCES);
    expect(flagsOf(a, 3)).toBe(GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 3, AREA, GNTMAP_READONLY)).toBe(0);
    expect(flagsOf(a, 3)).toBe(GrantFlag.PERMIT_ACCESS | GrantFlag.READONLY | GrantFlag.READING);
    const before = a.ram.u32(DATA);
    expect(read(b, AREA)).toBe(before);
    expect(write(b, AREA, 0x12345678)).toBe(false);
    expect(a.ram.u32(DATA)).toBe(before);
  });

  it("refuses a grant not given (no entry, another peer, not permitted, past the table), bad places and flags, a busy slot", () => {
    const { b, grant } = granted();
    grant(1, 0, 0, DATA / 4096);
    grant(2, GrantFlag.PERMIT_ACCESS, 1, DATA / 4096);
    grant(4, GrantFlag.PERMIT_ACCESS, 0, 0xfffff);
    grant(5, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 1, AREA, 0)).toBe(-HvError.EACCES);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 2, AREA, 0)).toBe(-HvError.EACCES);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 16, AREA, 0)).toBe(-HvError.EACCES);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 4, AREA, 0)).toBe(-HvError.EFAULT);
    expect(b.call(HvOp.GNTTAB_MAP, 1, 5, AREA, 0)).toBe(-HvError.ESRCH);
    expect(b.call(HvOp.GNTTAB_MAP, HV_PEER_SELF, 5, AREA, 0)).toBe(-HvError.EACCES); // b has no table: nothing granted to itself
    expect(b.call(HvOp.GNTTAB_MAP, 0, 5, AREA + 8, 0)).toBe(-HvError.EINVAL);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 5, DATA, 0)).toBe(-HvError.EINVAL);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 5, AREA + HV_GNTMAP_PAGES * 4096, 0)).toBe(-HvError.EINVAL);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 5, AREA, 1)).toBe(-HvError.EINVAL);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 5, AREA, 0)).toBe(0);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 5, AREA, 0)).toBe(-HvError.EBUSY);
    expect(b.state.imports.size).toBe(1);
  });

  it("GNTTAB_END revokes every mapping: the grantee's accesses find nothing, a new map is refused", () => {
    const { a, b, grant } = granted();
    grant(6, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 6, AREA, 0)).toBe(0);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 6, AREA + 4096, GNTMAP_READONLY)).toBe(0);
    expect(read(b, AREA)).toBe(a.ram.u32(DATA));
    expect(a.call(HvOp.GNTTAB_END, 6)).toBe(0);
    expect(a.state.revoked).toBe(1);
    expect(flagsOf(a, 6)).toBe(0);
    expect(read(b, AREA)).toBeNull();
    expect(write(b, AREA + 4096, 1)).toBe(false);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 6, AREA + 8192, 0)).toBe(-HvError.EACCES);
    expect(a.call(HvOp.GNTTAB_END, 16)).toBe(-HvError.EINVAL);
    // Granted again (a page the entry names anew): the old mapping comes back on the next touch.
    grant(6, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096 + 1);
    a.ram.setU32(DATA + 4096, 0x600d);
    expect(read(b, AREA)).toBe(0x600d);
  });

  it("the granter's end revokes its exports; a rewritten entry moves the export to the new page", () => {
    const { a, b, grant } = granted();
    grant(7, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 7, AREA, 0)).toBe(0);
    grant(7, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096 + 2);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 7, AREA + 4096, 0)).toBe(0);
    expect(a.state.exports.get(7)).toBe(DATA / 4096 + 2);
    expect(a.state.revoked).toBe(1);
    a.hv.end();
    expect(a.state.exports.size).toBe(0);
  });

  it("an export the memory manager took away (the page, and every mapping with it) is made anew on the next map", () => {
    const { a, b, grant } = granted();
    grant(1, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 1, HV_GNTMAP_BASE, 0)).toBe(0);
    a.state.exports.clear(); // revoked from above: the export slot is empty
    a.ram.setU32(DATA + 4, 0xabcd);
    expect(read(b, HV_GNTMAP_BASE + 4)).toBe(0xabcd);
    expect(a.state.exports.get(1)).toBe(DATA / 4096);
  });
});

describe("the ABI's state in a snapshot", () => {
  it("round-trips ports, the upcall, the timer, the grant table and mappings: the restored VM goes on alike", () => {
    const { a, b, grant } = granted();
    a.call(HvOp.SHARED_INFO, SHARED);
    a.call(HvOp.UPCALL_VECTOR, 0x50);
    const far = a.call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF);
    const near = a.call(HvOp.EVTCHN_BIND_INTERDOMAIN, HV_PEER_SELF, far);
    const timer = a.call(HvOp.EVTCHN_BIND_VIRQ, HvVirq.TIMER);
    a.state.now = 1000;
    a.call(HvOp.SET_TIMER, 5000, 0);
    grant(2, GrantFlag.PERMIT_ACCESS, 0, DATA / 4096);
    expect(b.call(HvOp.GNTTAB_MAP, 0, 2, HV_GNTMAP_BASE, 0)).toBe(0);
    const savedA = decode(encode(a.hv.saveState(true)));
    const savedB = decode(encode(b.hv.saveState(false)));

    // Fresh VMs (on the same RAM, as a restore has it) take the records.
    const a2 = vm(1), b2 = vm(1);
    a2.ram.bytes.set(a.ram.bytes);
    a2.state.links = [b2];
    b2.state.links = [a2];
    expect(a2.hv.loadState(savedA)).toBe(true);
    expect(b2.hv.loadState(savedB)).toBe(false);
    expect(a2.state.timer).toBe(5000);
    expect(a2.hv.upcallVector).toBe(0x50);
    expect([near, far, timer].map((p) => a2.call(HvOp.EVTCHN_STATUS, p))).toEqual([HvPortState.INTERDOMAIN, HvPortState.INTERDOMAIN, HvPortState.VIRQ]);
    expect(a2.call(HvOp.EVTCHN_SEND, near)).toBe(0);
    expect(a2.bit(SHARED + SharedInfo.PENDING, far)).toBe(1);
    a2.hv.fireVirq(HvVirq.TIMER);
    expect(a2.bit(SHARED + SharedInfo.PENDING, timer)).toBe(1);
    // The grantee's mapping comes back on its first touch, from the restored granter.
    const q = new VcpuState().qual;
    Object.assign(q, { address: HV_GNTMAP_BASE + 8, size: 4, write: false, data: 0 });
    expect(b2.hv.refault(q)).toBe(true);
    expect(q.data).toBe(a2.ram.u32(DATA + 8));
    expect(b2.call(HvOp.GNTTAB_MAP, 0, 2, HV_GNTMAP_BASE, 0)).toBe(-HvError.EBUSY);
    expect(b2.call(HvOp.GNTTAB_UNMAP, HV_GNTMAP_BASE)).toBe(0);
    expect(a2.ram.u16(TABLE + 2 * GrantEntry.BYTES + GrantEntry.FLAGS)).toBe(GrantFlag.PERMIT_ACCESS);
  });

  it("refuses a bad record naming the field, and changes nothing then", () => {
    const { a } = granted();
    const p = a.call(HvOp.EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF);
    const good = a.hv.saveState(false) as { events: { ports: number[] } };
    const bad = { ...good, events: { ...good.events, ports: [5, HvPortState.VIRQ, 0, 0, 7] } };
    expect(() => a.hv.loadState(bad)).toThrow(DeviceStateError);
    expect(() => a.hv.loadState(bad)).toThrow(/hv\.events\.ports\[0\]/);
    expect(a.call(HvOp.EVTCHN_STATUS, p)).toBe(HvPortState.UNBOUND);
    expect(a.call(HvOp.EVTCHN_STATUS, 5)).toBe(HvPortState.CLOSED);
  });
});
