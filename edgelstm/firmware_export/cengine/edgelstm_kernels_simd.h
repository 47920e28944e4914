/* edgelstm native runtime: SIMD versions of the C engine's hot kernels (edgelstm_kernels_simd.c).
 *
 * Not part of an exported engine: the native runtime (edgelstm.runtime.native) compiles the model
 * file through a wrapper that includes this header first, so the model's calls to el_fc_s8_fast
 * and el_fc_f32 land here; the portable kernels (edgelstm_kernels.c) stay as they are and are the
 * fallback for anything these do not cover. The variant is chosen at compile time:
 *   x86-64: AVX-512 VNNI (zmm, __AVX512VNNI__ + __AVX512BW__), AVX-VNNI (ymm, __AVXVNNI__), AVX2
 *   aarch64: NEON with SDOT (__ARM_FEATURE_DOTPROD), NEON
 * -DEL_USE_SIMD=0 turns them off. int8 results are bit-exact with the portable kernels (integer
 * arithmetic, the same requantization); float sums are reassociated (lanes), within 1e-5.
 */
#ifndef EDGELSTM_KERNELS_SIMD_H
#define EDGELSTM_KERNELS_SIMD_H

#include "edgelstm_kernels.h"

#ifndef EL_USE_SIMD
#define EL_USE_SIMD 1
#endif

#if EL_USE_SIMD && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define EL_SIMD_KIND "avx512vnni"
#define EL_SIMD_X86 3
#elif EL_USE_SIMD && defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__)
#define EL_SIMD_KIND "avxvnni"
#define EL_SIMD_X86 2
#elif EL_USE_SIMD && defined(__AVX2__) && defined(__FMA__)
#define EL_SIMD_KIND "avx2"
#define EL_SIMD_X86 1
#elif EL_USE_SIMD && defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
#define EL_SIMD_KIND "neon-sdot"
#define EL_SIMD_ARM 2
#elif EL_USE_SIMD && defined(__aarch64__) && defined(__ARM_NEON)
#define EL_SIMD_KIND "neon"
#define EL_SIMD_ARM 1
#else
#define EL_SIMD_KIND "portable"
#endif

#ifndef EL_SIMD_X86
#define EL_SIMD_X86 0
#endif
#ifndef EL_SIMD_ARM
#define EL_SIMD_ARM 0
#endif
#define EL_SIMD_ANY (EL_SIMD_X86 || EL_SIMD_ARM)

#ifdef __cplusplus
extern "C" {
#endif

/* Which variant this build uses ("avx512vnni", ..., "portable"). */
const char *el_simd_kind(void);

/* el_fc_s8_fast into y, then el_add_s8_fast_lut of it and `other` (other + fc when fc_second,
 * else fc + other) into y: an LSTM's recurrent FC with its gates' ADD and tables. The AVX-512
 * build does the ADD and the table on each 16 FC outputs while they are in a register (while the
 * next weights stream in); every build gives the bytes of the two kernels in turn. */
void el_fc_s8_fast_add_lut(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                           int32_t out_zp, int16_t *xs, const el_add_fast_t *ap,
                           const int8_t *other, int fc_second, int seg, int nseg,
                           const int8_t *const *luts, int8_t *y);

#if EL_SIMD_ANY
/* Same contract as el_fc_s8_fast. The stream's weights are repacked on first use (per stream
 * pointer, kept for the process) into 16-row x 4-column tiles in column order; a stream that
 * does not fit the repack table runs the portable kernel. */
void el_simd_fc_s8_fast(const int8_t *x, int cols, int cols_pad, const int8_t *stream, int rows,
                        int32_t out_zp, int16_t *xs, int8_t *y);
/* Same contract as el_fc_s8_fast_add_lut. */
void el_simd_fc_s8_fast_add_lut(const int8_t *x, int cols, int cols_pad, const int8_t *stream,
                                int rows, int32_t out_zp, int16_t *xs, const el_add_fast_t *ap,
                                const int8_t *other, int fc_second, int seg, int nseg,
                                const int8_t *const *luts, int8_t *y);
/* Same contract as el_fc_f32 (row-major weights, lanes over columns). */
void el_simd_fc_f32(const float *x, int cols, const float *w, const float *bias, int rows, int act,
                    float *y);

/* Same contracts as el_add_s8_fast, el_add_s8_fast_lut and el_mul_s8_fast (unit strides
 * vectorised; other strides run the portable kernels). */
void el_simd_add_s8_fast(const el_add_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                         int step2, int8_t *y, int n);
void el_simd_add_s8_fast_lut(const el_add_fast_t *p, const int8_t *x1, const int8_t *x2, int8_t *y,
                             int seg, int nseg, const int8_t *const *luts);
void el_simd_mul_s8_fast(const el_mul_fast_t *p, const int8_t *x1, int step1, const int8_t *x2,
                         int step2, int8_t *y, int n);
/* Same contract as el_lut_s8 (64 lookups per VPERMI2B pair with AVX-512 VBMI). */
void el_simd_lut_s8(const int8_t *lut, const int8_t *x, int8_t *y, int n);
/* Same contracts as el_logistic_f32 / el_tanh_f32 (a vectorised expf, |error| ~1e-7) and
 * el_binary_f32 (unit strides without activation vectorised, else the portable kernel). */
void el_simd_logistic_f32(const float *x, float *y, int n);
void el_simd_tanh_f32(const float *x, float *y, int n);
void el_simd_binary_f32(int op, const float *x1, int step1, const float *x2, int step2, float *y,
                        int n, int act);

#ifndef EL_SIMD_NO_REMAP
#define el_fc_s8_fast el_simd_fc_s8_fast
#define el_fc_s8_fast_add_lut el_simd_fc_s8_fast_add_lut
#define el_fc_f32 el_simd_fc_f32
#define el_add_s8_fast el_simd_add_s8_fast
#define el_add_s8_fast_lut el_simd_add_s8_fast_lut
#define el_mul_s8_fast el_simd_mul_s8_fast
#define el_lut_s8 el_simd_lut_s8
#define el_logistic_f32 el_simd_logistic_f32
#define el_tanh_f32 el_simd_tanh_f32
#define el_binary_f32 el_simd_binary_f32
#endif
#endif

#ifdef __cplusplus
}
#endif
#endif /* EDGELSTM_KERNELS_SIMD_H */
