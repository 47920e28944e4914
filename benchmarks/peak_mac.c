/* Peak multiply-accumulate rate of one core: the denominator of the arithmetic floor.
 *
 * fp32: 12 independent accumulator vectors (enough to hide FMA latency on two FMA pipes),
 *       acc = acc * m + a, compiled -O3 -march=native so GCC emits packed FMAs (zmm when the
 *       machine has AVX-512, else ymm).
 * int8: with AVX-512 VNNI / AVX-VNNI, 12 independent VPDPBUSD chains (the instruction int8
 *       kernels such as XNNPACK use); without, a dot product of two L1-resident int8 arrays into
 *       int32 (auto-vectorised), i.e. what portable C reaches.
 * Prints one JSON object: per-repeat rates in MAC/s, and which int8 method ran.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__AVX512VNNI__) || defined(__AVXVNNI__)
#include <immintrin.h>
#endif

#ifdef __AVX512F__
#define FLANES 16
#else
#define FLANES 8
#endif
typedef float vf __attribute__((vector_size(FLANES * 4)));
#define NACC 12

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float sink_f;
static volatile int32_t sink_i;

static double fp32_rate(long iters) {
    volatile float mv = 0.99999f, av = 1e-6f;
    vf m, a, acc[NACC];
    for (int j = 0; j < FLANES; j++) { m[j] = mv; a[j] = av; }
    for (int k = 0; k < NACC; k++)
        for (int j = 0; j < FLANES; j++) acc[k][j] = (float)(k + j) * 1e-3f;
    double t0 = now();
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < NACC; k++) acc[k] = acc[k] * m + a;
    }
    double dt = now() - t0;
    float s = 0;
    for (int k = 0; k < NACC; k++)
        for (int j = 0; j < FLANES; j++) s += acc[k][j];
    sink_f = s;
    return (double)iters * NACC * FLANES / dt;
}

#if defined(__AVX512VNNI__)
#define I8_METHOD "avx512-vnni vpdpbusd x12 chains"
static double int8_rate(long iters) {
    volatile int seed = 3;
    __m512i a = _mm512_set1_epi8((char)seed), b = _mm512_set1_epi8((char)(seed + 1));
    __m512i acc[NACC];
    for (int k = 0; k < NACC; k++) acc[k] = _mm512_set1_epi32(k);
    iters *= 8; /* each call covers 64 MACs/instruction: scale to a comparable duration */
    double t0 = now();
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < NACC; k++) acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
    }
    double dt = now() - t0;
    int32_t s = 0;
    for (int k = 0; k < NACC; k++) s += _mm512_reduce_add_epi32(acc[k]);
    sink_i = s;
    return (double)iters * NACC * 64 / dt;
}
#elif defined(__AVXVNNI__)
#define I8_METHOD "avx-vnni vpdpbusd (256-bit) x12 chains"
static double int8_rate(long iters) {
    volatile int seed = 3;
    __m256i a = _mm256_set1_epi8((char)seed), b = _mm256_set1_epi8((char)(seed + 1));
    __m256i acc[NACC];
    for (int k = 0; k < NACC; k++) acc[k] = _mm256_set1_epi32(k);
    iters *= 8;
    double t0 = now();
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < NACC; k++) acc[k] = _mm256_dpbusd_avx_epi32(acc[k], a, b);
    }
    double dt = now() - t0;
    int32_t s = 0;
    for (int k = 0; k < NACC; k++) {
        int32_t tmp[8];
        _mm256_storeu_si256((__m256i *)tmp, acc[k]);
        for (int j = 0; j < 8; j++) s += tmp[j];
    }
    sink_i = s;
    return (double)iters * NACC * 32 / dt;
}
#else
#define I8_METHOD "portable C int8 dot product (auto-vectorised), 4 KiB in L1"
#define N8 4096
static int8_t xa[N8] __attribute__((aligned(64)));
static int8_t xb[N8] __attribute__((aligned(64)));

static int32_t __attribute__((noinline)) dot8(const int8_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

static double int8_rate(long iters) {
    for (int i = 0; i < N8; i++) { xa[i] = (int8_t)(i * 7); xb[i] = (int8_t)(i * 13 + 1); }
    int32_t s = 0;
    double t0 = now();
    for (long i = 0; i < iters; i++) {
        s += dot8(xa, xb, N8);
        __asm__ volatile("" ::: "memory"); /* keep every call */
    }
    double dt = now() - t0;
    sink_i = s;
    return (double)iters * N8 / dt;
}
#endif

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 7;
    long fp_iters = argc > 2 ? atol(argv[2]) : 2000000;
    long i8_iters = argc > 3 ? atol(argv[3]) : 20000;
    fp32_rate(fp_iters / 10); /* warm-up: clocks up, caches hot */
    int8_rate(i8_iters / 10);
    printf("{\"fp32_mac_per_s\": [");
    for (int r = 0; r < repeats; r++) printf("%s%.6e", r ? ", " : "", fp32_rate(fp_iters));
    printf("], \"int8_mac_per_s\": [");
    for (int r = 0; r < repeats; r++) printf("%s%.6e", r ? ", " : "", int8_rate(i8_iters));
    printf("], \"int8_method\": \"%s\", \"fp32_lanes\": %d}\n", I8_METHOD, FLANES);
    return 0;
}
