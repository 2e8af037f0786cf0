// Our own paravirtual ABI ("hv PV"): discovery leaves, hypercall numbers, error codes and the
// layouts of the records guests share with the VMM (shared-info page, multicall entries, grant
// entries). test/guest/hv_pv.h is the same ABI for C guests; keep the two in step. Modelled on
// Xen's public interface (multicalls, event channels, grant tables), not binary compatible with it.
//
// Discovery: CPUID leaf 0x40000100 answers EAX = the highest leaf of the range (0x40000102) and
// "novatsPVABI\0" in EBX, ECX, EDX; leaf 0x40000101 answers EAX = ABI version, EBX = the hypercall
// base, ECX = feature bits, EDX = event channel ports; leaf 0x40000102 EAX = the guest-physical
// base of the grant map area, EBX = its pages. KVM's leaves at 0x40000000 stay as they are.
//
// Calls: VMCALL with EAX = base + op, arguments in EBX, ECX, EDX, ESI, EDI; the result in EAX
// (>= 0 success, -HvError on failure); other registers are kept. The base is far above KVM's
// hypercall numbers (< 1000), so the two ABIs never meet: the VMM routes by range.

export const HV_CPUID_BASE = 0x40000100;
export const HV_CPUID_INFO = 0x40000101;
export const HV_CPUID_GRANT_MAP = 0x40000102;
/** "novatsPVABI\0" in EBX, ECX, EDX (little-endian words). */
export const HV_SIGNATURE = [0x61766f6e, 0x56507374, 0x00494241] as const;
export const HV_ABI_VERSION = 1;
/** Hypercall numbers are HV_HYPERCALL_BASE + HvOp ("NV" in the high half). */
export const HV_HYPERCALL_BASE = 0x4e560000;
/** Ops the base may be followed by (the range the VMM routes to this ABI). */
export const HV_HYPERCALL_SPAN = 0x100;

/** Hypercall ops (EAX - base). Arguments a1..a5 are EBX, ECX, EDX, ESI, EDI. */
export const HvOp = {
  /** () -> HV_ABI_VERSION. */
  VERSION: 0,
  /** (gpa, count, flags) -> entries run. MULTICALL_STOP_ON_ERROR in flags: stop after the first failing entry. */
  MULTICALL: 1,
  /** (gpa) -> 0: the page-aligned guest page that is the shared-info page (0 forgets it). */
  SHARED_INFO: 2,
  /** (vector) -> 0: the upcall's interrupt vector, 0x20..0xff (0: no upcall). */
  UPCALL_VECTOR: 3,
  /** (peer) -> port: a port that `peer` (a channel index, or HV_PEER_SELF) may bind to. */
  EVTCHN_ALLOC_UNBOUND: 4,
  /** (peer, remotePort) -> port: a port connected to the peer's unbound port that names this VM. */
  EVTCHN_BIND_INTERDOMAIN: 5,
  /** (virq) -> port: a port the VMM signals on a virtual IRQ (HvVirq). */
  EVTCHN_BIND_VIRQ: 6,
  /** (port) -> 0: signal the other end (or the port itself, for a VIRQ port). */
  EVTCHN_SEND: 7,
  /** (port) -> 0: clear the port's mask bit; a pending event then raises the upcall. */
  EVTCHN_UNMASK: 8,
  /** (port) -> 0: close the port; an interdomain peer's end goes back to unbound. */
  EVTCHN_CLOSE: 9,
  /** (port) -> HvPortState. */
  EVTCHN_STATUS: 10,
  /** (lo, hi) -> 0: one VIRQ_TIMER event when the VM's clock reaches hi:lo ns (0: cancel). */
  SET_TIMER: 11,
  /** (gpa, entries) -> 0: the grant table, `entries` GrantEntry records in one page at gpa (0 entries: none). */
  GNTTAB_SETUP: 12,
  /**
   * (peer, ref, offset, localGpa, lengthAndDir) -> 0: copy between the peer's granted page `ref`
   * (bytes [offset, offset + length)) and this VM's RAM at localGpa; lengthAndDir bits 12:0 the
   * length (<= 4096), bit 31 GRANT_COPY_TO_PEER (else from the peer).
   */
  GRANT_COPY: 13,
  /** () -> the number of channels (peers) the fleet gave this VM. */
  PEERS: 14,
  /**
   * (peer, ref, gpa, flags) -> 0: map the peer's granted page `ref` at gpa, a page of the grant map
   * area (HV_GNTMAP_BASE), writable unless flags has GNTMAP_READONLY (Xen's GNTTABOP_map_grant_ref).
   */
  GNTTAB_MAP: 15,
  /** (gpa) -> 0: unmap the grant mapped at gpa (Xen's GNTTABOP_unmap_grant_ref). */
  GNTTAB_UNMAP: 16,
  /**
   * (ref) -> 0: end grant `ref` of this VM's table: its entry is cleared and every mapping of it,
   * in any VM, goes (where Xen would make the granter wait for the grantee's unmap, we revoke).
   */
  GNTTAB_END: 17,
} as const;
export const HV_OP_COUNT = 18;

/** Errors, negated in EAX (Xen's errno values). */
export const HvError = {
  EPERM: 1,
  ENOENT: 2,
  /** No such peer: the fleet gave this VM no such channel. */
  ESRCH: 3,
  /** A grant refused the access. */
  EACCES: 13,
  /** A guest-physical address that is not RAM (or a record crossing a page). */
  EFAULT: 14,
  EBUSY: 16,
  EINVAL: 22,
  /** No free port. */
  ENOSPC: 28,
  ENOSYS: 38,
} as const;

/** A peer argument naming this VM itself (a loopback channel). */
export const HV_PEER_SELF = 0x7ff0;

/** Virtual IRQs a port can be bound to (Xen's numbers). */
export const HvVirq = { TIMER: 0, CONSOLE: 2 } as const;
export const HV_VIRQ_COUNT = 3;

/** What EVTCHN_STATUS answers. */
export const HvPortState = { CLOSED: 0, UNBOUND: 1, INTERDOMAIN: 2, VIRQ: 3 } as const;

/** Ports: 1..HV_PORTS-1 (port 0 is never allocated, as in Xen). */
export const HV_PORTS = 1024;

/**
 * The shared-info page: vCPU 0's info (upcall pending and mask bytes, the pending selector word:
 * bit w set when word w of `pending` may hold an unmasked pending port), then the pending and mask
 * bitmaps (port p is bit p % 32 of word p / 32).
 */
export const SharedInfo = {
  UPCALL_PENDING: 0,
  UPCALL_MASK: 1,
  PENDING_SEL: 4,
  PENDING: 64,
  MASK: 64 + HV_PORTS / 8,
  BYTES: 64 + HV_PORTS / 4,
} as const;

/** A multicall entry: op, five arguments, the result (written back), a reserved word. 32-byte aligned. */
export const MulticallEntry = { OP: 0, ARGS: 4, RESULT: 24, BYTES: 32 } as const;
export const MULTICALL_STOP_ON_ERROR = 1;
/** Most entries one multicall runs. */
export const MULTICALL_MAX = 256;

/** A grant entry (Xen's grant_entry_v1): u16 flags, u16 peer (the grantee's channel index), u32 guest frame. */
export const GrantEntry = { FLAGS: 0, PEER: 2, FRAME: 4, BYTES: 8 } as const;
/** Entry flags: the granter's PERMIT_ACCESS and READONLY; READING and WRITING the VMM sets while a peer has the page mapped (Xen's GTF_*). */
export const GrantFlag = { PERMIT_ACCESS: 1, READONLY: 4, READING: 8, WRITING: 16 } as const;
/** GNTTAB_MAP flags: a read-only mapping (Xen's GNTMAP_readonly). */
export const GNTMAP_READONLY = 4;
/** The grant map area: guest-physical pages where GNTTAB_MAP puts a peer's pages (above RAM, below the PC's devices). */
export const HV_GNTMAP_BASE = 0xfc000000;
export const HV_GNTMAP_PAGES = 256;
export const GRANT_COPY_TO_PEER = 0x80000000;
export const GRANT_COPY_LENGTH_MASK = 0x1fff;
/** A grant table is one page. */
export const GNTTAB_MAX_ENTRIES = 4096 / GrantEntry.BYTES;
