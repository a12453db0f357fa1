/* fuzz_proc_state.c - libFuzzer target for the process backend's saved
 * state decoder (vmm/proc_state.c), which reads state from other hosts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/proc_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proc_state_t s;
    char err[256];
    if (proc_state_decode(data, size, &s, err, sizeof err) == 0) {
        /* Whatever decodes encodes to the same bytes; a version 1 state
         * encodes as version 2, which decodes and encodes to itself. */
        uint8_t again[PROC_STATE_BYTES], twice[PROC_STATE_BYTES];
        size_t len = 0, len2 = 0;
        proc_state_t t;
        if (proc_state_encode(&s, again, sizeof again, &len) != 0 || len != PROC_STATE_BYTES)
            abort();
        if (size == PROC_STATE_BYTES && memcmp(again, data, size) != 0)
            abort();
        if (proc_state_decode(again, len, &t, err, sizeof err) != 0 ||
            proc_state_encode(&t, twice, sizeof twice, &len2) != 0 || memcmp(again, twice, len) != 0)
            abort();
    }
    return 0;
}
