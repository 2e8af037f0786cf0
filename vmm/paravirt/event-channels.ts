// Event channels of one VM, after Xen's model (xen/include/public/event_channel.h): ports in a
// table the VMM keeps, pending and mask bitmaps in the guest's shared-info page, one upcall.
// A port is closed, unbound (waiting for a named peer to bind), interdomain (connected to a port
// of a peer, or of this VM: HV_PEER_SELF) or bound to a virtual IRQ. What crosses to a peer goes
// through the `link` (IPC to the peer's VMM); the peer checks its own side.

import type { GuestRam } from "../devices/virtio/index.js";
import { PeerOp } from "./peer-protocol.js";
import { HV_PEER_SELF, HV_PORTS, HV_VIRQ_COUNT, HvError, HvPortState, SharedInfo } from "./hv-abi.js";

interface Port {
  state: number;
  /** UNBOUND: who may bind; INTERDOMAIN: the other end's VM (a channel index or HV_PEER_SELF). */
  peer: number;
  /** INTERDOMAIN: the other end's port (in the peer's numbering). */
  remotePort: number;
  /** VIRQ: which. */
  virq: number;
}

/** How the event channels reach the rest of the VMM. */
export interface EventChannelHost {
  readonly ram: GuestRam;
  /** Channels the fleet gave this VM (valid peers are 0..peers-1 and HV_PEER_SELF). */
  readonly peers: number;
  /** The shared-info page made upcall_pending go 0 to 1 with the upcall unmasked: inject the upcall. */
  raiseUpcall(): void;
  /** Ask peer `peer`'s VMM (PeerOp BIND, SEND, CLOSE): 0 or an HvError code. */
  peerEvent(peer: number, op: number, port: number, callerPort: number): number;
}

const closed = (): Port => ({ state: HvPortState.CLOSED, peer: 0, remotePort: 0, virq: 0 });

/** Event channels as a snapshot keeps them: the shared-info page and the open ports. */
export interface EventChannelState {
  /** The shared-info page's gpa, or -1. */
  sharedInfo: number;
  /** The open ports: [port, state, peer, remotePort, virq] each. */
  ports: [number, number, number, number, number][];
}

export class EventChannels {
  private readonly ports: Port[] = Array.from({ length: HV_PORTS }, closed);
  private readonly virqPorts = new Array<number>(HV_VIRQ_COUNT).fill(0);
  /** The shared-info page's guest-physical address, or -1 before the guest named one. */
  private sharedInfo = -1;

  constructor(private readonly host: EventChannelHost) {}

  /** SHARED_INFO: a page-aligned RAM page (0 forgets it). */
  setSharedInfo(gpa: number): number {
    if (gpa === 0) return void (this.sharedInfo = -1), 0;
    if (gpa % 4096 !== 0) return -HvError.EINVAL;
    if (this.host.ram.pageWords(gpa / 4096) === null) return -HvError.EFAULT;
    this.sharedInfo = gpa;
    return 0;
  }

  allocUnbound(peer: number): number {
    if (!this.validPeer(peer)) return -HvError.ESRCH;
    const port = this.freePort();
    if (port < 0) return port;
    this.ports[port] = { state: HvPortState.UNBOUND, peer, remotePort: 0, virq: 0 };
    return port;
  }

  bindInterdomain(peer: number, remotePort: number): number {
    if (!this.validPeer(peer)) return -HvError.ESRCH;
    const port = this.freePort();
    if (port < 0) return port;
    if (peer === HV_PEER_SELF) {
      const remote = this.portAt(remotePort);
      if (!remote || remote.state !== HvPortState.UNBOUND || remote.peer !== HV_PEER_SELF) return -HvError.EINVAL;
      this.ports[port] = { state: HvPortState.INTERDOMAIN, peer, remotePort, virq: 0 };
      Object.assign(remote, { state: HvPortState.INTERDOMAIN, remotePort: port });
      return port;
    }
    if (!validPort(remotePort)) return -HvError.EINVAL;
    const status = this.host.peerEvent(peer, PeerOp.BIND, remotePort, port);
    if (status !== 0) return -status;
    this.ports[port] = { state: HvPortState.INTERDOMAIN, peer, remotePort, virq: 0 };
    return port;
  }

  bindVirq(virq: number): number {
    if (!(virq >= 0 && virq < HV_VIRQ_COUNT)) return -HvError.EINVAL;
    if (this.virqPorts[virq] !== 0) return -HvError.EBUSY;
    const port = this.freePort();
    if (port < 0) return port;
    this.ports[port] = { state: HvPortState.VIRQ, peer: 0, remotePort: 0, virq };
    this.virqPorts[virq] = port;
    return port;
  }

  send(port: number): number {
    const p = this.portAt(port);
    if (!p) return -HvError.EINVAL;
    switch (p.state) {
      case HvPortState.INTERDOMAIN:
        if (p.peer === HV_PEER_SELF) return this.setPending(p.remotePort), 0;
        return -this.host.peerEvent(p.peer, PeerOp.SEND, p.remotePort, port);
      case HvPortState.UNBOUND:
        return 0; // nobody listens yet: the event is dropped, as in Xen
      default:
        return -HvError.EINVAL;
    }
  }

  unmask(port: number): number {
    if (!validPort(port)) return -HvError.EINVAL;
    const page = this.page();
    if (!page) return 0;
    const word = port >>> 5, bit = 1 << (port & 31);
    const mask = SharedInfo.MASK + 4 * word, pending = SharedInfo.PENDING + 4 * word;
    if ((u32(page, mask) & bit) === 0) return 0;
    setU32(page, mask, u32(page, mask) & ~bit);
    if (u32(page, pending) & bit) this.markWord(page, word);
    return 0;
  }

  close(port: number): number {
    const p = this.portAt(port);
    if (!p || p.state === HvPortState.CLOSED) return -HvError.EINVAL;
    if (p.state === HvPortState.INTERDOMAIN) {
      if (p.peer === HV_PEER_SELF) {
        const remote = this.ports[p.remotePort];
        if (remote.state === HvPortState.INTERDOMAIN && remote.peer === HV_PEER_SELF && remote.remotePort === port) Object.assign(remote, { state: HvPortState.UNBOUND, remotePort: 0 });
      } else {
        // The peer may be gone or have closed first: our end closes whatever it answers.
        this.host.peerEvent(p.peer, PeerOp.CLOSE, p.remotePort, port);
      }
    }
    if (p.state === HvPortState.VIRQ) this.virqPorts[p.virq] = 0;
    this.ports[port] = closed();
    return 0;
  }

  status(port: number): number {
    const p = this.portAt(port);
    return p ? p.state : -HvError.EINVAL;
  }

  saveState(): EventChannelState {
    const ports: EventChannelState["ports"] = [];
    this.ports.forEach((p, port) => p.state !== HvPortState.CLOSED && ports.push([port, p.state, p.peer, p.remotePort, p.virq]));
    return { sharedInfo: this.sharedInfo, ports };
  }

  /** A state checked by checkEventChannelState (hv-state.ts). */
  loadState(s: EventChannelState): void {
    this.ports.forEach((_, port) => (this.ports[port] = closed()));
    this.virqPorts.fill(0);
    for (const [port, state, peer, remotePort, virq] of s.ports) {
      this.ports[port] = { state, peer, remotePort, virq };
      if (state === HvPortState.VIRQ) this.virqPorts[virq] = port;
    }
    this.sharedInfo = s.sharedInfo;
  }

  /** A virtual IRQ happened: its port (if bound) becomes pending. */
  fireVirq(virq: number): void {
    const port = this.virqPorts[virq];
    if (port !== 0) this.setPending(port);
  }

  /** A peer's request about our `port` (the peer is known by the portal it called): 0 or an HvError code. */
  fromPeer(peer: number, op: number, port: number, callerPort: number): number {
    const p = this.portAt(port);
    if (!p || !validPort(callerPort)) return HvError.EINVAL;
    switch (op) {
      case PeerOp.BIND:
        if (p.state !== HvPortState.UNBOUND || p.peer !== peer) return HvError.EINVAL;
        Object.assign(p, { state: HvPortState.INTERDOMAIN, remotePort: callerPort });
        return 0;
      case PeerOp.SEND:
        if (p.state !== HvPortState.INTERDOMAIN || p.peer !== peer || p.remotePort !== callerPort) return HvError.EINVAL;
        this.setPending(port);
        return 0;
      case PeerOp.CLOSE:
        if (p.state !== HvPortState.INTERDOMAIN || p.peer !== peer || p.remotePort !== callerPort) return HvError.EINVAL;
        Object.assign(p, { state: HvPortState.UNBOUND, remotePort: 0 });
        return 0;
    }
    return HvError.ENOSYS;
  }

  /**
   * Xen's evtchn_set_pending: set the port's pending bit; if it was clear and the port is not
   * masked, set its selector bit, and the upcall when that was clear. Without a shared-info page
   * the event is lost (the guest names its page before it binds ports).
   */
  private setPending(port: number): void {
    const page = this.page();
    if (!page) return;
    const word = port >>> 5, bit = 1 << (port & 31);
    const pending = SharedInfo.PENDING + 4 * word;
    const was = u32(page, pending);
    if (was & bit) return;
    setU32(page, pending, was | bit);
    if (u32(page, SharedInfo.MASK + 4 * word) & bit) return;
    this.markWord(page, word);
  }

  /** Word `word` of the bitmap has an unmasked pending port: selector bit, then the upcall. */
  private markWord(page: Int32Array, word: number): void {
    setU32(page, SharedInfo.PENDING_SEL, u32(page, SharedInfo.PENDING_SEL) | (1 << word));
    if (byteOf(page, SharedInfo.UPCALL_PENDING) !== 0) return;
    setByte(page, SharedInfo.UPCALL_PENDING, 1);
    if (byteOf(page, SharedInfo.UPCALL_MASK) === 0) this.host.raiseUpcall();
  }

  /**
   * The shared-info page's words now (asked for each time: the page's frame may change under
   * paging; the same array comes back while it does not). A view or a DataView made per event
   * was a tenth of a round trip.
   */
  private page(): Int32Array | null {
    return this.sharedInfo < 0 ? null : this.host.ram.pageWords(this.sharedInfo / 4096);
  }

  private portAt(port: number): Port | null {
    return validPort(port) ? this.ports[port] : null;
  }

  private freePort(): number {
    for (let p = 1; p < HV_PORTS; p++) if (this.ports[p].state === HvPortState.CLOSED) return p;
    return -HvError.ENOSPC;
  }

  private validPeer(peer: number): boolean {
    return peer === HV_PEER_SELF || (Number.isInteger(peer) && peer >= 0 && peer < this.host.peers);
  }
}

// Fields of the shared-info page by byte offset, on its words (every field is a word, or a byte of one).

/** The word at byte `at` (a multiple of 4), unsigned. */
function u32(w: Int32Array, at: number): number {
  return w[at >> 2] >>> 0;
}

function setU32(w: Int32Array, at: number, v: number): void {
  w[at >> 2] = v;
}

/** The byte at `at` (little-endian: byte k of a word is its bits 8k to 8k + 7). */
function byteOf(w: Int32Array, at: number): number {
  return (w[at >> 2] >>> (8 * (at & 3))) & 0xff;
}

function setByte(w: Int32Array, at: number, v: number): void {
  const shift = 8 * (at & 3);
  w[at >> 2] = (w[at >> 2] & ~(0xff << shift)) | ((v & 0xff) << shift);
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port < HV_PORTS;
}
