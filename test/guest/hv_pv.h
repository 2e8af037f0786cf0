/* The hv paravirtual ABI for 32-bit guests (freestanding C, gcc -m32). The same ABI as
 * vmm/paravirt/hv-abi.ts; keep the two in step.
 *
 * Discovery: CPUID 0x40000100 gives EAX = highest leaf, "novatsPVABI\0" in EBX, ECX, EDX;
 * CPUID 0x40000101 gives EAX = version, EBX = hypercall base, ECX = features, EDX = ports;
 * CPUID 0x40000102 gives EAX = the grant map area's guest-physical base, EBX = its pages.
 * Calls: VMCALL, EAX = base + op, arguments EBX, ECX, EDX, ESI, EDI; result in EAX
 * (>= 0 success, -HV_E* failure). Ring 0 only.
 *
 * Event channels (after Xen): the guest names a shared-info page (HV_OP_SHARED_INFO) and an
 * upcall vector. An event sets the port's bit in `pending`; when the port is not masked, the
 * VMM sets bit port/32 of `pending_sel`, and when `upcall_pending` was 0 it sets it and (if
 * `upcall_mask` is 0) injects the upcall vector as an external interrupt. The handler clears
 * upcall_pending, then takes pending_sel and scans those words (clearing bits it handles). A
 * guest that sets upcall_mask checks upcall_pending itself when it clears it again.
 *
 * Grants: a table of hv_grant_entry in one page of the granting guest's RAM (HV_OP_GNTTAB_SETUP);
 * entry `ref` lets peer `peer` (the granter's channel index) read, or with flags without
 * HV_GTF_READONLY also write, guest frame `frame`. The peer copies with HV_OP_GRANT_COPY (the VMM
 * reads the entry at each use: clearing HV_GTF_PERMIT_ACCESS revokes) or maps the page into a page
 * of its grant map area with HV_OP_GNTTAB_MAP (read-only with HV_GNTMAP_READONLY; the entry shows
 * HV_GTF_READING / HV_GTF_WRITING while mapped) and unmaps it with HV_OP_GNTTAB_UNMAP. The granter
 * ends a grant, revoking every mapping of it, with HV_OP_GNTTAB_END.
 *
 * Rings (after Xen's io/ring.h): a request/response ring in a page. The header holds the
 * producer indices req_prod (client) and rsp_prod (server), and the event indices req_event
 * and rsp_event: a producer notifies the other end only when its new producer index passes the
 * event index (HV_RING_NEED_NOTIFY), so under load most notifications are suppressed. Indices
 * run free (mod 2^32); slot = index & (HV_RING_SLOTS - 1). A consumer that ran dry sets the
 * event index to consumer + 1 and looks once more before it waits.
 */
#ifndef HV_PV_H
#define HV_PV_H

typedef unsigned int hv_u32;
typedef unsigned short hv_u16;
typedef unsigned char hv_u8;

#define HV_CPUID_BASE 0x40000100u
#define HV_CPUID_INFO 0x40000101u
#define HV_CPUID_GRANT_MAP 0x40000102u
#define HV_SIGNATURE_EBX 0x61766f6eu /* "nova" */
#define HV_SIGNATURE_ECX 0x56507374u /* "tsPV" */
#define HV_SIGNATURE_EDX 0x00494241u /* "ABI\0" */

enum {
  HV_OP_VERSION = 0,
  HV_OP_MULTICALL = 1,             /* (gpa, count, flags) -> entries run */
  HV_OP_SHARED_INFO = 2,           /* (page gpa) */
  HV_OP_UPCALL_VECTOR = 3,         /* (vector 0x20..0xff, 0: none) */
  HV_OP_EVTCHN_ALLOC_UNBOUND = 4,  /* (peer) -> port */
  HV_OP_EVTCHN_BIND_INTERDOMAIN = 5, /* (peer, remote port) -> port */
  HV_OP_EVTCHN_BIND_VIRQ = 6,      /* (virq) -> port */
  HV_OP_EVTCHN_SEND = 7,           /* (port) */
  HV_OP_EVTCHN_UNMASK = 8,         /* (port) */
  HV_OP_EVTCHN_CLOSE = 9,          /* (port) */
  HV_OP_EVTCHN_STATUS = 10,        /* (port) -> HV_PORT_* */
  HV_OP_SET_TIMER = 11,            /* (ns lo, ns hi) of VM time: one VIRQ_TIMER event; 0 cancels */
  HV_OP_GNTTAB_SETUP = 12,         /* (gpa, entries) */
  HV_OP_GRANT_COPY = 13,           /* (peer, ref, offset, local gpa, length | HV_COPY_TO_PEER) */
  HV_OP_PEERS = 14,                /* () -> channels */
  HV_OP_GNTTAB_MAP = 15,           /* (peer, ref, gpa in the grant map area, flags) */
  HV_OP_GNTTAB_UNMAP = 16,         /* (gpa) */
  HV_OP_GNTTAB_END = 17,           /* (ref): clear the entry, revoke every mapping of it */
};

#define HV_EPERM 1
#define HV_ENOENT 2
#define HV_ESRCH 3   /* no channel to that peer */
#define HV_EACCES 13 /* the grant does not allow it */
#define HV_EFAULT 14
#define HV_EBUSY 16
#define HV_EINVAL 22
#define HV_ENOSPC 28
#define HV_ENOSYS 38

#define HV_PEER_SELF 0x7ff0u
#define HV_VIRQ_TIMER 0
#define HV_VIRQ_CONSOLE 2
#define HV_PORT_CLOSED 0
#define HV_PORT_UNBOUND 1
#define HV_PORT_INTERDOMAIN 2
#define HV_PORT_VIRQ 3
#define HV_PORTS 1024

struct hv_shared_info {
  volatile hv_u8 upcall_pending;
  volatile hv_u8 upcall_mask;
  hv_u16 pad0;
  volatile hv_u32 pending_sel;
  hv_u32 pad1[14];
  volatile hv_u32 pending[HV_PORTS / 32];
  volatile hv_u32 mask[HV_PORTS / 32];
};

#define HV_MULTICALL_STOP_ON_ERROR 1
#define HV_MULTICALL_MAX 256
struct hv_multicall_entry { /* 32 bytes; the array is 32-byte aligned */
  hv_u32 op;                /* the full hypercall number: base + HV_OP_* */
  hv_u32 args[5];
  int result;               /* written back */
  hv_u32 reserved;
} __attribute__((aligned(32)));

#define HV_GTF_PERMIT_ACCESS 1
#define HV_GTF_READONLY 4
#define HV_GTF_READING 8  /* set by the VMM while a peer maps the page */
#define HV_GTF_WRITING 16 /* ... writable */
#define HV_GNTMAP_READONLY 4
struct hv_grant_entry {
  volatile hv_u16 flags;
  hv_u16 peer;
  hv_u32 frame;
};
#define HV_COPY_TO_PEER 0x80000000u

/* The hypercall base, or 0 when the ABI is not there (call hv_detect once). */
static hv_u32 hv_base;

static inline __attribute__((unused)) void hv_cpuid(hv_u32 leaf, hv_u32 *a, hv_u32 *b, hv_u32 *c, hv_u32 *d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

static inline __attribute__((unused)) int hv_detect(void) {
  hv_u32 a, b, c, d;
  hv_cpuid(HV_CPUID_BASE, &a, &b, &c, &d);
  if (b != HV_SIGNATURE_EBX || c != HV_SIGNATURE_ECX || d != HV_SIGNATURE_EDX || a < HV_CPUID_INFO) return 0;
  hv_cpuid(HV_CPUID_INFO, &a, &b, &c, &d);
  hv_base = b;
  return (int)a;
}

/* The first page of the grant map area. */
static inline __attribute__((unused)) hv_u32 hv_gntmap_base(void) {
  hv_u32 a, b, c, d;
  hv_cpuid(HV_CPUID_GRANT_MAP, &a, &b, &c, &d);
  return a;
}

static inline __attribute__((unused)) int hv_call5(hv_u32 op, hv_u32 a1, hv_u32 a2, hv_u32 a3, hv_u32 a4, hv_u32 a5) {
  int r;
  __asm__ volatile("vmcall" : "=a"(r) : "a"(hv_base + op), "b"(a1), "c"(a2), "d"(a3), "S"(a4), "D"(a5) : "memory");
  return r;
}
#define hv_call(op, a1, a2, a3) hv_call5((op), (a1), (a2), (a3), 0, 0)

static inline __attribute__((unused)) void hv_mc_set(struct hv_multicall_entry *e, hv_u32 op, hv_u32 a1, hv_u32 a2, hv_u32 a3, hv_u32 a4, hv_u32 a5) {
  e->op = hv_base + op;
  e->args[0] = a1; e->args[1] = a2; e->args[2] = a3; e->args[3] = a4; e->args[4] = a5;
}

/* Rings: a header of four indices, padding to 64 bytes, then HV_RING_SLOTS slots of 8 bytes. */
#define HV_RING_SLOTS 256
struct hv_ring_slot { hv_u32 id; hv_u32 value; };
struct hv_ring {
  volatile hv_u32 req_prod, req_event, rsp_prod, rsp_event;
  hv_u32 pad[12];
  struct hv_ring_slot slot[HV_RING_SLOTS];
};
#define HV_RING_OFF_REQ_PROD 0
#define HV_RING_OFF_REQ_EVENT 4
#define HV_RING_OFF_RSP_PROD 8
#define HV_RING_OFF_RSP_EVENT 12
#define HV_RING_OFF_SLOT(i) (64 + 8 * ((i) & (HV_RING_SLOTS - 1)))
/* After moving a producer index from `old` to `new`: does the other end want an event? */
#define HV_RING_NEED_NOTIFY(event, old, new) ((hv_u32)((new) - (event)) < (hv_u32)((new) - (old)))

#endif
