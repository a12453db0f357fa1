/* fuzz_fsm.c - libFuzzer target: FSM commands and snapshots from raw bytes. */
#include "consensus/fsm.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fsm_t *fsm = fsm_new();
    char err[256];
    fsm_result_t res;
    fsm_apply(fsm, 1, data, size, &res);
    fsm_restore(fsm, data, size, err, sizeof(err));
    fsm_destroy(&fsm);
    return 0;
}
