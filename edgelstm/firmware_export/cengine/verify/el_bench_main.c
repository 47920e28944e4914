/* edgelstm C engine host benchmark: median wall time of one step over many repeats. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "el_verify_glue.h"

#ifndef EL_BENCH_REPEATS
#define EL_BENCH_REPEATS 200
#endif
#ifndef EL_BENCH_INNER
#define EL_BENCH_INNER 50
#endif

static EL_STATE_T el_st;
static EL_OUT_T el_y[EL_OUT_SIZE];
static double el_samples[EL_BENCH_REPEATS];

static double el_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int el_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    int r, i;
    long checksum = 0;
    EL_INIT(&el_st);
    for (i = 0; i < EL_BENCH_INNER; ++i) { /* warm-up */
        (void)EL_STEP(&el_st, el_inputs + (long)(i % (EL_N_STREAMS * EL_N_STEPS)) * EL_IN_SIZE,
                      el_y);
    }
    for (r = 0; r < EL_BENCH_REPEATS; ++r) {
        const double t0 = el_now_us();
        for (i = 0; i < EL_BENCH_INNER; ++i) {
            (void)EL_STEP(&el_st,
                          el_inputs + (long)(i % (EL_N_STREAMS * EL_N_STEPS)) * EL_IN_SIZE, el_y);
        }
        el_samples[r] = (el_now_us() - t0) / EL_BENCH_INNER;
        checksum += (long)el_y[0];
    }
    qsort(el_samples, EL_BENCH_REPEATS, sizeof(double), el_cmp);
    printf("median_us %.4f\nmin_us %.4f\nmax_us %.4f\nchecksum %ld\n",
           el_samples[EL_BENCH_REPEATS / 2], el_samples[0], el_samples[EL_BENCH_REPEATS - 1],
           checksum);
    return 0;
}
