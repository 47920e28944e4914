/* edgelstm native runtime: a thin C ABI over one generated engine, loaded with ctypes.
 *
 * eln_config.h (written beside this file by edgelstm.runtime.native) includes the model header and
 * defines ELN_STATE_T, ELN_INPUT_T, ELN_OUTPUT_T, ELN_STEP, ELN_INPUT_SIZE, ELN_OUTPUT_SIZE,
 * ELN_FIELD_OFFSETS and ELN_PRE_BYTES (with ELN_STEP_INPUT / ELN_STEP_RECURRENT when it is not 0).
 * Not part of an exported engine; not thread-safe (the engine's arena and the block buffer below
 * are static). Every loop runs in C so Python pays its call overhead once per chunk.
 *
 * When the engine splits its step (ELN_PRE_BYTES > 0), the loops run ELN_BLOCK steps at a time:
 * first the state-independent part of each (an LSTM's input projection x.K + b, whose weights
 * then stay in L1 across the block instead of being evicted by the recurrent weights every step),
 * then the recurrent part of each in order. Each part is the same code as in ELN_STEP, so the
 * results are the same bit for bit.
 */
#include <stddef.h>
#include <stdint.h>

#include "eln_config.h"

#define ELN_ABI 1

#if ELN_PRE_BYTES > 0
#ifndef ELN_BLOCK
#define ELN_BLOCK 16
#endif
#define ELN_PRE_STRIDE ((ELN_PRE_BYTES + 63) / 64 * 64)
static _Alignas(64) uint8_t eln_pre[ELN_BLOCK * ELN_PRE_STRIDE];

/* Calls k0 .. k0 + n - 1 (n <= ELN_BLOCK) of a flat sequence: call k reads x [k], writes y [k]
 * and advances the state sts[k % streams]. Returns the calls done (n unless an error: then
 * *status is set, and the state of the failing call is as before it). */
static int32_t eln_block(ELN_STATE_T *sts, int32_t streams, int32_t k0, int32_t n,
                         const ELN_INPUT_T *xs, ELN_OUTPUT_T *ys, int32_t *status)
{
    int32_t i, m = n, rc = 0;
    for (i = 0; i < n; ++i) {
        rc = ELN_STEP_INPUT(xs + (long)(k0 + i) * ELN_INPUT_SIZE, eln_pre + i * ELN_PRE_STRIDE);
        if (rc != 0) {
            m = i; /* the calls before the failing one still run */
            break;
        }
    }
    for (i = 0; i < m; ++i) {
        const int32_t k = k0 + i;
        const int32_t r = ELN_STEP_RECURRENT(&sts[k % streams], xs + (long)k * ELN_INPUT_SIZE,
                                             eln_pre + i * ELN_PRE_STRIDE,
                                             ys + (long)k * ELN_OUTPUT_SIZE);
        if (r != 0) {
            *status = r;
            return i;
        }
    }
    if (rc != 0) {
        *status = rc;
    }
    return m;
}

/* calls [0, total) of the flat sequence in blocks; the calls done */
static int32_t eln_blocks(ELN_STATE_T *sts, int32_t streams, int32_t total, const ELN_INPUT_T *xs,
                          ELN_OUTPUT_T *ys, int32_t *status)
{
    int32_t k0;
    *status = 0;
    for (k0 = 0; k0 < total; k0 += ELN_BLOCK) {
        const int32_t n = total - k0 < ELN_BLOCK ? total - k0 : ELN_BLOCK;
        const int32_t done = eln_block(sts, streams, k0, n, xs, ys, status);
        if (done != n) {
            return k0 + done;
        }
    }
    return total;
}
#endif

int32_t eln_abi(void) { return ELN_ABI; }
int32_t eln_state_bytes(void) { return (int32_t)sizeof(ELN_STATE_T); }
int32_t eln_input_size(void) { return ELN_INPUT_SIZE; }
int32_t eln_output_size(void) { return ELN_OUTPUT_SIZE; }

static const int32_t eln_offsets[] = ELN_FIELD_OFFSETS;

int32_t eln_field_count(void) { return (int32_t)(sizeof(eln_offsets) / sizeof(eln_offsets[0])); }

void eln_field_offsets(int32_t *out)
{
    size_t i;
    for (i = 0; i < sizeof(eln_offsets) / sizeof(eln_offsets[0]); ++i) {
        out[i] = eln_offsets[i];
    }
}

/* One step of one stream. Returns the engine's status (0 = OK). */
int32_t eln_step(void *st, const void *x, void *y)
{
    return ELN_STEP((ELN_STATE_T *)st, (const ELN_INPUT_T *)x, (ELN_OUTPUT_T *)y);
}

/* T consecutive steps of one stream: xs [T][ELN_INPUT_SIZE] -> ys [T][ELN_OUTPUT_SIZE]. Returns
 * the number of steps done; on an error *status gets the engine's code and the loop stops. */
int32_t eln_run(void *st, const void *xs, void *ys, int32_t steps, int32_t *status)
{
#if ELN_PRE_BYTES > 0
    return eln_blocks((ELN_STATE_T *)st, 1, steps, (const ELN_INPUT_T *)xs, (ELN_OUTPUT_T *)ys,
                      status);
#else
    const ELN_INPUT_T *x = (const ELN_INPUT_T *)xs;
    ELN_OUTPUT_T *y = (ELN_OUTPUT_T *)ys;
    int32_t t;
    *status = 0;
    for (t = 0; t < steps; ++t, x += ELN_INPUT_SIZE, y += ELN_OUTPUT_SIZE) {
        const int32_t rc = ELN_STEP((ELN_STATE_T *)st, x, y);
        if (rc != 0) {
            *status = rc;
            return t;
        }
    }
    return steps;
#endif
}

/* T steps of B independent streams (states: B contiguous structs): xs [T][B][ELN_INPUT_SIZE] ->
 * ys [T][B][ELN_OUTPUT_SIZE]. Streams advance together, so the weights stay in cache across
 * streams. Returns steps * B on success, else the index (t * B + b) of the failing call. */
int32_t eln_run_batch(void *states, int32_t streams, const void *xs, void *ys, int32_t steps,
                      int32_t *status)
{
#if ELN_PRE_BYTES > 0
    return eln_blocks((ELN_STATE_T *)states, streams, steps * streams, (const ELN_INPUT_T *)xs,
                      (ELN_OUTPUT_T *)ys, status);
#else
    ELN_STATE_T *sts = (ELN_STATE_T *)states;
    const ELN_INPUT_T *x = (const ELN_INPUT_T *)xs;
    ELN_OUTPUT_T *y = (ELN_OUTPUT_T *)ys;
    int32_t t, b;
    *status = 0;
    for (t = 0; t < steps; ++t) {
        for (b = 0; b < streams; ++b, x += ELN_INPUT_SIZE, y += ELN_OUTPUT_SIZE) {
            const int32_t rc = ELN_STEP(&sts[b], x, y);
            if (rc != 0) {
                *status = rc;
                return t * streams + b;
            }
        }
    }
    return steps * streams;
#endif
}
