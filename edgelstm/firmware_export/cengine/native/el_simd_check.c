/* Fuzz the SIMD kernels (edgelstm_kernels_simd.c) against the portable ones (edgelstm_kernels.c)
 * on random shapes and parameters: int8 must match byte for byte, float within 1e-5 (relative to
 * the sum of |w x|). Build with the flags of the variant under test, e.g.
 *   cc -O2 -march=native el_simd_check.c edgelstm_kernels.c edgelstm_kernels_simd.c -lm
 * Usage: el_simd_check [seed [cases]]. Prints one summary line; exit 1 on any mismatch.
 * Streams and float weights are never freed: the SIMD FCs cache their repacked weights per
 * pointer (as a generated engine's weights are static, the pointers never change). */
#define EL_SIMD_NO_REMAP 1
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelstm_kernels_simd.h"

#if !EL_SIMD_ANY
#error "el_simd_check needs a SIMD target (e.g. -march=native, -march=x86-64-v3, armv8-a)"
#endif

static unsigned long long el_rng = 88172645463325252ULL;

static unsigned rnd(void)
{
    el_rng ^= el_rng << 13;
    el_rng ^= el_rng >> 7;
    el_rng ^= el_rng << 17;
    return (unsigned)(el_rng >> 16);
}

static int range(int lo, int hi) { return lo + (int)(rnd() % (unsigned)(hi - lo + 1)); }

static void put32(int8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    p[0] = (int8_t)(u & 255u);
    p[1] = (int8_t)((u >> 8) & 255u);
    p[2] = (int8_t)((u >> 16) & 255u);
    p[3] = (int8_t)((u >> 24) & 255u);
}

/* el_fc_s8_fast's stream from row-major weights w[rows][cols] (as lower.fc_stream writes it) */
/* Random int8 ADD parameters in the ranges the lowering produces. */
static el_add_fast_t random_add_params(void)
{
    el_add_fast_t ap;
    ap.c1 = range(-128, 127) * (1 << 19);
    ap.c2 = range(-128, 127) * (1 << 21);
    ap.m2 = (int32_t)((1u << 30) + (rnd() % (1u << 30)));
    ap.e2 = range(0, 12);
    ap.sign = range(0, 1) ? 1 : -1;
    ap.mo = (int32_t)((1u << 30) + (rnd() % (1u << 30)));
    ap.eo = range(0, 24);
    ap.k = 1 + 2 * range(-128, 127);
    return ap;
}

static int8_t *make_stream(const int8_t *w, const int32_t *bias, const int32_t *mult,
                           const int8_t *e1, int rows, int cols, int cols_pad)
{
    static const int perm[4] = {0, 2, 1, 3};
    const int blocks = (rows + 3) / 4;
    int8_t *s = (int8_t *)calloc((size_t)blocks * (36 + 4 * (size_t)cols_pad), 1);
    int b, r, j;
    for (b = 0; b < blocks; ++b) {
        int8_t *blk = s + (long)b * (36 + 4L * cols_pad);
        int8_t *tail = blk + 16 + 4L * cols_pad;
        for (r = 0; r < 4; ++r) {
            const int row = 4 * b + r;
            put32(blk + 4 * r, row < rows ? bias[row] : 0);
            put32(tail + 4 * r, row < rows ? mult[row] : 1 << 30);
            tail[16 + r] = row < rows ? e1[row] : 0;
            for (j = 0; j < cols_pad; ++j) {
                const int col = (j & ~3) | perm[j & 3];
                const int v = row < rows && col < cols ? w[(long)row * cols + col] : 0;
                uint8_t *byte = (uint8_t *)blk + 16 + (j / 4) * 16 + (r / 2) * 8 + (j % 4) * 2 + r % 2;
                *byte = (uint8_t)(r % 2 ? (uint8_t)(int8_t)v : (uint8_t)(v + 128));
            }
        }
    }
    return s;
}

static int check_fc_s8(int cases)
{
    int c, bad = 0;
    for (c = 0; c < cases; ++c) {
        /* half the cases in whole 16-row blocks (the fused FC + ADD + table path needs them);
         * the first two LSTM(128)-sized (gates x h and x x, D = 40: the recurrent one larger than
         * L1, whose block pairs the AVX-512 kernel runs forwards and backwards on alternate calls) */
        const int rows = c < 2 ? 512 : range(0, 1) ? range(1, 80) : 16 * range(1, 8);
        const int cols = c == 0 ? 128 : c == 1 ? 40 : range(1, 300), cols_pad = (cols + 7) / 8 * 8;
        int8_t *w = (int8_t *)malloc((size_t)rows * cols);
        int32_t *bias = (int32_t *)malloc(sizeof(int32_t) * rows);
        int32_t *mult = (int32_t *)malloc(sizeof(int32_t) * rows);
        int8_t *e1 = (int8_t *)malloc((size_t)rows);
        int8_t *x = (int8_t *)malloc((size_t)cols), *ya = (int8_t *)malloc((size_t)rows);
        int8_t *yb = (int8_t *)malloc((size_t)rows), *other = (int8_t *)malloc((size_t)rows);
        int16_t *xs = (int16_t *)malloc(sizeof(int16_t) * cols_pad);
        static int8_t tabs[4][256];
        const int8_t *luts[4] = {tabs[0], tabs[1], tabs[2], tabs[3]};
        const int nseg = rows % 64 == 0 ? 4 : rows % 32 == 0 ? 2 : 1;
        el_add_fast_t ap;
        const int wmax = range(0, 3) == 0 ? 127 : range(1, 127);
        int i, t;
        int8_t *stream;
        for (i = 0; i < rows * cols; ++i) {
            w[i] = (int8_t)range(-wmax - 1, wmax);
        }
        for (i = 0; i < rows; ++i) {
            bias[i] = range(-(1 << 20), 1 << 20);
            mult[i] = (int32_t)((1u << 30) + (rnd() % (1u << 30)));
            e1[i] = (int8_t)range(0, 14);
        }
        stream = make_stream(w, bias, mult, e1, rows, cols, cols_pad);
        for (t = 0; t < 6; ++t) {
            const int32_t zp = range(-128, 127);
            for (i = 0; i < cols; ++i) {
                x[i] = (int8_t)range(-128, 127);
            }
            el_fc_s8_fast(x, cols, cols_pad, stream, rows, zp, xs, ya);
            if (t % 3 == 1) { /* an extra call: each SIMD FC below meets both pair orders */
                el_simd_fc_s8_fast(x, cols, cols_pad, stream, rows, zp, xs, yb);
            }
            el_simd_fc_s8_fast(x, cols, cols_pad, stream, rows, zp, xs, yb);
            if (memcmp(ya, yb, (size_t)rows) != 0) {
                if (bad++ < 5) {
                    for (i = 0; i < rows && ya[i] == yb[i]; ++i) {
                    }
                    printf("fc_s8 mismatch rows=%d cols=%d row %d: %d vs %d\n", rows, cols, i, ya[i],
                           yb[i]);
                }
            }
            /* the FC with the gates' ADD and tables fused (either operand order) */
            for (i = 0; i < rows; ++i) {
                other[i] = (int8_t)range(-128, 127);
            }
            for (i = 0; i < 4 * 256; ++i) {
                tabs[i / 256][i % 256] = (int8_t)range(-128, 127);
            }
            ap = random_add_params();
            el_fc_s8_fast_add_lut(x, cols, cols_pad, stream, rows, zp, xs, &ap, other, t % 2,
                                  rows / nseg, nseg, luts, ya);
            el_simd_fc_s8_fast_add_lut(x, cols, cols_pad, stream, rows, zp, xs, &ap, other, t % 2,
                                       rows / nseg, nseg, luts, yb);
            if (memcmp(ya, yb, (size_t)rows) != 0 && bad++ < 5) {
                printf("fc_s8_add_lut mismatch rows=%d cols=%d\n", rows, cols);
            }
        }
        free(w);
        free(bias);
        free(mult);
        free(e1);
        free(x);
        free(ya);
        free(yb);
        free(other);
        free(xs);
    }
    return bad;
}

static int check_elementwise(int cases)
{
    int c, bad = 0;
    static int8_t tabs[4][256];
    const int8_t *luts[4] = {tabs[0], tabs[1], tabs[2], tabs[3]};
    int i, j;
    for (j = 0; j < 4; ++j) {
        for (i = 0; i < 256; ++i) {
            tabs[j][i] = (int8_t)range(-128, 127);
        }
    }
    for (c = 0; c < cases; ++c) {
        const int seg = range(1, 200), nseg = range(1, 4), n = seg * nseg;
        int8_t *a = (int8_t *)malloc((size_t)n), *b = (int8_t *)malloc((size_t)n);
        int8_t *ya = (int8_t *)malloc((size_t)n), *yb = (int8_t *)malloc((size_t)n);
        el_add_fast_t ap;
        el_mul_fast_t mp;
        for (i = 0; i < n; ++i) {
            a[i] = (int8_t)range(-128, 127);
            b[i] = (int8_t)range(-128, 127);
        }
        ap = random_add_params();
        mp.c1 = 2 * range(-128, 127);
        mp.c2 = range(-128, 127);
        mp.mo = (int32_t)((1u << 30) + (rnd() % (1u << 30)));
        mp.eo = range(0, 24);
        mp.k = 1 + 2 * range(-128, 127);
        el_add_s8_fast(&ap, a, 1, b, 1, ya, n);
        el_simd_add_s8_fast(&ap, a, 1, b, 1, yb, n);
        bad += memcmp(ya, yb, (size_t)n) != 0;
        el_add_s8_fast_lut(&ap, a, b, ya, seg, nseg, luts);
        el_simd_add_s8_fast_lut(&ap, a, b, yb, seg, nseg, luts);
        bad += memcmp(ya, yb, (size_t)n) != 0;
        el_mul_s8_fast(&mp, a, 1, b, 1, ya, n);
        el_simd_mul_s8_fast(&mp, a, 1, b, 1, yb, n);
        bad += memcmp(ya, yb, (size_t)n) != 0;
        el_lut_s8(tabs[c % 4], a, ya, n);
        el_simd_lut_s8(tabs[c % 4], a, yb, n);
        bad += memcmp(ya, yb, (size_t)n) != 0;
        free(a);
        free(b);
        free(ya);
        free(yb);
    }
    if (bad) {
        printf("elementwise: %d mismatching kernel calls\n", bad);
    }
    return bad;
}

static int check_fc_f32(int cases)
{
    int c, bad = 0;
    for (c = 0; c < cases; ++c) {
        const int rows = range(1, 70), cols = range(1, 200), act = range(0, 4);
        float *w = (float *)malloc(sizeof(float) * rows * cols), *bias = 0;
        float *x = (float *)malloc(sizeof(float) * cols);
        float *ya = (float *)malloc(sizeof(float) * rows), *yb = (float *)malloc(sizeof(float) * rows);
        int i, r;
        for (i = 0; i < rows * cols; ++i) {
            w[i] = (float)range(-1000, 1000) / 1000.0f;
        }
        for (i = 0; i < cols; ++i) {
            x[i] = (float)range(-1000, 1000) / 500.0f;
        }
        if (range(0, 1)) {
            bias = (float *)malloc(sizeof(float) * rows);
            for (i = 0; i < rows; ++i) {
                bias[i] = (float)range(-1000, 1000) / 1000.0f;
            }
        }
        el_fc_f32(x, cols, w, bias, rows, act, ya);
        el_simd_fc_f32(x, cols, w, bias, rows, act, yb);
        for (r = 0; r < rows; ++r) {
            double mag = 1.0;
            for (i = 0; i < cols; ++i) {
                mag += fabs((double)w[(long)r * cols + i] * x[i]);
            }
            if (fabs((double)ya[r] - yb[r]) > 1e-5 * mag) {
                if (bad++ < 5) {
                    printf("fc_f32 mismatch rows=%d cols=%d row %d: %.9g vs %.9g\n", rows, cols, r,
                           ya[r], yb[r]);
                }
            }
        }
        /* w is never freed: the SIMD FC caches its repacked tiles per weight pointer (the first
         * 64 cases run the tiled path, the rest the row-major fallback) */
        free(bias);
        free(x);
        free(ya);
        free(yb);
    }
    return bad;
}

static int check_f32_elementwise(void)
{
    /* every 1/64 in [-20, 20]: the vectorised logistic / tanh against libm's */
    enum { N = 2561 };
    static float x[N], ya[N], yb[N], x2[N];
    int i, bad = 0, op;
    for (i = 0; i < N; ++i) {
        x[i] = -20.0f + (float)i / 64.0f;
        x2[i] = (float)range(-1000, 1000) / 100.0f;
    }
    el_logistic_f32(x, ya, N);
    el_simd_logistic_f32(x, yb, N);
    for (i = 0; i < N; ++i) {
        bad += fabsf(ya[i] - yb[i]) > 1e-6f;
    }
    el_tanh_f32(x, ya, N);
    el_simd_tanh_f32(x, yb, N);
    for (i = 0; i < N; ++i) {
        bad += fabsf(ya[i] - yb[i]) > 1e-6f;
    }
    for (op = 0; op < 3; ++op) {
        el_binary_f32(op, x, 1, x2, 1, ya, N, 0);
        el_simd_binary_f32(op, x, 1, x2, 1, yb, N, 0);
        bad += memcmp(ya, yb, sizeof(ya)) != 0;
    }
    if (bad) {
        printf("f32 elementwise: %d values beyond 1e-6\n", bad);
    }
    return bad;
}

int main(int argc, char **argv)
{
    const unsigned long long seed = argc > 1 ? strtoull(argv[1], 0, 10) : 1;
    int cases = argc > 2 ? atoi(argv[2]) : 60;
    int bad;
    el_rng ^= seed * 0x9E3779B97F4A7C15ULL;
    if (cases > 60) {
        cases = 60; /* the repack table holds 64 streams: beyond it the portable path would run */
    }
    bad = check_fc_s8(cases) + check_elementwise(4 * cases) + check_fc_f32(2 * cases) +
          check_f32_elementwise();
    printf("%s %s fc_s8=%d elementwise=%d fc_f32=%d cases\n", bad ? "FAIL" : "ok", el_simd_kind(),
           cases, 4 * cases, 2 * cases);
    return bad ? 1 : 0;
}
