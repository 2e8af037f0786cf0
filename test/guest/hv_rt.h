/* The runtime of the hv PV test kernels: Multiboot header, _start (stack, main, exit), output
 * on port 0xE9 (debugcon), exit through isa-debug-exit (port 0xF4), an IDT whose upcall vector
 * calls hv_upcall(), and waiting for it with interrupts enabled. */
#ifndef HV_RT_H
#define HV_RT_H
#include "hv_pv.h"

__asm__(".section .multiboot\n.align 4\n.long 0x1BADB002, 0, -0x1BADB002\n"
        ".text\n.globl _start\n_start:\n mov $stack_top, %esp\n call main\n"
        " mov $0xf4, %dx\n out %al, %dx\n1: cli\n hlt\n jmp 1b\n"
        ".globl upcall_stub\nupcall_stub:\n pusha\n cld\n call hv_upcall\n popa\n iret\n");

static __attribute__((unused)) unsigned char stack[16384] __attribute__((aligned(16), used));
__asm__(".globl stack_top\n.set stack_top, stack + 16384\n");

static __attribute__((unused)) inline void outb(hv_u16 port, hv_u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

/* A little-endian dword to debugcon: the tests read the guest's results so. */
static __attribute__((unused)) void out32(hv_u32 v) {
  for (int i = 0; i < 4; i++) outb(0xe9, (v >> (8 * i)) & 0xff);
}

struct idt_gate { hv_u16 lo, sel; hv_u8 zero, type; hv_u16 hi; };
static struct idt_gate idt[256];
void upcall_stub(void);
void hv_upcall(void);

/* Point `vector` at the upcall stub and load the IDT. */
static __attribute__((unused)) void idt_init(int vector) {
  hv_u16 cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  hv_u32 f = (hv_u32)upcall_stub;
  idt[vector] = (struct idt_gate){ (hv_u16)f, cs, 0, 0x8e, (hv_u16)(f >> 16) };
  struct { hv_u16 limit; hv_u32 base; } __attribute__((packed)) idtr = { sizeof idt - 1, (hv_u32)idt };
  __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* Wait until *flag is nonzero: interrupts on only in the STI shadow before HLT, so no wake-up is lost. */
static __attribute__((unused)) void wait_flag(volatile hv_u32 *flag) {
  for (;;) {
    __asm__ volatile("cli");
    if (*flag) break;
    __asm__ volatile("sti; hlt");
  }
  __asm__ volatile("sti");
}

static __attribute__((unused)) struct hv_shared_info shared __attribute__((aligned(4096)));

/* Name the shared-info page and the upcall vector. */
static __attribute__((unused)) int evtchn_init(int vector) {
  idt_init(vector);
  int r = hv_call(HV_OP_SHARED_INFO, (hv_u32)&shared, 0, 0);
  if (r) return r;
  return hv_call(HV_OP_UPCALL_VECTOR, vector, 0, 0);
}

/* Take the pending events (Xen's scan): clear upcall_pending, then each selected word; bits of handled ports go. */
static __attribute__((unused)) hv_u32 take_pending(hv_u32 word) {
  shared.upcall_pending = 0;
  hv_u32 sel = __atomic_exchange_n(&shared.pending_sel, 0, __ATOMIC_SEQ_CST);
  (void)sel;
  return __atomic_exchange_n(&shared.pending[word], 0, __ATOMIC_SEQ_CST) & ~shared.mask[word];
}
#endif
