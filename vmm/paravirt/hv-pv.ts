// Our own paravirtual ABI as the VMM serves it (hv-abi.ts is the ABI): the discovery leaves, the
// hypercall table (one handler per op, each checks its arguments and returns a result or
// -HvError), multicalls, event channels, grant copy, and the peer side of a channel (what another
// VMM asks of this one). Never throws for what a guest or a peer gave it.

import type { VcpuState } from "../../kernel/index.js";
import { packBytes, unpackBytes } from "../../kernel/index.js";
import type { GuestRam } from "../devices/virtio/index.js";
import { EventChannels } from "./event-channels.js";
import { GrantMaps, type GrantImports } from "./grant-maps.js";
import { GrantTable, type GrantExports } from "./grant-table.js";
import {
  GRANT_COPY_LENGTH_MASK,
  GRANT_COPY_TO_PEER,
  HV_ABI_VERSION,
  HV_CPUID_BASE,
  HV_CPUID_GRANT_MAP,
  HV_CPUID_INFO,
  HV_GNTMAP_BASE,
  HV_GNTMAP_PAGES,
  HV_HYPERCALL_BASE,
  HV_HYPERCALL_SPAN,
  HV_OP_COUNT,
  HV_PEER_SELF,
  HV_PORTS,
  HV_SIGNATURE,
  HvError,
  HvOp,
  HvVirq,
  MULTICALL_MAX,
  MULTICALL_STOP_ON_ERROR,
  MulticallEntry,
} from "./hv-abi.js";
import { PEER_CHUNK, PeerOp } from "./peer-protocol.js";
import { checkHvRecord, hvRecord } from "./hv-state.js";

const PAGE = 4096;
/** A multicall entry's size and fields, in words. */
const ENTRY_WORDS = MulticallEntry.BYTES >> 2, ENTRY_ARGS = MulticallEntry.ARGS >> 2, ENTRY_RESULT = MulticallEntry.RESULT >> 2;

/** Feature bits of leaf 0x40000101 ECX. */
export const HvFeature = { MULTICALL: 1, EVTCHN: 2, GRANT_COPY: 4, GRANT_MAP: 8 } as const;
const FEATURES = HvFeature.MULTICALL | HvFeature.EVTCHN | HvFeature.GRANT_COPY | HvFeature.GRANT_MAP;

/** What the ABI needs of its VMM. */
export interface HvHost {
  readonly ram: GuestRam;
  /** Channels the fleet gave this VM: peers 0..peers-1. */
  readonly peers: number;
  /** Inject the upcall (the VMM owns the vector and the interrupt path). */
  raiseUpcall(): void;
  /**
   * Call peer `peer`'s VMM: `fill` writes the request into the message words and returns how many;
   * the reply's words (valid until the next call), or null when the call failed (the peer is gone).
   */
  peerCall(peer: number, fill: (words: Uint32Array) => number): Uint32Array | null;
  /** The VM's time, ns. */
  vmNow(): number;
  /** Arm the one-shot timer at VM time `atNs` (null: cancel); the VMM calls fireVirq(TIMER) then. */
  setTimer(atNs: number | null): void;
  /** Grant mapping's page capabilities: this VM's pages peers map, and peers' pages this VM maps. */
  readonly exports: GrantExports;
  readonly imports: GrantImports;
}

/** The hypercall's registers: number in EAX, arguments in EBX, ECX, EDX, ESI, EDI. */
export type HvRegisters = Pick<VcpuState, "eax" | "ebx" | "ecx" | "edx" | "esi" | "edi">;

type Handler = (a1: number, a2: number, a3: number, a4: number, a5: number) => number;

export class HvParavirt {
  readonly events: EventChannels;
  readonly grants: GrantTable;
  readonly maps: GrantMaps;
  /** The upcall's vector (0: none). */
  upcallVector = 0;
  private readonly table: ReadonlyArray<Handler>;
  /** SET_TIMER's deadline (VM time, ns) until it fires, or null. */
  private timerNs: number | null = null;
  /** Depth guard: a multicall entry may not be a multicall. */
  private inMulticall = false;
  /** The event request peerEvent sends, and its filler: made once, not a closure per send. */
  private readonly event = new Uint32Array(3);
  private readonly fillEvent = (w: Uint32Array): number => ((w[0] = this.event[0]), (w[1] = this.event[1]), (w[2] = this.event[2]), 3);

  constructor(private readonly host: HvHost) {
    this.grants = new GrantTable(host.ram, host.exports);
    this.maps = new GrantMaps(host.imports, host.peers, {
      map: (ref, slot, writable) => this.grants.map(HV_PEER_SELF, ref, slot, writable),
      unmap: (ref, slot, writable) => void this.grants.unmap(HV_PEER_SELF, ref, slot, writable),
    });
    this.events = new EventChannels({
      ram: host.ram,
      peers: host.peers,
      raiseUpcall: () => host.raiseUpcall(),
      peerEvent: (peer, op, port, callerPort) => this.peerEvent(peer, op, port, callerPort),
    });
    const e = this.events;
    const t: Handler[] = [];
    t[HvOp.VERSION] = () => HV_ABI_VERSION;
    t[HvOp.MULTICALL] = (gpa, count, flags) => this.multicall(gpa, count, flags);
    t[HvOp.SHARED_INFO] = (gpa) => e.setSharedInfo(gpa);
    t[HvOp.UPCALL_VECTOR] = (vector) => this.setUpcallVector(vector);
    t[HvOp.EVTCHN_ALLOC_UNBOUND] = (peer) => e.allocUnbound(peer);
    t[HvOp.EVTCHN_BIND_INTERDOMAIN] = (peer, port) => e.bindInterdomain(peer, port);
    t[HvOp.EVTCHN_BIND_VIRQ] = (virq) => e.bindVirq(virq);
    t[HvOp.EVTCHN_SEND] = (port) => e.send(port);
    t[HvOp.EVTCHN_UNMASK] = (port) => e.unmask(port);
    t[HvOp.EVTCHN_CLOSE] = (port) => e.close(port);
    t[HvOp.EVTCHN_STATUS] = (port) => e.status(port);
    t[HvOp.SET_TIMER] = (lo, hi) => this.setTimer(lo, hi);
    t[HvOp.GNTTAB_SETUP] = (gpa, entries) => this.grants.setup(gpa, entries);
    t[HvOp.GRANT_COPY] = (peer, ref, offset, local, lengthAndDir) => this.grantCopy(peer, ref, offset, local, lengthAndDir);
    t[HvOp.PEERS] = () => host.peers;
    t[HvOp.GNTTAB_MAP] = (peer, ref, gpa, flags) => this.maps.map(peer, ref, gpa, flags);
    t[HvOp.GNTTAB_UNMAP] = (gpa) => this.maps.unmap(gpa);
    t[HvOp.GNTTAB_END] = (ref) => this.grants.endGrant(ref);
    this.table = t;
  }

  /** Whether hypercall number `eax` is this ABI's (the rest are KVM's). */
  static owns(eax: number): boolean {
    const n = eax >>> 0;
    return n >= HV_HYPERCALL_BASE && n < HV_HYPERCALL_BASE + HV_HYPERCALL_SPAN;
  }

  /** Whether CPUID leaf `leaf` is this ABI's. */
  static ownsLeaf(leaf: number): boolean {
    return leaf >>> 8 === HV_CPUID_BASE >>> 8;
  }

  /** Answer a CPUID exit of one of this ABI's leaves (EAX into `q.data`, then EBX, ECX, EDX). */
  cpuid(q: VcpuState["qual"]): void {
    q.data = q.ebx = q.ecx = q.edx = 0;
    if (q.address === HV_CPUID_BASE) {
      q.data = HV_CPUID_GRANT_MAP;
      [q.ebx, q.ecx, q.edx] = HV_SIGNATURE;
    } else if (q.address === HV_CPUID_INFO) {
      [q.data, q.ebx, q.ecx, q.edx] = [HV_ABI_VERSION, HV_HYPERCALL_BASE, FEATURES, HV_PORTS];
    } else if (q.address === HV_CPUID_GRANT_MAP) {
      [q.data, q.ebx] = [HV_GNTMAP_BASE, HV_GNTMAP_PAGES];
    }
  }

  /** A VMCALL of this ABI at privilege level `cpl`: the value for EAX. */
  hypercall(r: HvRegisters, cpl: number): number {
    if (cpl !== 0) return -HvError.EPERM;
    return this.call(r.eax >>> 0, r.ebx >>> 0, r.ecx >>> 0, r.edx >>> 0, r.esi >>> 0, r.edi >>> 0);
  }

  /** The VM ended: peers' mappings of its pages go. */
  end(): void {
    this.grants.endAll();
  }

  /** A guest access exited (MMIO): true when it was to a grant mapping that is back now, and the access is done. */
  refault(q: VcpuState["qual"]): boolean {
    return this.maps.refault(q);
  }

  /** A virtual IRQ happened (the timer's deadline, console input). */
  fireVirq(virq: number): void {
    if (virq === HvVirq.TIMER) this.timerNs = null;
    this.events.fireVirq(virq);
  }

  /** The ABI's state for a snapshot (`upcallRaised`: the VMM raised the upcall and has not injected it yet). */
  saveState(upcallRaised: boolean): Record<string, unknown> {
    return hvRecord({ upcallVector: this.upcallVector, upcallRaised, timerNs: this.timerNs, events: this.events.saveState(), grants: this.grants.saveState(), maps: this.maps.saveState() });
  }

  /** Take a saved record (checked first: a bad one throws DeviceStateError and changes nothing); whether an upcall waits to be injected. */
  loadState(raw: unknown, path = "hv"): boolean {
    const r = checkHvRecord(raw, path);
    this.upcallVector = r.upcallVector;
    this.events.loadState(r.events);
    this.grants.loadState(r.grants);
    this.maps.loadState(r.maps.map(([slot, peer, ref, writable]) => [slot, { peer, ref, writable: writable === 1 }]));
    this.timerNs = r.timerNs;
    this.host.setTimer(r.timerNs);
    return r.upcallRaised;
  }

  /** A request from peer `peer`'s VMM (the words of its message): the reply's words. */
  servePeer(peer: number, w: Uint32Array, untyped: number): number[] {
    const event = this.peerEventOf(peer, w, untyped);
    return event >= 0 ? [event] : this.servePeerData(peer, w, untyped);
  }

  /**
   * The same, with the reply written over the request in `w`: the reply's length. An event (BIND,
   * SEND, CLOSE: one per event-channel send) allocates nothing.
   */
  servePeerInPlace(peer: number, w: Uint32Array, untyped: number): number {
    const event = this.peerEventOf(peer, w, untyped);
    if (event >= 0) return (w[0] = event), 1;
    const reply = this.servePeerData(peer, w, untyped);
    for (let i = 0; i < reply.length; i++) w[i] = reply[i];
    return reply.length;
  }

  /** An event request's status (BIND, SEND, CLOSE, or a message too short for anything), or -1 for the other operations. */
  private peerEventOf(peer: number, w: Uint32Array, untyped: number): number {
    if (untyped < 1) return HvError.EINVAL;
    const op = w[0];
    if (op !== PeerOp.BIND && op !== PeerOp.SEND && op !== PeerOp.CLOSE) return -1;
    return untyped < 3 ? HvError.EINVAL : this.events.fromPeer(peer, op, w[1], w[2]);
  }

  /** The other peer operations (grant access): the reply's words. */
  private servePeerData(peer: number, w: Uint32Array, untyped: number): number[] {
    switch (w[0]) {
      case PeerOp.READ: {
        const [ref, offset, length] = [w[1], w[2], w[3]];
        if (untyped < 4 || length > PEER_CHUNK) return [HvError.EINVAL];
        const gpa = this.grants.resolve(peer, ref, offset, length, false);
        if (gpa < 0) return [-gpa];
        const bytes = readRam(this.host.ram, gpa, length);
        if (!bytes) return [HvError.EFAULT];
        const words = new Uint32Array(Math.ceil(length / 4));
        packBytes(bytes, words, 0);
        return [0, length, ...words];
      }
      case PeerOp.WRITE: {
        const [ref, offset, length] = [w[1], w[2], w[3]];
        if (untyped < 4 || length > PEER_CHUNK || untyped < 4 + Math.ceil(length / 4)) return [HvError.EINVAL];
        const gpa = this.grants.resolve(peer, ref, offset, length, true);
        if (gpa < 0) return [-gpa];
        return [writeRam(this.host.ram, gpa, unpackBytes(w, 4, length)) ? 0 : HvError.EFAULT];
      }
      case PeerOp.MAP:
      case PeerOp.UNMAP: {
        if (untyped < 4 || w[3] > 1) return [HvError.EINVAL];
        const [ref, slot, writable] = [w[1], w[2], w[3] === 1];
        return [w[0] === PeerOp.MAP ? this.grants.map(peer, ref, slot, writable) : this.grants.unmap(peer, ref, slot, writable)];
      }
    }
    return [HvError.ENOSYS];
  }

  private call(number: number, a1: number, a2: number, a3: number, a4: number, a5: number): number {
    const handler = this.handlerOf(number);
    // Results are 32-bit (and never -0: a peer status 0 negated).
    return handler ? handler(a1, a2, a3, a4, a5) | 0 : -HvError.ENOSYS;
  }

  /** The handler of hypercall number `number` (unsigned), or undefined. */
  private handlerOf(number: number): Handler | undefined {
    const op = number - HV_HYPERCALL_BASE;
    return op >= 0 && op < HV_OP_COUNT ? this.table[op] : undefined;
  }

  /**
   * Run `count` entries from gpa (32-byte aligned, so no entry crosses a page), each result
   * written back to its entry; the number of entries run.
   */
  private multicall(gpa: number, count: number, flags: number): number {
    if (this.inMulticall) return -HvError.EINVAL;
    if (gpa % MulticallEntry.BYTES !== 0 || count > MULTICALL_MAX || (flags & ~MULTICALL_STOP_ON_ERROR) !== 0) return -HvError.EINVAL;
    if (count === 0) return 0;
    const ram = this.host.ram;
    const end = gpa + count * MulticallEntry.BYTES;
    if (!ram.contains(gpa, end - gpa)) return -HvError.EFAULT;
    // One check of the whole array before any entry runs (a bad array runs nothing): every page
    // is RAM. Each page's words are asked for again when its entries run (the same array, no
    // allocation), so an entry that changed what backs a page cannot leave a stale one in use.
    const first = Math.floor(gpa / PAGE), last = Math.floor((end - 1) / PAGE);
    for (let p = first; p <= last; p++) if (ram.pageWords(p) === null) return -HvError.EFAULT;
    const stop = flags & MULTICALL_STOP_ON_ERROR;
    this.inMulticall = true;
    try {
      let run = 0;
      for (let p = first; p <= last; p++) {
        const from = p === first ? (gpa % PAGE) >> 2 : 0;
        const to = p === last ? ((end - 1) % PAGE + 1) >> 2 : PAGE >> 2;
        const done = this.runEntries(ram.pageWords(p)!, from, to, stop);
        run += Math.abs(done);
        if (done < 0) break;
      }
      return run;
    } finally {
      this.inMulticall = false;
    }
  }

  /** Run the entries in words [from, to) of `w`, each result written back: how many ran, negated when one failed and `stop` ended the run there. */
  private runEntries(w: Int32Array, from: number, to: number, stop: number): number {
    const table = this.table;
    let run = 0;
    for (let at = from; at < to; at += ENTRY_WORDS) {
      const op = (w[at] >>> 0) - HV_HYPERCALL_BASE;
      const handler = op >= 0 && op < HV_OP_COUNT ? table[op] : undefined;
      const a = at + ENTRY_ARGS;
      const result = handler !== undefined ? handler(w[a] >>> 0, w[a + 1] >>> 0, w[a + 2] >>> 0, w[a + 3] >>> 0, w[a + 4] >>> 0) | 0 : -HvError.ENOSYS;
      w[at + ENTRY_RESULT] = result;
      run++;
      if (result < 0 && stop) return -run;
    }
    return run;
  }

  private setUpcallVector(vector: number): number {
    if (vector !== 0 && !(vector >= 0x20 && vector <= 0xff)) return -HvError.EINVAL;
    this.upcallVector = vector;
    return 0;
  }

  private setTimer(lo: number, hi: number): number {
    const at = hi * 2 ** 32 + lo;
    // A deadline already past fires at once (as Xen's set_timer_op).
    this.timerNs = at === 0 ? null : Math.max(at, this.host.vmNow());
    this.host.setTimer(this.timerNs);
    return 0;
  }

  private grantCopy(peer: number, ref: number, offset: number, local: number, lengthAndDir: number): number {
    const toPeer = (lengthAndDir & GRANT_COPY_TO_PEER) !== 0;
    const length = lengthAndDir & GRANT_COPY_LENGTH_MASK;
    if ((lengthAndDir & ~(GRANT_COPY_TO_PEER | GRANT_COPY_LENGTH_MASK)) !== 0 || length > 4096 || offset + length > 4096) return -HvError.EINVAL;
    const ram = this.host.ram;
    if (ram.segments(local, length) === null) return -HvError.EFAULT;
    if (peer === HV_PEER_SELF) {
      const gpa = this.grants.resolve(HV_PEER_SELF, ref, offset, length, toPeer);
      if (gpa < 0) return gpa;
      const bytes = readRam(ram, toPeer ? local : gpa, length)!;
      return writeRam(ram, toPeer ? gpa : local, bytes) ? 0 : -HvError.EFAULT;
    }
    if (!(peer < this.host.peers)) return -HvError.ESRCH;
    for (let at = 0; at < length; at += PEER_CHUNK) {
      const n = Math.min(PEER_CHUNK, length - at);
      if (toPeer) {
        const bytes = readRam(ram, local + at, n)!;
        const reply = this.host.peerCall(peer, (w) => {
          w.set([PeerOp.WRITE, ref, offset + at, n]);
          return 4 + packBytes(bytes, w, 4);
        });
        if (!reply) return -HvError.ESRCH;
        if (reply[0] !== 0) return -reply[0];
      } else {
        const reply = this.host.peerCall(peer, (w) => (w.set([PeerOp.READ, ref, offset + at, n]), 4));
        if (!reply) return -HvError.ESRCH;
        if (reply[0] !== 0) return -reply[0];
        if (reply[1] !== n || !writeRam(ram, local + at, unpackBytes(reply, 2, n))) return -HvError.EFAULT;
      }
    }
    return 0;
  }

  private peerEvent(peer: number, op: number, port: number, callerPort: number): number {
    this.event[0] = op;
    this.event[1] = port;
    this.event[2] = callerPort;
    const reply = this.host.peerCall(peer, this.fillEvent);
    return reply ? reply[0] : HvError.ESRCH;
  }
}

/** A copy of guest RAM [gpa, gpa + length) (across pages), or null when it is not all RAM. */
function readRam(ram: GuestRam, gpa: number, length: number): Uint8Array | null {
  const segments = ram.segments(gpa, length);
  if (!segments) return null;
  const out = new Uint8Array(length);
  let at = 0;
  for (const s of segments) out.set(s, at), (at += s.length);
  return out;
}

/** Write `bytes` to guest RAM at gpa (across pages); false when it is not all RAM. */
function writeRam(ram: GuestRam, gpa: number, bytes: Uint8Array): boolean {
  const segments = ram.segments(gpa, bytes.length);
  if (!segments) return false;
  let at = 0;
  for (const s of segments) s.set(bytes.subarray(at, at + s.length)), (at += s.length);
  return true;
}

