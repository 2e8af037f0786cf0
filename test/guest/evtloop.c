/* Event channels within one VM, for snapshots: a loopback channel (HV_PEER_SELF) and the timer
 * VIRQ. ROUNDS times: an event sent on one end and taken on the other; every 64 rounds a timer
 * (a deadline already past: it fires at once) and its event, a progress dword and SPIN loops. A resumed VM
 * that lost its ports, its upcall or its timer never finishes. Out on 0xE9: "LOOP", the three
 * ports, the progress dwords, then ROUNDS, the events and the ticks taken, "DONE". */
#include "hv_rt.h"

#ifndef ROUNDS
#define ROUNDS 4096
#endif
/* Instructions' worth of spinning after each progress dword (VM time for a save to land in). */
#ifndef SPIN
#define SPIN 0
#endif
#define VECTOR 0x41

static volatile hv_u32 events, ticks;
static hv_u32 near, far, timer;

void hv_upcall(void) {
  hv_u32 p = take_pending(0);
  if (p & (1u << far)) events++;
  if (p & (1u << timer)) ticks++;
}

static void take(volatile hv_u32 *flag) {
  wait_flag(flag);
  __asm__ volatile("cli");
  (*flag)--;
  __asm__ volatile("sti");
}

int main(void) {
  out32(0x504f4f4c); /* "LOOP" */
  if (hv_detect() <= 0) return 1;
  if (evtchn_init(VECTOR)) return 2;
  far = hv_call(HV_OP_EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF, 0, 0);
  near = hv_call(HV_OP_EVTCHN_BIND_INTERDOMAIN, HV_PEER_SELF, far, 0);
  timer = hv_call(HV_OP_EVTCHN_BIND_VIRQ, HV_VIRQ_TIMER, 0, 0);
  out32(near);
  out32(far);
  out32(timer);
  hv_u32 taken = 0, ticked = 0;
  for (hv_u32 r = 0; r < ROUNDS; r++) {
    hv_call(HV_OP_EVTCHN_SEND, near, 0, 0);
    take(&events);
    taken++;
    if (r % 64 == 63) {
      hv_call(HV_OP_SET_TIMER, 1, 0, 0);
      take(&ticks);
      ticked++;
      out32(r);
      hv_u32 n = SPIN + 1;
      __asm__ volatile("1: dec %0; jnz 1b" : "+r"(n));
    }
  }
  out32(ROUNDS);
  out32(taken);
  out32(ticked);
  out32(0x454e4f44); /* "DONE" */
  return 0;
}
