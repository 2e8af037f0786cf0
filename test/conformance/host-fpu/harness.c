/* Native 32-bit harness of the x87 differential tester (built with gcc -m32 at run time).
 *
 * Reads cases from stdin, runs each natively and writes one result per case to stdout.
 * Case:   u32 code_len, code[code_len], fsave[108] (32-bit protected-mode FRSTOR image),
 *         data[DATA_SIZE], u32 eflags (arithmetic flags loaded before the code runs).
 * Result: u32 status (0 done, 1 #MF = SIGFPE, 2 other signal), u32 fault offset in the code,
 *         fsave[108] (FNSAVE at the end, or the kernel's copy at the #MF), u32 eflags, u32 eax,
 *         data[DATA_SIZE].
 * The code runs at CODE_ADDR with EBX = DATA_ADDR; an indirect jump back is appended.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define CODE_ADDR 0x10000000u
#define DATA_ADDR 0x20000000u
#define DATA_SIZE 256
#define MAX_CODE 4000
#define IMAGE 108

uint32_t hv_eflags_in, hv_eflags_out, hv_eax_out, hv_c_esp, hv_exit_target;
uint8_t hv_fpu_in[IMAGE], hv_fpu_out[IMAGE];
void hv_enter(void);
void hv_exit(void);

__asm__(
    ".intel_syntax noprefix\n"
    ".text\n"
    ".globl hv_enter\n"
    "hv_enter:\n"
    "  push ebp\n  push ebx\n  push esi\n  push edi\n"
    "  mov [hv_c_esp], esp\n"
    "  frstor [hv_fpu_in]\n"
    "  mov ebx, 0x20000000\n"
    "  xor eax, eax\n"
    "  mov ecx, 0x10000000\n"
    "  push dword ptr [hv_eflags_in]\n"
    "  popfd\n"
    "  jmp ecx\n"
    ".globl hv_exit\n"
    "hv_exit:\n"
    "  fnsave [hv_fpu_out]\n"
    "  pushfd\n"
    "  pop dword ptr [hv_eflags_out]\n"
    "  mov [hv_eax_out], eax\n"
    "  cld\n"
    "  fninit\n"
    "  mov esp, [hv_c_esp]\n"
    "  pop edi\n  pop esi\n  pop ebx\n  pop ebp\n"
    "  ret\n"
    ".att_syntax prefix\n");

static sigjmp_buf fault_jump;
static volatile sig_atomic_t in_test;
static uint32_t fault_eip;
static int fault_status;
static uint8_t fault_image[IMAGE];

static void on_signal(int sig, siginfo_t *info, void *context) {
  (void)info;
  if (!in_test) {
    signal(sig, SIG_DFL);
    return;
  }
  ucontext_t *uc = context;
  fault_eip = (uint32_t)uc->uc_mcontext.gregs[REG_EIP];
  fault_status = sig == SIGFPE ? 1 : 2;
  memset(fault_image, 0, IMAGE);
  if (uc->uc_mcontext.fpregs) memcpy(fault_image, uc->uc_mcontext.fpregs, IMAGE);
  in_test = 0;
  siglongjmp(fault_jump, 1);
}

static int read_all(void *p, size_t n) {
  return fread(p, 1, n, stdin) == n;
}

static void write_all(const void *p, size_t n) {
  if (fwrite(p, 1, n, stdout) != n) exit(3);
}

int main(void) {
  uint8_t *code = mmap((void *)CODE_ADDR, MAX_CODE + 16, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  uint8_t *data = mmap((void *)DATA_ADDR, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (code == MAP_FAILED || data == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  static uint8_t altstack[65536];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  int sigs[] = {SIGFPE, SIGSEGV, SIGBUS, SIGILL, SIGTRAP};
  for (unsigned k = 0; k < sizeof sigs / sizeof sigs[0]; k++) sigaction(sigs[k], &sa, NULL);
  hv_exit_target = (uint32_t)(uintptr_t)hv_exit;
  uint32_t len;
  while (read_all(&len, 4)) {
    if (len > MAX_CODE) return 4;
    if (!read_all(code, len) || !read_all(hv_fpu_in, IMAGE) || !read_all(data, DATA_SIZE) || !read_all(&hv_eflags_in, 4)) return 5;
    /* jmp [hv_exit_target] */
    code[len] = 0xff;
    code[len + 1] = 0x25;
    uint32_t target = (uint32_t)(uintptr_t)&hv_exit_target;
    memcpy(code + len + 2, &target, 4);
    uint32_t status = 0, offset = 0;
    in_test = 1;
    if (sigsetjmp(fault_jump, 1) == 0) {
      hv_enter();
      in_test = 0;
    } else {
      status = (uint32_t)fault_status;
      offset = fault_eip - CODE_ADDR;
      memcpy(hv_fpu_out, fault_image, IMAGE);
      hv_eflags_out = 0;
      hv_eax_out = 0;
      __asm__ volatile("fninit");
    }
    write_all(&status, 4);
    write_all(&offset, 4);
    write_all(hv_fpu_out, IMAGE);
    write_all(&hv_eflags_out, 4);
    write_all(&hv_eax_out, 4);
    write_all(data, DATA_SIZE);
  }
  fflush(stdout);
  return 0;
}
