/* edgelstm C engine kernels (see edgelstm_kernels.h). Portable C99; optional Cortex-M DSP path. */
#include "edgelstm_kernels.h"

#include <math.h>
#include <string.h>

#if EL_USE_DSP
#include <arm_acle.h>
#endif

/* ---- TFLite fixed-point helpers (gemmlowp rounding, as TFLite's reference kernels) ---------- */

/* MultiplyByQuantizedMultiplier (TFLite, double rounding), rewritten for speed, same results:
 * - SaturatingRoundingDoublingHighMul(a, m) truncates (a*m + nudge) / 2^31 toward zero, with
 *   nudge = 2^30 for a*m >= 0 and 1 - 2^30 otherwise; both cases equal floor((a*m + 2^30) / 2^31).
 *   Its saturating case needs a == m == INT32_MIN, impossible since multipliers are >= 0.
 * - RoundingDivideByPOT(s, e) rounds half away from zero: (s + 2^(e-1) - (s < 0)) >> e, done
 *   unsigned for s >= 0 so that s near INT32_MAX cannot overflow. */
static int32_t el_mbqm(int32_t x, int32_t m, int32_t shift)
{
    int32_t s, e;
    uint32_t t;
    if (shift > 0) {
        x = (int32_t)((uint32_t)x << shift);
        e = 0;
    } else {
        e = -shift;
    }
    s = (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
    if (e == 0) {
        return s;
    }
    t = (uint32_t)s + (1u << (e - 1));
    return s >= 0 ? (int32_t)(t >> e) : (int32_t)(t - 1u) >> e;
}

/* The same, but RoundingRightShift rounds halves up (toward +inf) as ruy does: LiteRT's int8
 * FULLY_CONNECTED requantizes through ruy, so its results differ from el_mbqm on exact ties. */
static int32_t el_mbqm_up(int32_t x, int32_t m, int32_t shift)
{
    int32_t s, e;
    uint32_t t;
    if (shift > 0) {
        x = (int32_t)((uint32_t)x << shift);
        e = 0;
    } else {
        e = -shift;
    }
    s = (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
    if (e == 0) {
        return s;
    }
    t = (uint32_t)s + (1u << (e - 1));
    return s >= 0 ? (int32_t)(t >> e) : (int32_t)t >> e;
}

/* el_mbqm_up in one rounding step. For shift = -e <= 0 the two floors nest:
 *   floor((floor((a*m + 2^30) / 2^31) + 2^(e-1)) / 2^e) = floor((a*m + 2^30 + 2^(30+e)) / 2^(31+e))
 * (e >= 1; for e = 0 only the 2^30 nudge remains), so one 64-bit multiply-add and shift suffice. */
static int32_t el_requant_up(int32_t a, int32_t m, int32_t shift)
{
    int32_t e;
    int64_t rnd;
    if (shift > 0) {
        return el_mbqm_up(a, m, shift);
    }
    if (shift == 0) {
        return (int32_t)(((int64_t)a * m + ((int64_t)1 << 30)) >> 31);
    }
    e = -shift;
    /* 2^30 + 2^(30+e), built without a variable 64-bit shift (a library call on Cortex-M) */
    rnd = e == 1 ? ((int64_t)3 << 30)
                 : ((int64_t)((uint32_t)1 << (e - 2)) << 32) + ((int64_t)1 << 30);
    /* (v >> 32) is the high word: one register; then a 32-bit shift by e - 1 */
    return (int32_t)(((int64_t)a * m + rnd) >> 32) >> (e - 1);
}

static int8_t el_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* ---- int8 fully connected ------------------------------------------------------------------ */

#if EL_USE_DSP
/* 4 rows x 8 columns per iteration: 2 LDRD of int16 x, 4 LDRD of weights, 16 SXTB16 and
 * 16 SMLAD (dual 16-bit MAC) -> 32 MACs in 40 instructions. `pairs` = cols_pad / 8 >= 1. */
static void el_fc_block_dsp(const int16_t *xp, const int8_t *wp, int pairs, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    uint32_t xa, xb, w0, w1, t;
    __asm__ volatile(
        "1:\n\t"
        "ldrd %[xa], %[xb], [%[xp]], #8\n\t"
        "ldrd %[w0], %[w1], [%[wp]], #8\n\t"
        "sxtb16 %[t], %[w0]\n\t"
        "smlad %[a0], %[t], %[xa], %[a0]\n\t"
        "sxtb16 %[w0], %[w0], ror #8\n\t"
        "smlad %[a0], %[w0], %[xb], %[a0]\n\t"
        "sxtb16 %[t], %[w1]\n\t"
        "smlad %[a1], %[t], %[xa], %[a1]\n\t"
        "sxtb16 %[w1], %[w1], ror #8\n\t"
        "smlad %[a1], %[w1], %[xb], %[a1]\n\t"
        "ldrd %[w0], %[w1], [%[wp]], #8\n\t"
        "sxtb16 %[t], %[w0]\n\t"
        "smlad %[a2], %[t], %[xa], %[a2]\n\t"
        "sxtb16 %[w0], %[w0], ror #8\n\t"
        "smlad %[a2], %[w0], %[xb], %[a2]\n\t"
        "sxtb16 %[t], %[w1]\n\t"
        "smlad %[a3], %[t], %[xa], %[a3]\n\t"
        "sxtb16 %[w1], %[w1], ror #8\n\t"
        "smlad %[a3], %[w1], %[xb], %[a3]\n\t"
        "ldrd %[xa], %[xb], [%[xp]], #8\n\t"
        "ldrd %[w0], %[w1], [%[wp]], #8\n\t"
        "sxtb16 %[t], %[w0]\n\t"
        "smlad %[a0], %[t], %[xa], %[a0]\n\t"
        "sxtb16 %[w0], %[w0], ror #8\n\t"
        "smlad %[a0], %[w0], %[xb], %[a0]\n\t"
        "sxtb16 %[t], %[w1]\n\t"
        "smlad %[a1], %[t], %[xa], %[a1]\n\t"
        "sxtb16 %[w1], %[w1], ror #8\n\t"
        "smlad %[a1], %[w1], %[xb], %[a1]\n\t"
        "ldrd %[w0], %[w1], [%[wp]], #8\n\t"
        "sxtb16 %[t], %[w0]\n\t"
        "smlad %[a2], %[t], %[xa], %[a2]\n\t"
        "sxtb16 %[w0], %[w0], ror #8\n\t"
        "smlad %[a2], %[w0], %[xb], %[a2]\n\t"
        "sxtb16 %[t], %[w1]\n\t"
        "smlad %[a3], %[t], %[xa], %[a3]\n\t"
        "sxtb16 %[w1], %[w1], ror #8\n\t"
        "smlad %[a3], %[w1], %[xb], %[a3]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),
          [wp] "+r"(wp), [n] "+r"(pairs), [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0),
          [w1] "=&r"(w1), [t] "=&r"(t)
        :
        : "cc", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

void el_fc_s8(const int8_t *x, int cols, int cols_pad, const int8_t *w, const int32_t *bias,
              int rows, const int32_t *mult, const int8_t *shift, int32_t out_zp,
              int32_t act_min, int32_t act_max, int16_t *xs, int8_t *y)
{
    int i, rb, r;
    /* expand x to int16 once per call; the padding columns have zero weights */
    for (i = 0; i < cols; ++i) {
        xs[i] = x[i];
    }
    for (; i < cols_pad; ++i) {
        xs[i] = 0;
    }
    for (rb = 0; rb < rows; rb += 4) {
        const int8_t *wp = w + (long)rb * cols_pad;
        const int nr = rows - rb < 4 ? rows - rb : 4;
        int32_t acc[4];
        acc[0] = bias[rb];
        acc[1] = bias[rb + 1];
        acc[2] = bias[rb + 2];
        acc[3] = bias[rb + 3];
#if EL_USE_DSP
        el_fc_block_dsp(xs, wp, cols_pad / 8, acc);
#else
        {
            const int16_t *xp = xs;
            int g;
            for (g = 0; g < cols_pad / 4; ++g, xp += 4) {
                for (r = 0; r < 4; ++r, wp += 4) {
                    acc[r] += wp[0] * xp[0] + wp[2] * xp[1] + wp[1] * xp[2] + wp[3] * xp[3];
                }
            }
        }
#endif
        for (r = 0; r < nr; ++r) {
            const int32_t v = el_requant_up(acc[r], mult[rb + r], shift[rb + r]) + out_zp;
            y[rb + r] = el_clamp8(v, act_min, act_max);
        }
    }
}

/* ---- int8 elementwise ---------------------------------------------------------------------- */

/* el_mbqm(a, m, -e) in one multiply-add. With neg = (a < 0) (m > 0, so the sign of a*m), the
 * nested roundings collapse to floor((a*m + 2^30 + (2^(e-1) - neg) * 2^31) / 2^(31+e)) for e >= 1;
 * for e = 0 it is floor((2a*m + 2^31) / 2^32) (a pre-doubled by the caller's shift). Either way
 * the result is the high word of a*m + rnd - (a < 0 ? nadj : 0), shifted right by e1. */
typedef struct {
    int64_t rnd, nadj;
    int32_t e1, ls;
} el_rescale_t;

static el_rescale_t el_rescale(int32_t shift, int32_t ls)
{
    el_rescale_t r;
    const int32_t e = -shift;
    if (e == 0) {
        r.rnd = (int64_t)1 << 31;
        r.nadj = 0;
        r.e1 = 0;
        r.ls = ls + 1;
    } else {
        r.rnd = e == 1 ? ((int64_t)3 << 30)
                       : ((int64_t)((uint32_t)1 << (e - 2)) << 32) + ((int64_t)1 << 30);
        r.nadj = (int64_t)1 << 31;
        r.e1 = e - 1;
        r.ls = ls;
    }
    return r;
}

static int32_t el_rescale_apply(int32_t a, int32_t m, const el_rescale_t *r)
{
    const int64_t v = (int64_t)a * m + r->rnd - (a < 0 ? r->nadj : 0);
    return (int32_t)(v >> 32) >> r->e1;
}

void el_addsub_s8(const el_addsub_s8_t *p, int sign, const int8_t *x1, int step1,
                  const int8_t *x2, int step2, int8_t *y, int n)
{
    /* parameters in locals: int8 stores may alias *p, so the compiler would reload them */
    const int32_t o1 = p->in1_off, m1 = p->in1_mult, s1 = p->in1_shift;
    const int32_t o2 = p->in2_off, m2 = p->in2_mult, s2 = p->in2_shift;
    const int32_t oo = p->out_off, mo = p->out_mult, so = p->out_shift, ls = p->left_shift;
    const int32_t lo = p->act_min, hi = p->act_max;
    int i;
    /* the usual case: no multiplier above 1, inputs small enough to double (|o + x| < 2^10) */
    if (s1 <= 0 && s2 <= 0 && so <= 0 && s1 >= -31 && s2 >= -31 && so >= -31 && ls <= 20) {
        const el_rescale_t r1 = el_rescale(s1, ls), r2 = el_rescale(s2, ls);
        const el_rescale_t ro = el_rescale(so, 0);
        const int32_t b = sign > 0 ? 1 : -1;
        if (m1 == (1 << 30) && s1 == 0 && ls >= 1) {
            /* the larger-scale input always gets exactly 1/2: its rescale is a plain shift,
             * ((o + x) << ls) * 2^30 rounded / 2^31 == (o + x) << (ls - 1) since ls >= 1 */
            for (i = 0; i < n; ++i) {
                const int32_t sa = (int32_t)((uint32_t)(o1 + *x1) << (ls - 1));
                const int32_t sb =
                    el_rescale_apply((int32_t)((uint32_t)(o2 + *x2) << r2.ls), m2, &r2);
                const int32_t raw = sa + b * sb;
                y[i] = el_clamp8(
                    el_rescale_apply((int32_t)((uint32_t)raw << ro.ls), mo, &ro) + oo, lo, hi);
                x1 += step1;
                x2 += step2;
            }
            return;
        }
        if (m2 == (1 << 30) && s2 == 0 && ls >= 1) {
            for (i = 0; i < n; ++i) {
                const int32_t sa =
                    el_rescale_apply((int32_t)((uint32_t)(o1 + *x1) << r1.ls), m1, &r1);
                const int32_t sb = (int32_t)((uint32_t)(o2 + *x2) << (ls - 1));
                const int32_t raw = sa + b * sb;
                y[i] = el_clamp8(
                    el_rescale_apply((int32_t)((uint32_t)raw << ro.ls), mo, &ro) + oo, lo, hi);
                x1 += step1;
                x2 += step2;
            }
            return;
        }
        for (i = 0; i < n; ++i) {
            const int32_t sa = el_rescale_apply((int32_t)((uint32_t)(o1 + *x1) << r1.ls), m1, &r1);
            const int32_t sb = el_rescale_apply((int32_t)((uint32_t)(o2 + *x2) << r2.ls), m2, &r2);
            const int32_t raw = sa + b * sb;
            /* ro.ls is 1 only when the output shift is 0: raw is < 2^29, doubling is safe */
            y[i] = el_clamp8(el_rescale_apply((int32_t)((uint32_t)raw << ro.ls), mo, &ro) + oo,
                             lo, hi);
            x1 += step1;
            x2 += step2;
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        const int32_t sa = el_mbqm((int32_t)((uint32_t)(o1 + *x1) << ls), m1, s1);
        const int32_t sb = el_mbqm((int32_t)((uint32_t)(o2 + *x2) << ls), m2, s2);
        const int32_t raw = sign > 0 ? sa + sb : sa - sb;
        y[i] = el_clamp8(el_mbqm(raw, mo, so) + oo, lo, hi);
        x1 += step1;
        x2 += step2;
    }
}

void el_mul_s8(const el_mul_s8_t *p, const int8_t *x1, int step1, const int8_t *x2, int step2,
               int8_t *y, int n)
{
    const int32_t o1 = p->in1_off, o2 = p->in2_off, oo = p->out_off;
    const int32_t mo = p->out_mult, so = p->out_shift, lo = p->act_min, hi = p->act_max;
    int i;
    if (so <= 0 && so >= -31) { /* |product| <= 2^16: safe to double for the e = 0 form */
        const el_rescale_t r = el_rescale(so, 0);
        for (i = 0; i < n; ++i) {
            const int32_t prod = (o1 + *x1) * (o2 + *x2);
            y[i] = el_clamp8(el_rescale_apply((int32_t)((uint32_t)prod << r.ls), mo, &r) + oo,
                             lo, hi);
            x1 += step1;
            x2 += step2;
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        const int32_t prod = (o1 + *x1) * (o2 + *x2);
        y[i] = el_clamp8(el_mbqm(prod, mo, so) + oo, lo, hi);
        x1 += step1;
        x2 += step2;
    }
}

void el_lut_s8(const int8_t *lut, const int8_t *x, int8_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = lut[(uint8_t)x[i]];
    }
}

void el_softmax_s8(const float *table, float out_scale, int32_t out_zp, const int8_t *x,
                   int8_t *y, int outer, int n)
{
    int o, j;
    for (o = 0; o < outer; ++o, x += n, y += n) {
        int32_t mx = -128;
        const float *t;
        float sum = 0.0f, inv;
        for (j = 0; j < n; ++j) {
            mx = x[j] > mx ? x[j] : mx;
        }
        t = table + 255 - mx;
        for (j = 0; j < n; ++j) {
            sum += t[x[j]];
        }
        inv = 1.0f / (sum * out_scale);
        for (j = 0; j < n; ++j) {
            const int32_t q = (int32_t)roundf(t[x[j]] * inv) + out_zp;
            y[j] = el_clamp8(q, -128, 127);
        }
    }
}

void el_requant_s8(const int8_t *x, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                   int8_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = el_clamp8(el_mbqm(x[i] - in_zp, mult, shift) + out_zp, -128, 127);
    }
}

void el_quantize_f32_s8(const float *x, float scale, int32_t zp, int8_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        const float q = roundf(x[i] / scale);
        const int32_t v = q > 1e6f ? 1000000 : (q < -1e6f ? -1000000 : (int32_t)q);
        y[i] = el_clamp8(v + zp, -128, 127);
    }
}

void el_dequantize_s8_f32(const int8_t *x, float scale, int32_t zp, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = scale * (float)(x[i] - zp);
    }
}

/* ---- float32 ------------------------------------------------------------------------------- */

static float el_act_f32(float v, int act)
{
    switch (act) {
    case EL_ACT_RELU:
        return v < 0.0f ? 0.0f : v;
    case EL_ACT_RELU_N1_TO_1:
        return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
    case EL_ACT_RELU6:
        return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    case EL_ACT_TANH:
        return tanhf(v);
    default:
        return v;
    }
}

void el_fc_f32(const float *x, int cols, const float *w, const float *bias, int rows, int act,
               float *y)
{
    int r, c;
    for (r = 0; r < rows; ++r, w += cols) {
        float acc = 0.0f;
        for (c = 0; c < cols; ++c) {
            acc += w[c] * x[c];
        }
        if (bias != 0) {
            acc += bias[r];
        }
        y[r] = el_act_f32(acc, act);
    }
}

void el_binary_f32(int op, const float *x1, int step1, const float *x2, int step2, float *y, int n,
                   int act)
{
    int i;
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        const float v = op == 0 ? *x1 + *x2 : (op == 1 ? *x1 - *x2 : *x1 * *x2);
        y[i] = el_act_f32(v, act);
    }
}

void el_logistic_f32(const float *x, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = 1.0f / (1.0f + expf(-x[i]));
    }
}

void el_tanh_f32(const float *x, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = tanhf(x[i]);
    }
}

void el_relu_f32(const float *x, float *y, int n, float lo, float hi)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
    }
}

void el_softmax_f32(const float *x, float *y, int outer, int n, float beta)
{
    int o, j;
    for (o = 0; o < outer; ++o, x += n, y += n) {
        float mx = x[0], sum = 0.0f;
        for (j = 1; j < n; ++j) {
            mx = x[j] > mx ? x[j] : mx;
        }
        for (j = 0; j < n; ++j) {
            y[j] = expf((x[j] - mx) * beta);
            sum += y[j];
        }
        for (j = 0; j < n; ++j) {
            y[j] = y[j] / sum;
        }
    }
}

/* ---- layout -------------------------------------------------------------------------------- */

void el_copy_rows(const void *src, int src_stride, void *dst, int dst_stride, int rows, int len)
{
    const unsigned char *s = (const unsigned char *)src;
    unsigned char *d = (unsigned char *)dst;
    int r;
    for (r = 0; r < rows; ++r) {
        memmove(d + (long)r * dst_stride, s + (long)r * src_stride, (size_t)len);
    }
}

int el_gather(const void *table, int n_rows, int row_bytes, const int32_t *idx, int n_idx,
              void *y)
{
    int i;
    for (i = 0; i < n_idx; ++i) {
        if (idx[i] < 0 || idx[i] >= n_rows) {
            return EL_ERR_INDEX;
        }
        memcpy((unsigned char *)y + (long)i * row_bytes,
               (const unsigned char *)table + (long)idx[i] * row_bytes, (size_t)row_bytes);
    }
    return EL_OK;
}
