/* A command-line driver over el_native.c, for running the native engine where ctypes cannot
 * (an emulated aarch64 binary under qemu-user, a board without Python): reads T raw input
 * samples (ELN_INPUT_T, T x ELN_INPUT_SIZE) from stdin, runs them from the zeroed state in one
 * eln_run call, and writes the raw outputs (T x ELN_OUTPUT_SIZE) then the final state struct to
 * stdout. Exit status: 0, or 3 when the engine reported an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eln_config.h"

int32_t eln_run(void *st, const void *xs, void *ys, int32_t steps, int32_t *status);

int main(void)
{
    size_t cap = 1 << 16, len = 0, got;
    unsigned char *in = (unsigned char *)malloc(cap);
    ELN_STATE_T st;
    ELN_OUTPUT_T *ys;
    int32_t steps, status = 0;
    while (in && (got = fread(in + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            in = (unsigned char *)realloc(in, cap);
        }
    }
    if (!in) {
        return 2;
    }
    steps = (int32_t)(len / (sizeof(ELN_INPUT_T) * ELN_INPUT_SIZE));
    ys = (ELN_OUTPUT_T *)calloc((size_t)steps * ELN_OUTPUT_SIZE + 1, sizeof(ELN_OUTPUT_T));
    memset(&st, 0, sizeof(st));
    eln_run(&st, in, ys, steps, &status);
    fwrite(ys, sizeof(ELN_OUTPUT_T), (size_t)steps * ELN_OUTPUT_SIZE, stdout);
    fwrite(&st, sizeof(st), 1, stdout);
    free(ys);
    free(in);
    return status ? 3 : 0;
}
