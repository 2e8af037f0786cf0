/* Grant map between two VMs of a fleet (each is the other's peer 0). ROLE 0, the granter, grants
 * one page twice (ref 0 read-only, ref 1 writable), then, once the grantee has used them, ends both
 * grants. ROLE 1, the grantee, maps them: refused writable for the read-only grant, then reads and
 * writes the granter's page through them, and after the grants ended finds nothing there and is
 * refused a new mapping. ROLE 2, alone, maps its own grants (HV_PEER_SELF). ROLE 3 and 4: a peer
 * writing a granted page for the granter's dirty log (below). Out on 0xE9: "GMAP", the port, what each step gave, "DONE". */
#include "hv_rt.h"

#define VECTOR 0x40
#define PEER 0

static volatile hv_u32 events;
static hv_u32 port;
static volatile hv_u32 page[1024] __attribute__((aligned(4096)));
static struct hv_grant_entry grants[2] __attribute__((aligned(4096)));

void hv_upcall(void) {
  if (take_pending(0) & (1u << port)) events++;
}

static void wait_event(void) {
  wait_flag(&events);
  __asm__ volatile("cli");
  events--;
  __asm__ volatile("sti");
}

static void granter(void) {
  page[0] = 0x600df00d;
  grants[0] = (struct hv_grant_entry){ HV_GTF_PERMIT_ACCESS | HV_GTF_READONLY, PEER, (hv_u32)page >> 12 };
  grants[1] = (struct hv_grant_entry){ HV_GTF_PERMIT_ACCESS, PEER, (hv_u32)page >> 12 };
  out32(hv_call(HV_OP_GNTTAB_SETUP, (hv_u32)grants, 2, 0));
  port = hv_call(HV_OP_EVTCHN_ALLOC_UNBOUND, PEER, 0, 0);
  out32(port);
  wait_event(); /* the grantee mapped and wrote */
  out32(page[1]);
  out32(grants[0].flags);
  out32(grants[1].flags);
  out32(hv_call(HV_OP_GNTTAB_END, 0, 0, 0));
  out32(hv_call(HV_OP_GNTTAB_END, 1, 0, 0));
  out32(grants[1].flags);
  hv_call(HV_OP_EVTCHN_SEND, port, 0, 0);
  wait_event(); /* the grantee is done */
}

static void grantee(void) {
  int p;
  while ((p = hv_call(HV_OP_EVTCHN_BIND_INTERDOMAIN, PEER, 1, 0)) < 0) {}
  port = p;
  out32(port);
  hv_u32 base = hv_gntmap_base();
  volatile hv_u32 *ro = (volatile hv_u32 *)base, *rw = (volatile hv_u32 *)(base + 4096);
  out32(hv_call5(HV_OP_GNTTAB_MAP, PEER, 0, base, 0, 0));                  /* -EACCES: read-only grant */
  out32(hv_call5(HV_OP_GNTTAB_MAP, PEER, 0, base, HV_GNTMAP_READONLY, 0)); /* 0 */
  out32(hv_call5(HV_OP_GNTTAB_MAP, PEER, 1, base + 4096, 0, 0));           /* 0 */
  out32(hv_call5(HV_OP_GNTTAB_MAP, PEER, 1, base + 4096, 0, 0));           /* -EBUSY */
  out32(ro[0]);                                                            /* the granter's word */
  rw[1] = 0x12345678;                                                      /* into the granter's page */
  ro[0] = 0xdead;                                                          /* goes nowhere */
  out32(ro[0]);
  out32(rw[1]);
  hv_call(HV_OP_EVTCHN_SEND, port, 0, 0);
  wait_event(); /* the granter ended the grants */
  out32(ro[0]);                                                            /* nothing there now */
  out32(rw[0]);
  out32(hv_call5(HV_OP_GNTTAB_MAP, PEER, 1, base + 8192, 0, 0));           /* -EACCES */
  out32(hv_call(HV_OP_GNTTAB_UNMAP, base, 0, 0));
  out32(hv_call(HV_OP_GNTTAB_UNMAP, base + 4096, 0, 0));
  hv_call(HV_OP_EVTCHN_SEND, port, 0, 0);
}

/* ROLE 2: one VM maps its own grants (HV_PEER_SELF), no peer involved. */
static void self_map(void) {
  hv_u32 base = hv_gntmap_base();
  volatile hv_u32 *rw = (volatile hv_u32 *)base, *ro = (volatile hv_u32 *)(base + 4096);
  page[0] = 0x600df00d;
  grants[0] = (struct hv_grant_entry){ HV_GTF_PERMIT_ACCESS | HV_GTF_READONLY, HV_PEER_SELF, (hv_u32)page >> 12 };
  grants[1] = (struct hv_grant_entry){ HV_GTF_PERMIT_ACCESS, HV_PEER_SELF, (hv_u32)page >> 12 };
  out32(hv_call(HV_OP_GNTTAB_SETUP, (hv_u32)grants, 2, 0));
  out32(hv_call5(HV_OP_GNTTAB_MAP, HV_PEER_SELF, 0, base, 0, 0));                         /* -EACCES: read-only grant */
  out32(hv_call5(HV_OP_GNTTAB_MAP, HV_PEER_SELF, 1, base, 0, 0));                         /* 0 */
  out32(hv_call5(HV_OP_GNTTAB_MAP, HV_PEER_SELF, 0, base + 4096, HV_GNTMAP_READONLY, 0)); /* 0 */
  out32(grants[0].flags);
  out32(grants[1].flags);
  rw[1] = 0x12345678; /* through the mapping, into its own page */
  out32(page[1]);
  page[2] = 0xabcd; /* into its page, seen through the mapping */
  out32(ro[2]);
  ro[0] = 0xdead; /* goes nowhere */
  out32(page[0]);
  out32(hv_call(HV_OP_GNTTAB_END, 1, 0, 0));
  out32(rw[0]); /* nothing there now */
  out32(hv_call(HV_OP_GNTTAB_UNMAP, base + 4096, 0, 0));
  out32(grants[0].flags);
  out32(hv_call(HV_OP_GNTTAB_UNMAP, base, 0, 0));
}

/* ROLE 3, a granter that grants its page writable and then only waits; ROLE 4, its grantee, maps
 * the page and writes it without end (the granter's dirty log must show it). */
static void quiet_granter(void) {
  grants[0] = (struct hv_grant_entry){ HV_GTF_PERMIT_ACCESS, PEER, (hv_u32)page >> 12 };
  out32(hv_call(HV_OP_GNTTAB_SETUP, (hv_u32)grants, 1, 0));
  port = hv_call(HV_OP_EVTCHN_ALLOC_UNBOUND, PEER, 0, 0);
  out32((hv_u32)page >> 12);
  for (;;) wait_event();
}

static void busy_grantee(void) {
  while (hv_call(HV_OP_EVTCHN_BIND_INTERDOMAIN, PEER, 1, 0) < 0) {}
  hv_u32 base = hv_gntmap_base();
  volatile hv_u32 *rw = (volatile hv_u32 *)base;
  out32(hv_call5(HV_OP_GNTTAB_MAP, PEER, 0, base, 0, 0));
  for (hv_u32 i = 1;; i++) {
    rw[i & 1023] = i;
    if ((i & 0xffff) == 0) out32(i); /* written by now: the granter's page holds it */
  }
}

int main(void) {
  out32(0x50414d47); /* "GMAP" */
  if (hv_detect() <= 0) return 1;
  if (evtchn_init(VECTOR)) return 2;
  if (ROLE == 0) granter();
  else if (ROLE == 1) grantee();
  else if (ROLE == 2) self_map();
  else if (ROLE == 3) quiet_granter();
  else busy_grantee();
  out32(0x454e4f44); /* "DONE" */
  return 0;
}
