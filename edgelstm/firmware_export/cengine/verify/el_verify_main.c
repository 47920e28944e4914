/* edgelstm C engine verification driver (host and Cortex-M4 under qemu).
 *
 * Runs EL_N_STREAMS streams of EL_N_STEPS steps over the inputs in el_verify_data.c (state reset
 * between streams), buffers every output and state, then prints them as hex bytes for the Python
 * side to compare with LiteRT. With EL_QEMU it also reads SysTick around each step, calibrates
 * ticks against a loop of known instruction count and measures the stack high-water mark
 * (RISC-V: minstret instead of SysTick).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "el_verify_glue.h"

#define EL_N (EL_N_STREAMS * EL_N_STEPS)

static EL_STATE_T el_st;
static EL_OUT_T el_y[EL_N][EL_OUT_SIZE];
static unsigned char el_s[EL_N][sizeof(EL_STATE_T)];
static int el_rc[EL_N];

#ifdef EL_QEMU
#define EL_PAINT 0xA5C35A3Cu
#define EL_PAINT_WORDS 4096u
static uint32_t el_ticks[EL_N];

#if defined(__riscv)
/* RISC-V: minstret counts retired instructions (qemu -icount: exactly) and counts up */
static uint32_t el_now(void)
{
    uint32_t v;
    __asm__ volatile("csrr %0, minstret" : "=r"(v));
    return v;
}
#define EL_SINCE(a, b) ((b) - (a))
#define EL_RESTART() ((void)0)
#define EL_TIMER_INIT() ((void)0)
#define EL_READ_SP(v) __asm__ volatile("mv %0, sp" : "=r"(v))

/* exactly 2 instructions per iteration (ADDI + BNEZ) */
__attribute__((noinline)) static void el_calib_loop(uint32_t n)
{
    __asm__ volatile("1: addi %0, %0, -1\n\tbnez %0, 1b" : "+r"(n));
}
#else
/* Cortex-M: SysTick, a 24-bit down-counter (restarted before each timed region) */
#define EL_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define EL_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define EL_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define el_now() EL_SYST_CVR
#define EL_SINCE(a, b) (((a) - (b)) & 0xFFFFFFu)
#define EL_RESTART() (EL_SYST_CVR = 0)
/* enable, processor clock, no interrupt */
#define EL_TIMER_INIT() (EL_SYST_RVR = 0xFFFFFFu, EL_SYST_CVR = 0, EL_SYST_CSR = 5u)
#define EL_READ_SP(v) __asm__ volatile("mov %0, sp" : "=r"(v))

/* exactly 2 instructions per iteration (SUBS + BNE) */
__attribute__((noinline)) static void el_calib_loop(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}
#endif

#ifdef EL_PROF_OPS
/* per-op instruction profile (a separate build: the generated model calls el_prof_mark(op)
 * after each op through its EL_PROFILE hook). Slot EL_PROF_OPS measures the hook itself. */
static uint32_t el_prof_last;
static uint32_t el_prof_acc[EL_PROF_OPS + 1];

void el_prof_mark(int op)
{
    const uint32_t now = el_now();
    el_prof_acc[op] += EL_SINCE(el_prof_last, now);
    el_prof_last = el_now();
}
#endif

static uint32_t el_time_loop(uint32_t n)
{
    uint32_t a, b;
    EL_RESTART();
    a = el_now();
    el_calib_loop(n);
    b = el_now();
    return EL_SINCE(a, b);
}
#endif

static void el_hex(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; ++i) {
        printf("%02x", b[i]);
    }
}

int main(void)
{
    int s, t, k;
    EL_STATE_T saved;
    EL_OUT_T y1[EL_OUT_SIZE], y2[EL_OUT_SIZE];
#ifdef EL_QEMU
    uint32_t sp, *lo, *w, overhead, a, b, c1, c2;
    EL_TIMER_INIT();
    EL_READ_SP(sp);
    lo = (uint32_t *)(sp - 4u * EL_PAINT_WORDS);
    for (w = lo; w < (uint32_t *)(sp - 16u); ++w) {
        *w = EL_PAINT;
    }
#endif
    EL_INIT(&el_st);
    for (s = 0; s < EL_N_STREAMS; ++s) {
        EL_RESET(&el_st);
        for (t = 0; t < EL_N_STEPS; ++t) {
            k = s * EL_N_STEPS + t;
#ifdef EL_QEMU
            EL_RESTART();
            a = el_now();
#ifdef EL_PROF_OPS
            el_prof_last = el_now();
#endif
#endif
            el_rc[k] = EL_STEP(&el_st, el_inputs + (long)k * EL_IN_SIZE, el_y[k]);
#ifdef EL_QEMU
            b = el_now();
            el_ticks[k] = EL_SINCE(a, b);
#endif
            memcpy(el_s[k], &el_st, sizeof(EL_STATE_T));
        }
    }
#ifdef EL_QEMU
    for (w = lo; w < (uint32_t *)(sp - 16u) && *w == EL_PAINT; ++w) {
    }
    printf("stack %lu\n", (unsigned long)(sp - (uint32_t)w));
    EL_RESTART();
    a = el_now();
    b = el_now();
    overhead = EL_SINCE(a, b);
    c1 = el_time_loop(100000u);
    c2 = el_time_loop(300000u);
    printf("calib %lu %lu %lu %lu\n", 400000ul, (unsigned long)(c2 - c1), (unsigned long)overhead,
           (unsigned long)EL_MACS);
    for (k = 0; k < EL_N; ++k) {
        printf("t %d %lu\n", k, (unsigned long)el_ticks[k]);
    }
#ifdef EL_PROF_OPS
    el_prof_last = el_now();
    for (k = 0; k < 1000; ++k) {
        el_prof_mark(EL_PROF_OPS);
    }
    printf("profhook %lu 1000\n", (unsigned long)el_prof_acc[EL_PROF_OPS]);
    for (k = 0; k < EL_PROF_OPS; ++k) {
        printf("prof %d %lu\n", k, (unsigned long)el_prof_acc[k]);
    }
#endif
#endif
    /* save/restore: a restored state must reproduce the same step exactly */
    memcpy(&saved, &el_st, sizeof saved);
    (void)EL_STEP(&el_st, el_inputs, y1);
    memcpy(&el_st, &saved, sizeof saved);
    (void)EL_STEP(&el_st, el_inputs, y2);
    printf("saveload %s\n", memcmp(y1, y2, sizeof y1) == 0 ? "ok" : "FAIL");
    printf("statesize %lu\n", (unsigned long)sizeof(EL_STATE_T));
    for (k = 0; k < EL_N; ++k) {
        printf("o %d %d ", k, el_rc[k]);
        el_hex(el_y[k], sizeof el_y[k]);
        printf(" ");
        el_hex(el_s[k], sizeof el_s[k]);
        printf("\n");
    }
    printf("done\n");
    return 0;
}
