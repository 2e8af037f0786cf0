/* The multicall test kernel: detects the ABI, then one multicall of 32 entries (event channel
 * ports allocated and queried), one that stops at its first failure, and a timing loop when
 * ROUNDS is defined (the benchmark: MODE 1, ROUNDS times 32 single calls; MODE 2, ROUNDS
 * multicalls of 32; the host times whole runs).
 * Everything it learns goes out on port 0xE9 as dwords. */
#include "hv_rt.h"

#ifndef ROUNDS
#define ROUNDS 0
#endif
#ifndef MODE
#define MODE 0
#endif

static struct hv_multicall_entry calls[32];
void hv_upcall(void) {}

static inline unsigned long long rdtsc(void) {
  unsigned int lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((unsigned long long)hi << 32) | lo;
}

int main(void) {
  out32(0x4d43414c); /* "LACM": started */
  out32(hv_detect());
  out32(hv_base);
  out32(hv_call(HV_OP_VERSION, 0, 0, 0));
  /* 32 entries: 16 ports allocated, then the status of each. */
  for (int i = 0; i < 16; i++) hv_mc_set(&calls[i], HV_OP_EVTCHN_ALLOC_UNBOUND, HV_PEER_SELF, 0, 0, 0, 0);
  for (int i = 16; i < 32; i++) hv_mc_set(&calls[i], HV_OP_EVTCHN_STATUS, i - 15, 0, 0, 0, 0);
  out32(hv_call(HV_OP_MULTICALL, (hv_u32)calls, 32, 0));
  for (int i = 0; i < 32; i++) out32(calls[i].result);
  /* Stop at the first failure: close port 1, close port 1 again (fails), close port 2 (not run). */
  hv_mc_set(&calls[0], HV_OP_EVTCHN_CLOSE, 1, 0, 0, 0, 0);
  hv_mc_set(&calls[1], HV_OP_EVTCHN_CLOSE, 1, 0, 0, 0, 0);
  hv_mc_set(&calls[2], HV_OP_EVTCHN_CLOSE, 2, 0, 0, 0, 0);
  calls[2].result = 0x1234;
  out32(hv_call(HV_OP_MULTICALL, (hv_u32)calls, 3, HV_MULTICALL_STOP_ON_ERROR));
  out32(calls[0].result);
  out32(calls[1].result);
  out32(calls[2].result);
  out32(hv_call(HV_OP_EVTCHN_STATUS, 2, 0, 0));
  if (ROUNDS) {
    for (int i = 0; i < 32; i++) hv_mc_set(&calls[i], HV_OP_VERSION, 0, 0, 0, 0, 0);
    unsigned long long t0 = rdtsc();
    int sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
      if (MODE == 1)
        for (int i = 0; i < 32; i++) sum += hv_call(HV_OP_VERSION, 0, 0, 0);
      else if (MODE == 2)
        sum += hv_call(HV_OP_MULTICALL, (hv_u32)calls, 32, 0);
    }
    out32(sum);
    out32((hv_u32)(rdtsc() - t0));
  }
  out32(0x454e4f44); /* "DONE" */
  return 0;
}
