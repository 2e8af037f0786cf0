/* An echo service over a ring between two VMs of a fleet. ROLE 0, the client, keeps the ring in
 * a page of its own RAM and grants it (ref 0) to its peer 0 for writing; it sends N requests and
 * checks every response. ROLE 1, the server, answers value ^ 0x5a5a5a5a: with MAP 0 it reads
 * requests and writes responses through grant copies (batched in multicalls), with MAP 1 it maps
 * the client's page (HV_OP_GNTTAB_MAP) and works on the ring in place. Both notify only when the
 * other end's event index asks for it (HV_RING_NEED_NOTIFY). Out on 0xE9: "RING", the port (once
 * bound: the client's timed part starts there), the count, the good responses (server: requests
 * answered), the notifications sent, the TSC cycles, "DONE". */
#include "hv_rt.h"

#ifndef N
#define N 2000
#endif
#ifndef MAP
#define MAP 0
#endif
#define VECTOR 0x40
#define PEER 0
#define REF 0
#define ECHO(v) ((v) ^ 0x5a5a5a5au)

static volatile hv_u32 events;
static hv_u32 port;
static struct hv_ring ring __attribute__((aligned(4096)));
static struct hv_grant_entry grants[4] __attribute__((aligned(4096)));
static struct hv_multicall_entry mc[8];
static hv_u32 notified;

void hv_upcall(void) {
  if (take_pending(0) & (1u << port)) events++;
}

static inline unsigned long long rdtsc(void) {
  unsigned int lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((unsigned long long)hi << 32) | lo;
}

/* Wait for an event, then forget it (the ring indices say what happened). */
static void wait_event(void) {
  wait_flag(&events);
  __asm__ volatile("cli");
  events = 0;
  __asm__ volatile("sti");
}

static hv_u32 client(void) {
  ring.req_prod = ring.rsp_prod = 0;
  ring.req_event = ring.rsp_event = 1;
  grants[REF] = (struct hv_grant_entry){ HV_GTF_PERMIT_ACCESS, PEER, (hv_u32)&ring >> 12 };
  if (hv_call(HV_OP_GNTTAB_SETUP, (hv_u32)grants, 4, 0)) return 0;
  int p;
  while ((p = hv_call(HV_OP_EVTCHN_BIND_INTERDOMAIN, PEER, 1, 0)) < 0) {}
  port = p;
  out32(port);
  hv_u32 sent = 0, cons = 0, good = 0;
  while (cons < N) {
    hv_u32 old = ring.req_prod, prod = old;
    while (sent < N && prod - cons < HV_RING_SLOTS) {
      ring.slot[prod & (HV_RING_SLOTS - 1)] = (struct hv_ring_slot){ sent, sent * 2654435761u };
      prod++, sent++;
    }
    if (prod != old) {
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      ring.req_prod = prod;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      if (HV_RING_NEED_NOTIFY(ring.req_event, old, prod)) hv_call(HV_OP_EVTCHN_SEND, port, 0, 0), notified++;
    }
    while (cons != ring.rsp_prod) {
      struct hv_ring_slot r = ring.slot[cons & (HV_RING_SLOTS - 1)];
      if (r.id == cons && r.value == ECHO(cons * 2654435761u)) good++;
      cons++;
    }
    if (cons == ring.rsp_prod && (sent == N || sent - cons == HV_RING_SLOTS)) {
      ring.rsp_event = cons + 1;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      if (cons == ring.rsp_prod && cons < N) wait_event();
    }
  }
  return good;
}

/* Copy [from, to) of the ring's slots between the local copy and the peer's page: up to two entries (the wrap). */
static int slots(int i, hv_u32 from, hv_u32 to, hv_u32 dir) {
  while (from != to) {
    hv_u32 first = from & (HV_RING_SLOTS - 1);
    hv_u32 n = to - from;
    if (first + n > HV_RING_SLOTS) n = HV_RING_SLOTS - first;
    hv_mc_set(&mc[i++], HV_OP_GRANT_COPY, PEER, REF, HV_RING_OFF_SLOT(first), (hv_u32)&ring.slot[first], (8 * n) | dir);
    from += n;
  }
  return i;
}

/* The server on the client's page itself, mapped into the grant map area. */
static hv_u32 server_mapped(void) {
  struct hv_ring *r = (struct hv_ring *)hv_gntmap_base();
  /* Not granted yet (the client is still starting): wait for its first event. */
  while (hv_call5(HV_OP_GNTTAB_MAP, PEER, REF, (hv_u32)r, 0, 0)) wait_event();
  hv_u32 cons = 0;
  while (cons < N) {
    hv_u32 prod = r->req_prod;
    if (prod == cons) {
      r->req_event = cons + 1;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      if (r->req_prod == cons) wait_event();
      continue;
    }
    if (prod - cons > HV_RING_SLOTS) return 0xbad;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (hv_u32 k = cons; k != prod; k++) {
      struct hv_ring_slot *s = &r->slot[k & (HV_RING_SLOTS - 1)];
      s->value = ECHO(s->value);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    r->rsp_prod = prod;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (HV_RING_NEED_NOTIFY(r->rsp_event, cons, prod)) hv_call(HV_OP_EVTCHN_SEND, port, 0, 0), notified++;
    cons = prod;
  }
  if (hv_call(HV_OP_GNTTAB_UNMAP, (hv_u32)r, 0, 0)) return 0xbad3;
  return cons;
}

static hv_u32 server(void) {
  port = hv_call(HV_OP_EVTCHN_ALLOC_UNBOUND, PEER, 0, 0);
  out32(port);
  if (MAP) return server_mapped();
  hv_u32 cons = 0;
  while (cons < N) {
    /* The client's header: its req_prod and rsp_event. */
    if (hv_call5(HV_OP_GRANT_COPY, PEER, REF, 0, (hv_u32)&ring, 16)) {
      /* Not granted yet (the client is still starting): wait for its first event. */
      wait_event();
      continue;
    }
    hv_u32 prod = ring.req_prod;
    if (prod == cons) {
      ring.req_event = cons + 1;
      hv_call5(HV_OP_GRANT_COPY, PEER, REF, HV_RING_OFF_REQ_EVENT, (hv_u32)&ring.req_event, 4 | HV_COPY_TO_PEER);
      hv_call5(HV_OP_GRANT_COPY, PEER, REF, 0, (hv_u32)&ring, 16);
      if (ring.req_prod == cons) wait_event();
      continue;
    }
    if (prod - cons > HV_RING_SLOTS) return 0xbad;
    int i = slots(0, cons, prod, 0);
    if (hv_call(HV_OP_MULTICALL, (hv_u32)mc, i, HV_MULTICALL_STOP_ON_ERROR) != i || mc[i - 1].result) return 0xbad1;
    for (hv_u32 k = cons; k != prod; k++) {
      struct hv_ring_slot *s = &ring.slot[k & (HV_RING_SLOTS - 1)];
      s->value = ECHO(s->value);
    }
    /* Responses, then rsp_prod, then a fresh look at rsp_event: one multicall. */
    i = slots(0, cons, prod, HV_COPY_TO_PEER);
    ring.rsp_prod = prod;
    hv_mc_set(&mc[i++], HV_OP_GRANT_COPY, PEER, REF, HV_RING_OFF_RSP_PROD, (hv_u32)&ring.rsp_prod, 4 | HV_COPY_TO_PEER);
    hv_mc_set(&mc[i++], HV_OP_GRANT_COPY, PEER, REF, HV_RING_OFF_RSP_EVENT, (hv_u32)&ring.rsp_event, 4);
    if (hv_call(HV_OP_MULTICALL, (hv_u32)mc, i, HV_MULTICALL_STOP_ON_ERROR) != i || mc[i - 1].result) return 0xbad2;
    if (HV_RING_NEED_NOTIFY(ring.rsp_event, cons, prod)) hv_call(HV_OP_EVTCHN_SEND, port, 0, 0), notified++;
    cons = prod;
  }
  return cons;
}

int main(void) {
  out32(0x474e4952); /* "RING" */
  if (hv_detect() <= 0) return 1;
  if (evtchn_init(VECTOR)) return 2;
  unsigned long long t0 = rdtsc();
  hv_u32 r = ROLE == 0 ? client() : server();
  unsigned long long t1 = rdtsc();
  out32(N);
  out32(r);
  out32(notified);
  out32((hv_u32)(t1 - t0));
  out32(0x454e4f44); /* "DONE" */
  return 0;
}
