/* The weight-streaming bound of an int8 matrix-vector product on this core (x86-64, AVX-512
 * VNNI): VPDPBUSD with its 64-byte weight operand loaded from memory, 8 independent chains,
 * sweeping a W-byte weight buffer over and over, forwards every time (serp 0) or in alternate
 * directions (serp 1: a sweep starts on the lines the previous one left in L1, as the native
 * runtime's recurrent FC does). Prints the best GMAC/s of 200 batches.
 *   gcc -O3 -march=native -o vnni_stream benchmarks/vnni_stream.c
 *   ./vnni_stream 16384 0; ./vnni_stream 65536 0; ./vnni_stream 65536 1
 * 2026-12-07, the AMD EPYC dev box: 16 KB (in L1) 223 GMAC/s (the VNNI peak); 64 KB (from L2)
 * 118; 64 KB alternating 157. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const long bytes = argc > 1 ? atol(argv[1]) : 65536;
    const int serp = argc > 2 ? atoi(argv[2]) : 0;
    const int n = (int)(bytes / 512 * 8); /* 64-byte lines, whole groups of 8 */
    int8_t *w = (int8_t *)aligned_alloc(64, (size_t)n * 64);
    const __m512i x = _mm512_set1_epi32(0x01020304);
    __m512i acc[8];
    double best = 1e9;
    long i, sweeps = 20000000L / n / 200 + 1;
    int k, rep, s = 0;
    for (i = 0; i < (long)n * 64; ++i) {
        w[i] = (int8_t)(i * 7);
    }
    for (k = 0; k < 8; ++k) {
        acc[k] = _mm512_set1_epi32(k);
    }
    for (rep = 0; rep < 200; ++rep) {
        const double t0 = now();
        long r;
        for (r = 0; r < sweeps; ++r) {
            int j;
            for (j = 0; j < n; j += 8) {
                const int8_t *p = w + 64L * (serp && (r & 1) ? n - 8 - j : j);
                for (k = 0; k < 8; ++k) {
                    acc[k] = _mm512_dpbusd_epi32(acc[k], x, _mm512_load_si512(p + 64 * k));
                }
            }
        }
        const double t = (now() - t0) / ((double)sweeps * n);
        if (t < best) {
            best = t;
        }
    }
    for (k = 0; k < 8; ++k) {
        s += _mm512_reduce_add_epi32(acc[k]);
    }
    printf("%ld B%s: %.3f ns per VPDPBUSD = %.1f GMAC/s (%d)\n", bytes, serp ? " alternating" : "",
           best * 1e9, 64 / best / 1e9, s & 1);
    return 0;
}
