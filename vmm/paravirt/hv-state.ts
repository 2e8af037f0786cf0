// The hv PV ABI's state in a snapshot (vcpus[0].hv of the file, VmState.hv): the upcall, the
// one-shot timer, the event channels, the grant table's place and the mappings peers hold of it,
// and the grant mappings this VM holds. The shared-info page, the grant table and the rings are
// guest RAM and travel with it. A snapshot is untrusted: checkHvRecord reads the whole record and
// throws DeviceStateError naming the bad field before anything is changed.

import { DeviceStateError, StateReader } from "../devices/state.js";
import type { EventChannelState } from "./event-channels.js";
import type { GrantMapping } from "./grant-maps.js";
import type { GrantTableState } from "./grant-table.js";
import { GNTTAB_MAX_ENTRIES, GrantEntry, HV_GNTMAP_PAGES, HV_PEER_SELF, HV_PORTS, HV_VIRQ_COUNT, HvPortState } from "./hv-abi.js";
import { MAX_PEERS } from "./peer-protocol.js";

export interface HvRecord {
  /** The upcall's vector (0: none), and whether one was raised and not yet taken. */
  upcallVector: number;
  upcallRaised: boolean;
  /** SET_TIMER's deadline, VM time in ns, or null. */
  timerNs: number | null;
  events: EventChannelState;
  grants: GrantTableState;
  /** The grant mappings this VM holds: [slot, peer, ref, writable 0 or 1] each. */
  maps: [number, number, number, number][];
}

const U32 = 0xffffffff;

/** A saved record, every field checked (throws DeviceStateError naming the field, `path` first). */
export function checkHvRecord(raw: unknown, path: string): HvRecord {
  const r = new StateReader(raw, path);
  const upcallVector = r.int("upcallVector", 0, 0xff);
  if (upcallVector !== 0 && upcallVector < 0x20) throw new DeviceStateError(`${path}.upcallVector`, "not 0 or 0x20..0xff");
  const timerNs = r.isNull("timerNs") ? null : r.num("timerNs", 0);
  return { upcallVector, upcallRaised: r.bool("upcallRaised"), timerNs, events: events(r.record("events")), grants: grants(r.record("grants")), maps: maps(r) };
}

function events(r: StateReader): EventChannelState {
  const sharedInfo = r.int("sharedInfo", -1, U32 - 4095);
  if (sharedInfo !== -1 && sharedInfo % 4096 !== 0) throw new DeviceStateError(`${r.path}.sharedInfo`, "not -1 or a page-aligned address");
  const flat = r.intList("ports", 5 * (HV_PORTS - 1), 0, U32);
  const where = `${r.path}.ports`;
  if (flat.length % 5 !== 0) throw new DeviceStateError(where, "not [port, state, peer, remotePort, virq] tuples");
  const ports: EventChannelState["ports"] = [];
  const byPort = new Map<number, EventChannelState["ports"][number]>();
  const virqs = new Set<number>();
  const validPeer = (peer: number) => peer === HV_PEER_SELF || peer < MAX_PEERS;
  for (let i = 0; i < flat.length; i += 5) {
    const t = flat.slice(i, i + 5) as EventChannelState["ports"][number];
    const [port, state, peer, remotePort, virq] = t;
    const bad = (problem: string) => new DeviceStateError(`${where}[${i / 5}]`, problem);
    if (!(port >= 1 && port < HV_PORTS) || byPort.has(port)) throw bad("not a port, or a port twice");
    if (state === HvPortState.UNBOUND || state === HvPortState.INTERDOMAIN) {
      if (!validPeer(peer)) throw bad("no such peer");
      if (state === HvPortState.INTERDOMAIN ? !(remotePort >= 1 && remotePort < HV_PORTS) : remotePort !== 0) throw bad("a bad remote port");
    } else if (state === HvPortState.VIRQ) {
      if (!(virq < HV_VIRQ_COUNT) || virqs.has(virq)) throw bad("not a virtual IRQ, or one bound twice");
      virqs.add(virq);
    } else throw bad("not an open port's state");
    byPort.set(port, t);
    ports.push(t);
  }
  // A loopback channel's two ends name each other.
  for (const [port, state, peer, remotePort] of ports) {
    if (state !== HvPortState.INTERDOMAIN || peer !== HV_PEER_SELF) continue;
    const other = byPort.get(remotePort);
    if (!other || other[1] !== HvPortState.INTERDOMAIN || other[2] !== HV_PEER_SELF || other[3] !== port) throw new DeviceStateError(where, `loopback port ${port}'s other end is not there`);
  }
  return { sharedInfo, ports };
}

function grants(r: StateReader): GrantTableState {
  const entries = r.int("entries", 0, GNTTAB_MAX_ENTRIES);
  const gpa = r.int("gpa", 0, U32);
  if (entries > 0 && (gpa % GrantEntry.BYTES !== 0 || (gpa % 4096) + entries * GrantEntry.BYTES > 4096)) throw new DeviceStateError(`${r.path}.gpa`, "the table does not fit one page");
  const flat = r.intList("mapped", 4 * GNTTAB_MAX_ENTRIES * (MAX_PEERS + 1), 0, U32); // the peers and the VM itself
  const mapped: GrantTableState["mapped"] = [];
  for (let i = 0; i < flat.length; i += 4) {
    const [ref, peer, slot, writable] = flat.slice(i, i + 4);
    if (!(ref < entries && (peer < MAX_PEERS || peer === HV_PEER_SELF) && slot < HV_GNTMAP_PAGES && writable <= 1) || flat.length % 4 !== 0)
      throw new DeviceStateError(`${r.path}.mapped[${i / 4}]`, "not [ref, peer, slot, writable] of this table");
    mapped.push([ref, peer, slot, writable]);
  }
  return { gpa, entries, mapped };
}

function maps(r: StateReader): HvRecord["maps"] {
  const flat = r.intList("maps", 4 * HV_GNTMAP_PAGES, 0, U32);
  const out: HvRecord["maps"] = [];
  const slots = new Set<number>();
  for (let i = 0; i < flat.length; i += 4) {
    const [slot, peer, ref, writable] = flat.slice(i, i + 4);
    if (!(slot < HV_GNTMAP_PAGES && !slots.has(slot) && (peer < MAX_PEERS || peer === HV_PEER_SELF) && ref < GNTTAB_MAX_ENTRIES && writable <= 1) || flat.length % 4 !== 0)
      throw new DeviceStateError(`${r.path}.maps[${i / 4}]`, "not [slot, peer, ref, writable], or a slot twice");
    slots.add(slot);
    out.push([slot, peer, ref, writable]);
  }
  return out;
}

/** Flatten for the record (msgpack keeps flat integer lists small). */
export function hvRecord(s: Omit<HvRecord, "maps"> & { maps: [number, GrantMapping][] }): Record<string, unknown> {
  return {
    upcallVector: s.upcallVector,
    upcallRaised: s.upcallRaised,
    timerNs: s.timerNs,
    events: { sharedInfo: s.events.sharedInfo, ports: s.events.ports.flat() },
    grants: { gpa: s.grants.gpa, entries: s.grants.entries, mapped: s.grants.mapped.flat() },
    maps: s.maps.flatMap(([slot, m]) => [slot, m.peer, m.ref, m.writable ? 1 : 0]),
  };
}
