/* edgelstm native runtime: SIMD kernels (see edgelstm_kernels_simd.h). Compiled only into the
 * host library of edgelstm.runtime.native, never into firmware. */
#define EL_SIMD_NO_REMAP 1
#include "edgelstm_kernels_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if EL_SIMD_X86
#include <immintrin.h>
#elif EL_SIMD_ARM
#include <arm_neon.h>
#endif

const char *el_simd_kind(void) { return EL_SIMD_KIND; }

void el_fc_s8_fast_add_lut(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                           int32_t out_zp, int16_t *xs, const el_add_fast_t *ap,
                           const int8_t *other, int fc_second, int seg, int nseg,
                           const int8_t *const *luts, int8_t *y)
{
    el_fc_s8_fast(x, cols, cols_pad, stream, rows, out_zp, xs, y);
    el_add_s8_fast_lut(ap, fc_second ? other : y, fc_second ? y : other, y, seg, nseg, luts);
}

#if EL_SIMD_ANY

#if EL_SIMD_X86 == 3
/* The same formulas on 16 int32 lanes (AVX-512): SMMULR(a, m) by the even/odd 32x32->64
 * multiplies of el_rq16, TIE_AWAY by an arithmetic shift of s + (s >> 31); the int8 clamp is the
 * saturating narrowing of VPMOVSDB. Integer ops in the same order as the scalar code: same bytes. */
static inline __m512i el_smmulr16(__m512i a, __m512i m)
{
    /* m is the same in every lane (a broadcast): its even lanes serve the odd products too */
    const __m512i rnd = _mm512_set1_epi64((long long)1 << 31);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(a, m), rnd);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), m), rnd);
    return _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

static inline __m512i el_tie_away16(__m512i s, __m128i e)
{
    return _mm512_sra_epi32(_mm512_add_epi32(s, _mm512_srai_epi32(s, 31)), e);
}

typedef struct {
    __m512i c1, c2, m2, mo, k;
    __m128i e2, eo;
    int sign;
} el_add16_t;

static inline el_add16_t el_add16_params(const el_add_fast_t *p)
{
    el_add16_t q;
    q.c1 = _mm512_set1_epi32(p->c1);
    q.c2 = _mm512_set1_epi32(p->c2);
    q.m2 = _mm512_set1_epi32(p->m2);
    q.mo = _mm512_set1_epi32(p->mo);
    q.k = _mm512_set1_epi32(p->k);
    q.e2 = _mm_cvtsi32_si128(p->e2);
    q.eo = _mm_cvtsi32_si128(p->eo);
    q.sign = p->sign;
    return q;
}

/* el_add_fast_one on 16 lanes: int8 values a, b (in int32 lanes) -> 16 int8 */
static inline __m128i el_add16w(const el_add16_t *q, __m512i a, __m512i b)
{
    const __m512i sa = _mm512_add_epi32(q->c1, _mm512_slli_epi32(a, 19));
    const __m512i u = _mm512_add_epi32(q->c2, _mm512_slli_epi32(b, 21));
    __m512i t = el_tie_away16(el_smmulr16(u, q->m2), q->e2);
    __m512i raw;
    t = _mm512_srai_epi32(_mm512_add_epi32(t, _mm512_set1_epi32(1)), 1);
    raw = q->sign > 0 ? _mm512_add_epi32(sa, t) : _mm512_sub_epi32(sa, t);
    t = el_tie_away16(el_smmulr16(_mm512_add_epi32(raw, raw), q->mo), q->eo);
    return _mm512_cvtsepi32_epi8(_mm512_srai_epi32(_mm512_add_epi32(t, q->k), 1));
}

/* the same on int8 a, b (16 bytes each) */
static inline __m128i el_add16(const el_add16_t *q, __m128i a8, __m128i b8)
{
    return el_add16w(q, _mm512_cvtepi8_epi32(a8), _mm512_cvtepi8_epi32(b8));
}

static inline __mmask16 el_mask16(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* el_fc_s8_fast_add_lut's epilogue (NULL: a plain FC): the ADD of another int8 vector, then the
 * centred table of the row's segment, on each 16 FC outputs while they are in a register */
typedef struct {
    el_add16_t q;
    const int8_t *other;
    int fc_second, seg;
    const int8_t *const *luts;
} el_fuse_t;

/* v: 16 FC outputs before the int8 clamp (el_rq16w) */
static inline void el_out16(const el_fuse_t *fz, int r0, __m512i v, __mmask16 m, int8_t *y)
{
    __m128i f;
    if (fz) {
        /* the clamp in the int32 lanes the ADD works in (no narrowing and widening back) */
        const __m512i f32 =
            _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(-128)), _mm512_set1_epi32(127));
        const __m512i o = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, fz->other + r0));
        const int8_t *tb = fz->luts[r0 / fz->seg];
        __m128i r = fz->fc_second ? el_add16w(&fz->q, o, f32) : el_add16w(&fz->q, f32, o);
#if defined(__AVX512VBMI__)
        const __m512i idx = _mm512_castsi128_si512(_mm_xor_si128(r, _mm_set1_epi8((char)0x80)));
        const __m512i lo =
            _mm512_permutex2var_epi8(_mm512_loadu_si512(tb), idx, _mm512_loadu_si512(tb + 64));
        const __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(tb + 128), idx,
                                                    _mm512_loadu_si512(tb + 192));
        r = _mm512_castsi512_si128(_mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi));
#else
        int8_t v[16];
        int i;
        _mm_storeu_si128((__m128i *)(void *)v, r);
        for (i = 0; i < 16; ++i) {
            v[i] = tb[(uint8_t)(v[i] ^ 0x80)];
        }
        r = _mm_loadu_si128((const __m128i *)(const void *)v);
#endif
        f = r;
    } else {
        f = _mm512_cvtsepi32_epi8(v);
    }
    _mm_mask_storeu_epi8(y + r0, m, f);
}
#endif

/* ---- int8 FULLY_CONNECTED ------------------------------------------------------------------ */

/* The repacked form of one el_fc_s8_fast stream: 16-row x 4-column tiles, original column order,
 * tile (b, g) = 64 bytes, row r's 4 weights at 4 r. Rows past `rows` and columns past `cols` are
 * zero. bias is the stream's (input zero point folded in); for the unsigned-x dot products
 * (VNNI: (x + 128) . w) it also carries -128 * sum(w_row). */
typedef struct {
    const int8_t *key;
    int rows, cols, cols_pad, blocks, groups;
    int flip; /* the AVX-512 kernel's block-pair order alternates per call (see el_fc_core) */
    int8_t *w;
    int32_t *bias, *mult, *e1;
} el_packed_t;

#define EL_PACK_MAX 64
static el_packed_t el_packs[EL_PACK_MAX];
static int el_npacks;

static int32_t el_rd32s(const int8_t *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (int32_t)((uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                     (uint32_t)u[3] << 24);
}

/* Weight (row r of the block, stream column j) of the paired layout (see lower.fc_stream): per
 * group of 4 stream columns 16 bytes, row pair then column, bytes (w_a + 128, w_b); stream
 * column c of a group is original column perm[c] (the c0 c2 c1 c3 order of the DSP path). */
static int el_stream_w(const int8_t *blk_w, int r, int j)
{
    const uint8_t *b = (const uint8_t *)blk_w + (j / 4) * 16 + (r / 2) * 8 + (j % 4) * 2 + (r % 2);
    return (r % 2) ? (int)(int8_t)*b : (int)*b - 128;
}

/* Byte offset of tile (block b, group g). The AVX-512 kernel runs blocks in pairs: a pair's two
 * tiles of a group are adjacent (one stream of lines per pair); other kernels, and an odd last
 * block, read each block's tiles in turn. */
static long el_tile(const el_packed_t *p, int b, int g)
{
#if EL_SIMD_X86 == 3
    if (b < p->blocks / 2 * 2) {
        return ((long)(b / 2) * p->groups + g) * 128 + (b % 2) * 64;
    }
#endif
    return ((long)b * p->groups + g) * 64;
}

/* Zeroed, cache-line aligned (n a multiple of 64): each 64-byte tile one line, one load. */
static void *el_zalloc64(size_t n)
{
    void *q = aligned_alloc(64, n);
    if (q) {
        memset(q, 0, n);
    }
    return q;
}

static const el_packed_t *el_pack(const int8_t *stream, int cols, int cols_pad, int rows)
{
    static const int perm[4] = {0, 2, 1, 3};
    el_packed_t *p;
    int i, b, r, j;
    for (i = 0; i < el_npacks; ++i) {
        if (el_packs[i].key == stream && el_packs[i].rows == rows && el_packs[i].cols == cols) {
            return &el_packs[i];
        }
    }
    if (el_npacks == EL_PACK_MAX) {
        return 0;
    }
    p = &el_packs[el_npacks];
    p->key = stream;
    p->rows = rows;
    p->cols = cols;
    p->cols_pad = cols_pad;
    p->blocks = (rows + 15) / 16;
    p->groups = (cols + 3) / 4;
    p->w = (int8_t *)el_zalloc64((size_t)p->blocks * p->groups * 64);
    p->bias = (int32_t *)el_zalloc64((size_t)p->blocks * 16 * sizeof(int32_t));
    p->mult = (int32_t *)el_zalloc64((size_t)p->blocks * 16 * sizeof(int32_t));
    p->e1 = (int32_t *)el_zalloc64((size_t)p->blocks * 16 * sizeof(int32_t));
    if (!p->w || !p->bias || !p->mult || !p->e1) {
        free(p->w);
        free(p->bias);
        free(p->mult);
        free(p->e1);
        return 0;
    }
    for (b = 0; b < (rows + 3) / 4; ++b) {
        const int8_t *s = stream + (long)b * (36 + 4L * cols_pad);
        const int8_t *tail = s + 16 + 4L * cols_pad;
        for (r = 0; r < 4 && 4 * b + r < rows; ++r) {
            const int row = 4 * b + r;
            int32_t sum = 0;
            for (j = 0; j < cols_pad; ++j) {
                const int col = (j & ~3) | perm[j & 3];
                const int w = el_stream_w(s + 16, r, j);
                if (col < cols) {
                    p->w[el_tile(p, row / 16, col / 4) + (row % 16) * 4 + col % 4] = (int8_t)w;
                    sum += w;
                }
            }
            p->bias[row] = el_rd32s(s + 4 * r);
#if EL_SIMD_X86 >= 2
            p->bias[row] -= 128 * sum;
#else
            (void)sum;
#endif
            p->mult[row] = el_rd32s(tail + 4 * r);
            p->e1[row] = tail[16 + r];
        }
    }
    ++el_npacks;
    return p;
}

#if EL_SIMD_X86 == 3
/* (tie_away(SMMULR(2 acc, m), e1) + k) >> 1 on 16 lanes, y being its int8 clamp (el_out16): the
 * portable kernel's requantization, with SMMULR as two even/odd 32x32->64 multiplies. */
static inline __m512i el_rq16w(__m512i acc, __m512i m, __m512i e1, __m512i k)
{
    const __m512i rnd = _mm512_set1_epi64((long long)1 << 31);
    const __m512i a2 = _mm512_add_epi32(acc, acc);
    __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(a2, m), rnd);
    __m512i po = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(a2, 32), _mm512_srli_epi64(m, 32)), rnd);
    __m512i v = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    v = _mm512_srav_epi32(_mm512_add_epi32(v, _mm512_srai_epi32(v, 31)), e1);
    return _mm512_srai_epi32(_mm512_add_epi32(v, k), 1); /* el_out16 clamps */
}
#endif

#if EL_SIMD_X86 == 1 || EL_SIMD_X86 == 2
static inline void el_rq8(__m256i acc, const int32_t *m, const int32_t *e1, int32_t k, int n,
                          int8_t *y)
{
    const __m256i rnd = _mm256_set1_epi64x((long long)1 << 31);
    const __m256i mv = _mm256_loadu_si256((const __m256i *)m);
    const __m256i a2 = _mm256_add_epi32(acc, acc);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(a2, mv), rnd);
    __m256i po = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(a2, 32), _mm256_srli_epi64(mv, 32)), rnd);
    __m256i v = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    __m128i p16, p8;
    v = _mm256_srav_epi32(_mm256_add_epi32(v, _mm256_srai_epi32(v, 31)),
                          _mm256_loadu_si256((const __m256i *)e1));
    v = _mm256_srai_epi32(_mm256_add_epi32(v, _mm256_set1_epi32(k)), 1);
    p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    p8 = _mm_packs_epi16(p16, p16);
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)y, p8);
    } else {
        int8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, p8);
        memcpy(y, tmp, (size_t)n);
    }
}
#endif

#if EL_SIMD_ARM
static inline int8x8_t el_rq8n(int32x4_t a0, int32x4_t a1, const int32_t *m, const int32_t *e1,
                               int32x4_t k)
{
    /* vqrdmulh(a, m) = sat((2 a m + 2^31) >> 32) = SMMULR(2a, m) (no saturation: m >= 0) */
    int32x4_t v0 = vqrdmulhq_s32(a0, vld1q_s32(m));
    int32x4_t v1 = vqrdmulhq_s32(a1, vld1q_s32(m + 4));
    v0 = vshlq_s32(vaddq_s32(v0, vshrq_n_s32(v0, 31)), vnegq_s32(vld1q_s32(e1)));
    v1 = vshlq_s32(vaddq_s32(v1, vshrq_n_s32(v1, 31)), vnegq_s32(vld1q_s32(e1 + 4)));
    v0 = vshrq_n_s32(vaddq_s32(v0, k), 1);
    v1 = vshrq_n_s32(vaddq_s32(v1, k), 1);
    return vqmovn_s16(vcombine_s16(vqmovn_s32(v0), vqmovn_s32(v1)));
}
#endif

#if EL_SIMD_X86 == 3
typedef el_fuse_t el_fc_epilogue_t;
#else
typedef void el_fc_epilogue_t; /* only the AVX-512 kernel fuses an epilogue */
#endif

#if EL_SIMD_X86 == 3
/* rows 16 b .. 16 b + 31 from their two blocks' sums */
static inline void el_pair_out(const el_packed_t *p, const el_fc_epilogue_t *fz, int b, __m512i a,
                               __m512i c, __m512i kv, int rows, int8_t *y)
{
    const int n1 = rows - 16 * (b + 1) < 16 ? rows - 16 * (b + 1) : 16;
    el_out16(fz, 16 * b,
             el_rq16w(a, _mm512_loadu_si512(p->mult + 16 * b), _mm512_loadu_si512(p->e1 + 16 * b),
                     kv),
             (__mmask16)0xFFFF, y);
    el_out16(fz, 16 * b + 16,
             el_rq16w(c, _mm512_loadu_si512(p->mult + 16 * b + 16),
                     _mm512_loadu_si512(p->e1 + 16 * b + 16), kv),
             (__mmask16)((1u << n1) - 1u), y);
}
#endif

static void el_fc_core(const el_packed_t *p, const int8_t *x, int cols, int rows, int32_t out_zp,
                       int16_t *xs, const el_fc_epilogue_t *fz, int8_t *y)
{
    const int32_t k = 1 + 2 * out_zp;
    int8_t *xp = (int8_t *)xs; /* 2 * cols_pad bytes >= groups * 4 */
    int b, g, i;
    (void)fz;
    for (i = 0; i < cols; ++i) {
#if EL_SIMD_X86 >= 2
        xp[i] = (int8_t)(x[i] ^ 0x80); /* x + 128 as an unsigned byte */
#else
        xp[i] = x[i];
#endif
    }
    for (; i < p->groups * 4; ++i) {
        xp[i] = 0;
    }
    b = 0;
#if EL_SIMD_X86 == 3
    /* two 16-row blocks per broadcast of 4 x bytes (half the broadcasts), 4 dpbusd chains. The
     * pairs run forwards and backwards on alternate calls: a matrix larger than L1 (an LSTM's
     * recurrent weights) then starts where the previous call ended, on the lines still in L1,
     * instead of on those the streaming evicted first. Rows are independent: the same bytes. */
    const int pairs = p->blocks / 2;
    const int flip = ((el_packed_t *)(void *)p)->flip ^= 1; /* the pack table is ours */
    int pi, prev_b = 0;
    __m512i prev_a = _mm512_setzero_si512(), prev_c = _mm512_setzero_si512();
    /* each pair's requantization and epilogue run after the next pair's dot products are issued
     * (software pipelining): issued right after its own, its waiting instructions would fill
     * the scheduler ahead of the next pair's loads */
    for (pi = 0; pi < pairs; ++pi) {
        const int bp = 2 * (flip ? pairs - 1 - pi : pi);
        const int8_t *w0 = p->w + (long)bp * p->groups * 64, *w1 = w0 + 64; /* el_tile */
        const int32_t *x32 = (const int32_t *)(const void *)xp;
        __m512i a0 = _mm512_loadu_si512(p->bias + 16 * bp), a1 = _mm512_setzero_si512();
        __m512i c0 = _mm512_loadu_si512(p->bias + 16 * bp + 16), c1 = _mm512_setzero_si512();
        const __m512i kv = _mm512_set1_epi32(k);
        for (g = 0; g + 2 <= p->groups; g += 2) {
            const __m512i x0 = _mm512_set1_epi32(x32[g]), x1 = _mm512_set1_epi32(x32[g + 1]);
            a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_load_si512(w0 + 128 * g));
            c0 = _mm512_dpbusd_epi32(c0, x0, _mm512_load_si512(w1 + 128 * g));
            a1 = _mm512_dpbusd_epi32(a1, x1, _mm512_load_si512(w0 + 128 * g + 128));
            c1 = _mm512_dpbusd_epi32(c1, x1, _mm512_load_si512(w1 + 128 * g + 128));
        }
        if (g < p->groups) {
            const __m512i x0 = _mm512_set1_epi32(x32[g]);
            a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_load_si512(w0 + 128 * g));
            c0 = _mm512_dpbusd_epi32(c0, x0, _mm512_load_si512(w1 + 128 * g));
        }
        if (pi > 0) { /* the previous pair's outputs: their sums are ready by now */
            el_pair_out(p, fz, prev_b, prev_a, prev_c, kv, rows, y);
        }
        prev_b = bp;
        prev_a = _mm512_add_epi32(a0, a1);
        prev_c = _mm512_add_epi32(c0, c1);
    }
    if (pairs > 0) {
        el_pair_out(p, fz, prev_b, prev_a, prev_c, _mm512_set1_epi32(k), rows, y);
    }
    b = 2 * pairs;
#endif
    for (; b < p->blocks; ++b) {
        const int8_t *wp = p->w + (long)b * p->groups * 64;
        const int n = rows - 16 * b < 16 ? rows - 16 * b : 16;
        const int32_t *x32 = (const int32_t *)(const void *)xp;
#if EL_SIMD_X86 == 3
        __m512i a0 = _mm512_loadu_si512(p->bias + 16 * b), a1 = _mm512_setzero_si512();
        __m512i a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512();
        __m512i q;
        for (g = 0; g + 4 <= p->groups; g += 4) {
            a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(x32[g]), _mm512_loadu_si512(wp + 64 * g));
            a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(x32[g + 1]),
                                     _mm512_loadu_si512(wp + 64 * g + 64));
            a2 = _mm512_dpbusd_epi32(a2, _mm512_set1_epi32(x32[g + 2]),
                                     _mm512_loadu_si512(wp + 64 * g + 128));
            a3 = _mm512_dpbusd_epi32(a3, _mm512_set1_epi32(x32[g + 3]),
                                     _mm512_loadu_si512(wp + 64 * g + 192));
        }
        for (; g < p->groups; ++g) {
            a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(x32[g]), _mm512_loadu_si512(wp + 64 * g));
        }
        a0 = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
        q = el_rq16w(a0, _mm512_loadu_si512(p->mult + 16 * b), _mm512_loadu_si512(p->e1 + 16 * b),
                    _mm512_set1_epi32(k));
        el_out16(fz, 16 * b, q, (__mmask16)((1u << n) - 1u), y);
#elif EL_SIMD_X86 == 2
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(p->bias + 16 * b));
        __m256i h0 = _mm256_loadu_si256((const __m256i *)(p->bias + 16 * b + 8));
        __m256i l1 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
        for (g = 0; g + 2 <= p->groups; g += 2) {
            const __m256i x0 = _mm256_set1_epi32(x32[g]), x1 = _mm256_set1_epi32(x32[g + 1]);
            l0 = _mm256_dpbusd_avx_epi32(l0, x0, _mm256_loadu_si256((const __m256i *)(wp + 64 * g)));
            h0 = _mm256_dpbusd_avx_epi32(h0, x0,
                                         _mm256_loadu_si256((const __m256i *)(wp + 64 * g + 32)));
            l1 = _mm256_dpbusd_avx_epi32(l1, x1,
                                         _mm256_loadu_si256((const __m256i *)(wp + 64 * g + 64)));
            h1 = _mm256_dpbusd_avx_epi32(h1, x1,
                                         _mm256_loadu_si256((const __m256i *)(wp + 64 * g + 96)));
        }
        for (; g < p->groups; ++g) {
            const __m256i x0 = _mm256_set1_epi32(x32[g]);
            l0 = _mm256_dpbusd_avx_epi32(l0, x0, _mm256_loadu_si256((const __m256i *)(wp + 64 * g)));
            h0 = _mm256_dpbusd_avx_epi32(h0, x0,
                                         _mm256_loadu_si256((const __m256i *)(wp + 64 * g + 32)));
        }
        el_rq8(_mm256_add_epi32(l0, l1), p->mult + 16 * b, p->e1 + 16 * b, k, n, y + 16 * b);
        if (n > 8) {
            el_rq8(_mm256_add_epi32(h0, h1), p->mult + 16 * b + 8, p->e1 + 16 * b + 8, k, n - 8,
                   y + 16 * b + 8);
        }
#elif EL_SIMD_X86 == 1
        /* no VNNI: 4 rows x 4 columns widened to int16, vpmaddwd with the 4 x values (pairs of
         * columns per int32 lane), the column pairs added once per block */
        __m256i acc[4];
        __m256i lo, hi, r;
        for (i = 0; i < 4; ++i) {
            acc[i] = _mm256_setzero_si256();
        }
        for (g = 0; g < p->groups; ++g) {
            const __m256i xv = _mm256_cvtepi8_epi16(_mm_set1_epi32(x32[g]));
            const int8_t *t = wp + 64 * g;
            for (i = 0; i < 4; ++i) {
                const __m256i w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(t + 16 * i)));
                acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(w16, xv));
            }
        }
        /* acc[i] lanes: rows 4i..4i+3, two column pairs each -> [r0 r1 r4 r5 | r2 r3 r6 r7] */
        lo = _mm256_hadd_epi32(acc[0], acc[1]);
        hi = _mm256_hadd_epi32(acc[2], acc[3]);
        r = _mm256_permutevar8x32_epi32(lo, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
        r = _mm256_add_epi32(r, _mm256_loadu_si256((const __m256i *)(p->bias + 16 * b)));
        el_rq8(r, p->mult + 16 * b, p->e1 + 16 * b, k, n, y + 16 * b);
        if (n > 8) {
            r = _mm256_permutevar8x32_epi32(hi, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
            r = _mm256_add_epi32(r, _mm256_loadu_si256((const __m256i *)(p->bias + 16 * b + 8)));
            el_rq8(r, p->mult + 16 * b + 8, p->e1 + 16 * b + 8, k, n - 8, y + 16 * b + 8);
        }
#elif EL_SIMD_ARM
        int32x4_t a[4];
        int8_t q[16];
        const int32x4_t kv = vdupq_n_s32(k);
        for (i = 0; i < 4; ++i) {
            a[i] = vld1q_s32(p->bias + 16 * b + 4 * i);
        }
#if EL_SIMD_ARM == 2
        for (g = 0; g < p->groups; ++g) {
            const int8x16_t xv = vreinterpretq_s8_s32(vdupq_n_s32(x32[g]));
            const int8_t *t = wp + 64 * g;
            a[0] = vdotq_s32(a[0], vld1q_s8(t), xv);
            a[1] = vdotq_s32(a[1], vld1q_s8(t + 16), xv);
            a[2] = vdotq_s32(a[2], vld1q_s8(t + 32), xv);
            a[3] = vdotq_s32(a[3], vld1q_s8(t + 48), xv);
        }
#else
        {
            /* per 4 rows: int16 products of 2 rows x 4 columns, pairs widened into int32 */
            int32x4_t s[8];
            for (i = 0; i < 8; ++i) {
                s[i] = vdupq_n_s32(0);
            }
            for (g = 0; g < p->groups; ++g) {
                const int8x8_t xv = vreinterpret_s8_s32(vdup_n_s32(x32[g]));
                const int8_t *t = wp + 64 * g;
                for (i = 0; i < 4; ++i) {
                    const int8x16_t w = vld1q_s8(t + 16 * i);
                    s[2 * i] = vpadalq_s16(s[2 * i], vmull_s8(vget_low_s8(w), xv));
                    s[2 * i + 1] = vpadalq_s16(s[2 * i + 1], vmull_s8(vget_high_s8(w), xv));
                }
            }
            for (i = 0; i < 4; ++i) { /* [r0 c01, r0 c23, r1 c01, r1 c23] + [r2.., r3..] */
                a[i] = vaddq_s32(a[i], vpaddq_s32(s[2 * i], s[2 * i + 1]));
            }
        }
#endif
        vst1_s8(q, el_rq8n(a[0], a[1], p->mult + 16 * b, p->e1 + 16 * b, kv));
        vst1_s8(q + 8, el_rq8n(a[2], a[3], p->mult + 16 * b + 8, p->e1 + 16 * b + 8, kv));
        memcpy(y + 16 * b, q, (size_t)n);
#endif
    }
}

void el_simd_fc_s8_fast(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                        int32_t out_zp, int16_t *xs, int8_t *y)
{
    const el_packed_t *p = el_pack(stream, cols, cols_pad, rows);
    if (p == 0) {
        el_fc_s8_fast(x, cols, cols_pad, stream, rows, out_zp, xs, y);
        return;
    }
    el_fc_core(p, x, cols, rows, out_zp, xs, 0, y);
}

void el_simd_fc_s8_fast_add_lut(const int8_t *x, int cols, int cols_pad, const int8_t *stream,
                                int rows, int32_t out_zp, int16_t *xs, const el_add_fast_t *ap,
                                const int8_t *other, int fc_second, int seg, int nseg,
                                const int8_t *const *luts, int8_t *y)
{
    const el_packed_t *p = el_pack(stream, cols, cols_pad, rows);
#if EL_SIMD_X86 == 3
    if (p != 0 && seg % 16 == 0 && seg * nseg == rows) {
        el_fuse_t fz;
        fz.q = el_add16_params(ap);
        fz.other = other;
        fz.fc_second = fc_second;
        fz.seg = seg;
        fz.luts = luts;
        el_fc_core(p, x, cols, rows, out_zp, xs, &fz, y);
        return;
    }
#endif
    /* the two kernels one after the other (the ADD in place over the FC's output) */
    if (p == 0) {
        el_fc_s8_fast(x, cols, cols_pad, stream, rows, out_zp, xs, y);
    } else {
        el_fc_core(p, x, cols, rows, out_zp, xs, 0, y);
    }
    el_simd_add_s8_fast_lut(ap, fc_second ? other : y, fc_second ? y : other, y, seg, nseg, luts);
}

/* ---- int8 elementwise ---------------------------------------------------------------------- */

/* The fast ADD/MUL formulas of the portable kernels, written as straight loops over blocks of
 * EL_EW elements into a buffer (the compiler vectorises them: 32x32->64 multiplies, no table
 * lookups inside), then the lookups. Same integer expressions, so the same results. */
#define EL_EW 64

static inline int32_t el_smmulr_s(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}

static inline int32_t el_tie_away_s(int32_t s, int32_t e1) { return (s + (s >> 31)) >> e1; }

static inline int32_t el_add_fast_one(int32_t c1, int32_t c2, int32_t m2, int32_t e2,
                                      int32_t sign, int32_t mo, int32_t eo, int32_t k, int8_t a,
                                      int8_t b)
{
    const int32_t sa = c1 + (int32_t)((uint32_t)a << 19);
    const int32_t t = el_tie_away_s(el_smmulr_s(c2 + (int32_t)((uint32_t)b << 21), m2), e2);
    const int32_t raw = sa + sign * ((t + 1) >> 1);
    const int32_t v = (el_tie_away_s(el_smmulr_s(raw * 2, mo), eo) + k) >> 1;
    return v < -128 ? -128 : (v > 127 ? 127 : v);
}

/* y[i] = table[(uint8_t)(x[i] ^ flip)] for a 256-entry table. AVX-512 VBMI: 64 lookups per
 * two VPERMI2B (each covers 128 entries) and a blend on the index's top bit. */
static void el_lut256(const int8_t *table, uint8_t flip, const int8_t *x, int8_t *y, int n)
{
    int i = 0;
#if EL_SIMD_X86 == 3 && defined(__AVX512VBMI__)
    const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
    const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
    const __m512i f = _mm512_set1_epi8((char)flip);
    for (; i < n; i += 64) {
        const __mmask64 m = n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1);
        const __m512i idx = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + i), f);
        const __m512i lo = _mm512_permutex2var_epi8(t0, idx, t1);
        const __m512i hi = _mm512_permutex2var_epi8(t2, idx, t3);
        _mm512_mask_storeu_epi8(y + i, m, _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi));
    }
#elif EL_SIMD_ARM
    /* TBL over 4 x 64-byte quarters: an index outside a quarter reads 0, so the four lookups of
     * (u - 64 q) OR together into the 256-entry lookup; 16 values per iteration */
    const uint8x16x4_t q0 = vld1q_u8_x4((const uint8_t *)table);
    const uint8x16x4_t q1 = vld1q_u8_x4((const uint8_t *)table + 64);
    const uint8x16x4_t q2 = vld1q_u8_x4((const uint8_t *)table + 128);
    const uint8x16x4_t q3 = vld1q_u8_x4((const uint8_t *)table + 192);
    const uint8x16_t f = vdupq_n_u8(flip), s64 = vdupq_n_u8(64);
    for (; i + 16 <= n; i += 16) {
        const uint8x16_t u = veorq_u8(vld1q_u8((const uint8_t *)x + i), f);
        const uint8x16_t u1 = vsubq_u8(u, s64), u2 = vsubq_u8(u1, s64), u3 = vsubq_u8(u2, s64);
        uint8x16_t r = vqtbl4q_u8(q0, u);
        r = vorrq_u8(r, vqtbl4q_u8(q1, u1));
        r = vorrq_u8(r, vqtbl4q_u8(q2, u2));
        r = vorrq_u8(r, vqtbl4q_u8(q3, u3));
        vst1q_u8((uint8_t *)y + i, r);
    }
#endif
    for (; i < n; ++i) {
        y[i] = table[(uint8_t)(x[i] ^ flip)];
    }
}

void el_simd_lut_s8(const int8_t *lut, const int8_t *x, int8_t *y, int n)
{
    el_lut256(lut, 0, x, y, n);
}

void el_simd_add_s8_fast(const el_add_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                         int step2, int8_t *y, int n)
{
    const int32_t c1 = p->c1, c2 = p->c2, m2 = p->m2, e2 = p->e2, sign = p->sign, mo = p->mo;
    const int32_t eo = p->eo, k = p->k;
    int i;
    if (step1 != 1 || step2 != 1) {
        el_add_s8_fast(p, x1, step1, x2, step2, y, n);
        return;
    }
    i = 0;
#if EL_SIMD_X86 == 3
    {
        const el_add16_t q = el_add16_params(p);
        for (; i < n; i += 16) {
            const __mmask16 m = el_mask16(n - i);
            _mm_mask_storeu_epi8(y + i, m,
                                 el_add16(&q, _mm_maskz_loadu_epi8(m, x1 + i),
                                          _mm_maskz_loadu_epi8(m, x2 + i)));
        }
    }
#endif
    for (; i < n; ++i) {
        y[i] = (int8_t)el_add_fast_one(c1, c2, m2, e2, sign, mo, eo, k, x1[i], x2[i]);
    }
}

void el_simd_add_s8_fast_lut(const el_add_fast_t *p, const int8_t *x1, const int8_t *x2, int8_t *y,
                             int seg, int nseg, const int8_t *const *luts)
{
    const int32_t c1 = p->c1, c2 = p->c2, m2 = p->m2, e2 = p->e2, sign = p->sign, mo = p->mo;
    const int32_t eo = p->eo, k = p->k;
    int8_t v[EL_EW];
    int i, j, i0;
#if EL_SIMD_X86 == 3 && defined(__AVX512VBMI__)
    /* 64 outputs per pass: four 16-lane ADDs into one zmm, then the centred table (index v ^
     * 0x80) by two VPERMI2B and a blend on the index's top bit, as el_lut256 */
    const el_add16_t q = el_add16_params(p);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    (void)v;
    (void)i;
    for (j = 0; j < nseg; ++j, x1 += seg, x2 += seg, y += seg) {
        const int8_t *tb = luts[j];
        const __m512i t0 = _mm512_loadu_si512(tb), t1 = _mm512_loadu_si512(tb + 64);
        const __m512i t2 = _mm512_loadu_si512(tb + 128), t3 = _mm512_loadu_si512(tb + 192);
        for (i0 = 0; i0 < seg; i0 += 64) {
            const int n = seg - i0 < 64 ? seg - i0 : 64;
            const __mmask64 m = n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1);
            const __m512i a = _mm512_maskz_loadu_epi8(m, x1 + i0);
            const __m512i b = _mm512_maskz_loadu_epi8(m, x2 + i0);
            __m512i r = _mm512_castsi128_si512(
                el_add16(&q, _mm512_castsi512_si128(a), _mm512_castsi512_si128(b)));
            __m512i idx, lo, hi;
            if (n > 16) {
                r = _mm512_inserti32x4(r, el_add16(&q, _mm512_extracti32x4_epi32(a, 1),
                                                   _mm512_extracti32x4_epi32(b, 1)), 1);
            }
            if (n > 32) {
                r = _mm512_inserti32x4(r, el_add16(&q, _mm512_extracti32x4_epi32(a, 2),
                                                   _mm512_extracti32x4_epi32(b, 2)), 2);
            }
            if (n > 48) {
                r = _mm512_inserti32x4(r, el_add16(&q, _mm512_extracti32x4_epi32(a, 3),
                                                   _mm512_extracti32x4_epi32(b, 3)), 3);
            }
            idx = _mm512_xor_si512(r, flip);
            lo = _mm512_permutex2var_epi8(t0, idx, t1);
            hi = _mm512_permutex2var_epi8(t2, idx, t3);
            _mm512_mask_storeu_epi8(y + i0, m,
                                    _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi));
        }
    }
    (void)c1, (void)c2, (void)m2, (void)e2, (void)sign, (void)mo, (void)eo, (void)k;
    return;
#endif
    for (j = 0; j < nseg; ++j, x1 += seg, x2 += seg, y += seg) {
        for (i0 = 0; i0 < seg; i0 += EL_EW) {
            const int n = seg - i0 < EL_EW ? seg - i0 : EL_EW;
            for (i = 0; i < n; ++i) {
                v[i] = (int8_t)el_add_fast_one(c1, c2, m2, e2, sign, mo, eo, k, x1[i0 + i],
                                               x2[i0 + i]);
            }
            /* centred tables (entry v + 128 for the value v), as el_add_s8_fast_lut */
            el_lut256(luts[j], 0x80, v, y + i0, n);
        }
    }
}

void el_simd_mul_s8_fast(const el_mul_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                         int step2, int8_t *y, int n)
{
    const int32_t c1 = p->c1, c2 = p->c2, mo = p->mo, eo = p->eo, k = p->k;
    int i;
    if (step1 != 1 || step2 != 1) {
        el_mul_s8_fast(p, x1, step1, x2, step2, y, n);
        return;
    }
    i = 0;
#if EL_SIMD_X86 == 3
    {
        const __m512i vc1 = _mm512_set1_epi32(c1), vc2 = _mm512_set1_epi32(c2);
        const __m512i vmo = _mm512_set1_epi32(mo), vk = _mm512_set1_epi32(k);
        const __m128i veo = _mm_cvtsi32_si128(eo);
        for (; i < n; i += 16) {
            const __mmask16 m = el_mask16(n - i);
            const __m512i a = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, x1 + i));
            const __m512i b = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, x2 + i));
            const __m512i prod2 = _mm512_mullo_epi32(_mm512_add_epi32(vc1, _mm512_add_epi32(a, a)),
                                                     _mm512_add_epi32(vc2, b));
            const __m512i v = el_tie_away16(el_smmulr16(prod2, vmo), veo);
            _mm_mask_storeu_epi8(y + i, m,
                                 _mm512_cvtsepi32_epi8(_mm512_srai_epi32(_mm512_add_epi32(v, vk), 1)));
        }
    }
#endif
    for (; i < n; ++i) {
        const int32_t prod2 = (c1 + 2 * x1[i]) * (c2 + x2[i]);
        const int32_t v = (el_tie_away_s(el_smmulr_s(prod2, mo), eo) + k) >> 1;
        y[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}

/* ---- float32 elementwise ------------------------------------------------------------------- */

/* expf as straight-line float code the compiler vectorises: exp(x) = 2^n exp(r), n = round(x /
 * ln 2), r = x - n ln 2 (ln 2 split in two for exactness), exp(r) by the classic degree-7
 * minimax polynomial on [-ln2/2, ln2/2] (relative error ~1e-7); 2^n built in the exponent bits. */
#if defined(__GNUC__) && !defined(__clang__)
/* gcc vectorises fminf/fmaxf only when NaNs need not be honoured (NaN in = NaN-ish out anyway) */
#define EL_VEC_MATH __attribute__((optimize("finite-math-only", "no-signed-zeros")))
#else
#define EL_VEC_MATH
#endif

EL_VEC_MATH static inline float el_expf_v(float x)
{
    float n, r, p;
    union {
        int32_t i;
        float f;
    } scale;
    x = fmaxf(-87.0f, fminf(x, 88.0f));
    n = x * 1.44269504088896341f;
    n = (float)(int32_t)(n + copysignf(0.5f, n)); /* round; branch-free so it vectorises */
    r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

EL_VEC_MATH void el_simd_logistic_f32(const float *x, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = 1.0f / (1.0f + el_expf_v(-x[i]));
    }
}

EL_VEC_MATH void el_simd_tanh_f32(const float *x, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        /* tanh|x| = 1 - 2 / (exp(2|x|) + 1): absolute error ~1e-7 (relative worse near 0) */
        const float a = fabsf(x[i]);
        const float t = 1.0f - 2.0f / (el_expf_v(2.0f * a) + 1.0f);
        y[i] = copysignf(t, x[i]);
    }
}

void el_simd_binary_f32(int op, const float *x1, int step1, const float *x2, int step2, float *y,
                        int n, int act)
{
    int i;
    if (step1 != 1 || step2 != 1 || act != EL_ACT_NONE) {
        el_binary_f32(op, x1, step1, x2, step2, y, n, act);
        return;
    }
    if (op == 0) {
        for (i = 0; i < n; ++i) {
            y[i] = x1[i] + x2[i];
        }
    } else if (op == 1) {
        for (i = 0; i < n; ++i) {
            y[i] = x1[i] - x2[i];
        }
    } else {
        for (i = 0; i < n; ++i) {
            y[i] = x1[i] * x2[i];
        }
    }
}

/* ---- float32 FULLY_CONNECTED --------------------------------------------------------------- */

static float el_simd_act(float v, int act)
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

#if EL_SIMD_X86 == 1 || EL_SIMD_X86 == 2
static inline float el_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
#endif

/* Row-major dot products, 4 rows at a time (the fallback when the repack table is full). */
static void el_fc_f32_rows(const float *x, int cols, const float *w, const float *bias, int rows,
                           int act, float *y)
{
    int r = 0, c;
#if EL_SIMD_X86 == 3
    const int tail = cols % 16;
    const __mmask16 tm = (__mmask16)((1u << tail) - 1u);
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + (long)r * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (c = 0; c + 16 <= cols; c += 16) {
            const __m512 xv = _mm512_loadu_ps(x + c);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + c), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + cols + c), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + 2 * cols + c), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + 3 * cols + c), xv, a3);
        }
        if (tail) {
            const __m512 xv = _mm512_maskz_loadu_ps(tm, x + c);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w0 + c), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w0 + cols + c), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w0 + 2 * cols + c), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w0 + 3 * cols + c), xv, a3);
        }
        {
            float s[4];
            int i;
            s[0] = _mm512_reduce_add_ps(a0);
            s[1] = _mm512_reduce_add_ps(a1);
            s[2] = _mm512_reduce_add_ps(a2);
            s[3] = _mm512_reduce_add_ps(a3);
            for (i = 0; i < 4; ++i) {
                y[r + i] = el_simd_act(s[i] + (bias ? bias[r + i] : 0.0f), act);
            }
        }
    }
    for (; r < rows; ++r) {
        const float *w0 = w + (long)r * cols;
        __m512 a0 = _mm512_setzero_ps();
        for (c = 0; c + 16 <= cols; c += 16) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + c), _mm512_loadu_ps(x + c), a0);
        }
        if (tail) {
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w0 + c), _mm512_maskz_loadu_ps(tm, x + c),
                                 a0);
        }
        y[r] = el_simd_act(_mm512_reduce_add_ps(a0) + (bias ? bias[r] : 0.0f), act);
    }
#elif EL_SIMD_X86
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + (long)r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        float s[4];
        int i;
        for (c = 0; c + 8 <= cols; c += 8) {
            const __m256 xv = _mm256_loadu_ps(x + c);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + cols + c), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 2 * cols + c), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 3 * cols + c), xv, a3);
        }
        s[0] = el_hsum8(a0);
        s[1] = el_hsum8(a1);
        s[2] = el_hsum8(a2);
        s[3] = el_hsum8(a3);
        for (; c < cols; ++c) {
            for (i = 0; i < 4; ++i) {
                s[i] += w0[(long)i * cols + c] * x[c];
            }
        }
        for (i = 0; i < 4; ++i) {
            y[r + i] = el_simd_act(s[i] + (bias ? bias[r + i] : 0.0f), act);
        }
    }
    for (; r < rows; ++r) {
        const float *w0 = w + (long)r * cols;
        __m256 a0 = _mm256_setzero_ps();
        float s;
        for (c = 0; c + 8 <= cols; c += 8) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), _mm256_loadu_ps(x + c), a0);
        }
        s = el_hsum8(a0);
        for (; c < cols; ++c) {
            s += w0[c] * x[c];
        }
        y[r] = el_simd_act(s + (bias ? bias[r] : 0.0f), act);
    }
#else
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + (long)r * cols;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        float s[4];
        int i;
        for (c = 0; c + 4 <= cols; c += 4) {
            const float32x4_t xv = vld1q_f32(x + c);
            a0 = vfmaq_f32(a0, vld1q_f32(w0 + c), xv);
            a1 = vfmaq_f32(a1, vld1q_f32(w0 + cols + c), xv);
            a2 = vfmaq_f32(a2, vld1q_f32(w0 + 2 * cols + c), xv);
            a3 = vfmaq_f32(a3, vld1q_f32(w0 + 3 * cols + c), xv);
        }
        s[0] = vaddvq_f32(a0);
        s[1] = vaddvq_f32(a1);
        s[2] = vaddvq_f32(a2);
        s[3] = vaddvq_f32(a3);
        for (; c < cols; ++c) {
            for (i = 0; i < 4; ++i) {
                s[i] += w0[(long)i * cols + c] * x[c];
            }
        }
        for (i = 0; i < 4; ++i) {
            y[r + i] = el_simd_act(s[i] + (bias ? bias[r + i] : 0.0f), act);
        }
    }
    for (; r < rows; ++r) {
        const float *w0 = w + (long)r * cols;
        float32x4_t a0 = vdupq_n_f32(0.0f);
        float s;
        for (c = 0; c + 4 <= cols; c += 4) {
            a0 = vfmaq_f32(a0, vld1q_f32(w0 + c), vld1q_f32(x + c));
        }
        s = vaddvq_f32(a0);
        for (; c < cols; ++c) {
            s += w0[c] * x[c];
        }
        y[r] = el_simd_act(s + (bias ? bias[r] : 0.0f), act);
    }
#endif
}

/* Float weights repacked on first use (per weight pointer) into 16-row tiles, column-major in a
 * tile: out[16 rows] += x[c] * tile[c][16], so no horizontal sums. Rows past `rows` are zero. */
typedef struct {
    const float *key;
    int rows, cols;
    float *t;
} el_packed_f32_t;

static el_packed_f32_t el_fpacks[EL_PACK_MAX];
static int el_nfpacks;

static const float *el_pack_f32(const float *w, int cols, int rows)
{
    el_packed_f32_t *p;
    int i, r, c;
    for (i = 0; i < el_nfpacks; ++i) {
        if (el_fpacks[i].key == w && el_fpacks[i].rows == rows && el_fpacks[i].cols == cols) {
            return el_fpacks[i].t;
        }
    }
    if (el_nfpacks == EL_PACK_MAX) {
        return 0;
    }
    p = &el_fpacks[el_nfpacks];
    p->t = (float *)calloc((size_t)((rows + 15) / 16) * 16 * (size_t)cols, sizeof(float));
    if (!p->t) {
        return 0;
    }
    for (r = 0; r < rows; ++r) {
        for (c = 0; c < cols; ++c) {
            p->t[((long)(r / 16) * cols + c) * 16 + r % 16] = w[(long)r * cols + c];
        }
    }
    p->key = w;
    p->rows = rows;
    p->cols = cols;
    ++el_nfpacks;
    return p->t;
}

/* bias + activation of one tile's outputs, as loops the compiler vectorises (a per-row switch
 * would cost more than the tile's FMAs on small layers) */
static void el_fc_f32_epilogue(float *out, const float *bias, int n, int act, float *y)
{
    int i;
    if (bias) {
        for (i = 0; i < n; ++i) {
            out[i] += bias[i];
        }
    }
    switch (act) {
    case EL_ACT_RELU:
        for (i = 0; i < n; ++i) {
            out[i] = out[i] < 0.0f ? 0.0f : out[i];
        }
        break;
    case EL_ACT_RELU_N1_TO_1:
        for (i = 0; i < n; ++i) {
            out[i] = out[i] < -1.0f ? -1.0f : (out[i] > 1.0f ? 1.0f : out[i]);
        }
        break;
    case EL_ACT_RELU6:
        for (i = 0; i < n; ++i) {
            out[i] = out[i] < 0.0f ? 0.0f : (out[i] > 6.0f ? 6.0f : out[i]);
        }
        break;
    case EL_ACT_TANH:
        el_simd_tanh_f32(out, out, n);
        break;
    default:
        break;
    }
    memcpy(y, out, sizeof(float) * (size_t)n);
}

void el_simd_fc_f32(const float *x, int cols, const float *w, const float *bias, int rows, int act,
                    float *y)
{
    const float *t = el_pack_f32(w, cols, rows);
    float out[16];
    int b, c;
    if (t == 0 || cols < 2) {
        el_fc_f32_rows(x, cols, w, bias, rows, act, y);
        return;
    }
    b = 0;
#if EL_SIMD_X86 == 3
    /* two tiles (32 rows) per broadcast of x[c]: half the broadcasts, 4 independent FMA chains */
    for (; b + 2 <= rows / 16; b += 2, t += 32L * cols) {
        const float *u = t + 16L * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        float out2[32];
        for (c = 0; c + 2 <= cols; c += 2) {
            const __m512 x0 = _mm512_set1_ps(x[c]), x1 = _mm512_set1_ps(x[c + 1]);
            a0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(t + 16 * c), a0);
            b0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(u + 16 * c), b0);
            a1 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(t + 16 * c + 16), a1);
            b1 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(u + 16 * c + 16), b1);
        }
        if (c < cols) {
            const __m512 x0 = _mm512_set1_ps(x[c]);
            a0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(t + 16 * c), a0);
            b0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(u + 16 * c), b0);
        }
        _mm512_storeu_ps(out2, _mm512_add_ps(a0, a1));
        _mm512_storeu_ps(out2 + 16, _mm512_add_ps(b0, b1));
        el_fc_f32_epilogue(out2, bias ? bias + 16 * b : 0, 32, act, y + 16 * b);
    }
#endif
    for (; b < (rows + 15) / 16; ++b, t += 16L * cols) {
        const int n = rows - 16 * b < 16 ? rows - 16 * b : 16;
#if EL_SIMD_X86 == 3
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (c = 0; c + 4 <= cols; c += 4) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[c]), _mm512_loadu_ps(t + 16 * c), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[c + 1]), _mm512_loadu_ps(t + 16 * c + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_set1_ps(x[c + 2]), _mm512_loadu_ps(t + 16 * c + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_set1_ps(x[c + 3]), _mm512_loadu_ps(t + 16 * c + 48), a3);
        }
        for (; c < cols; ++c) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[c]), _mm512_loadu_ps(t + 16 * c), a0);
        }
        _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif EL_SIMD_X86
        __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0;
        for (c = 0; c + 2 <= cols; c += 2) {
            const __m256 x0 = _mm256_set1_ps(x[c]), x1 = _mm256_set1_ps(x[c + 1]);
            l0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(t + 16 * c), l0);
            h0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(t + 16 * c + 8), h0);
            l1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(t + 16 * c + 16), l1);
            h1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(t + 16 * c + 24), h1);
        }
        for (; c < cols; ++c) {
            const __m256 x0 = _mm256_set1_ps(x[c]);
            l0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(t + 16 * c), l0);
            h0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(t + 16 * c + 8), h0);
        }
        _mm256_storeu_ps(out, _mm256_add_ps(l0, l1));
        _mm256_storeu_ps(out + 8, _mm256_add_ps(h0, h1));
#else
        float32x4_t a[4];
        int i;
        for (i = 0; i < 4; ++i) {
            a[i] = vdupq_n_f32(0.0f);
        }
        for (c = 0; c < cols; ++c) {
            const float32x4_t xv = vdupq_n_f32(x[c]);
            a[0] = vfmaq_f32(a[0], xv, vld1q_f32(t + 16 * c));
            a[1] = vfmaq_f32(a[1], xv, vld1q_f32(t + 16 * c + 4));
            a[2] = vfmaq_f32(a[2], xv, vld1q_f32(t + 16 * c + 8));
            a[3] = vfmaq_f32(a[3], xv, vld1q_f32(t + 16 * c + 12));
        }
        for (i = 0; i < 4; ++i) {
            vst1q_f32(out + 4 * i, a[i]);
        }
#endif
        el_fc_f32_epilogue(out, bias ? bias + 16 * b : 0, n, act, y + 16 * b);
    }
}

#endif /* EL_SIMD_ANY */
