/* edgelstm C engine kernels: portable C99, no malloc, no TFLite Micro.
 *
 * int8 kernels reproduce TFLite's integer arithmetic (fixed-point multipliers with the same
 * rounding, 256-entry activation tables), so a generated engine matches the int8 .tflite.
 * Define EL_USE_DSP=0 to force the portable code on a core with the DSP extension (by default
 * __ARM_FEATURE_DSP selects the SMLAD/UXTB16 MAC loop and the SMMULR/SSAT requantization).
 */
#ifndef EDGELSTM_KERNELS_H
#define EDGELSTM_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EL_USE_DSP
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define EL_USE_DSP 1
#else
#define EL_USE_DSP 0
#endif
#endif

/* Helium (MVE, Cortex-M55/M85): el_fc_s8_rows' VMLADAVA loop; EL_USE_MVE=0 forces portable C */
#ifndef EL_USE_MVE
#if defined(__ARM_FEATURE_MVE) && __ARM_FEATURE_MVE
#define EL_USE_MVE 1
#else
#define EL_USE_MVE 0
#endif
#endif

#define EL_OK 0
#define EL_ERR_INDEX 1 /* a token id outside the embedding table */

/* ---- int8 ------------------------------------------------------------------------------ */

/* el_fc_s8 flags, set by the generator after checking the bounds offline */
#define EL_FC_PAIRED_DSP 1 /* |dot + bias| < 2^23 on every second row: the wrapping DSP loop */
#define EL_FC_FAST_RQ 2    /* every shift <= -1, |acc| < 2^30, no fused clamp: the SMMULR
                            * requantization; `shift` then holds e - 1 = -shift - 1 per row */
#define EL_FC_SINGLE_ROUND 4 /* LiteRT BUILTIN_REF's rounding: (acc m + 2^(s-1)) >> s once,
                              * instead of TFLite Micro's MultiplyByQuantizedMultiplier */

/* y = act(requant(W x + b)). W: rows (padded to 4) x `cols_pad` (a multiple of 8) int8 in the
 * paired layout written by the generator: per block of 4 rows and per 4 columns, 4 words (row
 * pair 0 columns 0-1, 2-3, then row pair 1), each word's bytes = (w_a + 128, w_b) per column,
 * so halfword = (w_a + 128) + 256 * w_b (see el_fc_pairs_dsp). b has the input zero point folded
 * in (bias, mult and shift have rows rounded up to 4 entries). xs: int16 scratch of cols_pad. */
void el_fc_s8(const int8_t *x, int cols, int cols_pad, const int8_t *w, const int32_t *bias,
              int rows, const int32_t *mult, const int8_t *shift, int32_t out_zp,
              int32_t act_min, int32_t act_max, int flags, int16_t *xs, int8_t *y);

/* The same, for layers where both flags hold and there is no fused clamp: `stream` holds per
 * 4-row block the bias (4 x int32, little-endian), the paired weights (4 * cols_pad bytes), the
 * multipliers (4 x int32) and e - 1 (4 x int8), so a single pointer walks the layer (on a DSP
 * core one assembly loop does the whole layer). */
void el_fc_s8_fast(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                   int32_t out_zp, int16_t *xs, int8_t *y);
/* The same layer for a Helium core (an engine exported with --core m55): `stream` holds per
 * 4-row block the bias (4 x int32), then per 16 columns the 4 rows' 16 signed int8 weights
 * (cols_pad a multiple of 8: a last tile of 8 columns holds 4 x 8), the multipliers (4 x int32)
 * and -e (4 x int8, e = e1 + 1 the right shift). One VMLADAVA per row and 16 columns with MVE,
 * portable C elsewhere; `single` selects LiteRT BUILTIN_REF's rounding (EL_FC_SINGLE_ROUND),
 * else TFLite Micro's. xs: scratch of at least cols_pad + 16 bytes; stream word-aligned. */
void el_fc_s8_rows_dr(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                      int32_t out_zp, int16_t *xs, int8_t *y);
void el_fc_s8_rows_sr(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                      int32_t out_zp, int16_t *xs, int8_t *y);
/* the same for cols_pad == 64 / cols_pad == 8 only */
void el_fc_s8_rows_dr64(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                        int32_t out_zp, int16_t *xs, int8_t *y);
void el_fc_s8_rows_sr64(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                        int32_t out_zp, int16_t *xs, int8_t *y);
void el_fc_s8_rows_dr8(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                       int32_t out_zp, int16_t *xs, int8_t *y);
void el_fc_s8_rows_sr8(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                       int32_t out_zp, int16_t *xs, int8_t *y);
/* one entry per rounding and width class, picked here from the generated call's constants, so
 * that a link keeps only the loops it calls */
static inline void el_fc_s8_rows(const int8_t *x, int cols, int cols_pad, const int8_t *stream,
                                 int rows, int32_t out_zp, int16_t *xs, int8_t *y, int single)
{
    if (cols_pad == 64) {
        (single ? el_fc_s8_rows_sr64 : el_fc_s8_rows_dr64)(x, cols, cols_pad, stream, rows,
                                                           out_zp, xs, y);
    } else if (cols_pad == 8) {
        (single ? el_fc_s8_rows_sr8 : el_fc_s8_rows_dr8)(x, cols, cols_pad, stream, rows, out_zp,
                                                         xs, y);
    } else {
        (single ? el_fc_s8_rows_sr : el_fc_s8_rows_dr)(x, cols, cols_pad, stream, rows, out_zp,
                                                       xs, y);
    }
}

/* el_fc_s8_fast with LiteRT BUILTIN_REF's single rounding (EL_FC_SINGLE_ROUND) */
void el_fc_s8_fast_sr(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                      int32_t out_zp, int16_t *xs, int8_t *y);

/* The same layer with few rows (a model's head: el_fc_s8_fast's 4-row blocks would pad it and
 * expand x for them): w row-major, rows x cols_pad4 (cols rounded up to 4, zero padded), bias
 * with the input zero point folded in, mult and e1 (= e - 1) per row; the preconditions and the
 * requantization of el_fc_s8_fast (`single`: el_fc_s8_fast_sr's). SMLAD on SXTB16 pairs. */
void el_fc_s8_small(const int8_t *x, int cols, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int8_t *e1, int rows, int32_t out_zp, int8_t *y,
                    int single);

typedef struct {
    int32_t in1_off, in1_mult, in1_shift;
    int32_t in2_off, in2_mult, in2_shift;
    int32_t out_off, out_mult, out_shift;
    int32_t left_shift, act_min, act_max;
} el_addsub_s8_t;

/* y = x1 + x2 (sign=+1) or x1 - x2 (sign=-1); step1/step2 = 0 broadcasts a scalar. */
void el_addsub_s8(const el_addsub_s8_t *p, int sign, const int8_t *x1, int step1,
                  const int8_t *x2, int step2, int8_t *y, int n);

typedef struct {
    int32_t in1_off, in2_off, out_off, out_mult, out_shift, act_min, act_max;
} el_mul_s8_t;

void el_mul_s8(const el_mul_s8_t *p, const int8_t *x1, int step1, const int8_t *x2, int step2,
               int8_t *y, int n);

/* Fast int8 ADD/SUB (same results as el_addsub_s8) for TFLite's left shift of 20 when one
 * input's multiplier is exactly 1/2 (TFLite gives the larger-scale input 2^30, shift 0), the
 * other's shift is <= -1 (or it is 1/2 too: then m2 = 2^31 - 1, e2 = 0, exact), the output
 * shift is <= -1 and there is no fused clamp: sa = c1 + (x1 << 19) = (o1 + x1) << 19; in2 from
 * c2 + (x2 << 21) = 2 (o2 + x2) << 20 with m2, e2 = e - 1; raw = sa + sign * in2;
 * eo = e_out - 1, k = 1 + 2 * out_off. */
typedef struct {
    int32_t c1, c2, m2, e2, sign, mo, eo, k;
} el_add_fast_t;

void el_add_s8_fast(const el_add_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                    int step2, int8_t *y, int n);

/* el_add_s8_fast (unit strides) followed by a 256-entry table per segment of `seg` outputs,
 * each table centred (entry v + 128 for the int8 value v, unlike el_lut_s8's uint8 order):
 * y[j * seg + i] = luts[j][128 + (x1 + x2)] (an LSTM's gate activations, fused). */
void el_add_s8_fast_lut(const el_add_fast_t *p, const int8_t *x1, const int8_t *x2, int8_t *y,
                        int seg, int nseg, const int8_t *const *luts);

/* Fast int8 MUL (same results as el_mul_s8) when the output shift is <= -1 and there is no fused
 * clamp: c1 = 2 * in1_off, c2 = in2_off, eo = e_out - 1, k = 1 + 2 * out_off. */
typedef struct {
    int32_t c1, c2, mo, eo, k;
} el_mul_fast_t;

void el_mul_s8_fast(const el_mul_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                    int step2, int8_t *y, int n);

/* One int8 LSTM cell update, fused (the ops of a TFLite step model's unrolled LSTM cell, same
 * bytes as running them one by one). The gate ADD is el_add_s8_fast's formula with the second
 * input's term t[v] = 2 * (c1 + (tie_away(SMMULR(c2 + (v << 21), m2), e2) + 1) / 2) (floor
 * halving; raw * 2 = t[x2] + (x1 << 20)) as gate_a + gate_b * v + gate_r[v]: a line and an int8
 * residual per code v = -128..127, written by the generator from the same parameters. First
 * the gates, gates[off_k + j] = lut_k[add(x1[off_k + j], x2[off_k + j])] (each offset a multiple
 * of n, 4 n in all; `gates` may be x1 or x2), then per unit j c_out = add(A, B) with {A, B} =
 * {f * c, i * g} (el_add_s8_fast's formula; the generator puts the ADD's first input in mul_a)
 * and h = o * lut_c[c_out] (el_mul_s8_fast's formula): the products and the cell's tanh never
 * go through memory. c apart from gates, c_out and h. Every `keo` is (k << 8) | (e - 1); the
 * table pointers point at entry 128 (the value 0), as the assembly loops read them. */
typedef struct {
    const int8_t *gate_r;            /* 256 entries, + 128 */
    int32_t gate_mo, gate_keo;
    int32_t mul_a[4], mul_b[4], mul_o[4]; /* c1, c2, mo, keo (el_mul_fast_t's) */
    int32_t add[6];                  /* c1, c2, m2, e2, mo, keo (el_add_fast_t's, sign +1) */
    int32_t a_is_ig;                 /* mul_a is i * g (and mul_b f * c), else the other way */
    int32_t off_i, off_f, off_g, off_o; /* gate offsets in x1 / x2 / gates (elements) */
    const int8_t *lut_i, *lut_f, *lut_g, *lut_o, *lut_c; /* centred 256-entry tables, + 128 */
    int32_t gate_a, gate_b;
} el_lstm_cell_t;

/* On Helium (EL_USE_MVE) 4 units a vector and n >= 4 (n < 4 does nothing there; the generator
 * fuses such a cell for other cores only). */
void el_lstm_cell_s8(const el_lstm_cell_t *p, const int8_t *x1, const int8_t *x2,
                     const int8_t *c, int8_t *gates, int8_t *c_out, int8_t *h, int n);

/* y[i] = lut[(uint8_t)x[i]] (LOGISTIC, TANH, ABS, EXP, LOG, RSQRT, ELU, RELU, QUANTIZE). */
void el_lut_s8(const int8_t *lut, const int8_t *x, int8_t *y, int n);

/* TFLite's int8 softmax: a float exp table of 256 entries indexed by (max - x). */
void el_softmax_s8(const float *table, float out_scale, int32_t out_zp, const int8_t *x,
                   int8_t *y, int outer, int n);

/* int8 DIV as TFLite's reference DivElementwise: per byte of x2, `inv` holds the reciprocal of
 * (x2 - zp2) from GetReciprocal (negative for a negative divisor, 0 for a zero one) and `rs` its
 * shift; the quotient is rescaled by out_mult / out_shift (in1 scale / (in2 scale * out scale)). */
typedef struct {
    int32_t in1_off, out_off, out_mult, out_shift, act_min, act_max;
} el_div_s8_t;

void el_div_s8(const el_div_s8_t *p, const int32_t *inv, const int8_t *rs, const int8_t *x1,
               int step1, const int8_t *x2, int step2, int8_t *y, int n);

/* int8 MEAN over the middle axis of [outer, n, inner] (TFLite's QuantizedMeanOrSum): the sum
 * minus n * in_zp, requantized by mult / shift (1/n folded in by the generator). */
void el_mean_s8(const int8_t *x, int outer, int n, int inner, int32_t in_zp, int32_t mult,
                int32_t shift, int32_t out_zp, int8_t *y);

/* int8 -> int8 with a new scale / zero point. */
void el_requant_s8(const int8_t *x, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                   int8_t *y, int n);
void el_quantize_f32_s8(const float *x, float scale, int32_t zp, int8_t *y, int n);
void el_dequantize_s8_f32(const int8_t *x, float scale, int32_t zp, float *y, int n);

/* ---- float32 --------------------------------------------------------------------------- */

#define EL_ACT_NONE 0
#define EL_ACT_RELU 1
#define EL_ACT_RELU_N1_TO_1 2
#define EL_ACT_RELU6 3
#define EL_ACT_TANH 4

void el_fc_f32(const float *x, int cols, const float *w, const float *bias, int rows, int act,
               float *y);
/* op: 0 add, 1 sub, 2 mul, 3 div */
void el_binary_f32(int op, const float *x1, int step1, const float *x2, int step2, float *y, int n,
                   int act);
void el_logistic_f32(const float *x, float *y, int n);
void el_tanh_f32(const float *x, float *y, int n);
/* MAXIMUM (is_max = 1) / MINIMUM of two tensors (step 0: a scalar), as TFLite's reference
 * kernels: int8 compares the raw values (the converter gives inputs and output one scale) */
void el_maxmin_f32(int is_max, const float *x1, int step1, const float *x2, int step2, float *y,
                   int n);
void el_maxmin_s8(int is_max, const int8_t *x1, int step1, const int8_t *x2, int step2,
                  int8_t *y, int n);
void el_relu_f32(const float *x, float *y, int n, float lo, float hi);
/* float32 math of one input (el_unary_f32's op) */
#define EL_UN_ABS 0
#define EL_UN_EXP 1
#define EL_UN_LOG 2
#define EL_UN_RSQRT 3
#define EL_UN_ELU 4

void el_unary_f32(int op, const float *x, float *y, int n);
/* MEAN over the middle axis of [outer, n, inner]: a float sum in input order, then / n */
void el_mean_f32(const float *x, int outer, int n, int inner, float *y);

/* comparisons of two float tensors (step 0: a scalar) into bool bytes (0 / 1) */
#define EL_CMP_EQUAL 0
#define EL_CMP_NOT_EQUAL 1
#define EL_CMP_LESS 2
#define EL_CMP_LESS_EQUAL 3
#define EL_CMP_GREATER 4
#define EL_CMP_GREATER_EQUAL 5

void el_compare_f32(int op, const float *x1, int step1, const float *x2, int step2, uint8_t *y,
                    int n);
/* REDUCE_ANY over the middle axis of [outer, n, inner], bool bytes */
void el_reduce_any(const uint8_t *x, int outer, int n, int inner, uint8_t *y);
/* CAST bool bytes -> float32 (0.0f / 1.0f) */
void el_cast_bool_f32(const uint8_t *c, float *y, int n);

void el_softmax_f32(const float *x, float *y, int outer, int n, float beta);

/* ---- layout (any type) ----------------------------------------------------------------- */

/* Copy `rows` chunks of `len` bytes from src (stride src_stride) to dst (stride dst_stride). */
void el_copy_rows(const void *src, int src_stride, void *dst, int dst_stride, int rows, int len);
/* SELECT / SELECT_V2: y = c ? a : b per element of `size` bytes (step 0: broadcast a scalar) */
void el_select(const uint8_t *c, int stepc, const void *a, int stepa, const void *b, int stepb,
               void *y, int n, int size);
/* Embedding: y = table[idx] (row of `row_bytes`); EL_ERR_INDEX unless 0 <= idx < n_rows. */
int el_gather(const void *table, int n_rows, int row_bytes, const int32_t *idx, int n_idx,
              void *y);

/* ---- int16 kernels: the int8 step model's LSTM cells in int16 (edgelstm.tflite.cell16), the
 * integer formulas of TFLite Micro's reference kernels ---- */
/* int16x8 FULLY_CONNECTED: y = clamp(MBQM64(sum w * x + bias)), one multiplier per row
 * (nmult == rows) or for all (nmult == 1); weights symmetric, input and output zero point 0.
 * `single`: LiteRT BUILTIN_REF's requantization (the full multiplier, one rounding), else
 * TFLite Micro's (the multiplier reduced to 16 bits) */
void el_fc_s16x8(const int16_t *x, const int8_t *w, const int64_t *bias, const int32_t *mult,
                 const int32_t *shift, int nmult, int rows, int cols, int16_t *y, int single);
/* int16 ADD/SUB (TFLite's general int16 path: left shift 15), p as for el_addsub_s8 */
void el_addsub_s16(const el_addsub_s8_t *p, int sign, const int16_t *x1, int step1,
                   const int16_t *x2, int step2, int16_t *y, int n);
/* int16 MUL, p as for el_mul_s8; `single`: LiteRT BUILTIN_REF's rounding (once, half away from
 * zero: --rounding litert-ref), else TFLite Micro's (twice) */
void el_mul_s16(const el_mul_s8_t *p, const int16_t *x1, int step1, const int16_t *x2,
                int step2, int16_t *y, int n, int single);
/* int16 LOGISTIC (tanh = 0) / TANH (tanh = 1), output scale 2^-15: TFLite's 256-entry sigmoid
 * table with interpolation; mult/left_shift from the input scale (mult 0: a power of two) */
void el_act_s16(int tanh, int32_t mult, int32_t left_shift, const int16_t *x, int16_t *y, int n);
/* QUANTIZE between int8 and int16: y = clamp(MBQM(x - in_zp) + out_zp) */
void el_requant_s8_s16(const int8_t *x, int32_t in_zp, int32_t mult, int32_t shift,
                       int32_t out_zp, int16_t *y, int n);
void el_requant_s16_s8(const int16_t *x, int32_t in_zp, int32_t mult, int32_t shift,
                       int32_t out_zp, int8_t *y, int n);

#ifdef __cplusplus
}
#endif
#endif /* EDGELSTM_KERNELS_H */
