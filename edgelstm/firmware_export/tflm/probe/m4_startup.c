/* m4_startup.c: bare-metal start-up for the edgelstm TFLite Micro probe on qemu mps2-an386
 * (Cortex-M4F). Copies .data, clears .bss, enables the FPU, runs C++ constructors, takes argv
 * from the semihosting command line (qemu -append) and leaves through semihosting SYS_EXIT. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
extern int main(int argc, char** argv);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

/* -nostartfiles drops crti/crtn and crtbegin: __libc_init_array still calls _init/_fini, and
 * C++ static objects register their destructors against __dso_handle. */
void _init(void) {}
void _fini(void) {}
void* __dso_handle = &__dso_handle;

static int semihost(int op, void* arg) {
  register int r0 __asm__("r0") = op;
  register void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

#define SYS_WRITE0 0x04
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT 0x18
#define ADP_APPLICATION_EXIT 0x20026
#define ADP_RUNTIME_ERROR 0x20023

static char cmdline[512];
static char* argv_buf[16];

static int split_cmdline(void) {
  struct {
    char* buf;
    int len;
  } block = {cmdline, (int)sizeof(cmdline) - 1};
  int argc = 0;
  if (semihost(SYS_GET_CMDLINE, &block) != 0) return 0;
  cmdline[block.len] = '\0';
  for (char* p = cmdline; *p && argc < 15;) {
    while (*p == ' ') *p++ = '\0';
    if (!*p) break;
    argv_buf[argc++] = p;
    while (*p && *p != ' ') ++p;
  }
  argv_buf[argc] = 0;
  return argc;
}

void Reset_Handler(void) {
  uint32_t* src = &__data_load__;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  *(volatile uint32_t*)0xE000ED88 |= (0xFu << 20); /* CPACR: CP10/CP11 full access */
  __asm__ volatile("dsb\n isb");
  initialise_monitor_handles();
  __libc_init_array();
  int argc = split_cmdline();
  exit(main(argc, argv_buf)); /* newlib flushes stdio, then rdimon's _exit stops qemu */
}

/* Any fault: say so and stop qemu with an error status, rather than spin forever. */
void Fault_Handler(void) {
  semihost(SYS_WRITE0, (void*)"EL_FAULT\n");
  semihost(SYS_EXIT, (void*)ADP_RUNTIME_ERROR);
  for (;;) {
  }
}

__attribute__((section(".vectors"), used)) static void (*const vector_table[16])(void) = {
    (void (*)(void))(&__stack_top__), Reset_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0,
    Fault_Handler, Fault_Handler};
