/* edgelstm C engine kernels: portable C99, no malloc, no TFLite Micro.
 *
 * int8 kernels reproduce TFLite's integer arithmetic (fixed-point multipliers with the same
 * rounding, 256-entry activation tables), so a generated engine matches the int8 .tflite.
 * Define EL_USE_DSP=0 to force the portable fully-connected loop on a core with the DSP
 * extension (by default __ARM_FEATURE_DSP selects the SXTB16/SMLAD path).
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

#define EL_OK 0
#define EL_ERR_INDEX 1 /* a token id outside the embedding table */

/* ---- int8 ------------------------------------------------------------------------------ */

/* y = act(requant(W x + b)). W: rows (padded to 4) x `cols_pad` (a multiple of 8) int8 in the
 * blocked layout written by
 * the generator (blocks of 4 rows x 4 columns, bytes of a row as c0 c2 c1 c3); b has the input
 * zero point folded in (bias, mult and shift have rows rounded up to 4 entries). xs: int16 scratch of cols_pad entries. */
void el_fc_s8(const int8_t *x, int cols, int cols_pad, const int8_t *w, const int32_t *bias,
              int rows, const int32_t *mult, const int8_t *shift, int32_t out_zp,
              int32_t act_min, int32_t act_max, int16_t *xs, int8_t *y);

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

/* y[i] = lut[(uint8_t)x[i]] (LOGISTIC, TANH). */
void el_lut_s8(const int8_t *lut, const int8_t *x, int8_t *y, int n);

/* TFLite's int8 softmax: a float exp table of 256 entries indexed by (max - x). */
void el_softmax_s8(const float *table, float out_scale, int32_t out_zp, const int8_t *x,
                   int8_t *y, int outer, int n);

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
/* op: 0 add, 1 sub, 2 mul */
void el_binary_f32(int op, const float *x1, int step1, const float *x2, int step2, float *y, int n,
                   int act);
void el_logistic_f32(const float *x, float *y, int n);
void el_tanh_f32(const float *x, float *y, int n);
void el_relu_f32(const float *x, float *y, int n, float lo, float hi);
void el_softmax_f32(const float *x, float *y, int outer, int n, float beta);

/* ---- layout (any type) ----------------------------------------------------------------- */

/* Copy `rows` chunks of `len` bytes from src (stride src_stride) to dst (stride dst_stride). */
void el_copy_rows(const void *src, int src_stride, void *dst, int dst_stride, int rows, int len);
/* Embedding: y = table[idx] (row of `row_bytes`); EL_ERR_INDEX unless 0 <= idx < n_rows. */
int el_gather(const void *table, int n_rows, int row_bytes, const int32_t *idx, int n_idx,
              void *y);

#ifdef __cplusplus
}
#endif
#endif /* EDGELSTM_KERNELS_H */
