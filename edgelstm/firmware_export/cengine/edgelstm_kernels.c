/* edgelstm C engine kernels (see edgelstm_kernels.h). Portable C99; optional Cortex-M DSP path. */
#include "edgelstm_kernels.h"

#include <math.h>
#include <string.h>

#if EL_USE_DSP
#include <arm_acle.h>
#endif
#if EL_USE_MVE
#include <arm_mve.h>
#endif

/* ---- TFLite fixed-point helpers (gemmlowp rounding, as TFLite's reference kernels) ---------- */

/* The left shift, then the rounding doubling high multiply; *e gets the right shift still to
 * do. */
static int32_t el_srdhm_shifted(int32_t x, int32_t m, int32_t shift, int32_t *e)
{
    if (shift > 0) {
        x = (int32_t)((uint32_t)x << shift);
        *e = 0;
    } else {
        *e = -shift;
    }
    return (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
}

/* MultiplyByQuantizedMultiplier (TFLite, double rounding), rewritten for speed, same results:
 * - SaturatingRoundingDoublingHighMul(a, m) truncates (a*m + nudge) / 2^31 toward zero, with
 *   nudge = 2^30 for a*m >= 0 and 1 - 2^30 otherwise; both cases equal floor((a*m + 2^30) / 2^31).
 *   Its saturating case needs a == m == INT32_MIN, impossible since multipliers are >= 0.
 * - RoundingDivideByPOT(s, e) rounds half away from zero: (s + 2^(e-1) - (s < 0)) >> e, done
 *   unsigned for s >= 0 so that s near INT32_MAX cannot overflow. */
static int32_t el_mbqm(int32_t x, int32_t m, int32_t shift)
{
    int32_t e;
    const int32_t s = el_srdhm_shifted(x, m, shift, &e);
    uint32_t t;
    if (e == 0) {
        return s;
    }
    t = (uint32_t)s + (1u << (e - 1));
    return s >= 0 ? (int32_t)(t >> e) : (int32_t)(t - 1u) >> e;
}

static int8_t el_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* ---- 32-bit fixed-point primitives (one instruction each on a core with the DSP extension) -- */

/* floor((a * b + 2^31) / 2^32): SMMULR. With a = 2x (|x| < 2^30) and b >= 0 this is TFLite's
 * SaturatingRoundingDoublingHighMul(x, b) = floor((x*b + 2^30) / 2^31) (see el_mbqm). */
static inline int32_t el_smmulr(int32_t a, int32_t b)
{
#if EL_USE_DSP
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* floor(a * b / 2^32): SMMUL (LiteRT's single-rounding FC, see EL_FC_SINGLE_ROUND) */
static inline int32_t el_smmul(int32_t a, int32_t b)
{
#if EL_USE_DSP
    int32_t r;
    __asm__("smmul %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b) >> 32);
#endif
}

/* LiteRT BUILTIN_REF's int8 FULLY_CONNECTED requantization: one rounding,
 * (a * m + 2^(30 - shift)) >> (31 - shift), halves up (shift in -31..30). */
static int32_t el_requant_single(int32_t a, int32_t m, int32_t shift)
{
    const int ts = 31 - shift;
    return (int32_t)(((int64_t)a * m + ((int64_t)1 << (ts - 1))) >> ts);
}

/* saturate to int8: SSAT #8 */
static inline int32_t el_sat8(int32_t v)
{
#if EL_USE_DSP
    return __ssat(v, 8);
#else
    return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
}

/* Rounding right shift by e = e1 + 1 >= 1 with ties away from zero (gemmlowp
 * RoundingDivideByPOT, which every int8 op of TFLite's reference kernels uses, FULLY_CONNECTED
 * included), written as floor((floor((s - (s < 0)) / 2^e1) + 1) / 2) = floor((s - (s < 0) +
 * 2^(e-1)) / 2^e) (nested floors of integer divisions). The caller adds k = 1 + 2 * zero_point
 * before the last halving, so `(t + k) >> 1` is the rounded value plus the zero point in one
 * step. (LiteRT's default x86 FULLY_CONNECTED requantizes through ruy, ties up: t = s >> e1.) */
static inline int32_t el_tie_away(int32_t s, int32_t e1)
{
    return (s + (s >> 31)) >> e1;
}

/* ---- int8 fully connected ------------------------------------------------------------------ */

/* 4 columns x 4 rows (two row pairs): one LDRD of 4 int16 inputs, one LDM of 4 weight words,
 * per row pair SMLAD on the raw word (dot_a + 128 sum(x) + 256 dot_b) and UXTB16 + SMLAD
 * (dot_a + 128 sum(x)). */
#define EL_FC_4X4 \
    "ldrd r8, r9, [r0], #8\n\t" \
    "ldm r1!, {r10, r11, r12, lr}\n\t" \
    "smlad r5, r10, r8, r5\n\t" \
    "uxtb16 r10, r10\n\t" \
    "smlad r4, r10, r8, r4\n\t" \
    "smlad r5, r11, r9, r5\n\t" \
    "uxtb16 r11, r11\n\t" \
    "smlad r4, r11, r9, r4\n\t" \
    "smlad r7, r12, r8, r7\n\t" \
    "uxtb16 r12, r12\n\t" \
    "smlad r6, r12, r8, r6\n\t" \
    "smlad r7, lr, r9, r7\n\t" \
    "uxtb16 lr, lr\n\t" \
    "smlad r6, lr, r9, r6\n\t"

#if EL_USE_DSP
/* Paired-row dot products, 4 rows (two pairs) x 8 columns per iteration, 30 instructions for 32
 * MACs. Each weight word holds two columns of a row pair as halfwords h = u + 256 * w_b, where
 * u = w_a + 128 (unsigned byte) and w_b is the second row's signed byte. One SMLAD of the raw
 * word accumulates sum(h * x) = sum(u * x) + 256 * dot_b into H; UXTB16 + SMLAD accumulate
 * sum(u * x) into L. The caller seeds L with bias_a - 128 * sum(x) and H with L + 256 * bias_b,
 * so L = dot_a + bias_a and (H - L) / 256 = dot_b + bias_b (exact: H wraps modulo 2^32 but the
 * difference fits, the generator checks |dot_b + bias_b| < 2^23).
 * acc = {L0, H0, L1, H1} (EL_FC_4X4's registers r4-r7); `iters` = cols_pad / 8 >= 1. AAPCS: r0 xs, r1 w, r2 iters, r3 acc. */
/* naked: the body is all assembly, the arguments arrive in r0-r3 (hence no C uses of them) */
__attribute__((naked, noipa)) static void el_fc_pairs_dsp(const int16_t *xs, const int8_t *w,
                                                             int iters, int32_t *acc)
{
    (void)xs;
    (void)w;
    (void)iters;
    (void)acc;
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "ldm r3, {r4-r7}\n"
        "1:\n\t"
        EL_FC_4X4 EL_FC_4X4
        "subs r2, r2, #1\n\t"
        "bne 1b\n\t"
        "stm r3, {r4-r7}\n\t"
        "pop {r4-r11, pc}\n");
}
#endif

/* The same sums in portable C, straight from the paired layout (any size, no wrap-around).
 * Rows a get sum(u * x) with u = w_a + 128: the caller adds ksum = -128 * sum(x). */
static void el_fc_pairs_c(const int16_t *xs, const int8_t *w, int cols_pad, int32_t ksum,
                          int32_t *acc)
{
    const uint8_t *wp = (const uint8_t *)w;
    int32_t a0 = ksum, b0 = 0, a1 = ksum, b1 = 0;
    int c;
    for (c = 0; c < cols_pad; c += 4, wp += 16) {
        /* words: pair 0 columns c, c+1 | pair 0 c+2, c+3 | pair 1 c, c+1 | pair 1 c+2, c+3 */
        const int32_t x0 = xs[c], x1 = xs[c + 1], x2 = xs[c + 2], x3 = xs[c + 3];
        a0 += wp[0] * x0 + wp[2] * x1 + wp[4] * x2 + wp[6] * x3;
        b0 += (int8_t)wp[1] * x0 + (int8_t)wp[3] * x1 + (int8_t)wp[5] * x2 + (int8_t)wp[7] * x3;
        a1 += wp[8] * x0 + wp[10] * x1 + wp[12] * x2 + wp[14] * x3;
        b1 += (int8_t)wp[9] * x0 + (int8_t)wp[11] * x1 + (int8_t)wp[13] * x2 + (int8_t)wp[15] * x3;
    }
    acc[0] += a0;
    acc[1] += b0;
    acc[2] += a1;
    acc[3] += b1;
}

void el_fc_s8(const int8_t *x, int cols, int cols_pad, const int8_t *w, const int32_t *bias,
              int rows, const int32_t *mult, const int8_t *shift, int32_t out_zp,
              int32_t act_min, int32_t act_max, int flags, int16_t *xs, int8_t *y)
{
    int i, rb, r;
    int32_t sum = 0;
    const int32_t k = 1 + 2 * out_zp;
    /* expand x to int16 once per call (and sum it for the paired layout's offset); the padding
     * columns have zero weights */
    for (i = 0; i < cols; ++i) {
        xs[i] = x[i];
        sum += x[i];
    }
    for (; i < cols_pad; ++i) {
        xs[i] = 0;
    }
    (void)sum;
    for (rb = 0; rb < rows; rb += 4) {
        const int8_t *wp = w + (long)rb * cols_pad;
        const int nr = rows - rb < 4 ? rows - rb : 4;
        int32_t acc[4];
#if EL_USE_DSP
        if (flags & EL_FC_PAIRED_DSP) {
            int32_t h[4];
            h[0] = bias[rb] - 128 * sum;
            h[1] = h[0] + (int32_t)((uint32_t)bias[rb + 1] << 8);
            h[2] = bias[rb + 2] - 128 * sum;
            h[3] = h[2] + (int32_t)((uint32_t)bias[rb + 3] << 8);
            el_fc_pairs_dsp(xs, wp, cols_pad / 8, h);
            acc[0] = h[0];
            acc[1] = (int32_t)((uint32_t)h[1] - (uint32_t)h[0]) >> 8;
            acc[2] = h[2];
            acc[3] = (int32_t)((uint32_t)h[3] - (uint32_t)h[2]) >> 8;
        } else
#endif
        {
            acc[0] = bias[rb];
            acc[1] = bias[rb + 1];
            acc[2] = bias[rb + 2];
            acc[3] = bias[rb + 3];
            el_fc_pairs_c(xs, wp, cols_pad, -128 * sum, acc);
        }
        if ((flags & EL_FC_FAST_RQ) && (flags & EL_FC_SINGLE_ROUND)) {
            /* floor(acc m / 2^31) >> (e - 1), then the halving adds the single rounding bit */
            for (r = 0; r < nr; ++r) {
                const int32_t s = el_smmul(acc[r] * 2, mult[rb + r]);
                y[rb + r] = (int8_t)el_sat8(((s >> shift[rb + r]) + k) >> 1);
            }
        } else if (flags & EL_FC_FAST_RQ) {
            /* every shift <= -1, |acc| < 2^30, no fused clamp (checked by the generator, which
             * then stores e - 1 in `shift`): SMMULR, a shift, the zero point and SSAT */
            for (r = 0; r < nr; ++r) {
                const int32_t s = el_smmulr(acc[r] * 2, mult[rb + r]);
                y[rb + r] = (int8_t)el_sat8((el_tie_away(s, shift[rb + r]) + k) >> 1);
            }
        } else if (flags & EL_FC_SINGLE_ROUND) {
            for (r = 0; r < nr; ++r) {
                const int32_t v = el_requant_single(acc[r], mult[rb + r], shift[rb + r]) + out_zp;
                y[rb + r] = el_clamp8(v, act_min, act_max);
            }
        } else {
            for (r = 0; r < nr; ++r) {
                const int32_t v = el_mbqm(acc[r], mult[rb + r], shift[rb + r]) + out_zp;
                y[rb + r] = el_clamp8(v, act_min, act_max);
            }
        }
    }
}

/* el_fc_s8_fast: one stream per 4-row block = bias[4] (int32), paired weights (4 * cols_pad
 * bytes), mult[4] (int32), e1[4] (int8, e - 1), so one pointer walks the whole layer. */
#define EL_FC_PRM_BYTES 36

#if EL_USE_DSP
typedef struct {
    const int16_t *xs;
    int32_t passes; /* 16-column passes << 1, | 1 when cols_pad / 8 is odd (enter half way) */
    int32_t ksum;   /* -128 * sum(x): the offset of the unsigned first-row bytes */
    int32_t k;      /* 1 + 2 * out_zp */
    int8_t *y;
    int8_t *y_end;  /* y + 4 * blocks */
} el_fc_ctx_t;

/* Whole 4-row blocks of el_fc_s8_fast in one loop (r0 stream, r1 ctx). Per block: seed
 * L = bias_a - 128 sum(x), H = L + 256 bias_b; the MAC loop of el_fc_pairs_dsp (16 columns per
 * pass, 4 columns per LDRD + LDM; entered half way when cols_pad / 8 is odd); then per row SMMULR(2 acc, mult),
 * minus 1 if negative (ties away from zero, see el_tie_away), ASR by e - 1 (the low byte of the
 * packed e1 word), + k, SSAT #8 with ASR #1, STRB. Row b's doubled
 * accumulator is (H - L) >> 7: H - L is an exact multiple of 256. */
/* ctx->xs and ctx->passes into r0, r2: one LDRD in Thumb-2; ARM-mode LDRD needs an even,
 * consecutive register pair, so two LDRs there (32-bit ARM Linux builds default to -marm) */
#if defined(__thumb2__)
#define EL_LD_XS_PASSES "ldrd r0, r2, [r3]\n\t"
#else
#define EL_LD_XS_PASSES "ldr r0, [r3]\n\t" "ldr r2, [r3, #4]\n\t"
#endif

/* the requantization of 4 rows: TFLite Micro's (SMMULR, then ties away from zero) and LiteRT
 * BUILTIN_REF's single rounding (SMMUL: the halving after the shift adds the rounding bit) */
#define EL_RQ_DOUBLE \
    "smmulr r4, r4, r8\n\t" \
    "smmulr r5, r5, r9\n\t" \
    "smmulr r6, r6, r10\n\t" \
    "smmulr r7, r7, r11\n\t" \
    "add r4, r4, r4, asr #31\n\t" \
    "add r5, r5, r5, asr #31\n\t" \
    "add r6, r6, r6, asr #31\n\t" \
    "add r7, r7, r7, asr #31\n\t"
#define EL_RQ_SINGLE \
    "smmul r4, r4, r8\n\t" \
    "smmul r5, r5, r9\n\t" \
    "smmul r6, r6, r10\n\t" \
    "smmul r7, r7, r11\n\t"

#define EL_FC_BLOCKS_ASM(RQ) \
        "push {r4-r11, lr}\n\t" \
        "mov r3, r1\n\t" \
        "mov r1, r0\n" \
        "1:\n\t" \
        "ldm r1!, {r4-r7}\n\t" \
        "ldr r8, [r3, #8]\n\t" \
        "add r4, r4, r8\n\t" \
        "add r5, r4, r5, lsl #8\n\t" \
        "add r6, r6, r8\n\t" \
        "add r7, r6, r7, lsl #8\n\t" \
        EL_LD_XS_PASSES \
        "lsrs r2, r2, #1\n\t" \
        "bcs 3f\n" \
        "2:\n\t" \
        EL_FC_4X4 EL_FC_4X4 \
        "3:\n\t" \
        EL_FC_4X4 EL_FC_4X4 \
        "subs r2, r2, #1\n\t" \
        "bne 2b\n\t" \
        "ldm r1!, {r8-r11}\n\t" \
        "ldr lr, [r1], #4\n\t" \
        "sub r5, r5, r4\n\t" \
        "sub r7, r7, r6\n\t" \
        "lsl r4, r4, #1\n\t" \
        "asr r5, r5, #7\n\t" \
        "lsl r6, r6, #1\n\t" \
        "asr r7, r7, #7\n\t" \
        RQ \
        "asr r4, r4, lr\n\t" \
        "lsr lr, lr, #8\n\t" \
        "asr r5, r5, lr\n\t" \
        "lsr lr, lr, #8\n\t" \
        "asr r6, r6, lr\n\t" \
        "lsr lr, lr, #8\n\t" \
        "asr r7, r7, lr\n\t" \
        "ldrd r8, r9, [r3, #12]\n\t" \
        "add r4, r4, r8\n\t" \
        "add r5, r5, r8\n\t" \
        "add r6, r6, r8\n\t" \
        "add r7, r7, r8\n\t" \
        "ssat r4, #8, r4, asr #1\n\t" \
        "ssat r5, #8, r5, asr #1\n\t" \
        "ssat r6, #8, r6, asr #1\n\t" \
        "ssat r7, #8, r7, asr #1\n\t" \
        "strb r4, [r9], #1\n\t" \
        "strb r5, [r9], #1\n\t" \
        "strb r6, [r9], #1\n\t" \
        "strb r7, [r9], #1\n\t" \
        "str r9, [r3, #16]\n\t" \
        "ldr r8, [r3, #20]\n\t" \
        "cmp r9, r8\n\t" \
        "bne 1b\n\t" \
        "pop {r4-r11, pc}\n"

__attribute__((naked, noipa)) static void el_fc_blocks_dsp(const int8_t *stream,
                                                           el_fc_ctx_t *ctx)
{
    (void)stream;
    (void)ctx;
    __asm__ volatile(EL_FC_BLOCKS_ASM(EL_RQ_DOUBLE));
}

__attribute__((naked, noipa)) static void el_fc_blocks_dsp_sr(const int8_t *stream,
                                                              el_fc_ctx_t *ctx)
{
    (void)stream;
    (void)ctx;
    __asm__ volatile(EL_FC_BLOCKS_ASM(EL_RQ_SINGLE));
}

static int32_t el_fc_passes(int cols_pad)
{
    const int32_t n8 = cols_pad / 8;
    return (((n8 + 1) >> 1) << 1) | (n8 & 1);
}
#endif

#if !EL_USE_MVE || !EL_USE_DSP
/* a little-endian int32 from an unaligned stream (every target is little-endian; memcpy is
 * one LDR where the core allows unaligned loads) */
static int32_t el_rd32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* y for up to 4 rows from 32-bit accumulators, the stream's tail = mult[4], e1[4] */
static void el_rq4(const int32_t *acc, const int8_t *tail, int32_t k, int8_t *y, int nr,
                   int single)
{
    int r;
    if (single) {
        for (r = 0; r < nr; ++r) {
            const int32_t v = el_smmul(acc[r] * 2, el_rd32(tail + 4 * r));
            y[r] = (int8_t)el_sat8(((v >> tail[16 + r]) + k) >> 1);
        }
        return;
    }
    for (r = 0; r < nr; ++r) {
        const int32_t v = el_smmulr(acc[r] * 2, el_rd32(tail + 4 * r));
        y[r] = (int8_t)el_sat8((el_tie_away(v, tail[16 + r]) + k) >> 1);
    }
}

#endif

#if EL_USE_MVE
/* el_fc_s8_rows on Helium, in assembly: r0 = the stream, r1 = {x, n16, y, y_end, zp, half,
 * xx}; the 16-byte "x x" copy of a last 8-column tile in q5 (P0 = lanes 0-7: VPSTEET gives the
 * first half of each 16-byte load of two rows' 8 weights to one row, the second to the next;
 * P0 flips at each then/else change, so an even number of changes leaves it as it was);
 * accumulators r6, r8, r10, r12 (VMLADAVA wants even registers), one VMLADAVA per row and 16
 * columns. The 4 rows' requantization as one vector: VQRDMULH(acc, m) is TFLite's
 * SaturatingRoundingDoublingHighMul (= SMMULR(2 acc, m)), VQDMULH the truncating product of the
 * single rounding (= SMMUL(2 acc, m)); then, with s' = s - (s < 0) for the ties away from zero
 * (double rounding only), floor((floor(s' / 2^(e-1)) + 1) / 2) = floor((s' + 2^(e-1)) / 2^e)
 * is one VRSHL by the stream's -e; + zp; VQSHL #24 and VSHR #24 saturate to int8. */
#define EL_MVE_RQ_DOUBLE \
    "vqrdmulh.s32 q0, q0, q1\n\t" \
    "vshr.s32 q1, q0, #31\n\t" \
    "vadd.i32 q0, q0, q1\n\t"
#define EL_MVE_RQ_SINGLE "vqdmulh.s32 q0, q0, q1\n\t"
/* after the MACs (the accumulators start at the bias, one LDM: the stream is word-aligned, as
 * the generator's constants are): the 4 accumulators through the stack into q0 (STM + VLDRW; the
 * two-lane VMOV from two registers, `vmov q0[2], q0[0], rA, rB`, came out with its lanes the
 * other way round under qemu 7.2 with binutils 2.40 than the syntax reads, so it is avoided),
 * requantize, store 4 bytes */
#define EL_MVE_RQ_STORE(RQ) \
    "vldrb.u8 q1, [r0], #16\n\t" \
    "vldrb.s32 q2, [r0], #4\n\t" \
    "stm sp, {r6, r8, r10, r12}\n\t" \
    "vldrw.u32 q0, [sp]\n\t" \
    RQ \
    "vrshl.s32 q0, q0, q2\n\t" \
    "vadd.i32 q0, q0, r5\n\t" \
    "vqshl.s32 q0, q0, #24\n\t" \
    "vshr.s32 q0, q0, #24\n\t" \
    "vstrb.32 q0, [r3], #4\n\t"
/* one 16-column tile from x in register X: per row one weight load and VMLADAV(A) */
#define EL_MVE_TILE(X, A) \
    "vldrb.8 q1, [r0], #16\n\t" \
    "vmladav" A ".s8 r6, " X ", q1\n\t" \
    "vldrb.8 q2, [r0], #16\n\t" \
    "vmladav" A ".s8 r8, " X ", q2\n\t" \
    "vldrb.8 q1, [r0], #16\n\t" \
    "vmladav" A ".s8 r10, " X ", q1\n\t" \
    "vldrb.8 q2, [r0], #16\n\t" \
    "vmladav" A ".s8 r12, " X ", q2\n\t"
/* a last 8-column tile (x x in q5, P0 = lanes 0-7) */
#define EL_MVE_HALF(A) \
    "vldrb.8 q1, [r0], #16\n\t" \
    "vldrb.8 q2, [r0], #16\n\t" \
    "vpsteet\n\t" \
    "vmladav" A "t.s8 r6, q5, q1\n\t" \
    "vmladav" A "e.s8 r8, q5, q1\n\t" \
    "vmladav" A "e.s8 r12, q5, q2\n\t" \
    "vmladav" A "t.s8 r10, q5, q2\n\t"
#define EL_MVE_PROLOGUE \
    "push {r4-r11, lr}\n\t" \
    "vpush {d8-d15}\n\t" \
    "sub sp, sp, #16\n\t" \
    "ldm r1, {r1-r5, r7, r9}\n\t" \
    "movs r11, #255\n\t" \
    "vmsr p0, r11\n\t" \
    "vldrb.8 q5, [r9]\n\t"
#define EL_MVE_EPILOGUE \
    "add sp, sp, #16\n\t" \
    "vpop {d8-d15}\n\t" \
    "pop {r4-r11, pc}\n"

/* any width: a loop over the 16-column tiles, x reloaded per tile */
#define EL_FC_MVE_ANY(RQ) \
    EL_MVE_PROLOGUE \
    "1:\n\t" \
    "ldm r0!, {r6, r8, r10, r12}\n\t" \
    "mov r9, r1\n\t" \
    "wls lr, r2, 3f\n" \
    "2:\n\t" \
    "vldrb.8 q4, [r9], #16\n\t" \
    EL_MVE_TILE("q4", "a") \
    "le lr, 2b\n" \
    "3:\n\t" \
    "cbz r7, 4f\n\t" \
    EL_MVE_HALF("a") \
    "4:\n\t" \
    EL_MVE_RQ_STORE(RQ) \
    "cmp r3, r4\n\t" \
    "bne 1b\n\t" \
    EL_MVE_EPILOGUE

/* 64 columns: x in q4-q7 for the whole layer, no inner loop */
#define EL_FC_MVE_64(RQ) \
    EL_MVE_PROLOGUE \
    "vldrb.8 q4, [r1]\n\t" \
    "vldrb.8 q5, [r1, #16]\n\t" \
    "vldrb.8 q6, [r1, #32]\n\t" \
    "vldrb.8 q7, [r1, #48]\n\t" \
    "subs lr, r4, r3\n\t" \
    "lsrs lr, lr, #2\n\t" \
    "dls lr, lr\n" \
    "1:\n\t" \
    "ldm r0!, {r6, r8, r10, r12}\n\t" \
    EL_MVE_TILE("q4", "a") \
    EL_MVE_TILE("q5", "a") \
    EL_MVE_TILE("q6", "a") \
    EL_MVE_TILE("q7", "a") \
    EL_MVE_RQ_STORE(RQ) \
    "le lr, 1b\n\t" \
    EL_MVE_EPILOGUE

/* 8 columns: one half tile */
#define EL_FC_MVE_8(RQ) \
    EL_MVE_PROLOGUE \
    "subs lr, r4, r3\n\t" \
    "lsrs lr, lr, #2\n\t" \
    "dls lr, lr\n" \
    "1:\n\t" \
    "ldm r0!, {r6, r8, r10, r12}\n\t" \
    EL_MVE_HALF("a") \
    EL_MVE_RQ_STORE(RQ) \
    "le lr, 1b\n\t" \
    EL_MVE_EPILOGUE

typedef struct {
    const int8_t *x; /* padded to the tiles */
    int32_t n16;
    int8_t *y, *y_end; /* whole 4-row blocks */
    int32_t zp, half;
    const int8_t *xx; /* 16 bytes: the last 8-column tile twice */
} el_fc_mve_ctx_t;

typedef void (*el_fc_mve_fn)(const int8_t *, const el_fc_mve_ctx_t *);

#define EL_FC_MVE_FN(NAME, BODY) \
    __attribute__((naked, noipa)) static void NAME(const int8_t *s, const el_fc_mve_ctx_t *c) \
    { \
        (void)s; \
        (void)c; \
        __asm__ volatile(BODY); \
    }
EL_FC_MVE_FN(el_fc_mve_any_dr, EL_FC_MVE_ANY(EL_MVE_RQ_DOUBLE))
EL_FC_MVE_FN(el_fc_mve_any_sr, EL_FC_MVE_ANY(EL_MVE_RQ_SINGLE))
EL_FC_MVE_FN(el_fc_mve_64_dr, EL_FC_MVE_64(EL_MVE_RQ_DOUBLE))
EL_FC_MVE_FN(el_fc_mve_64_sr, EL_FC_MVE_64(EL_MVE_RQ_SINGLE))
EL_FC_MVE_FN(el_fc_mve_8_dr, EL_FC_MVE_8(EL_MVE_RQ_DOUBLE))
EL_FC_MVE_FN(el_fc_mve_8_sr, EL_FC_MVE_8(EL_MVE_RQ_SINGLE))
#endif

#if EL_USE_MVE
/* el_fc_s8_rows on Helium with one of the assembly loops (fn) */
static void el_fc_rows_mve(const int8_t *x, int cols, int cols_pad, const int8_t *stream,
                           int rows, int32_t out_zp, int16_t *xs, int8_t *y, el_fc_mve_fn fn)
{
    /* scratch: 16 bytes "x x" (the last 8-column tile twice), then x padded with zeros to
     * cols_pad (the padding weights are 0) */
    int8_t *xb = (int8_t *)xs;
    const int n16 = cols_pad >> 4, half = cols_pad & 8, full = rows / 4;
    el_fc_mve_ctx_t ctx;
    int8_t q[4];
    if (cols != cols_pad || half) {
        memcpy(xb + 16, x, (size_t)cols);
        memset(xb + 16 + cols, 0, (size_t)(cols_pad - cols));
        x = xb + 16;
        if (half) {
            memcpy(xb, x + 16 * n16, 8);
            memcpy(xb + 8, x + 16 * n16, 8);
        }
    }
    ctx.x = x;
    ctx.n16 = n16;
    ctx.zp = out_zp;
    ctx.half = half;
    ctx.xx = xb;
    if (full > 0) {
        ctx.y = y;
        ctx.y_end = y + 4 * full;
        fn(stream, &ctx);
        stream += (long)full * (36 + 4L * cols_pad);
    }
    if (rows % 4) { /* the last, partial block: into a 4-byte buffer */
        int i;
        ctx.y = q;
        ctx.y_end = q + 4;
        fn(stream, &ctx);
        for (i = 0; i < rows % 4; ++i) {
            y[4 * full + i] = q[i];
        }
    }
}

/* the loop for a width: 64 columns, 8, or any */
static el_fc_mve_fn el_fc_mve_pick(int cols_pad, int single)
{
    if (cols_pad == 64) {
        return single ? el_fc_mve_64_sr : el_fc_mve_64_dr;
    }
    if (cols_pad == 8) {
        return single ? el_fc_mve_8_sr : el_fc_mve_8_dr;
    }
    return single ? el_fc_mve_any_sr : el_fc_mve_any_dr;
}
#else
static void el_fc_rows_c(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                         int32_t out_zp, int16_t *xs, int8_t *y, int single)
{
    int8_t *xb = (int8_t *)xs; /* x padded with zeros to cols_pad (the padding weights are 0) */
    const int32_t k = 1 + 2 * out_zp;
    int rb, r;
    memcpy(xb, x, (size_t)cols);
    memset(xb + cols, 0, (size_t)(cols_pad - cols));
    for (rb = 0; rb < rows; rb += 4, y += 4) {
        const int8_t *w = stream + 16;
        const int nr = rows - rb < 4 ? rows - rb : 4;
        int32_t acc[4];
        int8_t tail[20];
        int c;
        for (r = 0; r < 4; ++r) {
            acc[r] = el_rd32(stream + 4 * r);
        }
        for (c = 0; c < cols_pad; c += 16) {
            const int n = cols_pad - c < 16 ? cols_pad - c : 16; /* the last tile may be 8 wide */
            int j;
            for (r = 0; r < 4; ++r) {
                int32_t a = 0;
                for (j = 0; j < n; ++j) {
                    a += w[n * r + j] * xb[c + j];
                }
                acc[r] += a;
            }
            w += 4 * n;
        }
        memcpy(tail, w, 16);
        for (r = 0; r < 4; ++r) {
            tail[16 + r] = (int8_t)(-w[16 + r] - 1); /* the stream holds -e */
        }
        el_rq4(acc, tail, k, y, nr, single);
        stream = w + 20;
    }
}
#endif

/* One entry per rounding and per width class (the header's el_fc_s8_rows picks one from
 * constant arguments), so that a link keeps only the loops it calls. */
#if EL_USE_MVE
#define EL_FC_ROWS_ENTRY(NAME, SINGLE, PICK) \
    void NAME(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows, \
              int32_t out_zp, int16_t *xs, int8_t *y) \
    { \
        el_fc_rows_mve(x, cols, cols_pad, stream, rows, out_zp, xs, y, PICK); \
    }
#else
#define EL_FC_ROWS_ENTRY(NAME, SINGLE, PICK) \
    void NAME(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows, \
              int32_t out_zp, int16_t *xs, int8_t *y) \
    { \
        el_fc_rows_c(x, cols, cols_pad, stream, rows, out_zp, xs, y, SINGLE); \
    }
#endif
EL_FC_ROWS_ENTRY(el_fc_s8_rows_dr, 0, el_fc_mve_pick(cols_pad, 0))
EL_FC_ROWS_ENTRY(el_fc_s8_rows_sr, 1, el_fc_mve_pick(cols_pad, 1))
EL_FC_ROWS_ENTRY(el_fc_s8_rows_dr64, 0, el_fc_mve_64_dr)
EL_FC_ROWS_ENTRY(el_fc_s8_rows_sr64, 1, el_fc_mve_64_sr)
EL_FC_ROWS_ENTRY(el_fc_s8_rows_dr8, 0, el_fc_mve_8_dr)
EL_FC_ROWS_ENTRY(el_fc_s8_rows_sr8, 1, el_fc_mve_8_sr)

#if !EL_USE_DSP

/* One 4-row block of the stream in portable C; returns the next block. */
static const int8_t *el_fc_block_c(const int16_t *xs, int cols_pad, const int8_t *s, int32_t k,
                                   int32_t ksum, int8_t *y, int nr, int single)
{
    int32_t acc[4];
    const int8_t *tail = s + 16 + 4L * cols_pad;
    int r;
    for (r = 0; r < 4; ++r) {
        acc[r] = el_rd32(s + 4 * r);
    }
    el_fc_pairs_c(xs, s + 16, cols_pad, ksum, acc);
    el_rq4(acc, tail, k, y, nr, single);
    return tail + 20;
}
#endif

/* Inlined into each entry point with a constant `single`, so a link that uses one rounding
 * drops the other's loop (-ffunction-sections --gc-sections). */
__attribute__((always_inline)) static inline void el_fc_s8_stream(
    const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows, int32_t out_zp,
    int16_t *xs, int8_t *y, int single)
{
    const int32_t k = 1 + 2 * out_zp;
    int32_t sum = 0;
    int i, full = rows / 4;
    /* expand x to int16 in the stream's column order: x0 x2 x1 x3 per group of 4 (what SXTB16
     * and SXTB16 ROR #8 give); sum it for the unsigned first-row bytes */
#if EL_USE_DSP
    for (i = 0; i + 4 <= cols; i += 4) {
        int32_t w, a, b;
        memcpy(&w, x + i, 4);
        a = __sxtb16(w);
        b = __sxtb16((int32_t)(((uint32_t)w >> 8) | ((uint32_t)w << 24)));
        sum = __smlad(a, 0x00010001, sum);
        sum = __smlad(b, 0x00010001, sum);
        memcpy(xs + i, &a, 4);
        memcpy(xs + i + 2, &b, 4);
    }
#else
    i = 0;
#endif
    for (; i < cols; ++i) {
        xs[(i & ~3) | ((i & 1) << 1) | ((i & 2) >> 1)] = x[i];
        sum += x[i];
    }
    for (; i < cols_pad; ++i) {
        xs[(i & ~3) | ((i & 1) << 1) | ((i & 2) >> 1)] = 0;
    }
#if EL_USE_DSP
    if (full > 0) {
        el_fc_ctx_t ctx;
        ctx.xs = xs;
        ctx.passes = el_fc_passes(cols_pad);
        ctx.ksum = -128 * sum;
        ctx.k = k;
        ctx.y = y;
        ctx.y_end = y + 4 * full;
        (single ? el_fc_blocks_dsp_sr : el_fc_blocks_dsp)(stream, &ctx);
        stream += (long)full * (EL_FC_PRM_BYTES + 4L * cols_pad);
        y += 4 * full;
    }
    if (rows % 4) { /* the last, partial block: into a 4-byte buffer */
        int8_t q[4];
        el_fc_ctx_t ctx;
        ctx.xs = xs;
        ctx.passes = el_fc_passes(cols_pad);
        ctx.ksum = -128 * sum;
        ctx.k = k;
        ctx.y = q;
        ctx.y_end = q + 4;
        (single ? el_fc_blocks_dsp_sr : el_fc_blocks_dsp)(stream, &ctx);
        for (i = 0; i < rows % 4; ++i) {
            y[i] = q[i];
        }
    }
#else
    (void)sum;
    for (i = 0; i < full; ++i, y += 4) {
        stream = el_fc_block_c(xs, cols_pad, stream, k, -128 * sum, y, 4, single);
    }
    if (rows % 4) {
        (void)el_fc_block_c(xs, cols_pad, stream, k, -128 * sum, y, rows % 4, single);
    }
#endif
}

void el_fc_s8_fast(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                   int32_t out_zp, int16_t *xs, int8_t *y)
{
    el_fc_s8_stream(x, cols, cols_pad, stream, rows, out_zp, xs, y, 0);
}

void el_fc_s8_fast_sr(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                      int32_t out_zp, int16_t *xs, int8_t *y)
{
    el_fc_s8_stream(x, cols, cols_pad, stream, rows, out_zp, xs, y, 1);
}

void el_fc_s8_small(const int8_t *x, int cols, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int8_t *e1, int rows, int32_t out_zp, int8_t *y,
                    int single)
{
    const int32_t k = 1 + 2 * out_zp;
    const int cp = (cols + 3) & ~3;
    int r, i;
    for (r = 0; r < rows; ++r, w += cp) {
        int32_t acc = bias[r], v;
        i = 0;
#if EL_USE_DSP
        for (; i + 4 <= cols; i += 4) { /* x0 x2 and x1 x3 against w0 w2 and w1 w3 */
            int32_t xv, wv;
            memcpy(&xv, x + i, 4);
            memcpy(&wv, w + i, 4);
            acc = __smlad(__sxtb16(xv), __sxtb16(wv), acc);
            xv = (int32_t)(((uint32_t)xv >> 8) | ((uint32_t)xv << 24));
            wv = (int32_t)(((uint32_t)wv >> 8) | ((uint32_t)wv << 24));
            acc = __smlad(__sxtb16(xv), __sxtb16(wv), acc);
        }
#endif
        for (; i < cols; ++i) {
            acc += (int32_t)x[i] * w[i];
        }
        if (single) {
            v = el_smmul(acc * 2, mult[r]);
            y[r] = (int8_t)el_sat8(((v >> e1[r]) + k) >> 1);
        } else {
            v = el_smmulr(acc * 2, mult[r]);
            y[r] = (int8_t)el_sat8((el_tie_away(v, e1[r]) + k) >> 1);
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

/* The fast forms below are the same integer formulas as el_addsub_s8 / el_mul_s8 (TFLite's
 * MultiplyByQuantizedMultiplier with gemmlowp rounding), one SMMULR each; the generator picks
 * them only when their preconditions hold (see the header). */
#if EL_USE_MVE
/* el_add_s8_fast's formula on 4 lanes: SMMULR(2a, m) is VQRDMULH(a, m), so the pre-doubled
 * operands are halved (c2 = 2 o2 << 20 is even); result clamped to int8, in int32 lanes */
static inline int32x4_t el_add_fast_v(const el_add_fast_t *p, const int8_t *x1, const int8_t *x2)
{
    const int32x4_t sa = vaddq_n_s32(vshlq_n_s32(vldrbq_s32(x1), 19), p->c1);
    int32x4_t t = vaddq_n_s32(vshlq_n_s32(vldrbq_s32(x2), 20), p->c2 >> 1);
    int32x4_t v;
    t = vqrdmulhq_n_s32(t, p->m2);
    t = vshlq_r_s32(vaddq_s32(t, vshrq_n_s32(t, 31)), -p->e2);
    t = vshrq_n_s32(vaddq_n_s32(t, 1), 1);
    v = p->sign > 0 ? vaddq_s32(sa, t) : vsubq_s32(sa, t);
    v = vqrdmulhq_n_s32(v, p->mo);
    v = vshlq_r_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -p->eo);
    v = vshrq_n_s32(vaddq_n_s32(v, p->k), 1);
    return vminq_s32(vmaxq_s32(v, vdupq_n_s32(-128)), vdupq_n_s32(127));
}
#endif

void el_add_s8_fast(const el_add_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                    int step2, int8_t *y, int n)
{
    const int32_t c1 = p->c1, c2 = p->c2, m2 = p->m2, e2 = p->e2, sign = p->sign, mo = p->mo;
    /* e_out - 1 in the low byte (a shift by register reads only that byte), k above it */
    const int32_t keo = (int32_t)((uint32_t)p->k << 8) | p->eo;
    int i;
    if (step1 == 1 && step2 == 1) {
        i = 0;
#if EL_USE_MVE
        for (; i + 4 <= n; i += 4) {
            vstrbq_s32(y + i, el_add_fast_v(p, x1 + i, x2 + i));
        }
#endif
        for (; i < n; ++i) {
            /* in1: exactly (o1 + x1) << 19; in2: MBQM((o2 + x2) << 20, m2, -(e2 + 1)) */
            const int32_t sa = c1 + (int32_t)((uint32_t)x1[i] << 19);
            const int32_t t = el_tie_away(el_smmulr(c2 + (int32_t)((uint32_t)x2[i] << 21), m2), e2);
            const int32_t raw = sa + sign * ((t + 1) >> 1);
            const int32_t s = el_smmulr(raw * 2, mo);
            y[i] = (int8_t)el_sat8((el_tie_away(s, keo & 255) + (keo >> 8)) >> 1);
        }
        return;
    }
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        const int32_t sa = c1 + (int32_t)((uint32_t)*x1 << 19);
        const int32_t t = el_tie_away(el_smmulr(c2 + (int32_t)((uint32_t)*x2 << 21), m2), e2);
        const int32_t raw = sa + sign * ((t + 1) >> 1);
        const int32_t s = el_smmulr(raw * 2, mo);
        y[i] = (int8_t)el_sat8((el_tie_away(s, keo & 255) + (keo >> 8)) >> 1);
    }
}

void el_add_s8_fast_lut(const el_add_fast_t *p, const int8_t *x1, const int8_t *x2, int8_t *y,
                        int seg, int nseg, const int8_t *const *luts)
{
    const int32_t c1 = p->c1, c2 = p->c2, m2 = p->m2, e2 = p->e2, sign = p->sign, mo = p->mo;
    const int32_t keo = (int32_t)((uint32_t)p->k << 8) | p->eo;
    int i, j;
    for (j = 0; j < nseg; ++j, x1 += seg, x2 += seg, y += seg) {
        const int8_t *lut = luts[j] + 128; /* centred tables: lut[v] for v in -128..127 */
        i = 0;
#if EL_USE_MVE
        for (; i + 4 <= seg; i += 4) { /* the table lookup as a byte gather */
            const int32x4_t v = vaddq_n_s32(el_add_fast_v(p, x1 + i, x2 + i), 128);
            vstrbq_s32(y + i, vldrbq_gather_offset_s32(luts[j], vreinterpretq_u32_s32(v)));
        }
#endif
        for (; i < seg; ++i) {
            const int32_t sa = c1 + (int32_t)((uint32_t)x1[i] << 19);
            const int32_t t = el_tie_away(el_smmulr(c2 + (int32_t)((uint32_t)x2[i] << 21), m2), e2);
            const int32_t raw = sa + sign * ((t + 1) >> 1);
            const int32_t s = el_smmulr(raw * 2, mo);
            y[i] = lut[el_sat8((el_tie_away(s, keo & 255) + (keo >> 8)) >> 1)];
        }
    }
}

void el_mul_s8_fast(const el_mul_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                    int step2, int8_t *y, int n)
{
    const int32_t c1 = p->c1, c2 = p->c2, mo = p->mo, eo = p->eo, k = p->k;
    int i;
    if (step1 == 1 && step2 == 1) {
        i = 0;
#if EL_USE_MVE
        for (; i + 4 <= n; i += 4) { /* VQRDMULH(prod, m) = SMMULR(2 prod, m); c1 is even */
            int32x4_t v = vmulq_s32(vaddq_n_s32(vldrbq_s32(x1 + i), c1 >> 1),
                                    vaddq_n_s32(vldrbq_s32(x2 + i), c2));
            v = vqrdmulhq_n_s32(v, mo);
            v = vshlq_r_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -eo);
            v = vshrq_n_s32(vaddq_n_s32(v, k), 1);
            vstrbq_s32(y + i, vminq_s32(vmaxq_s32(v, vdupq_n_s32(-128)), vdupq_n_s32(127)));
        }
#endif
        for (; i < n; ++i) {
            const int32_t prod2 = (c1 + 2 * x1[i]) * (c2 + x2[i]);
            y[i] = (int8_t)el_sat8((el_tie_away(el_smmulr(prod2, mo), eo) + k) >> 1);
        }
        return;
    }
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        /* 2 * (o1 + x1) * (o2 + x2): |product| <= 2^16, doubled for SMMULR */
        const int32_t prod2 = (c1 + 2 * *x1) * (c2 + *x2);
        y[i] = (int8_t)el_sat8((el_tie_away(el_smmulr(prod2, mo), eo) + k) >> 1);
    }
}

/* el_lstm_cell_s8 (see the header): the (e - 1, k) pair packed as keo = (k << 8) | (e - 1) */
static inline int32_t el_keo_round(int32_t s, int32_t keo)
{
    return el_sat8((el_tie_away(s, keo & 255) + (keo >> 8)) >> 1);
}

/* The DSP assembly loops on a DSP core without Helium (a Helium core runs the vector loops) */
#define EL_CELL_DSP (EL_USE_DSP && !EL_USE_MVE)

#if EL_CELL_DSP
/* The loop over units on a DSP core: r0 = the parameters, r1 = the walking pointers (a1, a2,
 * b1, b2, o, c_out, h, h_end). MUL A (the cell ADD's first input), MUL B, the cell ADD, STRB
 * c_out, the tanh table, MUL O, STRB h. Each MUL: (c1 + 2 a)(c2 + b), SMMULR, ties away, ASR by
 * the low byte of keo, + k (keo ASR #8), SSAT #8 ASR #1; parameters by LDRD. */
#define EL_CELL_MUL(X, B, OFF) \
    "ldrd r10, r11, [r0, #" #OFF "]\n\t" \
    "add " X ", r10, " X ", lsl #1\n\t" \
    "add " B ", " B ", r11\n\t" \
    "mul " X ", " X ", " B "\n\t" \
    "ldrd r10, r11, [r0, #(" #OFF " + 8)]\n\t" \
    "smmulr " X ", " X ", r10\n\t" \
    "add " X ", " X ", " X ", asr #31\n\t" \
    "asr " X ", " X ", r11\n\t" \
    "add " X ", " X ", r11, asr #8\n\t" \
    "ssat " X ", #8, " X ", asr #1\n\t"

__attribute__((naked, noipa)) static void el_cell_dsp(const el_lstm_cell_t *p,
                                                      const int8_t **walk)
{
    (void)p;
    (void)walk;
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "ldr lr, [r1, #28]\n\t"
        "ldm r1, {r1-r7}\n"
        "1:\n\t"
        "ldrsb r8, [r1], #1\n\t"
        "ldrsb r9, [r2], #1\n\t"
        EL_CELL_MUL("r8", "r9", 12)
        "ldrsb r9, [r3], #1\n\t"
        "ldrsb r12, [r4], #1\n\t"
        EL_CELL_MUL("r9", "r12", 28)
        "ldrd r10, r11, [r0, #60]\n\t"
        "add r8, r10, r8, lsl #19\n\t"
        "add r9, r11, r9, lsl #21\n\t"
        "ldrd r10, r11, [r0, #68]\n\t"
        "smmulr r9, r9, r10\n\t"
        "add r9, r9, r9, asr #31\n\t"
        "asr r9, r9, r11\n\t"
        "add r9, r9, #1\n\t"
        "add r8, r8, r9, asr #1\n\t"
        "lsl r8, r8, #1\n\t"
        "ldrd r10, r11, [r0, #76]\n\t"
        "smmulr r8, r8, r10\n\t"
        "add r8, r8, r8, asr #31\n\t"
        "asr r8, r8, r11\n\t"
        "add r8, r8, r11, asr #8\n\t"
        "ssat r8, #8, r8, asr #1\n\t"
        "strb r8, [r6], #1\n\t"
        "ldr r10, [r0, #120]\n\t"
        "ldrsb r12, [r10, r8]\n\t"
        "ldrsb r9, [r5], #1\n\t"
        EL_CELL_MUL("r9", "r12", 44)
        "strb r9, [r7], #1\n\t"
        "cmp r7, lr\n\t"
        "bne 1b\n\t"
        "pop {r4-r11, pc}\n");
}

/* The gate ADD and its tables on a DSP core: r0 x1, r1 x2, r2 gates, r3 = {r + 128, mo, keo,
 * a, b, n (even), the 4 segments' tables, 0}; two codes an iteration, 14 instructions a code. */
#define EL_GATE_CODE \
    "ldrsb r11, [r1], #1\n\t" \
    "ldrsb r12, [r4, r11]\n\t" \
    "mla r12, r11, r8, r12\n\t" \
    "ldrsb r11, [r0], #1\n\t" \
    "add r12, r12, r11, lsl #20\n\t" \
    "add r12, r12, r7\n\t" \
    "smmulr r12, r12, r5\n\t" \
    "add r12, r12, r12, asr #31\n\t" \
    "asr r12, r12, r6\n\t" \
    "add r12, r12, r6, asr #8\n\t" \
    "ssat r12, #8, r12, asr #1\n\t" \
    "ldrsb r12, [r9, r12]\n\t" \
    "strb r12, [r2], #1\n\t"

__attribute__((naked, noipa)) static void el_gates_dsp(const int8_t *x1, const int8_t *x2,
                                                       int8_t *gates, const int32_t *q)
{
    (void)x1;
    (void)x2;
    (void)gates;
    (void)q;
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "ldm r3!, {r4-r8, lr}\n"
        "2:\n\t"
        "ldr r9, [r3], #4\n\t"
        "cmp r9, #0\n\t"
        "beq 3f\n\t"
        "add r10, r2, lr\n"
        "1:\n\t"
        EL_GATE_CODE EL_GATE_CODE
        "cmp r2, r10\n\t"
        "bne 1b\n\t"
        "b 2b\n"
        "3:\n\t"
        "pop {r4-r11, pc}\n");
}
#endif

static inline int32_t el_cell_mul(const int32_t *m, int32_t a, int32_t b)
{
    return el_keo_round(el_smmulr((m[0] + 2 * a) * (m[1] + b), m[2]), m[3]);
}

#if EL_USE_MVE
/* el_keo_round on 4 lanes from s' = s - (s < 0) (ties away from zero): floor((floor(s' /
 * 2^(e-1)) + k) / 2) = floor((s' + 2^(e-1)) / 2^e) + zp, one VRSHL by -e, then + zp and the
 * int8 saturation (VQSHL #24, VSHR #24); ne = -e, zp = (k - 1) / 2 */
static inline int32x4_t el_keo_round_v(int32x4_t s, int32_t ne, int32_t zp)
{
    s = vaddq_s32(s, vshrq_n_s32(s, 31));
    s = vaddq_n_s32(vrshlq_n_s32(s, ne), zp);
    return vshrq_n_s32(vqshlq_n_s32(s, 24), 24);
}

/* el_cell_mul on 4 lanes: VQRDMULH(p, m) = SMMULR(2 p, m), so (c1 / 2 + a)(c2 + b) (c1 even);
 * h1 = c1 / 2, ne = -e, zp = (k - 1) / 2 */
static inline int32x4_t el_cell_mul_v(int32_t h1, int32_t c2, int32_t m, int32_t ne, int32_t zp,
                                      int32x4_t a, int32x4_t b)
{
    const int32x4_t p = vmulq_s32(vaddq_n_s32(a, h1), vaddq_n_s32(b, c2));
    return el_keo_round_v(vqrdmulhq_n_s32(p, m), ne, zp);
}

/* -e and zp from a packed keo = (k << 8) | (e - 1), k = 1 + 2 zp */
#define EL_KEO_NE(keo) (-((keo) & 255) - 1)
#define EL_KEO_ZP(keo) ((keo) >> 9)

/* 4 gates: the ADD (its second input's term a + b v + r[v], r gathered; halved for VQRDMULH,
 * the sum being even), the table */
static inline int32x4_t el_gate_v(const int8_t *x1, const int8_t *x2, const int8_t *gr,
                                  int32x4_t gb, int32_t ga, int32_t gmo, int32_t gne, int32_t gzp,
                                  const int8_t *lut)
{
    const int32x4_t v2 = vldrbq_s32(x2);
    int32x4_t raw = vldrbq_gather_offset_s32(gr, vreinterpretq_u32_s32(v2));
    raw = vaddq_s32(raw, vmlasq_n_s32(v2, gb, ga));
    raw = vqrdmulhq_n_s32(vhaddq_s32(raw, vshlq_n_s32(vldrbq_s32(x1), 20)), gmo);
    raw = vaddq_s32(raw, vshrq_n_s32(raw, 31));
    raw = vaddq_n_s32(vrshlq_n_s32(raw, gne), gzp);
    raw = vshrq_n_s32(vqshlq_n_s32(raw, 24), 24);
    return vldrbq_gather_offset_s32(lut, vreinterpretq_u32_s32(raw));
}

/* el_lstm_cell_s8 on Helium, 4 units a vector (n >= 4; a last partial vector over units
 * n - 4 .. n - 1): the gates, then the cell. The tables are byte
 * gathers from their entry 128 with the signed int8 codes as offsets (the gather's address is
 * base + offset modulo 2^32). Every parameter in a local first: int8 stores may alias *p. */
static void el_cell_mve(const el_lstm_cell_t *p, const int8_t *x1, const int8_t *x2,
                        int8_t *gates, const int8_t *const *seg, const int8_t *const *walk,
                        int8_t *c_out, int8_t *h, int n)
{
    const int32_t gmo = p->gate_mo, gne = EL_KEO_NE(p->gate_keo);
    const int32_t gzp = EL_KEO_ZP(p->gate_keo), ga = p->gate_a;
    const int32x4_t gb = vdupq_n_s32(p->gate_b);
    const int8_t *gr = p->gate_r;
    const int32_t a1 = p->mul_a[0] >> 1, a2 = p->mul_a[1], am = p->mul_a[2];
    const int32_t ane = EL_KEO_NE(p->mul_a[3]), azp = EL_KEO_ZP(p->mul_a[3]);
    const int32_t b1 = p->mul_b[0] >> 1, b2 = p->mul_b[1], bm = p->mul_b[2];
    const int32_t bne = EL_KEO_NE(p->mul_b[3]), bzp = EL_KEO_ZP(p->mul_b[3]);
    const int32_t o1 = p->mul_o[0] >> 1, o2 = p->mul_o[1], om = p->mul_o[2];
    const int32_t one = EL_KEO_NE(p->mul_o[3]), ozp = EL_KEO_ZP(p->mul_o[3]);
    const int32_t dc1 = p->add[0], dh2 = p->add[1] >> 1, dm2 = p->add[2], tne = -p->add[3] - 1;
    const int32_t dmo = p->add[4], dne = EL_KEO_NE(p->add[5]), dzp = EL_KEO_ZP(p->add[5]);
    const int8_t *tc = p->lut_c;
    const int8_t *w0 = walk[0], *w1 = walk[1], *w2 = walk[2], *w3 = walk[3], *w4 = walk[4];
    const int r = n & 3;
    int s, j, cnt = n >> 2, tail = r;
    for (s = 0; s < 4; ++s) {
        const int8_t *lut = seg[s];
        mve_pred16_t pr = vpnot(vctp32q(4 - (uint32_t)r)); /* the last r lanes */
        for (j = 0; j + 4 <= n; j += 4, x1 += 4, x2 += 4, gates += 4) {
            vstrbq_s32(gates, el_gate_v(x1, x2, gr, gb, ga, gmo, gne, gzp, lut));
        }
        if (r) { /* n - 4 .. n - 1; `gates` may be x1 or x2: only the lanes not yet written */
            x1 += r - 4;
            x2 += r - 4;
            gates += r - 4;
            vstrbq_p_s32(gates, el_gate_v(x1, x2, gr, gb, ga, gmo, gne, gzp, lut), pr);
            x1 += 4;
            x2 += 4;
            gates += 4;
        }
    }
    for (;;) {
        for (j = cnt; j > 0; --j, w0 += 4, w1 += 4, w2 += 4, w3 += 4, w4 += 4, c_out += 4, h += 4) {
            const int32x4_t a =
                el_cell_mul_v(a1, a2, am, ane, azp, vldrbq_s32(w0), vldrbq_s32(w1));
            const int32x4_t b =
                el_cell_mul_v(b1, b2, bm, bne, bzp, vldrbq_s32(w2), vldrbq_s32(w3));
            /* the cell ADD: (a << 19) + c1, and tie_away(SMMULR(c2 + (b << 21), m2), e2)
             * halved with rounding up, one VRSHL by -(e2 + 1) */
            int32x4_t t = vqrdmulhq_n_s32(vaddq_n_s32(vshlq_n_s32(b, 20), dh2), dm2);
            int32x4_t cn;
            t = vrshlq_n_s32(vaddq_s32(t, vshrq_n_s32(t, 31)), tne);
            t = vaddq_s32(vaddq_n_s32(vshlq_n_s32(a, 19), dc1), t);
            cn = vqrdmulhq_n_s32(t, dmo);
            cn = vaddq_s32(cn, vshrq_n_s32(cn, 31));
            cn = vaddq_n_s32(vrshlq_n_s32(cn, dne), dzp);
            cn = vshrq_n_s32(vqshlq_n_s32(cn, 24), 24);
            vstrbq_s32(c_out, cn);
        }
        /* h = o * tanh(c) in a second pass over the same units: fewer live parameters */
        {
            const int8_t *cp = c_out - 4 * cnt, *op = w4 - 4 * cnt;
            int8_t *hp = h - 4 * cnt;
            for (j = cnt; j > 0; --j, cp += 4, op += 4, hp += 4) {
                const int32x4_t cv = vldrbq_s32(cp);
                vstrbq_s32(hp, el_cell_mul_v(o1, o2, om, one, ozp, vldrbq_s32(op),
                                             vldrbq_gather_offset_s32(
                                                 tc, vreinterpretq_u32_s32(cv))));
            }
        }
        if (!tail) {
            break;
        }
        /* the last r units: once more over units n - 4 .. n - 1 (the inputs are not the
         * outputs, so the units done twice get the same bytes) */
        w0 += r - 4;
        w1 += r - 4;
        w2 += r - 4;
        w3 += r - 4;
        w4 += r - 4;
        c_out += r - 4;
        h += r - 4;
        cnt = 1;
        tail = 0;
    }
}
#endif

void el_lstm_cell_s8(const el_lstm_cell_t *p, const int8_t *x1, const int8_t *x2,
                     const int8_t *c, int8_t *gates, int8_t *c_out, int8_t *h, int n)
{
    const int8_t *const luts[4] = {p->lut_i, p->lut_f, p->lut_g, p->lut_o};
    const int32_t offs[4] = {p->off_i, p->off_f, p->off_g, p->off_o};
    const int8_t *gi = gates + p->off_i, *gf = gates + p->off_f, *gg = gates + p->off_g;
    const int8_t *walk[8], *seg[4] = {0, 0, 0, 0}; /* each segment's table */
    int j, s, k;
    for (s = 0; s < 4; ++s) { /* the offsets are whole segments of n */
        for (k = 0; k < 4; ++k) {
            seg[s] = offs[k] == s * n ? luts[k] : seg[s];
        }
    }
    walk[0] = p->a_is_ig ? gi : gf; /* MUL A's operands (gate first), then MUL B's */
    walk[1] = p->a_is_ig ? gg : c;
    walk[2] = p->a_is_ig ? gf : gi;
    walk[3] = p->a_is_ig ? c : gg;
    walk[4] = gates + p->off_o;
    walk[5] = c_out;
    walk[6] = h;
    walk[7] = h + n;
#if EL_USE_MVE
    (void)j;
    if (n >= 4) {
        el_cell_mve(p, x1, x2, gates, seg, walk, c_out, h, n);
    }
#else
#if EL_CELL_DSP
    if (n > 0 && n % 2 == 0) { /* 32-bit pointers */
        const int32_t q[11] = {(int32_t)p->gate_r, p->gate_mo,       p->gate_keo,
                               p->gate_a,          p->gate_b,        n,
                               (int32_t)seg[0],    (int32_t)seg[1],  (int32_t)seg[2],
                               (int32_t)seg[3],    0};
        el_gates_dsp(x1, x2, gates, q);
    } else
#endif
    {
        for (s = 0; s < 4; ++s) {
            for (j = s * n; j < (s + 1) * n; ++j) {
                const int32_t raw2 = p->gate_a + p->gate_b * x2[j] + p->gate_r[x2[j]] +
                                     (int32_t)((uint32_t)x1[j] << 20);
                gates[j] = seg[s][el_keo_round(el_smmulr(raw2, p->gate_mo), p->gate_keo)];
            }
        }
    }
#if EL_CELL_DSP
    if (n > 0) {
        el_cell_dsp(p, walk);
    }
#else
    for (j = 0; j < n; ++j) {
        const int32_t a = el_cell_mul(p->mul_a, walk[0][j], walk[1][j]);
        const int32_t b = el_cell_mul(p->mul_b, walk[2][j], walk[3][j]);
        const int32_t *d = p->add;
        const int32_t sa = d[0] + (int32_t)((uint32_t)a << 19);
        const int32_t t = el_tie_away(el_smmulr(d[1] + (int32_t)((uint32_t)b << 21), d[2]), d[3]);
        const int32_t cn = el_keo_round(el_smmulr((sa + ((t + 1) >> 1)) * 2, d[4]), d[5]);
        c_out[j] = (int8_t)cn;
        h[j] = (int8_t)el_cell_mul(p->mul_o, walk[4][j], p->lut_c[cn]);
    }
#endif
#endif
}

void el_lut_s8(const int8_t *lut, const int8_t *x, int8_t *y, int n)
{
    int i;
    for (i = 0; i + 4 <= n; i += 4) { /* unrolled: the loop overhead is most of a lookup */
        const int8_t a = lut[(uint8_t)x[i]], b = lut[(uint8_t)x[i + 1]];
        const int8_t c = lut[(uint8_t)x[i + 2]], d = lut[(uint8_t)x[i + 3]];
        y[i] = a;
        y[i + 1] = b;
        y[i + 2] = c;
        y[i + 3] = d;
    }
    for (; i < n; ++i) {
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

/* CountLeadingSignBits (GCC's __builtin_clrsb, as TFLite uses): 31 for 0 and -1 */
static int32_t el_clrsb(int32_t a)
{
#if defined(__GNUC__)
    return __builtin_clrsb(a);
#else
    uint32_t u = a < 0 ? ~(uint32_t)a : (uint32_t)a;
    int32_t k = -1;
    while (k < 31 && !(u & 0x80000000u)) {
        u <<= 1;
        ++k;
    }
    return k < 0 ? 0 : k;
#endif
}

/* RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), e) for m >= 0, e >= 0; e > 31
 * (undefined in gemmlowp) gives the rounded quotient, 0 */
static int32_t el_srdhm_rdbpot(int32_t x, int32_t m, int32_t e)
{
    const int32_t s = (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
    uint32_t t;
    if (e <= 0) {
        return s;
    }
    if (e > 31) {
        return 0;
    }
    t = (uint32_t)s + (1u << (e - 1));
    return s >= 0 ? (int32_t)(t >> e) : (int32_t)(t - 1u) >> e;
}

void el_div_s8(const el_div_s8_t *p, const int32_t *inv, const int8_t *rs, const int8_t *x1,
               int step1, const int8_t *x2, int step2, int8_t *y, int n)
{
    const int32_t o1 = p->in1_off, oo = p->out_off, mo = p->out_mult, so = p->out_shift;
    const int32_t lo = p->act_min, hi = p->act_max;
    int i;
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        const uint8_t k = (uint8_t)*x2;
        int32_t a = o1 + *x1, r = inv[k], hr, q;
        if (r < 0) { /* a negative divisor: flip both signs, the reciprocal is of |divisor| */
            a = -a;
            r = -r;
        }
        hr = el_clrsb(a);
        /* MultiplyByQuantizedMultiplierGreaterThanOne(a, r, hr): a << hr cannot overflow */
        q = (int32_t)(((int64_t)(int32_t)((uint32_t)a << hr) * r + ((int64_t)1 << 30)) >> 31);
        y[i] = el_clamp8(oo + el_srdhm_rdbpot(q, mo, rs[k] + hr - so), lo, hi);
    }
}

void el_mean_s8(const int8_t *x, int outer, int n, int inner, int32_t in_zp, int32_t mult,
                int32_t shift, int32_t out_zp, int8_t *y)
{
    int o, j, k;
    for (o = 0; o < outer; ++o) {
        for (k = 0; k < inner; ++k) {
            const int8_t *p = x + (long)o * n * inner + k;
            int32_t sum = 0;
            for (j = 0; j < n; ++j) {
                sum += p[(long)j * inner];
            }
            y[(long)o * inner + k] = el_clamp8(el_mbqm(sum - in_zp * n, mult, shift) + out_zp,
                                               -128, 127);
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

/* a*b + c: one VFMA where the FPU has it (Cortex-M4F/M7), else a multiply and an add */
#if defined(__ARM_FEATURE_FMA) && __ARM_FEATURE_FMA
#define EL_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define EL_FMA(a, b, c) ((a) * (b) + (c))
#endif

#if EL_USE_DSP && defined(__ARM_FEATURE_FMA) && __ARM_FEATURE_FMA && defined(__ARM_FP)
#define EL_FC_F32_ASM 1
/* 2 rows x 4 columns per iteration: 3 VLDM + 8 VFMA (partial sums even/odd columns per row,
 * acc = {row 0 even, row 0 odd, row 1 even, row 1 odd}); n4 = cols / 4 >= 1. */
static void el_fc2_f32_vfp(const float *x, const float *w0, const float *w1, int n4, float *acc)
{
    __asm__ volatile(
        "vldmia %[acc], {s12-s15}\n"
        "1:\n\t"
        "vldmia %[x]!, {s0-s3}\n\t"
        "vldmia %[w0]!, {s4-s7}\n\t"
        "vldmia %[w1]!, {s8-s11}\n\t"
        "vfma.f32 s12, s4, s0\n\t"
        "vfma.f32 s13, s5, s1\n\t"
        "vfma.f32 s14, s8, s0\n\t"
        "vfma.f32 s15, s9, s1\n\t"
        "vfma.f32 s12, s6, s2\n\t"
        "vfma.f32 s13, s7, s3\n\t"
        "vfma.f32 s14, s10, s2\n\t"
        "vfma.f32 s15, s11, s3\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[acc], {s12-s15}"
        : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [n] "+r"(n4)
        : [acc] "r"(acc)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",
          "s14", "s15", "cc", "memory");
}
#else
#define EL_FC_F32_ASM 0
#endif

/* One row: two partial sums (even/odd columns) to break the add chain. */
static float el_dot_f32(const float *x, const float *w, int cols)
{
    float a0 = 0.0f, a1 = 0.0f;
    int c;
    for (c = 0; c + 2 <= cols; c += 2) {
        a0 = EL_FMA(w[c], x[c], a0);
        a1 = EL_FMA(w[c + 1], x[c + 1], a1);
    }
    if (c < cols) {
        a0 = EL_FMA(w[c], x[c], a0);
    }
    return a0 + a1;
}

void el_fc_f32(const float *x, int cols, const float *w, const float *bias, int rows, int act,
               float *y)
{
    int r, c;
    /* two rows per pass share the loads of x; 4 columns per iteration */
    for (r = 0; r + 2 <= rows; r += 2, w += 2 * cols) {
        const float *w0 = w, *w1 = w + cols;
        float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
#if EL_FC_F32_ASM
        if (cols >= 4) { /* the same FMAs in the same order as the C loop below */
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            el_fc2_f32_vfp(x, w0, w1, cols / 4, acc);
            a0 = acc[0];
            a1 = acc[1];
            b0 = acc[2];
            b1 = acc[3];
        }
        c = cols & ~3;
#else
        for (c = 0; c + 4 <= cols; c += 4) {
            const float x0 = x[c], x1 = x[c + 1], x2 = x[c + 2], x3 = x[c + 3];
            a0 = EL_FMA(w0[c], x0, a0);
            a1 = EL_FMA(w0[c + 1], x1, a1);
            b0 = EL_FMA(w1[c], x0, b0);
            b1 = EL_FMA(w1[c + 1], x1, b1);
            a0 = EL_FMA(w0[c + 2], x2, a0);
            a1 = EL_FMA(w0[c + 3], x3, a1);
            b0 = EL_FMA(w1[c + 2], x2, b0);
            b1 = EL_FMA(w1[c + 3], x3, b1);
        }
#endif
        for (; c < cols; ++c) {
            a0 = EL_FMA(w0[c], x[c], a0);
            b0 = EL_FMA(w1[c], x[c], b0);
        }
        a0 += a1;
        b0 += b1;
        if (bias != 0) {
            a0 += bias[r];
            b0 += bias[r + 1];
        }
        y[r] = el_act_f32(a0, act);
        y[r + 1] = el_act_f32(b0, act);
    }
    if (r < rows) {
        float acc = el_dot_f32(x, w, cols);
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
        const float a = *x1, b = *x2;
        const float v = op == 0 ? a + b : (op == 1 ? a - b : (op == 2 ? a * b : a / b));
        y[i] = el_act_f32(v, act);
    }
}

void el_maxmin_f32(int is_max, const float *x1, int step1, const float *x2, int step2, float *y,
                   int n)
{
    int i;
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        const float a = *x1, b = *x2;
        y[i] = is_max ? (a > b ? a : b) : (a < b ? a : b);
    }
}

void el_maxmin_s8(int is_max, const int8_t *x1, int step1, const int8_t *x2, int step2,
                  int8_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        const int8_t a = *x1, b = *x2;
        y[i] = is_max ? (a > b ? a : b) : (a < b ? a : b);
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

void el_unary_f32(int op, const float *x, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        const float v = x[i];
        switch (op) {
        case EL_UN_ABS:
            y[i] = fabsf(v);
            break;
        case EL_UN_EXP:
            y[i] = expf(v);
            break;
        case EL_UN_LOG:
            y[i] = logf(v);
            break;
        case EL_UN_RSQRT:
            y[i] = 1.0f / sqrtf(v);
            break;
        default: /* EL_UN_ELU */
            y[i] = v < 0.0f ? expm1f(v) : v;
            break;
        }
    }
}

void el_mean_f32(const float *x, int outer, int n, int inner, float *y)
{
    int o, j, k;
    for (o = 0; o < outer; ++o) {
        for (k = 0; k < inner; ++k) {
            const float *p = x + (long)o * n * inner + k;
            float sum = 0.0f;
            for (j = 0; j < n; ++j) {
                sum += p[(long)j * inner];
            }
            y[(long)o * inner + k] = sum / (float)n;
        }
    }
}

void el_compare_f32(int op, const float *x1, int step1, const float *x2, int step2, uint8_t *y,
                    int n)
{
    int i;
    for (i = 0; i < n; ++i, x1 += step1, x2 += step2) {
        const float a = *x1, b = *x2;
        int r;
        switch (op) {
        case EL_CMP_EQUAL:
            r = a == b;
            break;
        case EL_CMP_NOT_EQUAL:
            r = a != b;
            break;
        case EL_CMP_LESS:
            r = a < b;
            break;
        case EL_CMP_LESS_EQUAL:
            r = a <= b;
            break;
        case EL_CMP_GREATER:
            r = a > b;
            break;
        default: /* EL_CMP_GREATER_EQUAL */
            r = a >= b;
            break;
        }
        y[i] = (uint8_t)r;
    }
}

void el_reduce_any(const uint8_t *x, int outer, int n, int inner, uint8_t *y)
{
    int o, j, k;
    for (o = 0; o < outer; ++o) {
        for (k = 0; k < inner; ++k) {
            const uint8_t *p = x + (long)o * n * inner + k;
            uint8_t any = 0;
            for (j = 0; j < n; ++j) {
                any |= (uint8_t)(p[(long)j * inner] != 0);
            }
            y[(long)o * inner + k] = any;
        }
    }
}

void el_cast_bool_f32(const uint8_t *c, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = c[i] ? 1.0f : 0.0f;
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

void el_select(const uint8_t *c, int stepc, const void *a, int stepa, const void *b, int stepb,
               void *y, int n, int size)
{
    const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
    unsigned char *py = (unsigned char *)y;
    int i;
    for (i = 0; i < n; ++i, c += stepc, pa += (long)stepa * size, pb += (long)stepb * size) {
        memmove(py + (long)i * size, *c ? pa : pb, (size_t)size);
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

/* ---- int16 kernels (edgelstm.tflite.cell16): TFLite Micro's reference formulas ---- */

static int16_t el_clamp16(int32_t v)
{
    return (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
}

/* x * m * 2^shift / 2^31 rounded once, half away from zero: LiteRT BUILTIN_REF's int16 MUL
 * (measured op by op against it; TFLite Micro's rounds twice, el_mbqm) */
static int32_t el_mbqm_away(int32_t x, int32_t m, int32_t shift)
{
    const int total = 31 - shift;
    const int64_t a = (int64_t)(x < 0 ? -(int64_t)x : x) * (int64_t)m + ((int64_t)1 << (total - 1));
    const int32_t r = (int32_t)(a >> total);
    return x < 0 ? -r : r;
}

/* MultiplyByQuantizedMultiplier for an int64 accumulator (the int16x8 kernels' form) */
static int32_t el_mbqm64(int64_t x, int32_t m, int32_t shift)
{
    const int32_t reduced = m < 0x7FFF0000 ? (m + (1 << 15)) >> 16 : 0x7FFF;
    const int total = 15 - shift;
    const int64_t r = x * (int64_t)reduced + ((int64_t)1 << (total - 1));
    return (int32_t)(r >> total);
}

/* the same with the full multiplier, rounding once (LiteRT BUILTIN_REF's int16x8 FC) */
static int32_t el_mbqm64_sr(int64_t x, int32_t m, int32_t shift)
{
    const int total = 31 - shift;
    return (int32_t)((x * (int64_t)m + ((int64_t)1 << (total - 1))) >> total);
}

void el_fc_s16x8(const int16_t *x, const int8_t *w, const int64_t *bias, const int32_t *mult,
                 const int32_t *shift, int nmult, int rows, int cols, int16_t *y, int single)
{
    int r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *wr = w + (size_t)r * (size_t)cols;
        const int k = nmult == 1 ? 0 : r;
        int64_t acc = bias ? bias[r] : 0;
        for (c = 0; c < cols; ++c) {
            acc += (int32_t)wr[c] * (int32_t)x[c];
        }
        y[r] = el_clamp16(single ? el_mbqm64_sr(acc, mult[k], shift[k])
                                 : el_mbqm64(acc, mult[k], shift[k]));
    }
}

void el_addsub_s16(const el_addsub_s8_t *p, int sign, const int16_t *x1, int step1,
                   const int16_t *x2, int step2, int16_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t a = el_mbqm((p->in1_off + *x1) * (1 << p->left_shift), p->in1_mult,
                                  p->in1_shift);
        const int32_t b = el_mbqm((p->in2_off + *x2) * (1 << p->left_shift), p->in2_mult,
                                  p->in2_shift);
        const int32_t v = el_mbqm(sign > 0 ? a + b : a - b, p->out_mult, p->out_shift);
        const int32_t o = v + p->out_off;
        y[i] = (int16_t)(o < p->act_min ? p->act_min : (o > p->act_max ? p->act_max : o));
        x1 += step1;
        x2 += step2;
    }
}

void el_mul_s16(const el_mul_s8_t *p, const int16_t *x1, int step1, const int16_t *x2,
                int step2, int16_t *y, int n, int single)
{
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t prod = (p->in1_off + *x1) * (p->in2_off + *x2);
        const int32_t o = (single ? el_mbqm_away(prod, p->out_mult, p->out_shift)
                                  : el_mbqm(prod, p->out_mult, p->out_shift)) + p->out_off;
        y[i] = (int16_t)(o < p->act_min ? p->act_min : (o > p->act_max ? p->act_max : o));
        x1 += step1;
        x2 += step2;
    }
}

/* sigmoid(i / 24) in 0.16 fixed point: TFLite's sigmoid_table_uint16, value for value (it
 * differs from round(65536 sigmoid(i / 24)) in 44 entries, so it is not recomputed) */
static const uint16_t el_sigmoid_u16[256] = {
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149,
    40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369,
    47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169,
    53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370,
    60565, 60753, 60935, 61110, 61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302,
    62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186, 63279, 63368, 63454, 63536,
    63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786,
    64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079,
    65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474,
    65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498,
    65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522,
    65523, 65523, 65524, 65524, 65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528,
    65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531,
    65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65534, 65535
};

void el_act_s16(int tanh, int32_t mult, int32_t left_shift, const int16_t *x, int16_t *y, int n)
{
    int i;
    int32_t rnd;
    if (mult == 0) { /* a power-of-two input scale */
        mult = 3 << left_shift;
        left_shift = 0;
    }
    rnd = left_shift > 0 ? 1 << (left_shift - 1) : 0;
    for (i = 0; i < n; ++i) {
        const int32_t v = ((int32_t)x[i] * mult + rnd) >> left_shift;
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        if (tanh) {
            const uint32_t uh = a >> 8;
            int32_t r;
            if (uh >= 255) {
                r = 0xFFFF << 8;
            } else {
                const uint32_t ua = el_sigmoid_u16[uh], ub = el_sigmoid_u16[uh + 1];
                r = (int32_t)((ua << 8) + (a & 0xFF) * (ub - ua));
            }
            r = v >= 0 ? (r - (1 << 23) + (1 << 7)) : (-r + (1 << 23) + (1 << 7) - 1);
            y[i] = (int16_t)(r >> 8);
        } else {
            const uint32_t uh = a >> 9;
            uint32_t r;
            if (uh >= 255) {
                r = 0x7FFFu << 10;
            } else {
                const uint32_t ua = el_sigmoid_u16[uh], ub = el_sigmoid_u16[uh + 1];
                r = (ua << 9) + (a & 0x1FF) * (ub - ua);
            }
            r = v >= 0 ? (r + (1u << 9)) : ((1u << 25) - r + (1u << 9) - 1u);
            y[i] = (int16_t)(r >> 10);
        }
    }
}

void el_requant_s8_s16(const int8_t *x, int32_t in_zp, int32_t mult, int32_t shift,
                       int32_t out_zp, int16_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = el_clamp16(el_mbqm(x[i] - in_zp, mult, shift) + out_zp);
    }
}

void el_requant_s16_s8(const int16_t *x, int32_t in_zp, int32_t mult, int32_t shift,
                       int32_t out_zp, int8_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = el_clamp8(el_mbqm(x[i] - in_zp, mult, shift) + out_zp, -128, 127);
    }
}
