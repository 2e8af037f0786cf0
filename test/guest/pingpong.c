/* Event-channel ping-pong between two VMs of a fleet connected by a channel (each is the
 * other's peer 0). ROLE 1 (the responder) allocates an unbound port for its peer and answers
 * every event with one; ROLE 0 (the initiator) binds to it (retrying until the responder is
 * ready), then sends ROUNDS events, each after the answer to the last. Out on 0xE9: the ports,
 * the events seen, the TSC cycles of the rounds. */
#include "hv_rt.h"

#ifndef ROUNDS
#define ROUNDS 10
#endif
#define VECTOR 0x40

static volatile hv_u32 events;
static hv_u32 port;

void hv_upcall(void) {
  if (take_pending(0) & (1u << port)) events++;
}

static inline unsigned long long rdtsc(void) {
  unsigned int lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((unsigned long long)hi << 32) | lo;
}

int main(void) {
  out32(0x474e4950); /* "PING" */
  if (hv_detect() <= 0) return 1;
  out32(hv_call(HV_OP_PEERS, 0, 0, 0));
  out32(evtchn_init(VECTOR));
  unsigned long long t0 = 0, t1 = 0;
  if (ROLE == 1) {
    port = hv_call(HV_OP_EVTCHN_ALLOC_UNBOUND, 0, 0, 0);
    out32(port);
    for (hv_u32 seen = 0; seen < ROUNDS; seen++) {
      wait_flag(&events);
      __asm__ volatile("cli");
      events--;
      __asm__ volatile("sti");
      hv_call(HV_OP_EVTCHN_SEND, port, 0, 0);
    }
  } else {
    int p;
    hv_u32 tries = 0;
    while ((p = hv_call(HV_OP_EVTCHN_BIND_INTERDOMAIN, 0, 1, 0)) < 0) tries++;
    port = p;
    out32(port);
    t0 = rdtsc();
    for (hv_u32 r = 0; r < ROUNDS; r++) {
      hv_call(HV_OP_EVTCHN_SEND, port, 0, 0);
      wait_flag(&events);
      __asm__ volatile("cli");
      events--;
      __asm__ volatile("sti");
    }
    t1 = rdtsc();
  }
  out32(ROUNDS);
  out32(events);
  out32((hv_u32)(t1 - t0));
  out32(0x454e4f44); /* "DONE" */
  return 0;
}
