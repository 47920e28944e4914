/* edgelstm native runtime: a thin C ABI over one generated engine, loaded with ctypes.
 *
 * eln_config.h (written beside this file by edgelstm.runtime.native) includes the model header and
 * defines ELN_STATE_T, ELN_INPUT_T, ELN_OUTPUT_T, ELN_STEP, ELN_INPUT_SIZE, ELN_OUTPUT_SIZE and
 * ELN_FIELD_OFFSETS. Not part of an exported engine; not thread-safe (the engine's arena is one
 * static buffer). Every loop runs in C so Python pays its call overhead once per chunk.
 */
#include <stddef.h>
#include <stdint.h>

#include "eln_config.h"

#define ELN_ABI 1

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
}

/* T steps of B independent streams (states: B contiguous structs): xs [T][B][ELN_INPUT_SIZE] ->
 * ys [T][B][ELN_OUTPUT_SIZE]. Streams advance together, so the weights stay in cache across
 * streams. Returns steps * B on success, else the index (t * B + b) of the failing call. */
int32_t eln_run_batch(void *states, int32_t streams, const void *xs, void *ys, int32_t steps,
                      int32_t *status)
{
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
}
