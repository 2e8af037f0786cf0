/* Native 32-bit harness of the host-CPU differential tester (built with gcc -m32 at run time).
 *
 * Reads a batch of test cases on stdin (layout: case-format.ts), runs each one natively and
 * writes one result per case to stdout. For every case it copies the code to a fixed-address RWX
 * mapping, fills the fixed-address data area from the case's fill seed (xorshift32, same as
 * fill.ts), loads the 8 GPRs and EFLAGS (arithmetic flags + DF only), jumps to the code and gets
 * control back through an indirect jump appended after it. A fault (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, SIGTRAP) is caught on an alternate signal stack, so the data area (which holds the
 * test's stack) is never touched by signal delivery; the x86 vector, error code and register
 * state come from the kernel's sigcontext. SIGALRM is a watchdog for sequences that never end.
 * The result carries the data area as runs of bytes that differ from the initial fill.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define BATCH_MAGIC 0x31425648u  /* "HVB1" */
#define RESULT_MAGIC 0x31525648u /* "HVR1" */
#define KIND_INTEGER 0
#define KIND_FPU 1
#define FPU_IMAGE 108 /* FSAVE/FRSTOR 32-bit protected-mode image */
#define STATUS_DONE 0
#define STATUS_EXCEPTION 1
#define STATUS_TIMEOUT 2
#define STATUS_BAD_CASE 3
#define LOADABLE_FLAGS 0x0cd5u /* CF PF AF ZF SF DF OF */
#define EXIT_STUB_SIZE 6       /* FF 25 disp32: jmp [hv_exit_target] */
#define PAGE 4096u

/* Register block in x86 encoding order: eax ecx edx ebx esp ebp esi edi, then eflags. */
struct regs { uint32_t r[8]; uint32_t eflags; };

/* Read and written by the trampoline below; one harness process runs one case at a time. */
struct regs hv_in, hv_out;
uint32_t hv_c_esp, hv_code_entry, hv_exit_target, hv_use_fpu;
uint8_t hv_fpu_in[FPU_IMAGE], hv_fpu_out[FPU_IMAGE];
void hv_enter(void);
void hv_exit(void);

__asm__(
    ".intel_syntax noprefix\n"
    ".text\n"
    ".globl hv_enter\n"
    "hv_enter:\n"
    "  push ebp\n  push ebx\n  push esi\n  push edi\n"
    "  mov [hv_c_esp], esp\n"
    "  cmp dword ptr [hv_use_fpu], 0\n"
    "  je 1f\n"
    "  frstor [hv_fpu_in]\n"
    "1:\n"
    "  lea esp, [hv_in + 32]\n" /* popf from a private slot: the test's stack stays untouched */
    "  popfd\n"
    "  mov eax, [hv_in + 0]\n  mov ecx, [hv_in + 4]\n  mov edx, [hv_in + 8]\n"
    "  mov ebx, [hv_in + 12]\n  mov ebp, [hv_in + 20]\n  mov esi, [hv_in + 24]\n"
    "  mov edi, [hv_in + 28]\n  mov esp, [hv_in + 16]\n"
    "  jmp [hv_code_entry]\n"
    ".globl hv_exit\n"
    "hv_exit:\n"
    "  mov [hv_out + 16], esp\n"
    "  lea esp, [hv_out + 36]\n"
    "  pushfd\n"
    "  mov [hv_out + 0], eax\n  mov [hv_out + 4], ecx\n  mov [hv_out + 8], edx\n"
    "  mov [hv_out + 12], ebx\n  mov [hv_out + 20], ebp\n  mov [hv_out + 24], esi\n"
    "  mov [hv_out + 28], edi\n"
    "  cld\n"
    "  cmp dword ptr [hv_use_fpu], 0\n"
    "  je 1f\n"
    "  fnsave [hv_fpu_out]\n"
    "  fninit\n"
    "1:\n"
    "  mov esp, [hv_c_esp]\n"
    "  pop edi\n  pop esi\n  pop ebx\n  pop ebp\n"
    "  ret\n"
    ".att_syntax prefix\n");

struct batch {
  uint32_t kind, count, code_base, code_size, data_base, data_size, ext_in, ext_out;
};

struct fault {
  uint32_t vector, error_code, eip, address;
  struct regs regs;
  int timeout;
};

static sigjmp_buf fault_jump;
static volatile sig_atomic_t in_test;
static struct fault last_fault;

static void on_signal(int sig, siginfo_t *info, void *context) {
  if (!in_test) {
    if (sig == SIGALRM) return;
    signal(sig, SIG_DFL); /* a fault in the harness itself: die loudly */
    return;
  }
  ucontext_t *uc = context;
  greg_t *g = uc->uc_mcontext.gregs;
  last_fault.timeout = sig == SIGALRM;
  last_fault.vector = (uint32_t)g[REG_TRAPNO];
  last_fault.error_code = (uint32_t)g[REG_ERR];
  last_fault.eip = (uint32_t)g[REG_EIP];
  last_fault.address = (uint32_t)(uintptr_t)info->si_addr;
  static const int order[8] = {REG_EAX, REG_ECX, REG_EDX, REG_EBX, REG_UESP, REG_EBP, REG_ESI, REG_EDI};
  for (int i = 0; i < 8; i++) last_fault.regs.r[i] = (uint32_t)g[order[i]];
  last_fault.regs.eflags = (uint32_t)g[REG_EFL];
  in_test = 0;
  siglongjmp(fault_jump, 1);
}

static void die(const char *what) {
  fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void install_handlers(void) {
  static uint8_t alt_stack[64 * 1024];
  stack_t ss = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGALRM};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) die("sigaction");
}

/* Maps [base, base+size) with guard pages on both sides that stay PROT_NONE. */
static uint8_t *map_fixed(uint32_t base, uint32_t size, int prot) {
  void *want = (void *)(uintptr_t)(base - PAGE);
  void *got = mmap(want, size + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED || got != want) die("mmap at the fixed test address");
  if (mprotect((uint8_t *)got + PAGE, size, prot) != 0) die("mprotect");
  return (uint8_t *)got + PAGE;
}

static uint8_t *read_all(size_t *length) {
  size_t cap = 1 << 20, len = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (len == cap) buf = realloc(buf, cap *= 2);
    if (!buf) die("out of memory");
    ssize_t n = read(0, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read");
    if (n == 0) break;
    len += (size_t)n;
  }
  *length = len;
  return buf;
}

static void fill(uint32_t *words, uint32_t count, uint32_t seed) {
  uint32_t x = seed ? seed : 0x9e3779b9u;
  for (uint32_t i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    words[i] = x;
  }
}

/* Runs the case loaded into the mappings and hv_in; fills `f` with the final state. */
static __attribute__((noinline)) uint32_t run_loaded_case(struct fault *f) {
  if (sigsetjmp(fault_jump, 0) == 0) {
    in_test = 1;
    hv_enter();
    in_test = 0;
    f->regs = hv_out;
    return STATUS_DONE;
  }
  *f = last_fault;
  return f->timeout ? STATUS_TIMEOUT : STATUS_EXCEPTION;
}

static void put32(uint32_t v) { fwrite(&v, 4, 1, stdout); }

/* Writes the runs of bytes where `now` differs from `was`; runs closer than 8 bytes merge. */
static void put_diff(const uint8_t *now, const uint8_t *was, uint32_t size) {
  uint32_t starts[4096], ends[4096], n = 0;
  for (uint32_t i = 0; i < size;) {
    if (now[i] == was[i]) { i++; continue; }
    uint32_t end = i + 1, probe = end;
    while (probe < size && probe < end + 8) {
      if (now[probe] != was[probe]) end = probe + 1;
      probe++;
    }
    if (n > 0 && i - ends[n - 1] < 8) ends[n - 1] = end;
    else if (n < 4096) { starts[n] = i; ends[n] = end; n++; }
    else ends[n - 1] = end;
    i = end;
  }
  put32(n);
  static const uint8_t pad[4];
  for (uint32_t k = 0; k < n; k++) {
    uint32_t len = ends[k] - starts[k];
    put32(starts[k]);
    put32(len);
    fwrite(now + starts[k], 1, len, stdout);
    fwrite(pad, 1, (4 - len % 4) % 4, stdout);
  }
}

int main(void) {
  size_t length;
  uint8_t *in = read_all(&length);
  if (length < 36) { fprintf(stderr, "harness: batch too short\n"); return 2; }
  uint32_t h[9];
  memcpy(h, in, sizeof h);
  if (h[0] != BATCH_MAGIC) { fprintf(stderr, "harness: bad batch magic\n"); return 2; }
  struct batch b = {h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]};
  uint32_t fpu = b.kind == KIND_FPU;
  if (b.kind > KIND_FPU || b.data_size % PAGE || b.code_size % PAGE || b.ext_in > 4096 || b.ext_out > 4096 ||
      (fpu && (b.ext_in != FPU_IMAGE || b.ext_out != FPU_IMAGE))) {
    fprintf(stderr, "harness: unsupported batch header\n");
    return 2;
  }
  uint8_t *code = map_fixed(b.code_base, b.code_size, PROT_READ | PROT_WRITE | PROT_EXEC);
  uint8_t *data = map_fixed(b.data_base, b.data_size, PROT_READ | PROT_WRITE);
  uint8_t *shadow = malloc(b.data_size);
  if (!shadow) die("out of memory");
  memset(code, 0xcc, b.code_size);
  hv_code_entry = b.code_base;
  hv_exit_target = (uint32_t)(uintptr_t)hv_exit;
  hv_use_fpu = fpu;
  install_handlers();

  put32(RESULT_MAGIC);
  put32(b.count);
  size_t at = 36;
  for (uint32_t c = 0; c < b.count; c++) {
    if (c % 64 == 0) alarm(5); /* no single case may take seconds */
    if (at + 48 + b.ext_in > length) { fprintf(stderr, "harness: truncated batch\n"); return 2; }
    uint32_t w[12];
    memcpy(w, in + at, sizeof w);
    uint32_t id = w[0], code_len = w[1], seed = w[2];
    const uint8_t *ext = in + at + 48;
    const uint8_t *bytes = ext + b.ext_in;
    at += 48 + b.ext_in + ((code_len + 3u) & ~3u);
    if (at > length) { fprintf(stderr, "harness: truncated batch\n"); return 2; }

    struct fault f;
    uint32_t status;
    memset(&f, 0, sizeof f);
    if (code_len + EXIT_STUB_SIZE > b.code_size) {
      status = STATUS_BAD_CASE;
    } else {
      memcpy(code, bytes, code_len);
      uint8_t *stub = code + code_len;
      uint32_t target = (uint32_t)(uintptr_t)&hv_exit_target;
      stub[0] = 0xff;
      stub[1] = 0x25;
      memcpy(stub + 2, &target, 4);
      fill((uint32_t *)shadow, b.data_size / 4, seed);
      memcpy(data, shadow, b.data_size);
      memcpy(hv_in.r, w + 3, 32);
      hv_in.eflags = (w[11] & LOADABLE_FLAGS) | 0x202u;
      if (fpu) memcpy(hv_fpu_in, ext, FPU_IMAGE);
      status = run_loaded_case(&f);
      if (status == STATUS_DONE) f.eip = b.code_base + code_len;
      memset(code, 0xcc, code_len + EXIT_STUB_SIZE);
    }
    put32(id);
    put32(status);
    put32(f.vector);
    put32(f.error_code);
    put32(f.eip);
    put32(f.address);
    fwrite(f.regs.r, 4, 8, stdout);
    put32(f.regs.eflags);
    if (b.ext_out) fwrite(hv_fpu_out, 1, b.ext_out, stdout);
    if (status == STATUS_BAD_CASE) put32(0);
    else put_diff(data, shadow, b.data_size);
  }
  alarm(0);
  if (fflush(stdout) != 0) die("write");
  return 0;
}
